/**
 * The coordinator (DESIGN.md §8): any node answers any key. It finds the key's replicas
 * for the current epoch, contacts the live ones in parallel and answers after W replicas
 * applied the write, or R replied to a read, keeping the outcome honest (§2):
 *   - fewer live replicas than required → KV_UNAVAILABLE, nothing sent ("failed");
 *   - sent, but fewer than W applied → KV_QUORUM_NOT_MET or KV_TIMEOUT ("unknown"),
 *     unless no replica can have applied it (every attempt refused before applying).
 *
 * A write counts toward W only where a replica applied it. A replica that keeps a newer
 * version refuses ours and says which it holds: the coordinator merges that version into
 * its HLC, stamps the write above it and tries again within the same deadline, so a write
 * acknowledged later is never hidden below one acknowledged earlier, whatever the clocks
 * say (guarantee 8). Session tokens (lib/core/session.ts) carry what a client observed:
 * writes stamp above it, reads wait for it. Reads with r ≥ 2 repair the consulted
 * replicas that are behind before answering (monotonic quorum reads); r = 1 repairs in
 * the background.
 */
import { KvError, isKvError } from '../errors.ts';
import { checkVersionBound, decodeTs, makeVersion, type Version } from '../core/hlc.ts';
import { partitionOf, replicasOf } from '../core/partitioner.ts';
import { ReadTracker, WriteTracker, required, type QuorumSpec, type ReplicaOutcome, type TrackedTarget, type WriteDecision } from '../core/quorum.ts';
import { formatSession, observe, sessionKeyHash, sessionRequirement, type SessionToken } from '../core/session.ts';
import type { Topology } from '../core/topology.ts';
import type { KvService, ReadAnswer, ReadOptions, WriteAnswer, WriteOptions } from '../api/service.ts';
import { recordToWire, validateRecord, type StoredRecord } from '../storage/record.ts';
import type { Transport } from '../net/transport.ts';
import { Settle } from '../net/settle.ts';
import type { DurableClock } from './clock.ts';
import type { HintStore } from './hints.ts';
import { parseAck, putPayload, type Replica } from './replica.ts';
import type { Logger } from './log.ts';

/** What the coordinator needs to know about liveness (gossip provides it). */
export interface CoordinatorLiveness {
  isAlive(id: string): boolean;
  /** Suspected by gossip: still tried, but last. */
  isSuspect(id: string): boolean;
}

export interface CoordinatorDeps {
  selfId: string;
  /** This node's replica: the same apply path the remote replicas run. */
  replica: Replica;
  transport: Transport;
  /** Stamps versions; its HLC merges held versions and session tokens. */
  clock: DurableClock;
  hints: HintStore | undefined;
  log: Logger;
  topology: () => Topology;
  /** Resolves once the local topology reaches `epoch`, or at `deadlineMs`, whichever is first. */
  catchUp: (epoch: number, deadlineMs: number) => Promise<void>;
  liveness: CoordinatorLiveness;
  defaults: { w: number; r: number };
  requestTimeoutMs: number;
  readRepair: boolean;
  maxClockSkewMs: number;
  /** Read repairs sent (metrics): before answering, or in the background. */
  onReadRepair?: (n: number, mode: 'blocking' | 'background') => void;
  /** A session token or held version refused for being too far ahead (metrics). */
  onVersionRefused?: (source: 'session' | 'held') => void;
  now?: () => number;
}

/** A read still short of R replies after this long also asks the remaining replicas
 *  (Cassandra's speculative retry). 50 ms is far above a healthy LAN read and far below the deadline. */
const SPECULATIVE_READ_MS = 50;

/** Attempts of one client write (re-stamps after a newer version was found, stale-epoch
 *  retries). 5: one re-stamp or one catch-up normally suffices; more means heavy contention
 *  or churn, and the deadline bounds them anyway. */
const MAX_WRITE_ATTEMPTS = 5;

/** Stale-epoch retries of one client read. 3: one catch-up normally suffices; more means churn. */
const MAX_READ_ATTEMPTS = 4;

/** A session read whose replicas are behind the token asks again this often until the deadline. */
const SESSION_RETRY_MS = 100;

