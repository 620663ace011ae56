/**
 * Deterministic simulator for the Raft core: many RaftNodes in one process, a virtual
 * clock, and a seeded network that delays, drops, duplicates, reorders and partitions
 * (also one way). Crashes lose whatever a node had not persisted: its storage is
 * exactly what it wrote from the Readys it handled, and it sent a Ready's messages only
 * after writing them. Safety invariants are checked after every event; the first
 * violation throws a SimViolation naming the invariant, the seed and the virtual time.
 *
 * Everything random comes from one seeded Rng, so a seed replays exactly.
 */
import { RaftNode } from '../../lib/core/raft/node.ts';
import { validateRaftMessage } from '../../lib/core/raft/validate.ts';
import type { ConfChange, Entry, HardState, RaftConfig, RaftMessage, Role, Snapshot } from '../../lib/core/raft/types.ts';
import { isKvError } from '../../lib/errors.ts';
import { seededRng, shuffle, type Rng } from '../../lib/core/rng.ts';

export interface NetOptions {
  dropRate: number;
  dupRate: number;
  minDelayMs: number;
  maxDelayMs: number;
  /** Probability that a message takes the long road (reordering across many ticks). */
  longDelayRate: number;
  longDelayMinMs: number;
  longDelayMaxMs: number;
}

export const RELIABLE_NET: NetOptions = {
  dropRate: 0, dupRate: 0, minDelayMs: 1, maxDelayMs: 5, longDelayRate: 0, longDelayMinMs: 0, longDelayMaxMs: 0,
};

/** The classic "figure 8 unreliable" network: 10% drops, 0–27 ms, long reordering. */
export const UNRELIABLE_NET: NetOptions = {
  dropRate: 0.1, dupRate: 0.05, minDelayMs: 0, maxDelayMs: 27, longDelayRate: 0.05, longDelayMinMs: 200, longDelayMaxMs: 2200,
};

export interface SimOptions {
  seed: number;
  /** Every node of the simulation; all start running. */
  ids: string[];
  /** Initial configuration, bootstrapped by its voters; other ids start empty. */
  initial?: RaftConfig;
  net?: Partial<NetOptions>;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  maxEntriesPerAppend?: number;
  /** Compact once this many applied entries are past the snapshot; 0 = never. */
  compactEvery?: number;
  /** Upper bound of the random delay between a node's state change and its Ready. */
  persistDelayMaxMs?: number;
}

/** Far above any scenario here (a random history takes about 1,000 events). */
const MAX_EVENTS_PER_RUN = 2_000_000;

export class SimViolation extends Error {
  constructor(readonly invariant: string, detail: string, readonly seed: number, readonly timeMs: number) {
    super(`seed=${seed} t=${timeMs}ms invariant violated: ${invariant}: ${detail}`);
    this.name = 'SimViolation';
  }
}

interface Persisted {
  hardState?: HardState;
  snapshot?: Snapshot;
  entries: Entry[];
}

interface AppState { values: string[] }

interface SimNode {
  id: string;
  raft: RaftNode | null;
  incarnation: number;
  persisted: Persisted;
  /** Fingerprints of applied entries; values[i] is index i + 1. */
  app: AppState;
  readyScheduled: boolean;
  // invariant bookkeeping, per incarnation
  commitFloor: number;
  commitSeen: number;
  logCheckedTo: number;
  logCheckedTerm: number;
  leaderMark: { term: number; lastIndex: number; lastTerm: number } | null;
  completenessTo: number;
  everRoles: Set<Role>;
  snapshotsInstalled: number;
}

type SimEvent =
  | { kind: 'tick'; id: string; inc: number }
  | { kind: 'ready'; id: string; inc: number }
  | { kind: 'deliver'; msg: RaftMessage }
  | { kind: 'call'; fn: () => void };

interface Queued { at: number; seq: number; ev: SimEvent }

