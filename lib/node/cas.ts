/**
 * The coordinator of conditional writes and serial reads (docs/paxos.md): drives the pure
 * CasOperation / CasAttempt of lib/core/paxos over the peer transport, with ballots from this
 * node's durable HLC, and turns the outcome into an honest answer:
 *
 *   ok            200, the record is chosen (its commits go out with the answer)
 *   precondition  412 KV_PRECONDITION_FAILED with the current version; nothing written
 *   failed        409 KV_BUSY (contended) or 503 KV_UNAVAILABLE: nothing can have been accepted
 *   unknown       504 KV_TIMEOUT "outcome":"unknown": a proposal may have been accepted
 *
 * Uncontended, a write is two round trips (prepare carrying each replica's record, then
 * propose); the commit is sent with the decision and nobody waits for it. The chosen record is
 * an ordinary record, version = ballot: replicas write it through Replica.apply, a replica the
 * commit cannot reach gets it as a hint, and read repair and anti-entropy carry it like any
 * other write.
 *
 * Acceptors are the key's current replicas; while its owners change (future ≠ current) they
 * are the union of the old and the new owners, which with one ownership change at a time
 * (one node swapped) makes every majority of the union a majority of both sets. A change
 * the union cannot cover that way answers 409 KV_TOPOLOGY_BUSY, nothing sent. Before a
 * joining node becomes normal, and before a leaving node asks to be removed, it finishes the
 * proposals still in progress on the partitions' owners (settleOwnershipChange): a proposal
 * a majority of the old owners accepted is then committed through the union, so the new
 * owners alone see it.
 */
import { randomInt } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import { KvError, isKvError } from '../errors.ts';
import { checkVersionBound, decodeTs, makeVersion, type Version } from '../core/hlc.ts';
import { partitionOf, replicasOf } from '../core/partitioner.ts';
import { seededRng, type Rng } from '../core/rng.ts';
import { formatSession, observe, sessionKeyHash, type SessionToken } from '../core/session.ts';
import type { Topology } from '../core/topology.ts';
import {
  CasOperation, isPaxosReply, validatePaxosMessage,
  type AttemptDecision, type AttemptOutput, type BackoffOptions, type CasAttempt, type CasCondition, type CasOutcome,
  type CasWrite, type Outbound, type PaxosLimits, type PaxosReply, type PaxosRequest,
} from '../core/paxos/index.ts';
import type { CasService, CasWriteAnswer, CasWriteOptions, ReadAnswer } from '../api/service.ts';
import type { Transport } from '../net/transport.ts';
import type { DurableClock } from './clock.ts';
import type { HintStore } from './hints.ts';
import { PENDING_MAX, toStored, type PaxosReplica } from './paxos-replica.ts';
import type { Logger } from './log.ts';

/** Partitions whose proposals in progress an ownership change settles at once (settleOwnershipChange):
 *  each asks every live current owner once (cas.pending): with N=3, at most 24 such requests in flight. */
const SETTLE_PARALLEL = 8;

/**
 * Deadline of one attempt (one ballot). Default 1 s: a healthy attempt is two round trips of
 * a few ms; a replica silent for a second is down or paused, and the next attempt, with a
 * fresh ballot, can find a majority without it. The request deadline (requestTimeoutMs,
 * 5 s) leaves room for several.
 */
export const CAS_ATTEMPT_TIMEOUT_MS = 1000;

export interface CasCoordinatorDeps {
  selfId: string;
  transport: Transport;
  /** This node's acceptor: its copy of each request skips the network. */
  acceptor: PaxosReplica;
  /** Draws ballots; merges the ballots refusals name and the client's session. */
  clock: DurableClock;
  /** Keeps committed records for replicas the commit cannot reach. */
  hints: HintStore | undefined;
  log: Logger;
  topology: () => Topology;
  /** Resolves once the local topology reaches `epoch`, or at `deadlineMs`. */
  catchUp: (epoch: number, deadlineMs: number) => Promise<void>;
  isAlive: (id: string) => boolean;
  requestTimeoutMs: number;
  maxClockSkewMs: number;
  limits: PaxosLimits;
  /** Where the kv_cas_* counters go (the node's registry). */
  registry?: Registry;
  attemptTimeoutMs?: number;
  maxAttempts?: number;
  backoff?: BackoffOptions;
  rng?: Rng;
  now?: () => number;
}

