/**
 * Deterministic simulator for the Paxos CAS core (lib/core/paxos): 3 or 5 acceptors and
 * several clients, each a proposer node with its own skewed HLC, running CAS operations
 * on one key through a seeded network that drops, duplicates, reorders and delays.
 * Acceptors persist (after a random delay) before they reply and may crash at any moment:
 * what they persisted survives, their queue and an unpersisted step do not. Clients may
 * crash mid-operation (the operation's outcome is then unknown).
 *
 * The hidden truth is kept beside: every acceptance persisted, hence which proposals are
 * chosen (accepted by a majority at one rank). After every event the invariants below are
 * checked; the first violation throws a PaxosSimViolation naming the invariant and the seed.
 * - agreement: a rank names one record; the chosen proposals form one chain, each new one
 *   evaluated against the record of the one chosen before it (the chain's head), with
 *   rising versions; ordered by rank, chosen proposals never go back along the chain;
 * - validity: a chosen record is one some operation proposed, byte for byte;
 * - commit safety: a commit writes only chosen records (or, with plain writes, a record
 *   at least that new), and an acceptor's record is never older than its commit;
 * - honest outcomes: ok ⇒ chosen; failed (and contended with a proposal out) ⇒ never
 *   chosen, now or later; a precondition or serial-read answer equals the head at some
 *   point during the operation.
 * At the end, with faults healed: a final CAS must succeed and reach every replica, and
 * the whole history must be linearizable against a CAS register (paxos-register-check.ts).
 *
 * Everything random comes from the seed, so a seed replays exactly (SEED=<n>).
 */
import { Hlc, makeVersion, parseVersion, type Version } from '../../lib/core/hlc.ts';
import { seededRng, type Rng } from '../../lib/core/rng.ts';
import { EMPTY_ACCEPTOR_STATE, handleRequest } from '../../lib/core/paxos/acceptor.ts';
import { CasOperation, type CasOutcome } from '../../lib/core/paxos/cas-operation.ts';
import type { CasAttempt } from '../../lib/core/paxos/proposer.ts';
import { compareRanks } from '../../lib/core/paxos/rank.ts';
import { validateAcceptorState, validatePaxosMessage, type PaxosLimits } from '../../lib/core/paxos/validate.ts';
import type {
  AcceptorState, AttemptDecision, CasCondition, CasWrite, CurrentState, Outbound, PaxosMessage, PaxosRecord, PaxosReply,
  PaxosRequest,
} from '../../lib/core/paxos/types.ts';
import { checkRegister, type CheckedOp, type RegisterState } from './paxos-register-check.ts';
import type { NetOptions as RaftNetOptions } from './raft-sim.ts';

export const KEY = 'k';
const LIMITS: PaxosLimits = { maxKeyBytes: 64, maxValueBytes: 256 };
const ENC = new TextEncoder();
const DEC = new TextDecoder();

/** The Raft simulator's network knobs, plus how often the client's transport notices a loss. */
export interface NetOptions extends RaftNetOptions {
  /** Share of dropped exchanges the client's transport reports as lost (maybe processed). */
  lostSignalRate: number;
}

export const RELIABLE_NET: NetOptions = { dropRate: 0, dupRate: 0, minDelayMs: 1, maxDelayMs: 3, longDelayRate: 0, longDelayMinMs: 0, longDelayMaxMs: 0, lostSignalRate: 0 };
export const LOSSY_NET: NetOptions = { dropRate: 0.1, dupRate: 0.05, minDelayMs: 0, maxDelayMs: 12, longDelayRate: 0.04, longDelayMinMs: 20, longDelayMaxMs: 300, lostSignalRate: 0.3 };
/** Many copies and much reordering: the cases where one copy of a request is nacked after another was accepted. */
export const CHURNING_NET: NetOptions = { dropRate: 0.05, dupRate: 0.3, minDelayMs: 0, maxDelayMs: 8, longDelayRate: 0.15, longDelayMinMs: 0, longDelayMaxMs: 80, lostSignalRate: 0.3 };
const CALM_NET: NetOptions = { ...RELIABLE_NET, dropRate: 0.02, dupRate: 0.03, maxDelayMs: 6, longDelayRate: 0.01, longDelayMinMs: 10, longDelayMaxMs: 60, lostSignalRate: 0.5 };

export interface SimOptions {
  seed: number;
  acceptors: number;
  clients: number;
  opsPerClient: number;
  net: NetOptions;
  /** Faults, drawn every few ms while clients run: acceptor crash/restart, client crash. */
  acceptorCrashRate: number;
  clientCrashRate: number;
  /** Share of (acceptor, ballot) pairs whose requests the acceptor's runtime refuses unprocessed. */
  refuseRate: number;
  persistMaxMs: number;
  /** Pause of a client between its operations: uniform in [thinkMinMs (default 0), thinkMaxMs]. */
  thinkMinMs?: number;
  thinkMaxMs: number;
  clockSkewMaxMs: number;
  attemptTimeoutMs: number;
  opTimeoutMs: number;
  /** Clients that write and read plainly (LWW, W and R = majority), not through Paxos. */
  plainClients: number;
  /** The acceptor's step; a test swaps in a broken one to show the invariants catch it. */
  acceptorStep?: typeof handleRequest;
}

export class PaxosSimViolation extends Error {
  constructor(readonly invariant: string, detail: string, readonly seed: number, readonly timeMs: number) {
    super(`seed=${seed} t=${timeMs}ms invariant violated: ${invariant}: ${detail}`);
    this.name = 'PaxosSimViolation';
  }
}

export type Payload =
  | { kind: 'paxos'; msg: PaxosMessage }
  /** Transport outcome at the client: `req` to `from` was refused unprocessed / lost (maybe processed). */
  | { kind: 'refused' | 'lost'; req: PaxosRequest }
  | { kind: 'plain-put'; id: number; record: PaxosRecord }
  | { kind: 'plain-put-ack'; id: number }
  | { kind: 'plain-get'; id: number }
  | { kind: 'plain-get-reply'; id: number; record: PaxosRecord | null };