/** Binary min-heap on (time, insertion order): equal times run first-in first-out. */
class EventQueue {
  private heap: Queued[] = [];
  get size(): number { return this.heap.length; }
  peekTime(): number | undefined { return this.heap[0]?.at; }
  push(q: Queued): void {
    const h = this.heap;
    h.push(q);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i] as Queued, h[p] as Queued)) break;
      [h[i], h[p]] = [h[p] as Queued, h[i] as Queued];
      i = p;
    }
  }
  pop(): Queued | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l] as Queued, h[m] as Queued)) m = l;
        if (r < h.length && less(h[r] as Queued, h[m] as Queued)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m] as Queued, h[i] as Queued];
        i = m;
      }
    }
    return top;
  }
}

function less(a: Queued, b: Queued): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

export function fingerprint(e: Entry): string {
  return `${e.term}:${e.kind}:${e.kind === 'conf' ? JSON.stringify(e.data) : String(e.data)}`;
}

export class RaftSim {
  readonly seed: number;
  readonly rng: Rng;
  now = 0;
  readonly nodes = new Map<string, SimNode>();
  net: NetOptions;
  private readonly opts: Required<Omit<SimOptions, 'net' | 'initial'>>;
  private readonly queue = new EventQueue();
  private seq = 0;
  private readonly blocked = new Set<string>();
  private proposalSeq = 0;
  /** The value of the last successful propose(). */
  lastValue = '';

  // Global knowledge for the invariants.
  private readonly leaders = new Map<number, string>();
  private readonly committed = new Map<number, { fp: string; term: number; commitTerm: number }>();
  private maxCommitted = 0;
  private readonly applied = new Map<number, string>();
  private readonly entryIds = new Map<string, string>();
  /** Counters for scenario assertions. */
  readonly stats = { delivered: 0, dropped: 0, snapshotsSent: 0, events: 0, elections: 0 };

  constructor(opts: SimOptions) {
    this.seed = opts.seed;
    this.rng = seededRng(opts.seed);
    this.net = { ...RELIABLE_NET, ...opts.net };
    this.opts = {
      seed: opts.seed,
      ids: opts.ids,
      tickMs: opts.tickMs ?? 10,
      electionTicks: opts.electionTicks ?? 10,
      heartbeatTicks: opts.heartbeatTicks ?? 2,
      maxEntriesPerAppend: opts.maxEntriesPerAppend ?? 64,
      compactEvery: opts.compactEvery ?? 0,
      persistDelayMaxMs: opts.persistDelayMaxMs ?? 2,
    };
    const initial = opts.initial ?? { voters: opts.ids, learners: [] };
    for (const id of opts.ids) {
      const n: SimNode = {
        id, raft: null, incarnation: 0, persisted: { entries: [] }, app: { values: [] }, readyScheduled: false,
        commitFloor: 0, commitSeen: 0, logCheckedTo: 0, logCheckedTerm: 0, leaderMark: null, completenessTo: 0,
        everRoles: new Set(), snapshotsInstalled: 0,
      };
      this.nodes.set(id, n);
      const raft = this.makeRaft(id);
      if (initial.voters.includes(id)) raft.bootstrap(initial);
      this.startNode(n, raft);
    }
  }

  // ------------------------------------------------------------ control

  raft(id: string): RaftNode {
    const r = this.node(id).raft;
    if (r === null) throw new Error(`${id} is down`);
    return r;
  }

  node(id: string): SimNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  isUp(id: string): boolean { return this.node(id).raft !== null; }

  upIds(): string[] { return [...this.nodes.values()].filter((n) => n.raft !== null).map((n) => n.id); }

  /** Live nodes that believe they lead (there may be a stale one in an older term). */
  leaders_(): string[] {
    return this.upIds().filter((id) => this.raft(id).role === 'leader');
  }

  /** The leader of the highest term among live nodes, if any. */
  leader(): string | null {
    let best: string | null = null;
    for (const id of this.leaders_()) {
      if (best === null || this.raft(id).term > this.raft(best).term) best = id;
    }
    return best;
  }