/** The acceptors of a key: its replicas, or during an ownership change the union of old and new. */
export type AcceptorSet = { readonly replicas: readonly string[] } | { readonly busy: string };

/**
 * Every majority of the union must be a majority of the current and of the future owners,
 * so a value chosen by either is seen by the other: true when the union adds no more than
 * its majority's slack over each set (one swapped node, with N odd).
 */
export function acceptorSet(current: readonly string[], future: readonly string[]): AcceptorSet {
  const union = [...current, ...future.filter((id) => !current.includes(id))];
  if (union.length === current.length && future.length === current.length) return { replicas: current };
  const q = Math.floor(union.length / 2) + 1;
  const covers = (set: readonly string[]): boolean => set.length > 0 && union.length - set.length <= q - (Math.floor(set.length / 2) + 1);
  if (covers(current) && covers(future)) return { replicas: union };
  return { busy: `the key's owners are changing (${current.join(',')} → ${future.join(',')}) in a way one majority cannot cover` };
}

/** What the counters and tests see of the operations run so far. */
export interface CasStats {
  operations: number;
  attempts: number;
  /** Request/reply round trips waited for (prepare, repair, propose); commits are not waited for. */
  roundTrips: number;
  /** Paxos requests sent, commits included. */
  messages: number;
  outcomes: Record<string, number>;
}

interface Plan { readonly epoch: number; readonly replicas: readonly string[] }

export class CasCoordinator implements CasService {
  private readonly now: () => number;
  private readonly rng: Rng;
  private readonly attemptTimeoutMs: number;
  readonly stats: CasStats = { operations: 0, attempts: 0, roundTrips: 0, messages: 0, outcomes: {} };
  private readonly counters: { ops: Counter<'kind' | 'outcome'>; attempts: Counter; trips: Counter; messages: Counter } | undefined;

  constructor(private readonly d: CasCoordinatorDeps) {
    this.now = d.now ?? Date.now;
    this.rng = d.rng ?? seededRng(randomInt(2 ** 31));
    this.attemptTimeoutMs = d.attemptTimeoutMs ?? CAS_ATTEMPT_TIMEOUT_MS;
    const r = d.registry;
    this.counters = r === undefined ? undefined : {
      ops: new Counter({ name: 'kv_cas_operations_total', help: 'Conditional writes and serial reads coordinated here, by kind and outcome', labelNames: ['kind', 'outcome'] as const, registers: [r] }),
      attempts: new Counter({ name: 'kv_cas_attempts_total', help: 'Paxos attempts (ballots) of those operations', registers: [r] }),
      trips: new Counter({ name: 'kv_cas_round_trips_total', help: 'Round trips those operations waited for (prepare, repair, propose)', registers: [r] }),
      messages: new Counter({ name: 'kv_cas_messages_total', help: 'Paxos requests those operations sent, commits included', registers: [r] }),
    };
  }

  async casWrite(key: string, value: Buffer | null, opts: CasWriteOptions): Promise<CasWriteAnswer> {
    const c = opts.condition;
    const condition: CasCondition = 'ifMatch' in c ? { kind: 'if-match', version: c.ifMatch } : { kind: 'if-none-match' };
    const write: CasWrite = opts.ttlMs === undefined ? { value } : { value, expiresAt: this.now() + opts.ttlMs };
    const outcome = await this.run(key, condition, write, opts.session, opts.signal);
    if (outcome.kind === 'ok') return { applied: true, version: outcome.version, session: this.sessionAfter(opts.session, key, outcome.version) };
    if (outcome.kind === 'precondition') {
      const cur = outcome.current;
      return { applied: false, current: cur.live ? cur.record?.version : undefined, session: this.sessionAfter(opts.session, key, cur.record?.version) };
    }
    throw this.failure(outcome);
  }