/** Refusals a replica (or the transport) gives before touching the store. */
const REFUSED_BEFORE_APPLY = new Set(['KV_STALE_EPOCH', 'KV_TOO_MANY_REQUESTS', 'KV_INVALID_ARGUMENT', 'KV_INVALID_KEY',
  'KV_VALUE_TOO_LARGE', 'KV_STORE_NOT_OPEN', 'KV_CLOCK_SKEW', 'KV_UNAUTHORIZED', 'KV_FORBIDDEN', 'KV_FRAME_TOO_LARGE', 'KV_CLOSED']);

/** Whether a failed replica write may still have been applied (lost answer, timeout, crash mid-way). */
export function mayHaveApplied(err: KvError): boolean {
  if (err.outcome === 'failed') return false;
  if (err.outcome === 'unknown') return true;
  return !REFUSED_BEFORE_APPLY.has(err.code);
}

/** What a replica's answer (or failure) means for one write attempt of `version`. */
function outcomeOf(result: { ack: unknown } | { err: unknown }, version: Version): ReplicaOutcome {
  if ('ack' in result) {
    if (result.ack === true) return { kind: 'applied' }; // a stored hint
    const ack = parseAck(result.ack);
    if (ack === undefined) return { kind: 'lost' };
    if (ack.applied || ack.version === version) return { kind: 'applied' };
    return ack.version > version ? { kind: 'newer', held: ack.version } : { kind: 'lost' };
  }
  const kv = isKvError(result.err) ? result.err : new KvError('KV_INTERNAL', String(result.err));
  if (mayHaveApplied(kv)) return { kind: 'lost' };
  return kv.code === 'KV_STALE_EPOCH' ? { kind: 'refused', staleEpoch: Number(kv.details?.['epoch'] ?? 0) } : { kind: 'refused' };
}

/** Where one copy of a write goes. */
interface WriteTarget extends TrackedTarget {
  /** replica: a current owner; pending: a future owner (a topology change is in progress);
   *  hint: a live fallback keeping the copy for a down replica (sloppy quorum). */
  readonly role: 'replica' | 'pending' | 'hint';
  /** The node the request goes to (for a hint, the fallback). */
  readonly node: string;
}

/** The key's owners at one epoch. */
interface Plan {
  readonly key: string;
  readonly epoch: number;
  readonly replicas: readonly string[];
  /** The replicas reads may use (not one being replaced that is still streaming). */
  readonly readable: readonly string[];
  /** Future owners that are not current ones: they receive writes but do not count toward W. */
  readonly pending: readonly string[];
  /** The partition's whole preference list: fallbacks follow the replicas. */
  readonly preference: readonly string[];
}

export class Coordinator implements KvService {
  private readonly now: () => number;

  constructor(private readonly d: CoordinatorDeps) {
    this.now = d.now ?? Date.now;
  }

  replicationFactor(): number {
    return this.d.topology().n || 1;
  }

  private plan(key: string): Plan {
    const t = this.d.topology();
    if (t.epoch === 0) throw new KvError('KV_UNAVAILABLE', 'this node has not joined a cluster yet', { outcome: 'failed' });
    const p = partitionOf(key, t.partitions);
    const current = t.table('current');
    const replicas = replicasOf(current, p);
    const future = t.table('future');
    const pending = future === current ? [] : replicasOf(future, p).filter((id) => !replicas.includes(id));
    // A member being replaced takes writes but has no complete data yet: never read from it.
    const readable = replicas.filter((id) => t.member(id)?.state !== 'replacing');
    return { key, epoch: t.epoch, replicas, readable, pending, preference: current.preference[p] ?? [] };
  }

  /** Live fallbacks in preference order. Only sloppy writes and hints need them, so not every request pays. */
  private fallbacks(plan: Plan): string[] {
    const out: string[] = [];
    for (let i = plan.replicas.length; i < plan.preference.length; i++) {
      const id = plan.preference[i] as string;
      if (this.alive(id)) out.push(id);
    }
    return out;
  }

  private alive(id: string): boolean {
    return id === this.d.selfId || this.d.liveness.isAlive(id);
  }

  private need(spec: QuorumSpec | undefined, def: number, replicas: number): number {
    // The configured default shrinks with small clusters (a 1-node dev cluster answers with defaults);
    // an explicit number is taken as asked.
    return spec === undefined ? Math.min(def, replicas) : required(spec, replicas);
  }

  put(key: string, value: Buffer, opts: WriteOptions): Promise<WriteAnswer> {
    return this.write(key, value, opts);
  }

  del(key: string, opts: WriteOptions): Promise<WriteAnswer> {
    return this.write(key, null, opts);
  }

