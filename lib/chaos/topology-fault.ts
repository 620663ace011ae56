/**
 * The `topology` fault of `kv chaos`: during the run a fresh node joins (`kv node
 * --join`) or a member is decommissioned (`POST /cluster/decommission {"id"}`).
 *
 * One change at a time, as the cluster allows: a change starts only when ours is
 * done and no member is `joining` or `leaving` in the cluster's own view, and a 409
 * `KV_TOPOLOGY_BUSY` answer means "not now": counted, and tried again at a later
 * pick. At least MIN_NORMAL_MEMBERS normal members stay (a decommission needs one
 * more), and the cluster grows by at most MAX_EXTRA_MEMBERS over its start size.
 *
 * A change is complete when the cluster shows it: the joiner `normal`, or the leaver
 * gone from the membership. Only then do the clients learn the new node list
 * (`onMembers`), and a decommissioned node's process is stopped for good. Changes
 * start only until `lastStartMs`, so that they complete while the clients still run.
 */
import type { Rng } from '../core/rng.ts';
import type { LocalCluster, NodeSpec } from './local-cluster.ts';
import type { FaultEvent } from './faults.ts';
import { getJson, pollUntil, type ClusterView } from './cluster-probe.ts';

const SECOND = 1000;
/** Normal members that must remain: N=3 replicas for every partition. */
export const MIN_NORMAL_MEMBERS = 3;
/** Members beyond the start size: enough to alternate joins and decommissions, bounded CPU on a small machine. */
export const MAX_EXTRA_MEMBERS = 2;
/** How long one change may take to show (streaming partitions while other faults run). */
const CHANGE_TIMEOUT_MS = 120 * SECOND;
const REQUEST_TIMEOUT_MS = 5 * SECOND;
/** A membership view: answered in milliseconds by any node that is not paused. */
const VIEW_TIMEOUT_MS = 2 * SECOND;

export type TopologyChange = 'join' | 'decommission';

export interface TopologyCounts {
  joins: number;
  decommissions: number;
  /** Changes the cluster refused with 409 KV_TOPOLOGY_BUSY (retried at a later pick). */
  refusedBusy: number;
  /** Picks skipped because a change was still in progress. */
  deferred: number;
}

export interface TopologyFaultOptions {
  cluster: LocalCluster;
  /** Where the next node listens: a free port, or a fresh namespace. */
  nextNode: () => Promise<{ addr: string; index: number }>;
  rng: Rng;
  clockMs: () => number;
  /** Whether a node may be decommissioned now (running and not under another fault). */
  isFree: (id: string) => boolean;
  /** Whether a node can take an admin request now: running, not paused, not cut off from the others. */
  canCoordinate: (id: string) => boolean;
  /** A change completed: the members the clients should use now. */
  onMembers: (addrs: string[]) => void;
  /**
   * No change starts after this (run clock): one started near the end of the run
   * would complete during the heal, holding it up without client traffic to test.
   */
  lastStartMs: number;
  onError: (err: unknown) => void;
}

/** A started change as the fault log records it; `settledMs` (and `durationMs`) are set when the cluster shows it. */
export type TopologyEvent = FaultEvent & { kind: 'topology'; change: TopologyChange };

function errorCode(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { error?: { code?: string } } | null)?.error?.code;
  } catch {
    return undefined;
  }
}

export class TopologyFault {
  readonly counts: TopologyCounts = { joins: 0, decommissions: 0, refusedBusy: 0, deferred: 0 };
  private readonly startSize: number;
  private current: { event: TopologyEvent; done: Promise<void> } | undefined;

  constructor(private readonly o: TopologyFaultOptions) {
    this.startSize = o.cluster.specs.length;
  }

  /** The change in progress (other faults leave its node alone). */
  get changing(): TopologyEvent | undefined {
    return this.current?.event;
  }

  /** Starts one change if the cluster allows one now; the event, or undefined if none started. */
  async inject(): Promise<TopologyEvent | undefined> {
    if (this.current !== undefined) {
      this.counts.deferred++;
      return undefined;
    }
    const view = await this.view();
    if (view === undefined) {
      this.counts.deferred++;
      return undefined;
    }
    const leaving = view.members.find((m) => m.state === 'leaving');
    // A decommission whose request got no answer but was committed after all: follow it.
    if (leaving !== undefined && this.o.cluster.specs.some((s) => s.id === leaving.id)) return this.follow(leaving.id);
    if (this.o.clockMs() > this.o.lastStartMs) return undefined;
    if (view.members.some((m) => m.state === 'joining' || m.state === 'leaving')) {
      this.counts.deferred++;
      return undefined;
    }
    const normal = view.members.filter((m) => m.state === 'normal');
    const canJoin = this.o.cluster.specs.length < this.startSize + MAX_EXTRA_MEMBERS;
    const leavers = normal.filter((m) => this.o.isFree(m.id));
    const canLeave = normal.length > MIN_NORMAL_MEMBERS && leavers.length > 0;
    if (!canJoin && !canLeave) return undefined;
    const join = canJoin && (!canLeave || this.o.rng.next() < 0.5);
    return join ? this.join() : this.decommission(leavers[this.o.rng.int(leavers.length)]?.id as string);
  }