interface Envelope {
  from: string;
  to: string;
  payload: Payload;
  /** For a reply: the request it answers (so a lost reply can be reported against it). */
  req?: PaxosRequest;
}

interface Acceptor {
  id: string;
  up: boolean;
  incarnation: number;
  /** On disk: survives crashes. */
  state: AcceptorState;
  record: PaxosRecord | null;
  inbox: Envelope[];
  busy: boolean;
}

type OpKind = 'cas' | 'read' | 'plain-put' | 'plain-get';

/** One client operation as the history records it. */
export interface HistoryOp {
  id: number;
  client: string;
  kind: OpKind;
  condition: CasCondition | null;
  /** Value written (null = delete), for cas and plain-put. */
  value: string | null;
  invoke: number;
  invokeMs: number;
  respond: number | null;
  outcome: CasOutcome | { kind: 'crashed' } | { kind: 'plain'; record: PaxosRecord | null } | null;
  /** Versions this op proposed that may have been accepted (for unknown outcomes). */
  maybeVersions: Version[];
  attempts: number;
  roundTrips: number;
  messages: number;
}

export interface Client {
  id: string;
  plain: boolean;
  up: boolean;
  incarnation: number;
  hlc: Hlc;
  skewMs: number;
  rng: Rng;
  opsLeft: number;
  knownVersion: Version | null;
  op: CasOperation | null;
  attempt: CasAttempt | null;
  attemptSerial: number;
  history: HistoryOp | null;
  plainReq: { id: number; acks: Set<string>; replies: Map<string, PaxosRecord | null>; need: number } | null;
}

interface ProposalInfo { value: string | null; base: Version | null; op: number }

interface ChainEntry { version: Version; live: boolean; at: number }

type SimEvent =
  | { kind: 'deliver'; env: Envelope }
  | { kind: 'persisted'; acceptor: string; inc: number; env: Envelope; state: AcceptorState; record: PaxosRecord | null; reply: Payload | null }
  | { kind: 'call'; fn: () => void };

/**
 * A calendar queue: one FIFO bucket per virtual millisecond. Delays are short and time
 * advances densely, so walking empty buckets costs less than a heap's log factor.
 */
class Calendar {
  private readonly buckets = new Map<number, { events: SimEvent[]; next: number }>();
  size = 0;
  at(t: number, ev: SimEvent): void {
    let b = this.buckets.get(t);
    if (b === undefined) { b = { events: [], next: 0 }; this.buckets.set(t, b); }
    b.events.push(ev);
    this.size++;
  }
  /** The next event of millisecond `t` (including ones added while it runs), or undefined. */
  take(t: number): SimEvent | undefined {
    const b = this.buckets.get(t);
    if (b === undefined) return undefined;
    const ev = b.events[b.next++];
    if (ev === undefined) { this.buckets.delete(t); return undefined; }
    this.size--;
    return ev;
  }
}

/** Far above any scenario here; a livelock must fail the seed, not hang the suite. */
const MAX_EVENTS = 400_000;
const MAX_SIM_MS = 120_000;

export interface SimStats {
  events: number;
  ops: number;
  attempts: number;
  outcomes: Record<string, number>;
  chosen: number;
  messages: number;
  roundTrips: number;
}

export class PaxosSim {
  readonly seed: number;
  readonly rng: Rng;
  readonly o: SimOptions;
  now = 0;
  seq = 0;
  net: NetOptions;
  faults = true;
  /** Scripted scenarios: drop every message this returns true for. */
  dropIf: ((from: string, to: string, payload: Payload) => boolean) | null = null;
  readonly acceptors = new Map<string, Acceptor>();
  readonly clients = new Map<string, Client>();
  readonly history: HistoryOp[] = [];
  private readonly cal = new Calendar();
  private readonly quorum: number;
  private opSeq = 0;

  // hidden truth
  private readonly accepts = new Map<string, { acceptors: Set<string>; record: PaxosRecord; chosen: boolean }>();
  private readonly proposals = new Map<Version, ProposalInfo>();
  readonly chain: ChainEntry[] = [];
  private readonly inChain = new Set<Version>();
  /** Every rank at which a record was chosen, with the record's chain position. */
  private readonly chosenRanks: Array<{ rank: { ballot: string; version: Version }; pos: number }> = [];
  private readonly neverChosen = new Map<Version, number>();
  private readonly plainVersions = new Set<Version>();
  /** Plain writes acknowledged, with the seq of their acknowledgement. */
  private readonly plainAcked: Array<{ version: Version; at: number }> = [];
  readonly stats: SimStats = { events: 0, ops: 0, attempts: 0, outcomes: {}, chosen: 0, messages: 0, roundTrips: 0 };

  constructor(o: SimOptions) {
    this.o = o;
    this.seed = o.seed;
    this.rng = seededRng(o.seed);
    this.net = o.net;
    this.quorum = Math.floor(o.acceptors / 2) + 1;
    for (let i = 1; i <= o.acceptors; i++) {
      const id = `a${i}`;
      this.acceptors.set(id, { id, up: true, incarnation: 0, state: EMPTY_ACCEPTOR_STATE, record: null, inbox: [], busy: false });
    }
    const mk = (id: string, plain: boolean): void => {
      this.clients.set(id, {
        id, plain, up: true, incarnation: 0, hlc: new Hlc({ maxClockSkewMs: 1e12 }), skewMs: this.rng.int(o.clockSkewMaxMs + 1),
        rng: seededRng(this.rng.int(2 ** 31)), opsLeft: o.opsPerClient, knownVersion: null, op: null, attempt: null,
        attemptSerial: 0, history: null, plainReq: null,
      });
    };
    for (let i = 1; i <= o.clients; i++) mk(`c${i}`, false);
    for (let i = 1; i <= o.plainClients; i++) mk(`w${i}`, true);
  }