  // ---- writes -------------------------------------------------------------------------

  /** Merge what the client has observed into the HLC, so the new version is above all of it. */
  private mergeSession(session: SessionToken | undefined): void {
    if (session === undefined) return;
    this.mergeVersion(session.max, 'session', 'failed');
  }

  /** Merge a version into the HLC; refused (nothing more sent) when it is too far ahead of our clock. */
  private mergeVersion(v: Version, source: 'session' | 'held', outcome: 'failed' | 'unknown'): void {
    const now = this.now();
    try {
      checkVersionBound(v, now, this.d.maxClockSkewMs);
      this.d.clock.hlc.update(decodeTs(v.slice(0, 16)), now);
    } catch (err) {
      this.d.onVersionRefused?.(source);
      throw new KvError(source === 'session' ? 'KV_INVALID_ARGUMENT' : 'KV_UNAVAILABLE', source === 'session'
        ? `session token is ahead of this node's clock by more than maxClockSkewMs (${this.d.maxClockSkewMs} ms)`
        : `a replica holds a version ahead of this node's clock by more than maxClockSkewMs (${this.d.maxClockSkewMs} ms); retry through another node`,
      { cause: err, outcome });
    }
  }

  private async stamp(): Promise<Version> {
    const ts = this.d.clock.stamp();
    return makeVersion(ts instanceof Promise ? await ts : ts, this.d.selfId);
  }

  private async write(key: string, value: Buffer | null, opts: WriteOptions): Promise<WriteAnswer> {
    const deadline = this.now() + this.d.requestTimeoutMs;
    this.mergeSession(opts.session);
    // The expiry is part of the record, set here once: every replica and every later read judges it alike.
    let rec: StoredRecord = opts.ttlMs === undefined || value === null
      ? { version: await this.stamp(), value }
      : { version: await this.stamp(), value, expiresAt: this.now() + opts.ttlMs };
    // Whether any attempt so far may have left a copy somewhere: decides "failed" vs "unknown".
    let maybeApplied = false;
    const outcome = (): 'failed' | 'unknown' => (maybeApplied ? 'unknown' : 'failed');
    for (let attempt = 1; ; attempt++) {
      const plan = this.plan(key);
      const need = this.need(opts.w, this.d.defaults.w, plan.replicas.length);
      const targets = this.writeTargets(plan, need, opts.sloppy === true, outcome);
      const { decision, tracker } = await this.attempt(plan, rec, targets, need, deadline, opts.signal);
      maybeApplied ||= tracker.maybeApplied;
      if (decision.result === 'ok') {
        return { version: rec.version, session: this.sessionAfter(opts.session, key, rec.version) };
      }
      const retry = attempt < MAX_WRITE_ATTEMPTS && this.now() < deadline;
      if (retry && decision.staleEpoch !== undefined) await this.d.catchUp(decision.staleEpoch, deadline);
      if (retry && decision.result === 'outdated') {
        // Replicas keep a newer version: ours would be hidden below it. Stamp above and go again.
        this.mergeVersion(decision.held, 'held', outcome());
        rec = { ...rec, version: await this.stamp() };
        continue;
      }
      if (retry && decision.staleEpoch !== undefined) continue;
      const applied = `${tracker.appliedCount} of ${need} replicas applied the write`;
      if (!maybeApplied) throw new KvError('KV_UNAVAILABLE', `could not write to enough replicas (${applied}); nothing was written`, { outcome: 'failed' });
      if (decision.result === 'unknown' && decision.reason === 'timeout') {
        throw new KvError('KV_TIMEOUT', `only ${applied} within ${this.d.requestTimeoutMs} ms; the write may still surface`, { outcome: 'unknown' });
      }
      throw new KvError('KV_QUORUM_NOT_MET', `only ${applied}; the write may still surface`, { outcome: 'unknown' });
    }
  }

