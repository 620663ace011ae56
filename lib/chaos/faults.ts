/**
 * Fault injection for `kv chaos`: at seeded random intervals, one of
 * - kill:      SIGKILL a node, restart it from its data dir after a short downtime;
 * - pause:     SIGSTOP a node, SIGCONT it a little later (a GC pause, a stalled VM);
 * - partition: cut the network between two sides (isolate one node, or split the
 *              cluster into a minority and a majority), heal it later;
 * - skew:      put a node's wall clock off by up to ±maxClockSkewMs/2, by restarting
 *              it under libfaketime or by jumping the clock of a node already under
 *              it, jump it again halfway, and set it right at the heal (an NTP step);
 * - topology:  a fresh node joins or a member is decommissioned (topology-fault.ts),
 *              one change at a time, as the cluster allows.
 *
 * Limits keep the cluster able to make progress most of the time, so the run tests
 * more than "everything is unavailable": at most ⌊(n-1)/2⌋ nodes are killed or paused
 * (or restarting onto a skewed clock) at once, one partition is in force at a time (it
 * may overlap kills and pauses), one skew per node, one topology change at a time.
 * Every fault but a topology change schedules its own heal; `stop()` runs every
 * pending heal at once, so no node is left stopped, down, cut off or skewed.
 */
import { join } from 'node:path';
import type { Rng } from '../core/rng.ts';
import type { LocalCluster } from './local-cluster.ts';
import type { NetnsNetwork } from './netns.ts';
import { SkewedClock } from './faketime.ts';
import { TopologyFault, type TopologyChange, type TopologyFaultOptions } from './topology-fault.ts';

export type FaultKind = 'kill' | 'pause' | 'partition' | 'skew' | 'topology';
export const FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition', 'skew', 'topology'];
/** What `kv chaos` injects without --faults. */
export const DEFAULT_FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition'];

export interface FaultEvent {
  atMs: number;
  kind: FaultKind;
  nodes: string[];
  /** Partitions: 'isolate' (one node alone) or 'split' (minority | majority). */
  shape?: 'isolate' | 'split';
  durationMs: number;
  /** Partitions: whether some node on the other side saw a cut-off node as not alive. */
  observed?: boolean;
  /** Skew: 'restart' (killed, started again on the skewed clock) or 'jump' (a running node's clock moved). */
  how?: 'restart' | 'jump';
  /** Skew: the offsets the clock went through (the first one, then the jump halfway); the heal sets 0. */
  offsetsMs?: number[];
  /** Topology: the change, and when the cluster showed it complete (ms after `atMs`). */
  change?: TopologyChange;
  settledMs?: number;
}

export interface FaultStatus {
  down: string[];
  paused: string[];
  partitioned: string[];
  /** `n2-3.1s`: nodes on a skewed clock now. */
  skewed: string[];
  /** `+n6` joining, `-n3` leaving. */
  changing: string[];
}

export interface SkewFaultOptions {
  /** libfaketime.so.1. */
  lib: string;
  /** Where the per-node offset files live (the run's data dir). */
  dir: string;
  /** The nodes' maxClockSkewMs: offsets stay within ±half of it, so two nodes differ by at most all of it. */
  maxClockSkewMs: number;
}

export interface FaultInjectorOptions {
  cluster: LocalCluster;
  net?: NetnsNetwork;
  kinds: readonly FaultKind[];
  rng: Rng;
  /** Mean gap between fault injections. */
  intervalMs: number;
  clockMs: () => number;
  onError: (err: unknown) => void;
  /** Required for the skew fault. */
  skew?: SkewFaultOptions;
  /** Required for the topology fault. */
  topology?: Pick<TopologyFaultOptions, 'nextNode' | 'onMembers' | 'lastStartMs'>;
}

interface Pending {
  fault: FaultEvent;
  timers: NodeJS.Timeout[];
  heal: () => Promise<void>;
}

/** How long a restarted node may take to serve again before it no longer counts as busy. */
const RESTART_READY_MS = 60_000;
/** Bound on waiting for a topology change in progress after the run (a join streams its partitions). */
const TOPOLOGY_SETTLE_MS = 90_000;