  get acceptorIds(): string[] { return [...this.acceptors.keys()]; }

  // ------------------------------------------------------------------ engine

  schedule(delayMs: number, ev: SimEvent): void {
    this.cal.at(this.now + Math.max(0, Math.floor(delayMs)), ev);
  }

  at(delayMs: number, fn: () => void): void { this.schedule(delayMs, { kind: 'call', fn }); }

  /** Runs until `pred` holds after an event, or nothing is left, or `maxMs` passed; returns pred(). */
  runUntil(pred: () => boolean, maxMs: number): boolean {
    const end = this.now + maxMs;
    if (pred()) return true;
    while (this.cal.size > 0 && this.now <= end) {
      for (let ev = this.cal.take(this.now); ev !== undefined; ev = this.cal.take(this.now)) {
        this.process(ev);
        if (pred()) return true;
      }
      this.now++;
    }
    return pred();
  }

  private process(ev: SimEvent): void {
    this.seq++;
    this.check(++this.stats.events <= MAX_EVENTS, 'event budget', `more than ${MAX_EVENTS} events`);
    this.check(this.now <= MAX_SIM_MS, 'time budget', `past ${MAX_SIM_MS} virtual ms`);
    switch (ev.kind) {
      case 'deliver': return this.deliver(ev.env);
      case 'persisted': return this.persisted(ev);
      case 'call': return ev.fn();
    }
  }

  check(cond: boolean, invariant: string, detail: string): asserts cond {
    if (!cond) throw new PaxosSimViolation(invariant, detail, this.seed, this.now);
  }

  // ------------------------------------------------------------------ network

  private send(env: Envelope): void {
    const net = this.net;
    if (this.dropIf?.(env.from, env.to, env.payload) === true) return;
    if (this.rng.next() < net.dropRate) {
      // The client's transport may notice the failed exchange (a reset connection): the
      // request may or may not have been processed.
      if (env.payload.kind === 'paxos' && net.lostSignalRate > 0 && this.rng.next() < net.lostSignalRate) {
        const toAcceptor = this.acceptors.has(env.to);
        const req = toAcceptor ? env.payload.msg as PaxosRequest : env.req;
        const client = toAcceptor ? env.from : env.to;
        const acceptor = toAcceptor ? env.to : env.from;
        if (req !== undefined && this.clients.has(client)) {
          this.schedule(1 + this.rng.int(20), { kind: 'deliver', env: { from: acceptor, to: client, payload: { kind: 'lost', req } } });
        }
      }
      return;
    }
    this.schedule(transitMs(net, this.rng), { kind: 'deliver', env });
    if (this.rng.next() < net.dupRate) this.schedule(transitMs(net, this.rng), { kind: 'deliver', env });
  }

  private deliver(env: Envelope): void {
    const a = this.acceptors.get(env.to);
    if (a !== undefined) {
      if (!a.up) return;
      a.inbox.push(env);
      this.pump(a);
      return;
    }
    const c = this.clients.get(env.to);
    if (c !== undefined && c.up) this.clientReceive(c, env);
  }

  // ------------------------------------------------------------------ acceptors

  /** Handles the next queued request, one at a time (the runtime's per-key lock). */
  private pump(a: Acceptor): void {
    if (a.busy || !a.up) return;
    const env = a.inbox.shift();
    if (env === undefined) return;
    const p = env.payload;
    const persistMs = this.rng.int(this.o.persistMaxMs + 1);
    if (p.kind === 'paxos') {
      // As the network layer would: never hand the core an unvalidated message.
      const msg = validatePaxosMessage(p.msg, LIMITS);
      if (msg.type !== 'prepare' && msg.type !== 'propose' && msg.type !== 'commit') return this.pump(a);
      if (msg.type !== 'commit' && this.refuses(a.id, msg.ballot)) {
        this.send({ from: a.id, to: env.from, payload: { kind: 'refused', req: msg } });
        return this.pump(a);
      }
      const step = (this.o.acceptorStep ?? handleRequest)(a.state, msg, a.record);
      const record = step.write !== undefined && (a.record === null || step.write.version > a.record.version) ? step.write : a.record;
      a.busy = true;
      this.schedule(persistMs, { kind: 'persisted', acceptor: a.id, inc: a.incarnation, env, state: step.state, record, reply: { kind: 'paxos', msg: step.reply } });
    } else if (p.kind === 'plain-put') {
      const record = a.record === null || p.record.version > a.record.version ? p.record : a.record;
      a.busy = true;
      this.schedule(persistMs, { kind: 'persisted', acceptor: a.id, inc: a.incarnation, env, state: a.state, record, reply: { kind: 'plain-put-ack', id: p.id } });
    } else if (p.kind === 'plain-get') {
      this.send({ from: a.id, to: env.from, payload: { kind: 'plain-get-reply', id: p.id, record: a.record } });
      this.pump(a);
    } else {
      this.pump(a);
    }
  }