  /**
   * Every live replica, every live pending owner and, for a sloppy write, a hint on a live
   * fallback for each down replica. Fails fast (nothing sent) when W cannot be reached.
   */
  private writeTargets(plan: Plan, need: number, sloppy: boolean, outcome: () => 'failed' | 'unknown'): WriteTarget[] {
    if (need > plan.replicas.length) {
      throw new KvError('KV_UNAVAILABLE', `w=${need} but the key has only ${plan.replicas.length} replicas`, { outcome: outcome() });
    }
    const targets: WriteTarget[] = [];
    const down: string[] = [];
    for (const id of plan.replicas) {
      if (this.alive(id)) targets.push({ replica: id, node: id, role: 'replica', countsTowardW: true });
      else down.push(id);
    }
    const live = targets.length;
    if (sloppy && this.d.hints !== undefined && down.length > 0) {
      const fallbacks = this.fallbacks(plan);
      down.forEach((replica, i) => {
        const via = fallbacks[i];
        if (via !== undefined) targets.push({ replica, node: via, role: 'hint', countsTowardW: true });
      });
    }
    if (targets.length < need) {
      throw new KvError('KV_UNAVAILABLE', `w=${need} but only ${live} of ${plan.replicas.length} replicas are alive; nothing was written`,
        { outcome: outcome() });
    }
    for (const id of plan.pending) if (this.alive(id)) targets.push({ replica: id, node: id, role: 'pending', countsTowardW: false });
    return targets;
  }

  /**
   * Sends one version to every target and resolves with the tracker's decision as soon as
   * it is known, or at the deadline. Once every answer is in, replicas and pending owners
   * that did not apply it get a hint, unless the attempt was superseded (a re-stamp) or
   * reported failed.
   */
  private attempt(plan: Plan, rec: StoredRecord, targets: readonly WriteTarget[], need: number, deadline: number,
    signal: AbortSignal | undefined): Promise<{ decision: WriteDecision; tracker: WriteTracker }> {
    const tracker = new WriteTracker(need);
    const wire = putPayload(plan.key, rec, plan.epoch);
    const done = new Settle<{ decision: WriteDecision; tracker: WriteTracker }>({
      timeoutMs: deadline - this.now(), signal, onTimeout: (s) => s.resolve({ decision: tracker.expire(), tracker }),
    });
    let superseded = false;
    const indexes = targets.map((t) => tracker.add(t));
    targets.forEach((t, i) => {
      this.send(t, plan, rec, wire, deadline).then((ack) => ({ ack }), (err: unknown) => ({ err })).then((result) => {
        tracker.record(indexes[i] as number, outcomeOf(result, rec.version));
        const d = tracker.decision();
        if (d) {
          if (d.result === 'outdated') superseded = true;
          done.resolve({ decision: d, tracker });
        }
        if (tracker.pending === 0 && !superseded) this.hintMissing(plan, rec, tracker);
      });
    });
    return done.promise;
  }

  private send(t: WriteTarget, plan: Plan, rec: StoredRecord, wire: unknown[], deadline: number): Promise<unknown> {
    if (t.role === 'hint') return this.storeHint(t.node, t.replica, plan.key, rec, deadline);
    if (t.node === this.d.selfId) return this.d.replica.apply(plan.key, rec, plan.epoch).then((a) => [a.applied, a.version]);
    return this.d.transport.request(t.node, 'rep.put', wire, { timeoutMs: Math.max(1, deadline - this.now()) });
  }

  /** Resolves true when the fallback stored the hint; rejects (refused) otherwise. */
  private async storeHint(fallback: string, target: string, key: string, rec: StoredRecord, deadline: number): Promise<true> {
    const hints = this.d.hints as HintStore;
    const ok = fallback === this.d.selfId ? await hints.add(target, key, rec)
      : await this.d.transport.request<boolean>(fallback, 'hint.put', [target, key, recordToWire(rec)], { timeoutMs: Math.max(1, deadline - this.now()) });
    if (ok !== true) throw new KvError('KV_UNAVAILABLE', 'hint refused', { outcome: 'failed' });
    return true;
  }

  /** Background: owners that did not apply the write get a hint on a live fallback (or here). */
  private hintMissing(plan: Plan, rec: StoredRecord, tracker: WriteTracker): void {
    if (!this.d.hints) return;
    const missing = tracker.hintTargets([...plan.replicas, ...plan.pending]);
    if (missing.length === 0) return;
    const fallback = this.fallbacks(plan)[0] ?? this.d.selfId;
    for (const target of missing) {
      this.storeHint(target === fallback ? this.d.selfId : fallback, target, plan.key, rec, this.now() + this.d.requestTimeoutMs)
        .catch((err: unknown) => this.d.log.debug({ err, target }, 'hint not stored'));
    }
  }

  private sessionAfter(session: SessionToken | undefined, key: string, version: Version | undefined): string | undefined {
    const t = observe(session, sessionKeyHash(key), version);
    return t === undefined ? undefined : formatSession(t);
  }