export class FaultInjector {
  readonly events: FaultEvent[] = [];
  readonly counts: Record<FaultKind, number> = { kill: 0, pause: 0, partition: 0, skew: 0, topology: 0 };
  readonly topology: TopologyFault | undefined;
  private readonly pending = new Set<Pending>();
  /** Nodes down, paused or restarting because of a fault. */
  private readonly busy = new Set<string>();
  private readonly skewed = new Set<string>();
  private partitionSide: string[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly background = new Set<Promise<unknown>>();

  constructor(private readonly o: FaultInjectorOptions) {
    if (o.kinds.includes('topology') && o.topology !== undefined) {
      this.topology = new TopologyFault({
        ...o.topology, cluster: o.cluster, rng: o.rng, clockMs: o.clockMs, onError: o.onError,
        isFree: (id) => !this.busy.has(id) && o.cluster.state(id) === 'up',
        canCoordinate: (id) => !this.busy.has(id) && o.cluster.state(id) === 'up' && !this.partitionSide.includes(id),
      });
    }
  }

  get total(): number {
    return FAULT_KINDS.reduce((sum, k) => sum + this.counts[k], 0);
  }

  status(): FaultStatus {
    const c = this.o.cluster;
    const change = this.topology?.changing;
    return {
      down: c.specs.filter((s) => c.state(s.id) === 'down').map((s) => s.id),
      paused: c.specs.filter((s) => c.state(s.id) === 'paused').map((s) => s.id),
      partitioned: [...this.partitionSide],
      skewed: c.specs.filter((s) => this.skewed.has(s.id)).map((s) => `${s.id}${seconds(s.clock?.offsetMs ?? 0)}`),
      changing: change === undefined ? [] : [`${change.change === 'join' ? '+' : '-'}${change.nodes[0]}`],
    };
  }

  start(): void {
    if (this.o.kinds.length === 0) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stop injecting and heal everything now (a topology change in progress goes on: see `settleTopology`). */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    const all = [...this.pending];
    this.pending.clear();
    for (const p of all) for (const t of p.timers) clearTimeout(t);
    for (const p of all) await p.heal().catch(this.o.onError);
    await Promise.all(this.background);
  }

  /** Waits, bounded, for a topology change in progress to show in the cluster. */
  async settleTopology(): Promise<void> {
    await this.topology?.settle(TOPOLOGY_SETTLE_MS);
  }

  private async run(): Promise<void> {
    while (this.running) {
      const gap = this.o.intervalMs * (0.5 + this.o.rng.next());
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, gap);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      if (!this.running) break;
      const kind = this.o.kinds[this.o.rng.int(this.o.kinds.length)] as FaultKind;
      try {
        await this.inject(kind);
      } catch (err) {
        this.o.onError(err);
      }
    }
  }

  /** A running node no fault holds (nor, if given, one of `besides`). */
  private pickFree(besides?: ReadonlySet<string>): string | undefined {
    const c = this.o.cluster;
    const changing = this.topology?.changing?.nodes[0];
    const free = c.specs.filter((s) => !this.busy.has(s.id) && !besides?.has(s.id) && s.id !== changing &&
      c.state(s.id) === 'up').map((s) => s.id);
    return free.length === 0 ? undefined : free[this.o.rng.int(free.length)];
  }

  private between(minMs: number, maxMs: number): number {
    return Math.round(minMs + this.o.rng.next() * (maxMs - minMs));
  }

  private async inject(kind: FaultKind): Promise<void> {
    const maxBusy = Math.floor((this.o.cluster.specs.length - 1) / 2);
    const stopsNodes = kind === 'kill' || kind === 'pause' || kind === 'skew';
    if (stopsNodes && this.busy.size >= maxBusy) return;
    switch (kind) {
      case 'kill': return this.injectKill();
      case 'pause': return this.injectPause();
      case 'partition': return this.injectPartition();
      case 'skew': return this.injectSkew();
      case 'topology': return this.injectTopology();
    }
  }

  private async injectKill(): Promise<void> {
    const c = this.o.cluster;
    const id = this.pickFree();
    if (id === undefined) return;
    const durationMs = this.between(500, 5000);
    this.busy.add(id);
    await c.kill(id);
    this.record({ kind: 'kill', nodes: [id], durationMs }, async () => {
      c.restart(id);
      this.releaseWhenServing(id);
    });
  }

  /**
   * Serving again is not required to count as healed: the node is running and the
   * final phase waits for every node to be alive anyway.
   */
  private releaseWhenServing(id: string): void {
    this.track(this.o.cluster.waitHealthy(id, RESTART_READY_MS).catch(() => undefined).finally(() => this.busy.delete(id)));
  }

  private async injectPause(): Promise<void> {
    const c = this.o.cluster;
    const id = this.pickFree();
    if (id === undefined || !c.pause(id)) return;
    this.busy.add(id);
    const durationMs = this.between(300, 4000);
    this.record({ kind: 'pause', nodes: [id], durationMs }, async () => {
      c.resume(id);
      this.busy.delete(id);
    });
  }