  /** Waits, at most `timeoutMs`, for the change in progress to show. */
  async settle(timeoutMs: number): Promise<void> {
    const current = this.current;
    if (current === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([current.done, new Promise<void>((r) => { timer = setTimeout(r, timeoutMs); })]);
    clearTimeout(timer);
  }

  private async join(): Promise<TopologyEvent> {
    const { addr, index } = await this.o.nextNode();
    const spec = this.o.cluster.launchJoiner(addr, index);
    this.counts.joins++;
    return this.start(this.event('join', spec.id), async (event) => {
      await pollUntil(`${spec.id} normal in the membership`, CHANGE_TIMEOUT_MS, async () => {
        const v = await this.view();
        return v?.members.some((m) => m.id === spec.id && m.state === 'normal') ? true : undefined;
      });
      this.settled(event);
      this.o.onMembers(this.addrs());
    }, async () => {
      // A joiner that never became normal is not a member the run can count on.
      await this.o.cluster.retire(spec.id);
      this.o.onMembers(this.addrs());
    });
  }

  private async decommission(id: string): Promise<TopologyEvent | undefined> {
    // The request goes through a node that can reach the Raft leader (not paused, not cut off).
    const via = this.upNodes().find((s) => s.id !== id && this.o.canCoordinate(s.id));
    if (via === undefined) return undefined;
    try {
      const res = await fetch(`http://${via.addr}/cluster/decommission`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const body = await res.text();
      if (res.status === 409 && errorCode(body) === 'KV_TOPOLOGY_BUSY') {
        this.counts.refusedBusy++;
        return undefined;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status} ${body.slice(0, 200)}`);
    } catch (err) {
      // No answer, or a refusal: the change may still have been committed (a timeout),
      // and then it is tracked like any other; if not, a later pick tries again.
      this.o.onError(new Error(`decommission ${id} through ${via.id}: ${(err as Error).message}`));
      const v = await this.view(id);
      if (!v?.members.some((m) => m.id === id && m.state === 'leaving')) return undefined;
    }
    return this.follow(id);
  }

  /** Tracks a decommission the cluster committed until `id` is gone from the membership. */
  private follow(id: string): TopologyEvent {
    this.counts.decommissions++;
    return this.start(this.event('decommission', id), async (event) => {
      await pollUntil(`${id} gone from the membership`, CHANGE_TIMEOUT_MS, async () => {
        const v = await this.view(id);
        return v !== undefined && !v.members.some((m) => m.id === id) ? true : undefined;
      });
      this.settled(event);
      await this.o.cluster.retire(id);
      this.o.onMembers(this.addrs());
    });
  }

  private event(change: TopologyChange, node: string): TopologyEvent {
    return { kind: 'topology', change, nodes: [node], atMs: this.o.clockMs(), durationMs: 0 };
  }

  private settled(e: TopologyEvent): void {
    e.settledMs = this.o.clockMs() - e.atMs;
    e.durationMs = e.settledMs;
  }

  /** Tracks a change until `complete` says the cluster shows it (or gave up: `abandon`). */
  private start(event: TopologyEvent, complete: (e: TopologyEvent) => Promise<void>, abandon?: () => Promise<void>): TopologyEvent {
    const done = complete(event)
      .catch(async (err: unknown) => {
        this.o.onError(err);
        await abandon?.().catch(this.o.onError);
      })
      .finally(() => { this.current = undefined; });
    this.current = { event, done };
    return event;
  }

  private upNodes(): NodeSpec[] {
    return this.o.cluster.specs.filter((s) => this.o.cluster.state(s.id) === 'up');
  }

  private addrs(): string[] {
    return this.o.cluster.specs.map((s) => s.addr);
  }

  /**
   * The membership as the first running node other than `not` to answer sees it;
   * undefined if none answers (paused, cut off or starting nodes do not hold it up).
   */
  private async view(not?: string): Promise<ClusterView | undefined> {
    const asked = this.upNodes().filter((s) => s.id !== not);
    try {
      return await Promise.any(asked.map((s) => getJson<ClusterView>(s.addr, '/cluster', VIEW_TIMEOUT_MS)));
    } catch {
      return undefined;
    }
  }
}