  crash(id: string): void {
    const n = this.node(id);
    if (n.raft === null) return;
    n.raft = null;
    n.incarnation++;
    n.readyScheduled = false;
  }

  restart(id: string): void {
    const n = this.node(id);
    if (n.raft !== null) return;
    const raft = this.makeRaft(id);
    const p = n.persisted;
    raft.restore({
      ...(p.hardState !== undefined ? { hardState: p.hardState } : {}),
      ...(p.snapshot !== undefined ? { snapshot: p.snapshot } : {}),
      entries: p.entries,
    });
    n.app = { values: p.snapshot !== undefined ? [...(p.snapshot.data as AppState).values] : [] };
    this.startNode(n, raft);
  }

  /** Cuts both directions between every node of `a` and every node of `b`. */
  partition(a: string[], b: string[]): void {
    for (const x of a) for (const y of b) { this.blockOneWay(x, y); this.blockOneWay(y, x); }
  }

  /** Isolates `ids` from everyone else. */
  isolate(...ids: string[]): void {
    const rest = [...this.nodes.keys()].filter((id) => !ids.includes(id));
    this.partition(ids, rest);
  }

  blockOneWay(from: string, to: string): void { this.blocked.add(`${from}>${to}`); }

  heal(): void { this.blocked.clear(); }

  /** Proposes a fresh value on `id` (default: the leader); returns its index or null. */
  propose(id: string | null = this.leader()): number | null {
    if (id === null || !this.isUp(id)) return null;
    try {
      const value = `v${this.proposalSeq++}`;
      const idx = this.raft(id).propose(value);
      this.lastValue = value;
      this.afterChange(this.node(id));
      return idx;
    } catch (err) {
      if (isKvError(err, 'KV_NOT_LEADER') || isKvError(err, 'KV_UNAVAILABLE')) return null;
      throw err;
    }
  }

  confChange(change: ConfChange, id: string | null = this.leader()): number | null {
    if (id === null || !this.isUp(id)) return null;
    try {
      const idx = this.raft(id).proposeConfChange(change);
      this.afterChange(this.node(id));
      return idx;
    } catch (err) {
      if (isKvError(err)) return null;
      throw err;
    }
  }

  /** Runs `fn` at virtual time now + delayMs, in order with the other events. */
  at(delayMs: number, fn: () => void): void {
    this.schedule(this.now + delayMs, { kind: 'call', fn });
  }

  runFor(ms: number): void {
    const end = this.now + ms;
    for (;;) {
      const t = this.queue.peekTime();
      if (t === undefined || t > end) break;
      this.processNext();
    }
    this.now = end;
  }

  /** Runs until `pred` holds (checked after every event); false if `maxMs` passed. */
  runUntil(pred: () => boolean, maxMs: number): boolean {
    const end = this.now + maxMs;
    if (pred()) return true;
    for (;;) {
      const t = this.queue.peekTime();
      if (t === undefined || t > end) break;
      this.processNext();
      if (pred()) return true;
    }
    this.now = end;
    return false;
  }

  /** Applied values of a node, in log order (the membership state machine's view). */
  appliedValues(id: string): string[] { return this.node(id).app.values; }

  /** Whether `id` applied the proposal `value` (from lastValue). */
  hasApplied(id: string, value: string): boolean {
    return this.node(id).app.values.some((fp) => fp.endsWith(`:normal:${value}`));
  }

  /** Every node in `ids` is up and has applied at least up to `index`. */
  allApplied(ids: string[], index: number): boolean {
    return ids.every((id) => this.isUp(id) && this.node(id).app.values.length >= index);
  }

  // ------------------------------------------------------------ engine

  private makeRaft(id: string): RaftNode {
    return new RaftNode({
      id,
      rng: seededRng(this.rng.int(2 ** 31)),
      electionTicks: this.opts.electionTicks,
      heartbeatTicks: this.opts.heartbeatTicks,
      maxEntriesPerAppend: this.opts.maxEntriesPerAppend,
    });
  }