  async serialGet(key: string, opts: { signal?: AbortSignal; session?: SessionToken }): Promise<ReadAnswer> {
    const outcome = await this.run(key, { kind: 'always' }, null, opts.session, opts.signal);
    if (outcome.kind !== 'read') throw this.failure(outcome);
    const rec = outcome.current.record;
    const token = this.sessionAfter(opts.session, key, rec?.version);
    if (!outcome.current.live || rec === null || rec.value === null) return { value: undefined, version: rec?.version, session: token };
    const stored = toStored(rec);
    return { value: stored.value as Buffer, version: rec.version, session: token, ...(rec.expiresAt === undefined ? {} : { expiresAt: rec.expiresAt }) };
  }

  private failure(o: CasOutcome): KvError {
    if (o.kind === 'unknown') {
      return new KvError('KV_TIMEOUT', `the conditional write may have been accepted by some replicas without a known majority (${o.reason}); it may still take effect`, { outcome: 'unknown' });
    }
    if (o.kind === 'failed' && o.reason === 'contended') {
      return new KvError('KV_BUSY', 'the key is contended: other conditional writes kept getting in the way; nothing was written', { outcome: 'failed' });
    }
    const why = o.kind === 'failed' && o.reason === 'timeout' ? `no majority of replicas answered within ${this.d.requestTimeoutMs} ms` : 'not enough replicas answered';
    return new KvError('KV_UNAVAILABLE', `${why}; nothing was written`, { outcome: 'failed' });
  }

  private sessionAfter(session: SessionToken | undefined, key: string, version: Version | undefined): string | undefined {
    const t = observe(session, sessionKeyHash(key), version);
    return t === undefined ? undefined : formatSession(t);
  }

  /** Merge a version into the HLC, refused when it is further ahead of our clock than the skew bound. */
  private merge(v: Version, source: 'session' | 'ballot'): void {
    const now = this.now();
    try {
      checkVersionBound(v, now, this.d.maxClockSkewMs);
      this.d.clock.hlc.update(decodeTs(v.slice(0, 16)), now);
    } catch (err) {
      if (source === 'ballot') throw err;
      throw new KvError('KV_INVALID_ARGUMENT', `session token is ahead of this node's clock by more than maxClockSkewMs (${this.d.maxClockSkewMs} ms)`, { cause: err, outcome: 'failed' });
    }
  }

  private async ballot(): Promise<Version> {
    const ts = this.d.clock.stamp();
    return makeVersion(ts instanceof Promise ? await ts : ts, this.d.selfId);
  }

  private plan(key: string): Plan {
    const t = this.d.topology();
    if (t.epoch === 0) throw new KvError('KV_UNAVAILABLE', 'this node has not joined a cluster yet', { outcome: 'failed' });
    const p = partitionOf(key, t.partitions);
    const set = acceptorSet(replicasOf(t.table('current'), p), replicasOf(t.table('future'), p));
    if ('busy' in set) throw new KvError('KV_TOPOLOGY_BUSY', `${set.busy}; conditional writes of this key wait for the change to finish, retry`, { outcome: 'failed' });
    return { epoch: t.epoch, replicas: set.replicas };
  }

  private alive(id: string): boolean {
    return id === this.d.selfId || this.d.isAlive(id);
  }