  /** Stable per (acceptor, ballot), as a stale epoch is: a duplicate of a refused request is refused too. */
  private refuses(acceptor: string, ballot: string): boolean {
    if (this.o.refuseRate === 0 || !this.faults) return false;
    let h = this.seed >>> 0;
    for (const ch of `${acceptor}|${ballot}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    return h / 2 ** 32 < this.o.refuseRate;
  }

  private persisted(ev: Extract<SimEvent, { kind: 'persisted' }>): void {
    const a = this.acceptors.get(ev.acceptor) as Acceptor;
    if (!a.up || a.incarnation !== ev.inc) return; // crashed before the write reached the disk
    const before = a.state;
    a.state = ev.state;
    a.record = ev.record;
    a.busy = false;
    this.afterPersist(a, before, ev.env);
    if (ev.reply !== null) {
      const p = ev.env.payload;
      this.send({ from: a.id, to: ev.env.from, payload: ev.reply, ...(p.kind === 'paxos' ? { req: p.msg as PaxosRequest } : {}) });
    }
    this.pump(a);
  }

  crashAcceptor(id: string): void {
    const a = this.acceptors.get(id) as Acceptor;
    if (!a.up) return;
    a.up = false;
    a.incarnation++;
    a.inbox = [];
    a.busy = false;
  }

  restartAcceptor(id: string): void {
    const a = this.acceptors.get(id) as Acceptor;
    if (a.up) return;
    // What a runtime does on start: read the state back and trust it only once validated.
    a.state = validateAcceptorState(structuredClone(a.state), LIMITS);
    a.up = true;
  }

  // ------------------------------------------------------------------ hidden truth

  private afterPersist(a: Acceptor, before: AcceptorState, env: Envelope): void {
    const s = a.state;
    try {
      validateAcceptorState(s, LIMITS); // the invariants of a state the acceptor wrote
    } catch (err) {
      this.check(false, 'acceptor state', `${a.id}: ${(err as Error).message}`);
    }
    this.check(s.committed === null || (a.record !== null && a.record.version >= s.committed.version),
      'commit safety', `${a.id} committed ${s.committed?.version} but holds record ${a.record?.version ?? 'none'}`);
    const p = env.payload;
    if (p.kind === 'paxos' && p.msg.type === 'commit') {
      const v = p.msg.version;
      this.check(this.inChain.has(v), 'commit safety', `${a.id} got a commit of ${v}, which is not chosen`);
      const w = p.msg.record.version;
      this.check(this.inChain.has(w) || this.plainVersions.has(w), 'commit safety', `commit writes record ${w}, neither chosen nor a plain write`);
    }
    const acc = s.accepted;
    if (acc !== null && (before.accepted === null || compareRanks({ ballot: acc.ballot, version: acc.record.version }, { ballot: before.accepted.ballot, version: before.accepted.record.version }) !== 0)) {
      this.noteAccept(a.id, acc.ballot, acc.record);
    }
  }

  private noteAccept(acceptor: string, ballot: string, record: PaxosRecord): void {
    const k = `${ballot}|${record.version}`;
    let e = this.accepts.get(k);
    if (e === undefined) {
      e = { acceptors: new Set(), record, chosen: false };
      this.accepts.set(k, e);
    } else {
      this.check(sameRecord(e.record, record), 'agreement', `rank ${k} names two records`);
    }
    e.acceptors.add(acceptor);
    if (!e.chosen && e.acceptors.size >= this.quorum) {
      e.chosen = true;
      this.onChosen(ballot, record);
    }
  }

  private onChosen(ballot: string, record: PaxosRecord): void {
    const v = record.version;
    const rank = { ballot, version: v };
    const info = this.proposals.get(v);
    this.check(info !== undefined, 'validity', `chosen record ${v} was never proposed`);
    this.check(info.value === valueText(record.value), 'validity', `chosen record ${v} differs from its proposal`);
    this.check(!this.neverChosen.has(v), 'honest outcomes', `${v} was reported failed/contended (op ${this.neverChosen.get(v)}) but is chosen`);
    const head = this.chain[this.chain.length - 1];
    // Ordered by rank, the chosen proposals follow the chain: a higher rank never carries
    // an earlier record. (A record can be chosen again, at another rank, even after a later
    // one: a slow copy of its propose reaching replicas that never saw the higher ballots.)
    const pos = this.inChain.has(v) ? this.chain.findIndex((e) => e.version === v) : this.chain.length;
    for (const c of this.chosenRanks) {
      const order = compareRanks(c.rank, rank);
      this.check(order < 0 ? c.pos <= pos : c.pos >= pos, 'agreement',
        `${v} chosen at ${ballot} (chain position ${pos}), but ${this.chain[c.pos]?.version} (position ${c.pos}) was chosen at a ${order < 0 ? 'lower' : 'higher'} rank ${c.rank.ballot}`);
    }
    this.chosenRanks.push({ rank, pos });
    if (this.inChain.has(v)) return;
    if (this.o.plainClients === 0) {
      this.check(info.base === (head?.version ?? null), 'agreement',
        `${v} (op ${info.op}) was evaluated against ${info.base ?? 'nothing'}, but the previously chosen record is ${head?.version ?? 'nothing'}`);
    } else {
      // Plain writes are not in the chain: the base may be a plain record newer than the head.
      this.check(head === undefined || (info.base !== null && info.base >= head.version), 'agreement',
        `${v} (op ${info.op}) was evaluated against ${info.base ?? 'nothing'}, older than the chain's head ${head?.version}`);
    }
    this.check(head === undefined || v > head.version, 'agreement', `chain version ${v} not above ${head?.version}`);
    this.chain.push({ version: v, live: record.value !== null, at: this.seq });
    this.inChain.add(v);
    this.stats.chosen++;
  }

  /** The chain's heads during [from, to] (seq numbers), the one at `from` included. */
  private headsDuring(from: number, to: number): Array<ChainEntry | null> {
    const out: Array<ChainEntry | null> = [];
    let before: ChainEntry | null = null;
    for (const e of this.chain) {
      if (e.at <= from) before = e;
      else if (e.at <= to) out.push(e);
    }
    return [before, ...out];
  }

  // ------------------------------------------------------------------ clients

  /** Starts every client's first operation after a short random pause. */
  startClients(): void {
    for (const c of this.clients.values()) this.at(this.think(), () => this.nextOp(c, c.incarnation));
  }

  get clientsDone(): boolean {
    for (const c of this.clients.values()) if (c.up && (c.opsLeft > 0 || c.history !== null)) return false;
    return true;
  }

  physical(c: Client): number { return this.now + c.skewMs; }

