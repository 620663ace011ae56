/**
 * Fault injection for `kv chaos`: at seeded random intervals, one of
 * - kill:      SIGKILL a node, restart it from its data dir after a short downtime;
 * - pause:     SIGSTOP a node, SIGCONT it a little later (a GC pause, a stalled VM);
 * - partition: cut the network between two sides (isolate one node, or split the
 *              cluster into a minority and a majority), heal it later.
 *
 * Limits keep the cluster able to make progress most of the time, so the run tests
 * more than "everything is unavailable": at most ⌊(n-1)/2⌋ nodes are killed or paused
 * at once, and one partition is in force at a time (it may overlap kills and pauses).
 * Every fault schedules its own heal; `stop()` runs every pending heal at once, so no
 * node is left stopped, down or cut off.
 */
import type { Rng } from '../core/rng.ts';
import type { LocalCluster } from './local-cluster.ts';
import type { NetnsNetwork } from './netns.ts';

export type FaultKind = 'kill' | 'pause' | 'partition';
export const FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition'];

export interface FaultEvent {
  atMs: number;
  kind: FaultKind;
  nodes: string[];
  /** Partitions: 'isolate' (one node alone) or 'split' (minority | majority). */
  shape?: 'isolate' | 'split';
  durationMs: number;
  /** Partitions: whether some node on the other side saw a cut-off node as not alive. */
  observed?: boolean;
}

export interface FaultStatus {
  down: string[];
  paused: string[];
  partitioned: string[];
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
}

interface Pending {
  fault: FaultEvent;
  timer: NodeJS.Timeout;
  heal: () => Promise<void>;
}

export class FaultInjector {
  readonly events: FaultEvent[] = [];
  readonly counts: Record<FaultKind, number> = { kill: 0, pause: 0, partition: 0 };
  private readonly pending = new Set<Pending>();
  private readonly busy = new Set<string>();
  private partitionSide: string[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly background = new Set<Promise<unknown>>();

  constructor(private readonly o: FaultInjectorOptions) {}

  get total(): number {
    return this.counts.kill + this.counts.pause + this.counts.partition;
  }

  status(): FaultStatus {
    const c = this.o.cluster;
    return {
      down: c.specs.filter((s) => c.state(s.id) === 'down').map((s) => s.id),
      paused: c.specs.filter((s) => c.state(s.id) === 'paused').map((s) => s.id),
      partitioned: [...this.partitionSide],
    };
  }

  start(): void {
    if (this.o.kinds.length === 0) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stop injecting and heal everything now. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    const all = [...this.pending];
    this.pending.clear();
    for (const p of all) clearTimeout(p.timer);
    for (const p of all) await p.heal().catch(this.o.onError);
    await Promise.all(this.background);
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

  private pickFree(): string | undefined {
    const c = this.o.cluster;
    const free = c.specs.filter((s) => !this.busy.has(s.id) && c.state(s.id) === 'up').map((s) => s.id);
    return free.length === 0 ? undefined : free[this.o.rng.int(free.length)];
  }

  private between(minMs: number, maxMs: number): number {
    return Math.round(minMs + this.o.rng.next() * (maxMs - minMs));
  }

  private async inject(kind: FaultKind): Promise<void> {
    const c = this.o.cluster;
    const maxBusy = Math.floor((c.specs.length - 1) / 2);
    if (kind !== 'partition' && this.busy.size >= maxBusy) return;
    if (kind === 'kill') {
      const id = this.pickFree();
      if (id === undefined) return;
      const durationMs = this.between(500, 5000);
      this.busy.add(id);
      await c.kill(id);
      this.record({ kind, nodes: [id], durationMs }, async () => {
        c.restart(id);
        // Serving again is not required to count as healed: the node is running and
        // the final phase waits for every node to be alive anyway.
        const ready = c.waitHealthy(id, 60_000).catch(() => undefined).finally(() => this.busy.delete(id));
        this.track(ready);
      });
    } else if (kind === 'pause') {
      const id = this.pickFree();
      if (id === undefined || !c.pause(id)) return;
      this.busy.add(id);
      const durationMs = this.between(300, 4000);
      this.record({ kind, nodes: [id], durationMs }, async () => {
        c.resume(id);
        this.busy.delete(id);
      });
    } else {
      const net = this.o.net;
      if (net === undefined || this.partitionSide.length > 0) return;
      const n = c.specs.length;
      const shape: 'isolate' | 'split' = n < 4 || this.o.rng.next() < 0.5 ? 'isolate' : 'split';
      const size = shape === 'isolate' ? 1 : Math.floor((n - 1) / 2);
      const order = c.specs.map((s) => s.index);
      for (let i = order.length - 1; i > 0; i--) {
        const j = this.o.rng.int(i + 1);
        [order[i], order[j]] = [order[j] as number, order[i] as number];
      }
      const minority = order.slice(0, size);
      const majority = order.slice(size);
      await net.partition(minority, majority);
      const ids = minority.map((i) => (c.specs[i] as { id: string }).id);
      this.partitionSide = ids;
      const durationMs = this.between(3000, 10_000);
      const fault = this.record({ kind, nodes: ids, shape, durationMs, observed: false }, async () => {
        await net.heal();
        this.partitionSide = [];
      });
      this.track(this.observe(fault, majority.map((i) => (c.specs[i] as { addr: string }).addr)));
    }
  }

  private record(f: Omit<FaultEvent, 'atMs'>, heal: () => Promise<void>): FaultEvent {
    const fault: FaultEvent = { atMs: this.o.clockMs(), ...f };
    this.events.push(fault);
    this.counts[f.kind]++;
    const p: Pending = {
      fault,
      heal,
      timer: setTimeout(() => {
        this.pending.delete(p);
        heal().catch(this.o.onError);
      }, f.durationMs),
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