  private startNode(n: SimNode, raft: RaftNode): void {
    n.raft = raft;
    n.commitFloor = raft.commitIndex;
    n.commitSeen = Math.min(n.commitSeen, raft.commitIndex);
    n.logCheckedTo = 0;
    n.logCheckedTerm = 0;
    n.leaderMark = null;
    n.completenessTo = 0;
    n.readyScheduled = false;
    this.schedule(this.now + this.rng.int(this.opts.tickMs) + 1, { kind: 'tick', id: n.id, inc: n.incarnation });
    this.afterChange(n);
  }

  private schedule(at: number, ev: SimEvent): void {
    this.queue.push({ at, seq: this.seq++, ev });
  }

  private processNext(): void {
    const q = this.queue.pop();
    if (q === undefined) return;
    this.now = q.at;
    // A livelocked cluster (a message storm) must fail the seed, not hang the suite.
    this.check(++this.stats.events <= MAX_EVENTS_PER_RUN, 'event budget', `more than ${MAX_EVENTS_PER_RUN} events`);
    const ev = q.ev;
    switch (ev.kind) {
      case 'tick': {
        const n = this.node(ev.id);
        if (n.raft === null || n.incarnation !== ev.inc) return;
        n.raft.tick();
        this.schedule(this.now + this.opts.tickMs, ev);
        this.afterChange(n);
        return;
      }
      case 'ready': {
        const n = this.node(ev.id);
        if (n.raft === null || n.incarnation !== ev.inc) return;
        n.readyScheduled = false;
        this.handleReady(n, n.raft);
        this.afterChange(n);
        return;
      }
      case 'deliver': {
        const m = ev.msg;
        const n = this.nodes.get(m.to);
        if (n === undefined || n.raft === null || this.blocked.has(`${m.from}>${m.to}`)) {
          this.stats.dropped++;
          return;
        }
        this.stats.delivered++;
        // As the network layer would: never hand the core an unvalidated message.
        n.raft.step(validateRaftMessage(m));
        this.afterChange(n);
        return;
      }
      case 'call':
        ev.fn();
        this.checkAllLeaders();
        return;
    }
  }

  private handleReady(n: SimNode, raft: RaftNode): void {
    const rd = raft.ready();
    const p = n.persisted;
    // 1. persist
    if (rd.snapshot !== undefined) {
      p.snapshot = rd.snapshot;
      p.entries = [];
    }
    const first = rd.entries[0];
    if (first !== undefined) {
      const base = p.entries[0]?.index ?? first.index;
      p.entries = p.entries.slice(0, Math.max(0, first.index - base)).concat(rd.entries);
    }
    if (rd.hardState !== undefined) p.hardState = rd.hardState;
    // 2. send
    for (const m of rd.messages) this.send(m);
    // 3. apply
    if (rd.snapshot !== undefined) {
      n.snapshotsInstalled++;
      const values = (rd.snapshot.data as AppState).values;
      this.check(values.length === rd.snapshot.index, 'state machine safety', `${n.id} snapshot at ${rd.snapshot.index} holds ${values.length} values`);
      for (let i = n.app.values.length; i < values.length; i++) this.recordApplied(n, i + 1, values[i] as string);
      n.app = { values: [...values] };
    }
    for (const e of rd.committed) {
      this.check(e.index === n.app.values.length + 1, 'apply in order', `${n.id} applies ${e.index} after ${n.app.values.length}`);
      const fp = fingerprint(e);
      this.recordApplied(n, e.index, fp);
      n.app.values.push(fp);
    }
    raft.advance();
    // 4. compact, as a runtime would once enough is applied
    const every = this.opts.compactEvery;
    if (every > 0 && n.app.values.length - raft.snapshotIndex >= every) {
      const snap = raft.compact(n.app.values.length, { values: [...n.app.values] });
      p.snapshot = snap;
      p.entries = p.entries.filter((e) => e.index > snap.index);
    }
  }