  // ---- reads --------------------------------------------------------------------------

  async get(key: string, opts: ReadOptions): Promise<ReadAnswer> {
    const deadline = this.now() + this.d.requestTimeoutMs;
    const want = sessionRequirement(opts.session, sessionKeyHash(key));
    for (let attempt = 1; ; attempt++) {
      const plan = this.plan(key);
      const need = this.need(opts.r, this.d.defaults.r, plan.replicas.length);
      if (need > plan.replicas.length) throw new KvError('KV_UNAVAILABLE', `r=${need} but the key has only ${plan.replicas.length} replicas`);
      const live = plan.readable.filter((id) => this.alive(id));
      if (live.length < need) throw new KvError('KV_UNAVAILABLE', `r=${need} but only ${live.length} of ${plan.replicas.length} replicas are alive and serving reads`);
      const everyReplica = live.length === plan.replicas.length;
      const read = await this.gather(plan, live, need, want, everyReplica, deadline, opts.signal);
      const { tracker } = read;
      const decision = read.decision;
      if (decision === 'ok') {
        if (need >= 2) await this.repairBeforeAnswer(plan, read, need, deadline);
        return this.answer(key, read.answered, opts.session);
      }
      if (tracker.staleEpoch !== undefined && attempt < MAX_READ_ATTEMPTS && this.now() < deadline) {
        await this.d.catchUp(tracker.staleEpoch, deadline);
        continue;
      }
      if (decision === 'behind' && this.now() + SESSION_RETRY_MS < deadline && !opts.signal?.aborted) {
        // Replicas that could hold the session's version are down or slow: wait for them (or for hints) within the deadline.
        await new Promise((r) => setTimeout(r, SESSION_RETRY_MS));
        attempt = 0;
        continue;
      }
      // Behind the session at the deadline, also while a paused replica still has the request: not a quorum timeout.
      if (decision === 'behind' || (read.timedOut && want !== undefined && tracker.replies.size >= need)) {
        throw new KvError('KV_SESSION_UNAVAILABLE', `no reachable replica holds the session's version ${want} of the key within ${this.d.requestTimeoutMs} ms`);
      }
      if (read.timedOut) throw new KvError('KV_TIMEOUT', `only ${tracker.replies.size} of ${need} replicas answered within ${this.d.requestTimeoutMs} ms`);
      throw new KvError('KV_UNAVAILABLE', `only ${tracker.replies.size} of ${need} replicas answered`);
    }
  }

  private answer(key: string, best: StoredRecord | undefined, session: SessionToken | undefined): ReadAnswer {
    const token = this.sessionAfter(session, key, best?.version);
    if (!best || best.value === null || (best.expiresAt !== undefined && best.expiresAt <= this.now())) {
      return { value: undefined, version: best?.version, session: token };
    }
    return { value: best.value, version: best.version, session: token, ...(best.expiresAt === undefined ? {} : { expiresAt: best.expiresAt }) };
  }

  /**
   * Asks the first `need` replicas (this node first, then live before suspect), adds the
   * next one whenever one fails, and all the rest if the answer is slow (speculative
   * retry) or behind the session, so a paused replica costs a short delay rather than the
   * whole deadline.
   */
  private gather(plan: Plan, live: readonly string[], need: number, want: Version | undefined, everyReplica: boolean,
    deadline: number, signal: AbortSignal | undefined): Promise<Gathered> {
    const tracker = new ReadTracker(need, [...live].sort((a, b) => this.readRank(a) - this.readRank(b)), { want, everyReplica });
    const read = new Gathered(tracker, need >= 2);
    const done = new Settle<Gathered>({
      timeoutMs: deadline - this.now(), signal, onTimeout: (s) => { read.timedOut = true; s.resolve(read); },
    });
    const settle = (): void => {
      const d = tracker.decision();
      if (d === undefined || done.settled) return;
      read.decide(d);
      done.resolve(read);
    };
    const ask = (ids: string[]): void => {
      for (const id of ids) {
        this.readOne(id, plan, deadline).then((rec) => {
          read.records.set(id, rec);
          tracker.reply(id, rec ? rec.version : null);
          if (!done.settled && tracker.behind()) ask(tracker.speculate());
        }, (err: unknown) => {
          const stale = isKvError(err, 'KV_STALE_EPOCH') ? Number(err.details?.['epoch'] ?? 0) : undefined;
          const next = tracker.fail(id, stale);
          if (!done.settled) ask(next);
        }).finally(() => {
          settle();
          if (tracker.outstanding === 0 && done.settled) this.repairLate(plan, read);
        });
      }
    };
    const speculative = setTimeout(() => { if (!done.settled) ask(tracker.speculate()); }, SPECULATIVE_READ_MS);
    void done.promise.finally(() => clearTimeout(speculative));
    ask(tracker.start());
    return done.promise;
  }