  private think(): number {
    const min = this.o.thinkMinMs ?? 0;
    return min + this.rng.int(Math.max(0, this.o.thinkMaxMs - min) + 1);
  }

  private nextOp(c: Client, inc: number): void {
    if (!c.up || c.incarnation !== inc || c.history !== null || c.opsLeft <= 0) return;
    c.opsLeft--;
    if (c.plain) this.startPlain(c, c.rng.int(3) !== 0);
    else this.startCas(c, this.randomCas(c));
  }

  private randomCas(c: Client): { condition: CasCondition; write: CasWrite | null } {
    const r = c.rng.int(100);
    const value = (): Uint8Array => ENC.encode(`${c.id}.${this.opSeq + 1}`);
    const match = (): CasCondition => ({ kind: 'if-match', version: c.knownVersion ?? makeVersion({ wall: 1, logical: 0 }, 'nobody') });
    if (r < 35) return { condition: match(), write: { value: value() } };
    if (r < 47) return { condition: match(), write: { value: null } };
    if (r < 62) return { condition: { kind: 'if-none-match' }, write: { value: value() } };
    if (r < 72) return { condition: { kind: 'always' }, write: { value: c.rng.int(4) === 0 ? null : value() } };
    return { condition: { kind: 'always' }, write: null }; // a serial read
  }

  /** Starts a CAS operation (write null = serial read) on client `c`. */
  startCas(c: Client, spec: { condition: CasCondition; write: CasWrite | null }): HistoryOp {
    const h: HistoryOp = {
      id: ++this.opSeq, client: c.id, kind: spec.write === null ? 'read' : 'cas', condition: spec.condition,
      value: spec.write === null ? null : valueText(spec.write.value), invoke: this.seq, invokeMs: this.now, respond: null,
      outcome: null, maybeVersions: [], attempts: 0, roundTrips: 0, messages: 0,
    };
    this.history.push(h);
    this.stats.ops++;
    c.history = h;
    c.op = new CasOperation({ key: KEY, condition: spec.condition, write: spec.write, rng: c.rng });
    const inc = c.incarnation;
    this.at(this.o.opTimeoutMs, () => {
      if (c.incarnation !== inc || c.history !== h || c.op === null) return;
      this.finishCas(c, c.op.abandon());
    });
    this.startAttempt(c);
    return h;
  }

  private startAttempt(c: Client): void {
    const op = c.op as CasOperation;
    const ballot = makeVersion(c.hlc.now(this.physical(c)), c.id);
    const att = op.attempt(ballot, this.acceptorIds);
    c.attempt = att;
    const serial = ++c.attemptSerial;
    const inc = c.incarnation;
    this.stats.attempts++;
    (c.history as HistoryOp).attempts++;
    this.emit(c, att.start().send);
    this.at(this.o.attemptTimeoutMs, () => {
      if (c.incarnation !== inc || c.attemptSerial !== serial || c.attempt !== att) return;
      const out = att.onDeadline();
      this.emit(c, out.send);
      if (out.decision) this.attemptDecided(c, att, out.decision);
    });
  }

  private emit(c: Client, send: Outbound[]): void {
    const att = c.attempt;
    const h = c.history;
    if (att !== null && h !== null) {
      const own = att.proposed;
      if (own !== null && !this.proposals.has(own.version)) {
        this.proposals.set(own.version, { value: valueText(own.value), base: att.evaluated?.record?.version ?? null, op: h.id });
      }
    }
    this.stats.messages += send.length;
    if (h !== null) h.messages += send.length;
    for (const s of send) this.send({ from: c.id, to: s.to, payload: { kind: 'paxos', msg: s.msg } });
  }

  /** A CAS sees every plain write acknowledged before it began (W and the prepare quorum intersect). */
  private checkPlainSeen(h: HistoryOp, att: CasAttempt): void {
    const seen = att.evaluated?.record?.version ?? null;
    for (const pw of this.plainAcked) {
      if (pw.at < h.invoke) {
        this.check(seen !== null && seen >= pw.version, 'plain writes seen', `op ${h.id} evaluated against ${seen ?? 'nothing'}, below plain write ${pw.version} acknowledged before it began`);
      }
    }
  }

  private clientReceive(c: Client, env: Envelope): void {
    const p = env.payload;
    if (p.kind === 'plain-put-ack' || p.kind === 'plain-get-reply') return this.plainReply(c, env.from, p);
    const att = c.attempt;
    if (att === null || c.op === null) return;
    let out;
    if (p.kind === 'paxos') {
      const msg = validatePaxosMessage(p.msg, LIMITS) as PaxosReply;
      out = att.onReply(env.from, msg, this.physical(c));
    } else if (p.kind === 'refused') {
      out = att.onRefused(env.from, p.req);
    } else if (p.kind === 'lost') {
      out = att.onLost(env.from, p.req);
    } else {
      return;
    }
    this.emit(c, out.send);
    if (out.decision) this.attemptDecided(c, att, out.decision);
  }

  private attemptDecided(c: Client, att: CasAttempt, d: AttemptDecision): void {
    const h = c.history as HistoryOp;
    if (att.evaluated !== undefined) this.checkPlainSeen(h, att);
    h.roundTrips += att.roundTrips;
    this.stats.roundTrips += att.roundTrips;
    const own = att.proposed;
    if (d.kind === 'ok') {
      this.check(this.inChain.has(d.version), 'honest outcomes', `op ${h.id} attempt ${att.ballot} decided ok for ${d.version}, which is not chosen`);
    } else if ((d.kind === 'contended' || d.kind === 'failed') && own !== null) {
      this.check(!this.inChain.has(own.version), 'honest outcomes', `op ${h.id} reported ${d.kind} for ${own.version}, which is chosen`);
      this.neverChosen.set(own.version, h.id);
    } else if (d.kind === 'unknown' && own !== null) {
      h.maybeVersions.push(own.version);
    }
    if (c.attempt !== att) return; // settled after an operation deadline
    const step = (c.op as CasOperation).settle(d);
    if (step.kind === 'done') return this.finishCas(c, step.outcome);
    const inc = c.incarnation;
    this.at(step.afterMs, () => {
      if (c.incarnation !== inc || c.attempt !== att || c.op === null || c.op.outcome !== undefined) return;
      // The receive rule: the next ballot must be above the one that got in the way.
      c.hlc.update(parseVersion(step.above).ts, this.physical(c));
      this.startAttempt(c);
    });
  }