  private send(m: RaftMessage): void {
    if (m.type === 'snapshot') this.stats.snapshotsSent++;
    const net = this.net;
    if (this.blocked.has(`${m.from}>${m.to}`) || this.rng.next() < net.dropRate) {
      this.stats.dropped++;
      return;
    }
    const copies = this.rng.next() < net.dupRate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const long = net.longDelayRate > 0 && this.rng.next() < net.longDelayRate;
      const delay = long
        ? net.longDelayMinMs + this.rng.int(net.longDelayMaxMs - net.longDelayMinMs + 1)
        : net.minDelayMs + this.rng.int(net.maxDelayMs - net.minDelayMs + 1);
      this.schedule(this.now + delay, { kind: 'deliver', msg: m });
    }
  }

  private afterChange(n: SimNode): void {
    const raft = n.raft;
    if (raft === null) return;
    if (!n.readyScheduled && raft.hasReady()) {
      n.readyScheduled = true;
      this.schedule(this.now + this.rng.int(this.opts.persistDelayMaxMs + 1), { kind: 'ready', id: n.id, inc: n.incarnation });
    }
    this.checkNode(n, raft);
    this.checkAllLeaders();
  }

  // ------------------------------------------------------------ invariants

  /** Throws a SimViolation (with seed and time) unless `cond`. */
  check(cond: boolean, invariant: string, detail: string): asserts cond {
    if (!cond) throw new SimViolation(invariant, detail, this.seed, this.now);
  }

  private recordApplied(n: SimNode, index: number, fp: string): void {
    const prev = this.applied.get(index);
    if (prev === undefined) this.applied.set(index, fp);
    else this.check(prev === fp, 'state machine safety', `${n.id} applied ${fp} at ${index}, another node applied ${prev}`);
  }

  private checkNode(n: SimNode, raft: RaftNode): void {
    const role = raft.role;
    n.everRoles.add(role);
    const term = raft.term;

    // Commit never goes back (within an incarnation, and never below what was persisted).
    this.check(raft.commitIndex >= n.commitFloor, 'commit never goes back', `${n.id} commit ${raft.commitIndex} < ${n.commitFloor}`);
    n.commitFloor = raft.commitIndex;

    // Log matching, through a global map: an (index, term) pair always names the same
    // entry with the same predecessor term. By induction two logs sharing an (index,
    // term) then share the whole prefix.
    const snapIdx = raft.snapshotIndex;
    let from = n.logCheckedTo + 1;
    if (n.logCheckedTo > raft.lastIndex || (n.logCheckedTo > snapIdx && raft.termAt(n.logCheckedTo) !== n.logCheckedTerm)) {
      from = snapIdx + 1; // the tail was replaced: recheck what is left
    }
    from = Math.max(from, snapIdx + 1);
    if (from <= raft.lastIndex) {
      const ents = raft.entries(from);
      let prevTerm = raft.termAt(from - 1) ?? 0;
      for (const e of ents) {
        const id = `${fingerprint(e)}|${prevTerm}`;
        const key = `${e.index}:${e.term}`;
        const seen = this.entryIds.get(key);
        if (seen === undefined) this.entryIds.set(key, id);
        else this.check(seen === id, 'log matching', `${n.id} holds ${id} at ${key}, elsewhere ${seen}`);
        prevTerm = e.term;
      }
    }
    n.logCheckedTo = raft.lastIndex;
    n.logCheckedTerm = raft.lastTerm;

    // Newly committed entries: record them (and compare with what others committed).
    if (raft.commitIndex > n.commitSeen) {
      for (let i = Math.max(n.commitSeen + 1, snapIdx + 1); i <= raft.commitIndex; i++) {
        const t = raft.termAt(i) as number;
        const fp = fingerprint(raft.entries(i, i)[0] as Entry);
        const prev = this.committed.get(i);
        if (prev === undefined) {
          this.committed.set(i, { fp, term: t, commitTerm: term });
          if (i > this.maxCommitted) this.maxCommitted = i;
        } else {
          this.check(prev.fp === fp, 'state machine safety', `${n.id} committed ${fp} at ${i}, another node ${prev.fp}`);
        }
      }
      n.commitSeen = raft.commitIndex;
    }

    if (role === 'leader') {
      // Election safety: one leader per term.
      const other = this.leaders.get(term);
      if (other === undefined) {
        this.leaders.set(term, n.id);
        this.stats.elections++;
      } else {
        this.check(other === n.id, 'election safety', `${n.id} and ${other} both lead term ${term}`);
      }
      // Leader append-only: while it leads a term, its log only grows.
      const mark = n.leaderMark;
      if (mark !== null && mark.term === term) {
        this.check(raft.lastIndex >= mark.lastIndex && (mark.lastIndex <= snapIdx || raft.termAt(mark.lastIndex) === mark.lastTerm),
          'leader append-only', `${n.id} log changed under its own leadership of term ${term}`);
      } else {
        n.completenessTo = 0;
      }
      n.leaderMark = { term, lastIndex: raft.lastIndex, lastTerm: raft.lastTerm };
    } else {
      n.leaderMark = null;
    }
  }

  /** Leader completeness: a leader of term T holds every entry committed before T. */
  private checkAllLeaders(): void {
    if (this.maxCommitted === 0) return;
    for (const n of this.nodes.values()) {
      const raft = n.raft;
      if (raft === null || raft.role !== 'leader' || n.completenessTo >= this.maxCommitted) continue;
      const term = raft.term;
      for (let i = n.completenessTo + 1; i <= this.maxCommitted; i++) {
        const c = this.committed.get(i);
        if (c === undefined || c.commitTerm >= term || i <= raft.snapshotIndex) continue;
        this.check(raft.termAt(i) === c.term, 'leader completeness',
          `${n.id} leads term ${term} without entry ${i} (term ${c.term}) committed in term ${c.commitTerm}`);
      }
      n.completenessTo = this.maxCommitted;
    }
  }
}

