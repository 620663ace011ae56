/**
 * In-process nodes for coordinator tests: each has a memory backend, a record store, the
 * real Replica handlers on a MemoryTransport, a HintStore and a Coordinator, with a clock
 * offset per node (a skewed wall clock), a liveness set the test controls, and a gate
 * that pauses a node's replica handlers (a SIGSTOP'd process, without the process).
 * Each node also runs the conditional-write pieces (PaxosReplica, CasCoordinator) and the
 * listing (Lister) on the same store and transport, and a test can hold back only the
 * requests a predicate picks (`hold`), e.g. the commits to one replica.
 */
import { Hlc } from '../../lib/core/hlc.ts';
import { Topology, type TopologyCommand } from '../../lib/core/topology.ts';
import { partitionOf, replicasOf } from '../../lib/core/partitioner.ts';
import { MemoryNetwork, type MemoryTransport } from '../../lib/net/index.ts';
import type { Handler, Transport } from '../../lib/net/transport.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { RecordStore } from '../../lib/storage/record-store.ts';
import { Coordinator } from '../../lib/node/coordinator.ts';
import { DurableClock } from '../../lib/node/clock.ts';
import { PartitionFence } from '../../lib/node/fence.ts';
import { HintStore } from '../../lib/node/hints.ts';
import { Replica } from '../../lib/node/replica.ts';
import { PaxosReplica } from '../../lib/node/paxos-replica.ts';
import { CasCoordinator } from '../../lib/node/cas.ts';
import { Lister } from '../../lib/node/list.ts';
import { seededRng } from '../../lib/core/rng.ts';
import { createLogger } from '../../lib/node/log.ts';

const SKEW_MS = 10_000;
const log = createLogger('test', 'silent');

export interface HarnessNode {
  id: string;
  store: RecordStore;
  transport: MemoryTransport;
  coordinator: Coordinator;
  hints: HintStore;
  fence: PartitionFence;
  topology: Topology;
  paxos: PaxosReplica;
  cas: CasCoordinator;
  lister: Lister;
  /** Added to Date.now() for this node's wall clock. */
  offsetMs: number;
  /** Replica requests wait while paused. */
  pause(): void;
  resume(): void;
  /** Requests for which `pred(type, payload)` is true wait until release() (or resume()). */
  hold(pred: (type: string, payload: unknown) => boolean): void;
  release(): void;
}

export interface HarnessOptions {
  n?: number;
  requestTimeoutMs?: number;
  offsets?: Record<string, number>;
  members?: readonly string[];
  hints?: boolean;
  /** Paxos state retention (ballots older are refused, states at rest older are pruned). Default 10 min. */
  paxosRetentionMs?: number;
  /** Attempt deadline of the CAS coordinator. Default its own (1 s). */
  casAttemptTimeoutMs?: number;
}

/** Commands that create a cluster of `ids` with every member normal. */
export function clusterCommands(ids: readonly string[], n = 3): TopologyCommand[] {
  const [first, ...rest] = ids as [string, ...string[]];
  const cmds: TopologyCommand[] = [{ op: 'create', clusterId: 'c', partitions: 64, n, vnodes: 16, id: first, addr: `${first}:1` }];
  for (const id of rest) cmds.push({ op: 'add', id, addr: `${id}:1` }, { op: 'normal', id });
  return cmds;
}

export function topologyOf(cmds: readonly TopologyCommand[]): Topology {
  const t = new Topology();
  for (const c of cmds) t.apply(c);
  return t;
}