  private finishCas(c: Client, outcome: CasOutcome): void {
    const h = c.history as HistoryOp;
    const att = c.attempt;
    if (outcome.kind === 'unknown' && att !== null && att.decision === undefined && att.proposed !== null && !h.maybeVersions.includes(att.proposed.version)) {
      h.maybeVersions.push(att.proposed.version); // abandoned mid-attempt
    }
    h.respond = this.seq;
    h.outcome = outcome;
    this.stats.outcomes[outcome.kind] = (this.stats.outcomes[outcome.kind] ?? 0) + 1;
    if (outcome.kind === 'ok' && outcome.recovered) this.stats.outcomes['recovered'] = (this.stats.outcomes['recovered'] ?? 0) + 1;
    this.checkAnswer(h, outcome);
    if (outcome.kind === 'ok') c.knownVersion = h.value === null ? null : outcome.version;
    else if (outcome.kind === 'precondition' || outcome.kind === 'read') c.knownVersion = outcome.current.live ? outcome.current.record?.version ?? null : null;
    c.op = null;
    c.attempt = null;
    c.history = null;
    const inc = c.incarnation;
    this.at(this.think(), () => this.nextOp(c, inc));
  }

  private checkAnswer(h: HistoryOp, outcome: CasOutcome): void {
    if (outcome.kind === 'ok') {
      this.check(this.inChain.has(outcome.version), 'honest outcomes', `op ${h.id} answered ok for ${outcome.version}, which is not chosen`);
      return;
    }
    if ((outcome.kind !== 'precondition' && outcome.kind !== 'read') || this.o.plainClients > 0) return;
    const cur = outcome.current;
    const match = this.headsDuring(h.invoke, this.seq).some((e) =>
      (e?.version ?? null) === (cur.record?.version ?? null) && (e?.live ?? false) === cur.live);
    this.check(match, 'honest outcomes', `op ${h.id} answered ${outcome.kind} with ${cur.record?.version ?? 'nothing'}, never the chain's head during the op`);
    if (outcome.kind === 'precondition') {
      this.check(h.condition !== null && !holds(h.condition, { version: cur.record?.version ?? null, live: cur.live }), 'honest outcomes', `op ${h.id}: precondition reported on a state where it holds`);
    }
  }

  crashClient(id: string): void {
    const c = this.clients.get(id) as Client;
    if (!c.up) return;
    const h = c.history;
    if (h !== null) {
      const att = c.attempt;
      if (att !== null && att.maybeAccepted && att.proposed !== null && !h.maybeVersions.includes(att.proposed.version)) h.maybeVersions.push(att.proposed.version);
      h.outcome = { kind: 'crashed' };
      this.stats.outcomes['crashed'] = (this.stats.outcomes['crashed'] ?? 0) + 1;
    }
    c.up = false;
    c.incarnation++;
    c.op = null;
    c.attempt = null;
    c.history = null;
    c.plainReq = null;
  }

  restartClient(id: string): void {
    const c = this.clients.get(id) as Client;
    if (c.up) return;
    // The HLC is persisted by a node (it never goes back across restarts), so it is kept.
    c.up = true;
    c.knownVersion = null;
    const inc = c.incarnation;
    this.at(this.think(), () => this.nextOp(c, inc));
  }

  // ------------------------------------------------------------------ plain writes and reads

  /** Starts a plain (non-Paxos) PUT or GET on client `c`: W or R = a majority, LWW. */
  startPlain(c: Client, put: boolean): HistoryOp {
    const id = ++this.opSeq;
    const h: HistoryOp = {
      id, client: c.id, kind: put ? 'plain-put' : 'plain-get', condition: null, value: put ? `${c.id}.${id}` : null,
      invoke: this.seq, invokeMs: this.now, respond: null, outcome: null, maybeVersions: [], attempts: 1, roundTrips: 1, messages: 0,
    };
    this.history.push(h);
    this.stats.ops++;
    c.history = h;
    c.plainReq = { id, acks: new Set(), replies: new Map(), need: this.quorum };
    let payload: Payload;
    if (put) {
      const record: PaxosRecord = { version: makeVersion(c.hlc.now(this.physical(c)), c.id), value: ENC.encode(h.value as string) };
      this.plainVersions.add(record.version);
      h.maybeVersions.push(record.version);
      this.proposals.set(record.version, { value: h.value, base: null, op: id });
      payload = { kind: 'plain-put', id, record };
    } else {
      payload = { kind: 'plain-get', id };
    }
    for (const to of this.acceptorIds) this.send({ from: c.id, to, payload });
    const inc = c.incarnation;
    this.at(this.o.opTimeoutMs, () => {
      if (c.incarnation !== inc || c.history !== h) return;
      h.outcome = { kind: 'crashed' }; // timed out: unknown
      this.endPlain(c);
    });
    return h;
  }

  private plainReply(c: Client, from: string, p: Extract<Payload, { kind: 'plain-put-ack' | 'plain-get-reply' }>): void {
    const req = c.plainReq;
    const h = c.history;
    if (req === null || h === null || req.id !== p.id) return;
    if (p.kind === 'plain-put-ack') {
      req.acks.add(from);
      if (req.acks.size < req.need) return;
      h.respond = this.seq;
      h.outcome = { kind: 'plain', record: null };
      this.plainAcked.push({ version: h.maybeVersions[0] as Version, at: this.seq });
    } else {
      req.replies.set(from, p.record);
      if (req.replies.size < req.need) return;
      let best: PaxosRecord | null = null;
      for (const r of req.replies.values()) if (r !== null && (best === null || r.version > best.version)) best = r;
      h.respond = this.seq;
      h.outcome = { kind: 'plain', record: best };
    }
    this.endPlain(c);
  }