// ------------------------------------------------------------ seed plumbing

/** Seeds to run: `SEED=n` replays just n; else `SIM_SEEDS` (or `fallback`) seeds from `start`. */
export function seedList(fallback: number, start = 1): number[] {
  const one = process.env.SEED;
  if (one !== undefined && one !== '') return [Number(one)];
  const count = Number(process.env.SIM_SEEDS ?? fallback);
  return Array.from({ length: count }, (_, i) => start + i);
}

/**
 * Runs `body` for each seed; on the first failure rethrows with the seed in front so a
 * red test always says how to replay it (`SEED=<n> npx mocha ...`).
 */
export function forSeeds(seeds: number[], body: (seed: number) => void): void {
  for (const seed of seeds) {
    try {
      body(seed);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const text = msg.includes(`seed=${seed}`) ? msg : `seed=${seed}: ${msg}`;
      console.error(`raft sim failure: ${text} (replay: SEED=${seed})`);
      throw new Error(text, { cause: err });
    }
  }
}

// ------------------------------------------------------------ random runs

export interface RandomRunResult {
  seed: number;
  applied: number;
  events: number;
}

/**
 * One randomized history: 3 or 5 voters plus spare nodes, an unreliable network,
 * crashes, restarts, partitions (two-way and one-way), membership changes and
 * compaction while a client proposes; then everything heals and the cluster must
 * elect a leader and commit a final value on every member (liveness).
 */
