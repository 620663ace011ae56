/**
 * Drives the pure SWIM core (lib/core/swim) with real time over the peer transport,
 * feeds it the event loop's lag (Lifeguard: a slow node backs off instead of accusing
 * others), and exposes each member's liveness to the data path, /cluster and /metrics.
 * Liveness never changes ring ownership.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, Counter } from 'prom-client';
import { Swim } from '../core/swim/swim.ts';
import { swimConfig, type SwimConfig } from '../core/swim/config.ts';
import { validateSwimMessage } from '../core/swim/messages.ts';
import type { SwimOutput } from '../core/swim/swim.ts';
import { seededRng } from '../core/rng.ts';
import type { Transport } from '../net/transport.ts';
import type { Metrics } from '../api/metrics.ts';
import type { Liveness } from './liveness.ts';
import type { Logger } from './log.ts';

/** Core tick period: well under the probe timeout so timeouts fire close to when due. */
const TICK_MS = 50;
/** How often event-loop lag is sampled and reported to the core. */
const LAG_SAMPLE_MS = 1000;

export class Gossip implements Liveness {
  readonly swim: Swim;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly lag: IntervalHistogram;
  private readonly events: Counter<'type'>;
  private readonly members: Gauge<'liveness'>;
  private readonly health: Gauge;
  private readonly lagGauge: Gauge;
  private lastEpochBehind = 0;

  constructor(
    private readonly selfId: string,
    private readonly transport: Transport,
    config: Partial<SwimConfig>,
    metrics: Metrics,
    private readonly log: Logger,
    private readonly epoch: () => number,
    private readonly onEpochBehind: (epoch: number, from: string) => void,
  ) {
    this.swim = new Swim(swimConfig(config), selfId, seededRng((Math.random() * 2 ** 32) >>> 0));
    const r = metrics.registry;
    this.events = new Counter({ name: 'kv_swim_events_total', help: 'Liveness changes seen by this node', labelNames: ['type'] as const, registers: [r] });
    this.members = new Gauge({ name: 'kv_swim_members', help: 'Members by liveness in this node\'s view', labelNames: ['liveness'] as const, registers: [r],
      collect: () => this.countMembers() });
    this.health = new Gauge({ name: 'kv_swim_health_score', help: 'Lifeguard local health score (0 = healthy)', registers: [r],
      collect: () => this.health.set(this.swim.healthScore) });
    this.lagGauge = new Gauge({ name: 'kv_event_loop_lag_seconds', help: 'p99 event-loop delay over the last sample', registers: [r] });
    this.lag = monitorEventLoopDelay({ resolution: 10 });
    transport.handle('swim', (from, payload) => {
      this.handle(this.swim.receive(from, validateSwimMessage(payload), Date.now()));
    });
  }

  start(): void {
    this.lag.enable();
    this.timers.push(setInterval(() => {
      this.swim.setLocalEpoch(this.epoch());
      this.handle(this.swim.tick(Date.now()));
    }, TICK_MS));
    this.timers.push(setInterval(() => {
      const p99ms = this.lag.percentile(99) / 1e6;
      this.lag.reset();
      this.lagGauge.set(p99ms / 1000);
      this.swim.reportLag(p99ms);
    }, LAG_SAMPLE_MS));
  }

  private handle(out: SwimOutput): void {
    for (const m of out.messages) this.transport.send(m.to, 'swim', m.msg);
    for (const e of out.events) {
      this.events.labels({ type: e.type }).inc();
      this.log.info({ member: e.id, liveness: e.type, incarnation: e.incarnation }, 'member liveness changed');
    }
    if (out.epochBehind && out.epochBehind.epoch > this.lastEpochBehind) {
      this.lastEpochBehind = out.epochBehind.epoch;
      this.onEpochBehind(out.epochBehind.epoch, out.epochBehind.from);
    }
  }

  private countMembers(): void {
    const counts = { alive: 0, suspect: 0, dead: 0 };
    for (const m of this.swim.members()) counts[m.liveness]++;
    for (const [k, v] of Object.entries(counts)) this.members.labels({ liveness: k }).set(v);
  }

  isAlive(id: string): boolean {
    if (id === this.selfId) return true;
    const m = this.swim.member(id);
    // A suspect is still tried (memberlist does too): suspicion is a question, not a verdict.
    return m !== undefined && m.liveness !== 'dead';
  }

  view(id: string): { liveness: 'alive' | 'suspect' | 'dead'; incarnation: number; lastHeardMs: number | null } {
    const m = this.swim.member(id);
    if (!m) return { liveness: 'dead', incarnation: 0, lastHeardMs: null };
    return { liveness: m.liveness, incarnation: m.incarnation, lastHeardMs: m.lastHeardMs ?? null };
  }

  setMembers(ids: string[]): void {
    this.swim.setMembers(ids, Date.now());
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.lag.disable();
  }
}