  /** One operation across its attempts, until it is decided or its deadline passes. */
  private async run(key: string, condition: CasCondition, write: CasWrite | null, session: SessionToken | undefined, signal: AbortSignal | undefined):
    Promise<CasOutcome> {
    const deadline = this.now() + this.d.requestTimeoutMs;
    if (session !== undefined) this.merge(session.max, 'session');
    const op = new CasOperation({ key, condition, write, rng: this.rng, ...(this.d.maxAttempts ? { maxAttempts: this.d.maxAttempts } : {}), ...(this.d.backoff ? { backoff: this.d.backoff } : {}) });
    let outcome: CasOutcome | undefined;
    let trips = 0;
    let messages = 0;
    try {
      while (outcome === undefined) {
        if (this.now() >= deadline || signal?.aborted) {
          outcome = op.abandon();
          break;
        }
        let plan: Plan;
        try {
          plan = this.plan(key);
        } catch (err) {
          // Nothing of this attempt was sent; earlier attempts may still have left a proposal out.
          if (op.unknownVersions.length === 0) throw err;
          outcome = op.abandon();
          break;
        }
        const quorum = Math.floor(plan.replicas.length / 2) + 1;
        const live = plan.replicas.filter((id) => this.alive(id)).length;
        if (live < quorum) {
          if (op.attempts === 0) {
            throw new KvError('KV_UNAVAILABLE', `a majority (${quorum}) of the key's ${plan.replicas.length} replicas is needed but only ${live} are alive; nothing was written`, { outcome: 'failed' });
          }
          outcome = op.abandon();
          break;
        }
        const att = op.attempt(await this.ballot(), plan.replicas);
        const res = await this.drive(att, plan, Math.min(deadline, this.now() + this.attemptTimeoutMs), signal);
        trips += att.roundTrips;
        messages += att.messagesSent;
        if (res.decision === undefined) {
          outcome = op.abandon();
          break;
        }
        if (res.staleEpoch !== undefined) await this.d.catchUp(res.staleEpoch, deadline);
        const step = op.settle(res.decision);
        if (step.kind === 'done') {
          outcome = step.outcome;
          break;
        }
        try {
          this.merge(step.above, 'ballot');
        } catch (err) {
          this.d.log.debug({ err, key }, 'a replica named a ballot too far ahead of this node\'s clock');
          outcome = op.abandon();
          break;
        }
        const wait = Math.min(step.afterMs, deadline - this.now());
        if (wait > 0) await sleep(wait, signal);
      }
    } finally {
      this.count(write === null ? 'read' : 'write', outcome, op.attempts, trips, messages);
    }
    return outcome;
  }

  private count(kind: 'read' | 'write', outcome: CasOutcome | undefined, attempts: number, trips: number, messages: number): void {
    const label = outcome === undefined ? 'error' : outcome.kind === 'failed' || outcome.kind === 'unknown' ? `${outcome.kind}-${outcome.reason}` : outcome.kind;
    const s = this.stats;
    s.operations++;
    s.attempts += attempts;
    s.roundTrips += trips;
    s.messages += messages;
    s.outcomes[label] = (s.outcomes[label] ?? 0) + 1;
    const c = this.counters;
    if (c === undefined) return;
    c.ops.labels({ kind, outcome: label }).inc();
    c.attempts.inc(attempts);
    c.trips.inc(trips);
    c.messages.inc(messages);
  }