export function runRandomSeed(seed: number): RandomRunResult {
  const pick = seededRng(seed ^ 0x5bd1e995);
  const voters = pick.int(3) === 0 ? 5 : 3;
  const ids = Array.from({ length: voters + 2 }, (_, i) => `n${i + 1}`);
  const initial = { voters: ids.slice(0, voters), learners: [] };
  const lossy = pick.int(2) === 0;
  const sim: RaftSim = new RaftSim({
    seed,
    ids,
    initial,
    net: lossy ? { ...UNRELIABLE_NET, longDelayMaxMs: 600 } : { dropRate: 0.02, dupRate: 0.02, maxDelayMs: 8 },
    compactEvery: pick.int(2) === 0 ? 8 + pick.int(16) : 0,
    maxEntriesPerAppend: 1 + pick.int(16),
  });
  const rng = sim.rng;
  const durationMs = 1000;
  let next = 0;
  while (next < durationMs) {
    const gap = 10 + rng.int(40);
    next += gap;
    sim.runFor(gap);
    const r = rng.int(100);
    if (r < 55) {
      sim.propose();
    } else if (r < 65) {
      const up = sim.upIds();
      const victim = up[rng.int(up.length)];
      if (victim !== undefined && up.length > 1) sim.crash(victim);
    } else if (r < 75) {
      const down = ids.filter((id) => !sim.isUp(id));
      const back = down[rng.int(down.length)];
      if (back !== undefined) sim.restart(back);
    } else if (r < 82) {
      const shuffled = shuffle([...ids], rng);
      const cut = 1 + rng.int(ids.length - 1);
      sim.heal();
      sim.partition(shuffled.slice(0, cut), shuffled.slice(cut));
    } else if (r < 86) {
      const a = ids[rng.int(ids.length)] as string;
      const b = ids[rng.int(ids.length)] as string;
      if (a !== b) sim.blockOneWay(a, b);
    } else if (r < 92) {
      sim.heal();
    } else {
      randomConfChange(sim, ids, rng);
    }
  }
  // Heal everything and demand progress.
  sim.heal();
  sim.net = { ...sim.net, dropRate: 0, dupRate: 0, longDelayRate: 0 };
  for (const id of ids) sim.restart(id);
  let idx: number | null = null;
  // A proposal may be lost with a leader that is about to be deposed: retry until one
  // sticks on every member.
  const ok = sim.runUntil(() => {
    if (idx !== null && sim.allApplied(currentMembers(sim), idx)) return true;
    const leader = sim.leader();
    if (leader !== null && (idx === null || sim.raft(leader).lastIndex < idx)) idx = sim.propose(leader);
    return false;
  }, 6000);
  sim.check(ok, 'liveness', `no proposal applied on every member within 6 s of healing (index ${String(idx)})`);
  return { seed, applied: idx ?? 0, events: sim.stats.events };
}

function currentMembers(sim: RaftSim): string[] {
  const leader = sim.leader();
  if (leader === null) return [];
  const c = sim.raft(leader).config;
  return [...c.voters, ...c.learners];
}

function randomConfChange(sim: RaftSim, ids: string[], rng: Rng): void {
  const leader = sim.leader();
  if (leader === null) return;
  const c = sim.raft(leader).config;
  const outside = ids.filter((id) => !c.voters.includes(id) && !c.learners.includes(id));
  const r = rng.int(3);
  if (r === 0 && outside.length > 0) {
    sim.confChange({ type: 'addLearner', id: outside[rng.int(outside.length)] as string });
  } else if (r === 1 && c.learners.length > 0 && c.voters.length < 5) {
    sim.confChange({ type: 'addVoter', id: c.learners[rng.int(c.learners.length)] as string });
  } else if (c.voters.length > 3) {
    // Stay at three voters or more, so one crash cannot stop the cluster for good.
    sim.confChange({ type: 'remove', id: c.voters[rng.int(c.voters.length)] as string });
  } else if (c.learners.length > 0) {
    sim.confChange({ type: 'remove', id: c.learners[rng.int(c.learners.length)] as string });
  }
}

export interface SeedsResult {
  seeds: number;
  violations: number;
  failures: { seed: number; message: string }[];
}

/** Runs `seeds` random histories from `startSeed`; for the `npm run sim` CLI. */
export function runRaftSeeds(opts: { seeds: number; startSeed?: number; onFailure?: (seed: number, message: string) => void }): SeedsResult {
  const start = opts.startSeed ?? 1;
  const failures: { seed: number; message: string }[] = [];
  for (let s = start; s < start + opts.seeds; s++) {
    try {
      runRandomSeed(s);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      failures.push({ seed: s, message });
      opts.onFailure?.(s, message);
    }
  }
  return { seeds: opts.seeds, violations: failures.length, failures };
}
