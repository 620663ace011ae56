/**
 * Drives the pure SWIM core (lib/core/swim) with real time over the peer transport,
 * feeds it the transport's connection events and the event loop's lag (Lifeguard: a
 * slow node backs off instead of accusing others), and exposes each member's liveness
 * to the data path, /cluster and /metrics. Liveness never changes ring ownership.
 *
 * Ticks come when the core asks (Swim.nextTickAtMs: the next probe, a timeout, a
 * relay's nack, a suspicion timer), about two a second in a quiet cluster, instead of
 * on a fixed 50 ms cadence: an idle node wakes up for gossip only when there is gossip
 * to do. Each tick is deferred with setImmediate behind the reads of every socket that
 * is ready, so no timeout is judged while its answer sits unread in a buffer.
 */
import { performance } from 'node:perf_hooks';
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

/**
 * The longest wait between two ticks whatever the core asks for: a safety net for a
 * deadline it might not report, and the floor of lag sampling; one wake-up a second.
 */
const MAX_TICK_INTERVAL_MS = 1000;
/** A timer set within this of the time wanted is kept rather than re-armed. */
const REARM_SLACK_MS = 5;
/** kv_event_loop_lag_seconds is the largest tick lateness over a window this long. */
const LAG_WINDOW_MS = 1000;

/**
 * The core's clock: monotonic (it must never go back, and the wall clock can be set
 * back), and near the wall clock in value so that log lines and views stay readable.
 */
function monotonicMs(): number {
  return Math.floor(performance.timeOrigin + performance.now());
}

export interface GossipOptions {
  selfId: string;
  transport: Transport;
  /** SWIM settings; what is left out takes the defaults of lib/core/swim/config.ts. */
  config: Partial<SwimConfig>;
  metrics: Metrics;
  log: Logger;
  /** This node's topology epoch, gossiped so that a peer behind it learns of a newer one. */
  epoch: () => number;
  /** A peer gossiped a newer epoch than ours: called once per newer epoch. */
  onEpochBehind: (epoch: number, from: string) => void;
}

export class Gossip implements Liveness {
  readonly swim: Swim;
  private readonly events: Counter<'type'>;
  private readonly members: Gauge<'liveness'>;
  private readonly health: Gauge;
  private readonly lagGauge: Gauge;
  private readonly unsubscribe: Array<() => void> = [];
  private lastEpochBehind = 0;
  private started = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (monotonic ms); what its lateness is measured from. */
  private timerAtMs = Infinity;
  private immediate: NodeJS.Immediate | undefined;
  private firedForMs = 0;
  private lagWindowStartMs = 0;
  private lagWindowMaxMs = 0;

  private readonly selfId: string;
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly epoch: () => number;
  private readonly onEpochBehind: (epoch: number, from: string) => void;

  constructor(o: GossipOptions) {
    this.selfId = o.selfId;
    this.transport = o.transport;
    this.log = o.log;
    this.epoch = o.epoch;
    this.onEpochBehind = o.onEpochBehind;
    const metrics = o.metrics;
    this.swim = new Swim(swimConfig(o.config), o.selfId, seededRng((Math.random() * 2 ** 32) >>> 0));
    const r = metrics.registry;
    this.events = new Counter({ name: 'kv_swim_events_total', help: 'Liveness changes seen by this node', labelNames: ['type'] as const, registers: [r] });
    this.members = new Gauge({ name: 'kv_swim_members', help: 'Members by liveness in this node\'s view', labelNames: ['liveness'] as const, registers: [r],
      collect: () => this.countMembers() });
    this.health = new Gauge({ name: 'kv_swim_health_score', help: 'Lifeguard local health score (0 = healthy)', registers: [r],
      collect: () => this.health.set(this.swim.healthScore) });
    this.lagGauge = new Gauge({ name: 'kv_event_loop_lag_seconds', help: 'Event-loop lag: the largest lateness of the gossip timer over the last second', registers: [r] });
    o.transport.handle('swim', (from, payload) => {
      this.handle(this.swim.receive(from, validateSwimMessage(payload), monotonicMs()));
    });
  }

  start(): void {
    this.started = true;
    this.lagWindowStartMs = monotonicMs();
    // A closed connection is the first sign of a killed peer; an opened one, of a restarted one.
    this.unsubscribe.push(this.transport.on('peer-down', (id) => this.handle(this.swim.linkDown(id, monotonicMs()))));
    this.unsubscribe.push(this.transport.on('peer-up', (id) => this.handle(this.swim.linkUp(id, monotonicMs()))));
    this.arm();
  }

  /** Sets the timer for the next tick the core wants, unless one is set for about then or a tick is on its way. */
  private arm(): void {
    if (!this.started || this.stopped || this.immediate !== undefined) return;
    const nowMs = monotonicMs();
    // Not before now: a due time already past fires at once, and lateness counts from then.
    const wantMs = Math.max(nowMs, Math.min(this.swim.nextTickAtMs(), nowMs + MAX_TICK_INTERVAL_MS));
    if (this.timer !== undefined && Math.abs(this.timerAtMs - wantMs) <= REARM_SLACK_MS) return;
    clearTimeout(this.timer);
    this.timerAtMs = wantMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, wantMs - nowMs));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.firedForMs = this.timerAtMs;
    this.timerAtMs = Infinity;
    // Check phase: after this loop iteration's socket reads.
    this.immediate = setImmediate(this.runTick);
  };

  private readonly runTick = (): void => {
    this.immediate = undefined;
    if (this.stopped) return;
    const nowMs = monotonicMs();
    this.measureLag(nowMs, Math.max(0, nowMs - this.firedForMs));
    this.swim.setLocalEpoch(this.epoch());
    this.handle(this.swim.tick(nowMs));
  };

  /** Lifeguard's input: a late tick is our own slowness, so back off (the core ignores small lag). */
  private measureLag(nowMs: number, lateMs: number): void {
    this.swim.reportLag(lateMs);
    this.lagWindowMaxMs = Math.max(this.lagWindowMaxMs, lateMs);
    if (nowMs - this.lagWindowStartMs >= LAG_WINDOW_MS) {
      this.lagGauge.set(this.lagWindowMaxMs / 1000);
      this.lagWindowMaxMs = 0;
      this.lagWindowStartMs = nowMs;
    }
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
    this.arm();
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

  /** lastHeardMs in wall-clock ms (the core's clock is monotonic). */
  view(id: string): { liveness: 'alive' | 'suspect' | 'dead'; incarnation: number; lastHeardMs: number | null } {
    const m = this.swim.member(id);
    if (!m) return { liveness: 'dead', incarnation: 0, lastHeardMs: null };
    const lastHeardMs = m.lastHeardMs === undefined ? null : Date.now() - (monotonicMs() - m.lastHeardMs);
    return { liveness: m.liveness, incarnation: m.incarnation, lastHeardMs };
  }

  setMembers(ids: string[]): void {
    this.swim.setMembers(ids, monotonicMs());
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    for (const off of this.unsubscribe.splice(0)) off();
    clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }
}