/** A transport whose handlers wait at a gate while the node is paused. */
function gated(t: Transport, gate: (type: string, payload: unknown) => Promise<void>): Transport {
  return new Proxy(t, {
    get(target, prop, receiver) {
      if (prop === 'handle') return (type: string, h: Handler) => target.handle(type, async (from, payload, env) => { await gate(type, payload); return h(from, payload, env); });
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

export class Harness {
  readonly net = new MemoryNetwork();
  readonly nodes = new Map<string, HarnessNode>();
  readonly alive = new Set<string>();
  /** Epoch a node catches up to when asked: the test sets the newer topology. */
  latest: Topology;

  private constructor(t: Topology) {
    this.latest = t;
  }

  /** Nodes `ids`, all members of the topology unless `members` names fewer. */
  static async start(ids: readonly string[], opts: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness(topologyOf(clusterCommands(opts.members ?? ids, opts.n)));
    for (const id of ids) await h.addNode(id, opts.offsets?.[id] ?? 0, opts.requestTimeoutMs ?? 2000, opts.hints ?? true, opts);
    return h;
  }

  private async addNode(id: string, offsetMs: number, requestTimeoutMs: number, withHints: boolean, opts: HarnessOptions): Promise<void> {
    const backend = new MemoryBackend();
    const store = new RecordStore({ backend, partitions: 64, segments: 1, sync: false });
    await store.open();
    let release: (() => void) | undefined;
    let gate: Promise<void> | undefined;
    let holdPred: ((type: string, payload: unknown) => boolean) | undefined;
    let releaseHeld: (() => void) | undefined;
    let held: Promise<void> | undefined;
    const node = { id, store, offsetMs, topology: this.latest } as HarnessNode;
    const now = (): number => Date.now() + node.offsetMs;
    const hlc = new Hlc({ maxClockSkewMs: SKEW_MS });
    const clock = new DurableClock({ hlc, backend, leaseMs: 2000, now });
    await clock.open();
    const transport = this.net.transport({ selfId: id });
    const fence = new PartitionFence();
    fence.update(node.topology);
    const replica = new Replica({ store, fence, maxKeyBytes: 1024, maxValueBytes: 1 << 20, maxClockSkewMs: SKEW_MS, now });
    const wait = async (type: string, payload: unknown): Promise<void> => {
      if (gate) await gate;
      if (held && holdPred?.(type, payload)) await held;
    };
    const served = gated(transport, wait);
    replica.register(served);
    const isAlive = (x: string): boolean => this.alive.has(x);
    const hints = new HintStore({
      backend, transport, log, now,
      limits: { hintsMaxCount: 1000, hintsMaxBytes: 1 << 20, hintsMaxAgeMs: 60_000, maxKeyBytes: 1024, maxValueBytes: 1 << 20 },
      cluster: { isAlive, epoch: () => node.topology.epoch, owns: () => true, isMember: () => true },
    });
    await hints.open();
    const coordinator = new Coordinator({
      selfId: id, replica, transport, clock, hints: withHints ? hints : undefined, log, topology: () => node.topology,
      catchUp: async (epoch) => {
        if (this.latest.epoch >= epoch) this.setTopology(id, this.latest);
      },
      liveness: { isAlive, isSuspect: () => false },
      defaults: { w: 2, r: 2 }, requestTimeoutMs, readRepair: true, maxClockSkewMs: SKEW_MS, now,
    });
    const limits = { maxKeyBytes: 1024, maxValueBytes: 1 << 20 };
    const owns = (key: string): boolean => {
      const t = node.topology;
      const p = partitionOf(key, t.partitions);
      return replicasOf(t.table('current'), p).includes(id) || replicasOf(t.table('future'), p).includes(id);
    };
    const paxos = new PaxosReplica({
      backend, replica, fence, partitionOf: (key) => store.locate(key).partition, owns, epoch: () => node.topology.epoch,
      sync: false, limits, maxClockSkewMs: SKEW_MS, retentionMs: opts.paxosRetentionMs ?? 600_000, log, now,
    });
    paxos.register(served);
    const cas = new CasCoordinator({
      selfId: id, transport, acceptor: paxos, clock, hints: withHints ? hints : undefined, log, topology: () => node.topology,
      catchUp: async (epoch) => { if (this.latest.epoch >= epoch) this.setTopology(id, this.latest); },
      isAlive: (x) => this.alive.has(x), requestTimeoutMs, maxClockSkewMs: SKEW_MS, limits, rng: seededRng(id.charCodeAt(0)), now,
      ...(opts.casAttemptTimeoutMs === undefined ? {} : { attemptTimeoutMs: opts.casAttemptTimeoutMs }),
    });
    paxos.setFinisher((key) => cas.serialGet(key, {}));
    const lister = new Lister({
      selfId: id, transport, store, fence, topology: () => node.topology,
      catchUp: async (epoch) => { if (this.latest.epoch >= epoch) this.setTopology(id, this.latest); },
      isAlive: (x) => this.alive.has(x), defaultR: 2, maxKeyBytes: 1024, requestTimeoutMs, now,
    });
    lister.register(served);
    Object.assign(node, {
      transport, coordinator, hints, fence, paxos, cas, lister,
      pause: () => { gate ??= new Promise<void>((r) => { release = r; }); },
      resume: () => { release?.(); gate = undefined; releaseHeld?.(); held = undefined; },
      hold: (pred: (type: string, payload: unknown) => boolean) => { holdPred = pred; held ??= new Promise<void>((r) => { releaseHeld = r; }); },
      release: () => { releaseHeld?.(); held = undefined; },
    });
    this.nodes.set(id, node);
    this.alive.add(id);
  }

  node(id: string): HarnessNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Install a topology on one node (its coordinator's view and its fence). */
  setTopology(id: string, t: Topology): void {
    const n = this.node(id);
    n.topology = t;
    n.fence.update(t);
  }

  /** Which nodes replicate `key` in `t` (default: the latest topology). */
  replicasOf(key: string, t: Topology = this.latest): string[] {
    return [...replicasOf(t.table('current'), partitionOf(key, t.partitions))];
  }

  /** A key whose replicas (in the latest topology) satisfy `pred`. */
  keyWhere(prefix: string, pred: (replicas: string[]) => boolean): string {
    for (let i = 0; i < 10_000; i++) if (pred(this.replicasOf(`${prefix}${i}`))) return `${prefix}${i}`;
    throw new Error('no such key');
  }

  async stop(): Promise<void> {
    for (const n of this.nodes.values()) {
      n.resume();
      n.hints.stop();
      await n.transport.close();
    }
  }
}