  private endPlain(c: Client): void {
    c.history = null;
    c.plainReq = null;
    const inc = c.incarnation;
    this.at(this.think(), () => this.nextOp(c, inc));
  }

  // ------------------------------------------------------------------ faults, end checks

  /** Random faults every few ms while `this.faults` holds. */
  startFaults(): void {
    const tick = (): void => {
      if (!this.faults) return;
      const r = this.rng.next();
      const ids = this.acceptorIds;
      if (r < this.o.acceptorCrashRate) {
        this.crashAcceptor(ids[this.rng.int(ids.length)] as string);
      } else if (r < 3 * this.o.acceptorCrashRate) {
        const down = ids.filter((id) => !(this.acceptors.get(id) as Acceptor).up);
        if (down.length > 0) this.restartAcceptor(down[this.rng.int(down.length)] as string);
      } else if (r < 3 * this.o.acceptorCrashRate + this.o.clientCrashRate) {
        const cs = [...this.clients.keys()];
        const victim = cs[this.rng.int(cs.length)] as string;
        this.crashClient(victim);
        this.at(10 + this.rng.int(100), () => this.restartClient(victim));
      }
      this.at(5 + this.rng.int(20), tick);
    };
    this.at(this.rng.int(10), tick);
  }

  /** Ends the faults: a reliable network, every acceptor and client up again. */
  heal(): void {
    this.faults = false;
    this.net = RELIABLE_NET;
    for (const id of this.acceptorIds) this.restartAcceptor(id);
    for (const id of this.clients.keys()) this.restartClient(id);
  }

  /**
   * The history as ops for the register checker. One exact reduction first: a write whose
   * outcome is unknown, that leaves a live record, and whose versions no response or
   * condition ever names, is left out. Placing it could only block what follows (nothing
   * can match its version, and If-None-Match fails on a live record) until a write that
   * ignores the state overwrites it, which is the same as never placing it.
   */
  checkedOps(): CheckedOp[] {
    const named = new Set<string>();
    for (const h of this.history) {
      if (h.condition?.kind === 'if-match') named.add(h.condition.version);
      const o = h.outcome;
      if (o?.kind === 'ok') named.add(o.version);
      else if ((o?.kind === 'precondition' || o?.kind === 'read') && o.current.record !== null) named.add(o.current.record.version);
      else if (o?.kind === 'plain' && o.record !== null) named.add(o.record.version);
    }
    const ops: CheckedOp[] = [];
    for (const h of this.history) {
      const o = h.outcome;
      if (o === null) continue;
      const describe = `op ${h.id} (${h.client} ${h.kind}${h.condition ? ` ${h.condition.kind}${h.condition.kind === 'if-match' ? ` ${h.condition.version}` : ''}` : ''} → ${o.kind})`;
      const live = h.value !== null;
      const cond = h.condition;
      if (h.kind === 'plain-put' || h.kind === 'plain-get') {
        if (o.kind !== 'plain') {
          if (h.kind === 'plain-put') ops.push({ id: h.id, invoke: h.invoke, respond: null, describe, step: () => [{ version: h.maybeVersions[0] as Version, live: true }] });
          continue;
        }
        if (h.kind === 'plain-put') ops.push({ id: h.id, invoke: h.invoke, respond: h.respond, describe, step: () => [{ version: h.maybeVersions[0] as Version, live: true }] });
        else ops.push({ id: h.id, invoke: h.invoke, respond: h.respond, describe, step: (s) => (s.version === (o.record?.version ?? null) ? [s] : []) });
        continue;
      }
      switch (o.kind) {
        case 'ok': {
          const v = o.version;
          ops.push({ id: h.id, invoke: h.invoke, respond: h.respond, describe, step: (s) => (holds(cond as CasCondition, s) ? [{ version: v, live }] : []) });
          break;
        }
        case 'precondition':
        case 'read': {
          const want = { version: o.current.record?.version ?? null, live: o.current.live };
          const isPre = o.kind === 'precondition';
          ops.push({
            id: h.id, invoke: h.invoke, respond: h.respond, describe,
            step: (s) => (s.version === want.version && s.live === want.live && (!isPre || !holds(cond as CasCondition, s)) ? [s] : []),
          });
          break;
        }
        case 'unknown':
        case 'crashed': {
          const vs = h.maybeVersions.filter((v) => !this.neverChosen.has(v));
          if (live && vs.every((v) => !named.has(v))) break;
          if (h.kind === 'cas' && vs.length > 0) {
            ops.push({ id: h.id, invoke: h.invoke, respond: null, describe, step: (s) => (holds(cond as CasCondition, s) ? vs.map((v) => ({ version: v, live })) : []) });
          }
          break;
        }
        case 'failed':
          break;
      }
    }
    return ops;
  }