  private async injectPartition(): Promise<void> {
    const c = this.o.cluster;
    const net = this.o.net;
    if (net === undefined || this.partitionSide.length > 0) return;
    const n = c.specs.length;
    const shape: 'isolate' | 'split' = n < 4 || this.o.rng.next() < 0.5 ? 'isolate' : 'split';
    const size = shape === 'isolate' ? 1 : Math.floor((n - 1) / 2);
    const order = [...c.specs];
    for (let i = order.length - 1; i > 0; i--) {
      const j = this.o.rng.int(i + 1);
      [order[i], order[j]] = [order[j] as (typeof order)[number], order[i] as (typeof order)[number]];
    }
    const minority = order.slice(0, size);
    const majority = order.slice(size);
    await net.partition(minority.map((s) => s.index), majority.map((s) => s.index));
    const ids = minority.map((s) => s.id);
    this.partitionSide = ids;
    const durationMs = this.between(3000, 10_000);
    const fault = this.record({ kind: 'partition', nodes: ids, shape, durationMs, observed: false }, async () => {
      await net.heal();
      this.partitionSide = [];
    });
    this.track(this.observe(fault, majority.map((s) => s.addr)));
  }

  /** An offset within ±maxClockSkewMs/2, at least a tenth of the bound away from true time (a smaller skew shows little). */
  private skewOffset(maxClockSkewMs: number): number {
    const half = maxClockSkewMs / 2;
    const magnitude = half / 5 + this.o.rng.next() * (half - half / 5);
    return Math.round(this.o.rng.next() < 0.5 ? -magnitude : magnitude);
  }

  private async injectSkew(): Promise<void> {
    const s = this.o.skew;
    const c = this.o.cluster;
    if (s === undefined) return;
    const id = this.pickFree(this.skewed);
    if (id === undefined) return;
    const spec = c.spec(id);
    const offsetMs = this.skewOffset(s.maxClockSkewMs);
    const durationMs = this.between(4000, 12_000);
    const restart = spec.clock === undefined || this.o.rng.next() < 0.5;
    const clock = spec.clock ?? new SkewedClock(s.lib, join(s.dir, `${id}.faketime`));
    clock.set(offsetMs);
    if (restart) {
      this.busy.add(id);
      await c.restartOnClock(id, clock);
      this.releaseWhenServing(id);
    }
    this.skewed.add(id);
    const fault = this.record({ kind: 'skew', nodes: [id], durationMs, how: restart ? 'restart' : 'jump', offsetsMs: [offsetMs] }, async () => {
      clock.set(0);
      this.skewed.delete(id);
    }, [{
      // Halfway, the running node's clock jumps again (forward or back).
      afterMs: durationMs / 2,
      run: () => {
        const next = this.skewOffset(s.maxClockSkewMs);
        clock.set(next);
        fault.offsetsMs?.push(next);
      },
    }]);
  }

  private async injectTopology(): Promise<void> {
    const t = this.topology;
    if (t === undefined) return;
    const e = await t.inject();
    if (e === undefined) return;
    // The topology fault fills in settledMs when the cluster shows the change.
    this.events.push(e);
    this.counts.topology++;
  }

  private record(f: Omit<FaultEvent, 'atMs'>, heal: () => Promise<void>, midway: Array<{ afterMs: number; run: () => void }> = []): FaultEvent {
    const fault: FaultEvent = { atMs: this.o.clockMs(), ...f };
    this.events.push(fault);
    this.counts[f.kind]++;
    const p: Pending = {
      fault,
      heal,
      timers: [
        setTimeout(() => {
          this.pending.delete(p);
          // A step still due must not undo the heal.
          for (const t of p.timers) clearTimeout(t);
          heal().catch(this.o.onError);
        }, f.durationMs),
        ...midway.map((m) => setTimeout(m.run, m.afterMs)),
      ],
    };
    this.pending.add(p);
    return fault;
  }

  /**
   * Evidence that the cut is real: while it lasts, some node on the majority side
   * reports a cut-off node as suspect or dead (SWIM only gets there if its probes,
   * direct and indirect, really fail).
   */
  private async observe(fault: FaultEvent, majorityAddrs: string[]): Promise<void> {
    const until = fault.atMs + fault.durationMs;
    while (this.o.clockMs() < until && this.partitionSide.length > 0 && !fault.observed) {
      for (const addr of majorityAddrs) {
        try {
          const res = await fetch(`http://${addr}/cluster`, { signal: AbortSignal.timeout(1000) });
          const view = (await res.json()) as { members?: Array<{ id: string; liveness: string }> };
          if (view.members?.some((m) => fault.nodes.includes(m.id) && m.liveness !== 'alive')) fault.observed = true;
        } catch { /* paused or down: ask another */ }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }
}

/** `+3.1s`, `-0.8s`. */
export function seconds(ms: number): string {
  return `${ms < 0 ? '-' : '+'}${(Math.abs(ms) / 1000).toFixed(1)}s`;
}