  /**
   * Runs one attempt until it decides or `deadlineMs` passes (its onDeadline decision), or the
   * client goes away (decision undefined: the operation is abandoned mid-attempt).
   */
  private drive(att: CasAttempt, plan: Plan, deadlineMs: number, signal: AbortSignal | undefined):
    Promise<{ decision: AttemptDecision | undefined; staleEpoch: number | undefined }> {
    return new Promise((resolve) => {
      let done = false;
      let staleEpoch: number | undefined;
      const finish = (decision: AttemptDecision | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve({ decision, staleEpoch });
      };
      const feed = (out: AttemptOutput): void => {
        for (const o of out.send) this.dispatch(o, plan, att, feed, (e) => { staleEpoch = Math.max(staleEpoch ?? 0, e); });
        if (out.decision !== undefined) finish(out.decision);
      };
      const onAbort = (): void => finish(undefined);
      const timer = setTimeout(() => feed(att.onDeadline()), Math.max(0, deadlineMs - this.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      feed(att.start());
    });
  }

  /** Sends one request; its answer (or failure) goes back into the attempt. Commits are fire-and-forget, hinted on failure. */
  private dispatch(o: Outbound, plan: Plan, att: CasAttempt, feed: (out: AttemptOutput) => void, onStale: (epoch: number) => void): void {
    const { to, msg } = o;
    if (msg.type === 'commit') {
      if (!this.alive(to)) return this.hintCommit(to, msg);
      this.request(to, msg, plan.epoch, this.d.requestTimeoutMs).then(
        (reply) => feed(att.onReply(to, reply, this.now())),
        (err: unknown) => {
          this.d.log.debug({ err, to, key: msg.key }, 'commit not delivered; hinted');
          this.hintCommit(to, msg);
        });
      return;
    }
    // A replica gossip sees down is not asked: it certainly does not process the request.
    if (!this.alive(to)) {
      queueMicrotask(() => feed(att.onRefused(to, msg)));
      return;
    }
    this.request(to, msg, plan.epoch, this.attemptTimeoutMs).then(
      (reply) => feed(att.onReply(to, reply, this.now())),
      (err: unknown) => {
        if (isKvError(err, 'KV_STALE_EPOCH')) onStale(Number(err.details?.['epoch'] ?? 0));
        // Refusals made before the acceptor touched anything carry outcome "failed" (paxos-replica.ts,
        // and the transport's own "nothing sent"); anything else may have been processed.
        feed(isKvError(err) && err.outcome === 'failed' ? att.onRefused(to, msg) : att.onLost(to, msg));
      });
  }

  private async request(to: string, msg: PaxosRequest, epoch: number, timeoutMs: number): Promise<PaxosReply> {
    if (to === this.d.selfId) return this.d.acceptor.step(msg, epoch);
    const raw = await this.d.transport.request(to, 'cas.msg', [epoch, msg], { timeoutMs });
    const reply = validatePaxosMessage(raw, this.d.limits);
    if (!isPaxosReply(reply)) throw new KvError('KV_INTERNAL', `malformed paxos reply from ${to}`, { outcome: 'unknown' });
    return reply;
  }

  /**
   * Finish every proposal in progress on the partitions this node is taking over ('join':
   * future but not current owner; 'replace': every partition of the dead member whose place it
   * takes) or giving up ('leave'), by a serial read of each key
   * through the current acceptor set (old and new owners). Best effort within `shouldStop`:
   * what it cannot finish, pruning or the next conditional write of the key finishes.
   */
  async settleOwnershipChange(kind: 'join' | 'leave' | 'replace', shouldStop: () => boolean): Promise<{ keys: number; unsettled: number }> {
    const t = this.d.topology();
    const self = this.d.selfId;
    let keys = 0;
    let unsettled = 0;
    const settlePartition = async (p: number): Promise<void> => {
      const cur = replicasOf(t.table('current'), p);
      const fut = replicasOf(t.table('future'), p);
      // A replacement owns the dead member's partitions with no acceptor state: the proposals the
      // dead member knew of are finished by the others (it refuses acceptor duty until normal).
      const mine = kind === 'join' ? fut.includes(self) && !cur.includes(self) : kind === 'leave' ? cur.includes(self) && !fut.includes(self) : cur.includes(self);
      if (!mine) return;
      const pending = new Set<string>();
      const lists = await Promise.all(cur.filter((id) => this.alive(id)).map((id) =>
        (id === self ? this.d.acceptor.pendingKeys(p) : this.d.transport.request<unknown>(id, 'cas.pending', [p], { timeoutMs: this.d.requestTimeoutMs }))
          .catch((err: unknown) => { this.d.log.debug({ err, id, p }, 'cas.pending failed'); return []; })));
      for (const got of lists) {
        if (!Array.isArray(got)) continue;
        for (const k of got.slice(0, PENDING_MAX)) if (typeof k === 'string' && k.length > 0 && Buffer.byteLength(k) <= this.d.limits.maxKeyBytes) pending.add(k);
      }
      for (const key of pending) {
        keys++;
        let done = false;
        for (let attempt = 0; attempt < 3 && !done && !shouldStop(); attempt++) {
          done = await this.serialGet(key, {}).then(() => true, (err: unknown) => { this.d.log.debug({ err, key }, 'could not settle a proposal yet'); return false; });
        }
        if (!done) unsettled++;
      }
    };
    // SETTLE_PARALLEL partitions at a time: one round trip per owner each, so a join's hundreds
    // of partitions do not wait for each other's round trips one by one.
    let next = 0;
    await Promise.all(Array.from({ length: SETTLE_PARALLEL }, async () => {
      while (next < t.partitions && !shouldStop()) await settlePartition(next++);
    }));
    return { keys, unsettled };
  }

  /** The committed record is an ordinary record: a hint delivers it through rep.put like any write. */
  private hintCommit(to: string, msg: Extract<PaxosRequest, { type: 'commit' }>): void {
    if (this.d.hints === undefined || to === this.d.selfId) return;
    this.d.hints.add(to, msg.key, toStored(msg.record)).catch((err: unknown) => this.d.log.debug({ err, to }, 'commit hint not stored'));
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