  /** The final checks once faults are healed and the clients are done. */
  finish(): { finalVersion: Version } {
    const ok = this.runUntil(() => this.clientsDone, 30_000);
    this.check(ok, 'liveness', 'clients did not finish within 30 s of healing');
    // Let what is still on the wire land (a crashed client's last prepare may still be in
    // flight and would rightly pre-empt the final write). Then a last unconditional CAS by a
    // fresh client, alone on a healed cluster, must succeed and reach every replica.
    this.runUntil(() => false, 2 * Math.max(this.o.net.longDelayMaxMs, this.o.net.maxDelayMs) + 100);
    const c: Client = {
      id: 'final', plain: false, up: true, incarnation: 0, hlc: new Hlc({ maxClockSkewMs: 1e12 }), skewMs: 0, rng: seededRng(this.rng.int(2 ** 31)),
      opsLeft: 0, knownVersion: null, op: null, attempt: null, attemptSerial: 0, history: null, plainReq: null,
    };
    this.clients.set(c.id, c);
    const h = this.startCas(c, { condition: { kind: 'always' }, write: { value: ENC.encode('final') } });
    this.check(this.runUntil(() => h.outcome !== null, 10_000), 'liveness', 'the final CAS did not finish');
    const o = h.outcome as CasOutcome;
    this.check(o.kind === 'ok', 'liveness', `the final CAS ended ${o.kind} on a healed cluster`);
    const version = o.version;
    this.runUntil(() => false, 500); // let the commits land
    for (const a of this.acceptors.values()) {
      this.check(a.record?.version === version, 'convergence', `${a.id} holds ${a.record?.version ?? 'nothing'} after the final commit ${version}`);
      this.check(a.state.accepted === null, 'convergence', `${a.id} still holds an accepted proposal after the final commit`);
    }
    return { finalVersion: version };
  }
}

/** One copy's time on the wire: usually short, sometimes the long road (reordering). */
function transitMs(net: NetOptions, rng: Rng): number {
  if (net.longDelayRate > 0 && rng.next() < net.longDelayRate) return net.longDelayMinMs + rng.int(net.longDelayMaxMs - net.longDelayMinMs + 1);
  return net.minDelayMs + rng.int(net.maxDelayMs - net.minDelayMs + 1);
}

function sameRecord(a: PaxosRecord, b: PaxosRecord): boolean {
  return a.version === b.version && a.expiresAt === b.expiresAt && valueText(a.value) === valueText(b.value);
}

function valueText(v: Uint8Array | null): string | null {
  return v === null ? null : DEC.decode(v);
}

export function holds(c: CasCondition, s: RegisterState): boolean {
  switch (c.kind) {
    case 'always': return true;
    case 'if-none-match': return !s.live;
    case 'if-match': return s.live && s.version === c.version;
  }
}

export function currentToRegister(cur: CurrentState): RegisterState {
  return { version: cur.record?.version ?? null, live: cur.live };
}

// ------------------------------------------------------------------ seeds and scenarios

/**
 * Seeds to run: `SEED=n` replays just n; else `count` seeds from 1, where `SIM_SEEDS`
 * overrides the count of the runs that take it (`scalable`), the random histories.
 */
export function seedList(count: number, scalable = false): number[] {
  const one = process.env['SEED'];
  if (one !== undefined && one !== '') return [Number(one)];
  const n = scalable ? Number(process.env['SIM_SEEDS'] ?? count) : count;
  return Array.from({ length: n }, (_, i) => 1 + i);
}

/** Runs `body` per seed; the first failure is rethrown with its seed and how to replay it. */
export function forSeeds(seeds: number[], body: (seed: number) => void): void {
  for (const seed of seeds) {
    try {
      body(seed);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const text = msg.includes(`seed=${seed}`) ? msg : `seed=${seed}: ${msg}`;
      throw new Error(`${text} (replay: SEED=${seed})`, { cause: err });
    }
  }
}

/** A random scenario for one seed: 3 or 5 acceptors, duelling clients, a lossy or calm network, faults. */
export function randomOptions(seed: number): SimOptions {
  const r = seededRng(seed ^ 0x2545f491);
  const nets = [CALM_NET, LOSSY_NET, CHURNING_NET];
  return {
    seed,
    acceptors: r.int(3) === 0 ? 5 : 3,
    clients: 2 + r.int(3),
    opsPerClient: 4 + r.int(5),
    net: nets[r.int(nets.length)] as NetOptions,
    acceptorCrashRate: r.int(3) === 0 ? 0 : 0.04,
    clientCrashRate: r.int(3) === 0 ? 0.01 : 0,
    refuseRate: r.int(4) === 0 ? 0.1 : 0,
    persistMaxMs: 1 + r.int(3),
    thinkMaxMs: r.int(2) === 0 ? 2 : 20,
    clockSkewMaxMs: r.int(2) === 0 ? 0 : 40,
    attemptTimeoutMs: 60,
    opTimeoutMs: 800,
    plainClients: 0,
  };
}

export interface SeedResult { seed: number; stats: SimStats; checkerSteps: number; linearizable: boolean; reason?: string }

/**
 * One random history: clients run their operations under faults; then everything heals,
 * a final CAS must succeed and converge, and the history must be linearizable (checked
 * only when `checkLinearizable`; the mixed scenario reports instead).
 */
export function runSeed(o: SimOptions, checkLinearizable = true): SeedResult {
  const sim: PaxosSim = new PaxosSim(o);
  sim.startClients();
  sim.startFaults();
  sim.runUntil(() => sim.clientsDone, 20_000);
  sim.heal();
  sim.finish();
  const verdict = checkRegister(sim.checkedOps());
  if (checkLinearizable) sim.check(verdict.ok, 'linearizability', verdict.ok ? '' : verdict.reason);
  return { seed: o.seed, stats: sim.stats, checkerSteps: verdict.steps, linearizable: verdict.ok, ...(verdict.ok ? {} : { reason: verdict.reason }) };
}

export interface SeedsResult { seeds: number; violations: Array<{ seed: number; message: string }> }

/** For `npm run sim -- --only paxos`: random histories from `startSeed`. */
export function runPaxosSeeds(opts: { seeds: number; startSeed?: number }): SeedsResult {
  const start = opts.startSeed ?? 1;
  const violations: Array<{ seed: number; message: string }> = [];
  for (let s = start; s < start + opts.seeds; s++) {
    try {
      runSeed(randomOptions(s));
    } catch (err) {
      violations.push({ seed: s, message: err instanceof Error ? err.message : String(err) });
    }
  }
  return { seeds: opts.seeds, violations };
}