  /** Read order: this node (no network hop), then live members, then suspects. */
  private readRank(id: string): number {
    if (id === this.d.selfId) return 0;
    return this.d.liveness.isSuspect(id) ? 2 : 1;
  }

  private async readOne(id: string, plan: Plan, deadline: number): Promise<StoredRecord | null> {
    if (id === this.d.selfId) return (await this.d.replica.read(plan.key, plan.epoch)) ?? null;
    const wire = await this.d.transport.request(id, 'rep.get', [plan.key, plan.epoch], { timeoutMs: Math.max(1, deadline - this.now()) });
    if (wire === null) return null;
    const rec = validateRecord(wire);
    if (!rec) throw new KvError('KV_INTERNAL', `malformed record from ${id}`);
    return rec;
  }

  /**
   * Blocking read repair (Cassandra's, for QUORUM reads): the winning record is written to
   * every consulted replica that answered with less before the read answers, so a later
   * quorum read cannot return something older. If too few replicas end up holding it, the
   * read answers 504 rather than return a value a later quorum read might not see.
   */
  private async repairBeforeAnswer(plan: Plan, read: Gathered, need: number, deadline: number): Promise<void> {
    const best = read.answered;
    const stale = read.staleAtDecision;
    if (!this.d.readRepair || best === undefined || stale.length === 0) return;
    this.d.onReadRepair?.(stale.length, 'blocking');
    const wire = putPayload(plan.key, best, plan.epoch);
    const results = await Promise.all(stale.map((id) => this.send({ replica: id, node: id, role: 'replica', countsTowardW: true }, plan, best, wire, deadline)
      .then((ack) => outcomeOf({ ack }, best.version), (err: unknown) => outcomeOf({ err }, best.version))));
    const holding = read.repliesAtDecision - stale.length + results.filter((o) => o.kind === 'applied' || o.kind === 'newer').length;
    if (holding < need) {
      throw new KvError('KV_TIMEOUT', `read repair reached only ${holding} of ${need} replicas; answering could break monotonic reads`);
    }
  }

  /** Background read repair: replicas behind the winner that were not repaired before answering. */
  private repairLate(plan: Plan, read: Gathered): void {
    const best = read.best();
    if (!this.d.readRepair || best === undefined) return;
    const blocking = read.blocking && best.version === read.answered?.version ? new Set(read.staleAtDecision) : new Set<string>();
    const stale = read.tracker.repairTargets().filter((id) => !blocking.has(id));
    if (stale.length === 0) return;
    this.d.onReadRepair?.(stale.length, 'background');
    const wire = putPayload(plan.key, best, plan.epoch);
    const deadline = this.now() + this.d.requestTimeoutMs;
    for (const id of stale) {
      this.send({ replica: id, node: id, role: 'replica', countsTowardW: true }, plan, best, wire, deadline)
        .catch((err: unknown) => this.d.log.debug({ err, id, key: plan.key }, 'read repair failed'));
    }
  }
}

/** The replies of one read, and what they were when the read decided. */
class Gathered {
  readonly records = new Map<string, StoredRecord | null>();
  timedOut = false;
  decision: 'ok' | 'behind' | 'failed' | undefined;
  /** The record the read answers with (replies may still arrive after the decision). */
  answered: StoredRecord | undefined;
  /** Consulted replicas behind `answered` at the decision: repaired before answering when blocking. */
  staleAtDecision: string[] = [];
  repliesAtDecision = 0;

  constructor(readonly tracker: ReadTracker, readonly blocking: boolean) {}

  decide(d: 'ok' | 'behind' | 'failed'): void {
    this.decision = d;
    this.answered = this.best();
    this.staleAtDecision = this.tracker.repairTargets();
    this.repliesAtDecision = this.tracker.replies.size;
  }

  best(): StoredRecord | undefined {
    const from = this.tracker.best.from;
    return from === undefined ? undefined : this.records.get(from) ?? undefined;
  }
}
