/**
 * The acceptor side of compare-and-set (docs/paxos.md, "What the runtime has to do"): the
 * pure acceptor of lib/core/paxos driven over a persisted per-key state, served to peers as
 *   cas.msg  [epoch, request]  → reply          (request: prepare | propose | commit)
 *
 * Per request, under a per-key lock: validate (syntax, version bounds, epoch fence, and that
 * this node is a current or future replica of the key), read the key's state (validated on
 * the way back from disk) and, for a prepare, its current record; step the core; for a
 * commit, write the chosen record through `Replica.apply`, the one apply path every record
 * takes; then persist the new state (with the node's `fsync` setting, like records) and only
 * then reply: a promise or an accept is a vow about what is on disk. The commit's record is
 * written before the state that says it was committed, so "a replica whose state says it
 * committed v holds a record of version ≥ v" holds on disk at every instant.
 *
 * Every refusal made before the state is touched is thrown with outcome "failed", which the
 * proposer may count as "certainly not processed" (CasAttempt.onRefused); any other failure
 * counts as "maybe processed".
 *
 * Pruning (the state must not grow without bound): ballots older than the retention horizon
 * are refused as if promised against, so a state whose promise is older than the horizon
 * vows nothing the horizon does not already enforce, and is deleted once nothing is in
 * progress in it. A state left with an unfinished proposal older than the horizon is first
 * finished by a serial read through the coordinator (which commits it if it was chosen),
 * then loses that proposal. States of keys this node no longer owns go the same way.
 *
 * Ownership changes: `cas.pending [partition]` → keys of the partition whose state holds a
 * proposal in progress here, so a node taking a partition over (or giving it up) can finish
 * them through the old and new owners together before the new owners decide alone.
 */
import { Packr } from 'msgpackr';
import { KvError, isKvError } from '../errors.ts';
import { checkVersionBound, makeVersion, type Version } from '../core/hlc.ts';
import {
  EMPTY_ACCEPTOR_STATE, handleRequest, isPaxosRequest, validateAcceptorState, validatePaxosMessage,
  type AcceptorState, type PaxosLimits, type PaxosRecord, type PaxosReply, type PaxosRequest,
} from '../core/paxos/index.ts';
import { SUBLEVELS, type Backend, type BatchOp } from '../storage/backend.ts';
import type { StoredRecord } from '../storage/record.ts';
import type { Transport } from '../net/transport.ts';
import type { Fence, Replica } from './replica.ts';
import type { Logger } from './log.ts';

const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * Paxos requests being handled on this node at once (all keys). 4096 mirrors the transport's
 * inbound limit per peer: an honest cluster stays far below it; beyond it requests are refused
 * before processing (KV_TOO_MANY_REQUESTS), which proposers treat as a certain "no".
 */
const MAX_INFLIGHT = 4096;
/** States looked at per pruning round. 1000: one bounded range read a minute. */
const PRUNE_BATCH = 1000;
/**
 * Keys one cas.pending answer lists at most. A proposal stays in progress only while its
 * commits are in flight, or after its coordinator died: thousands at once in one partition
 * mean something else is wrong, and the rest are finished by pruning.
 */
export const PENDING_MAX = 1000;
/** Unfinished proposals finished (one serial read each) per pruning round at most. */
const PRUNE_FINISH_MAX = 16;
/** Pruning round period. 60 s: states live for the retention horizon (an hour by default) anyway. */
const PRUNE_INTERVAL_MS = 60_000;
/**
 * Slack added to the shortest allowed retention. A live proposer's ballot is never older than
 * its request deadline plus the clock skew between it and the acceptor; a minute on top covers
 * a paused process whose queued frames land late.
 */
const RETENTION_MARGIN_MS = 60_000;

/** The shortest retention that can never refuse a live proposer's ballot. */
export function paxosRetentionMs(o: { tombstoneGraceMs: number; requestTimeoutMs: number; maxClockSkewMs: number }): number {
  return Math.max(o.tombstoneGraceMs, o.requestTimeoutMs + 2 * o.maxClockSkewMs + RETENTION_MARGIN_MS);
}

export interface PaxosReplicaOptions {
  backend: Backend;
  /** Reads the current record for a prepare and applies commits: fenced like rep.get / rep.put. */
  replica: Replica;
  fence: Fence;
  /** The key's partition (the record store's, so states sort with their records). */
  partitionOf: (key: string) => number;
  /** Whether this node is a current or future replica of the key in its own topology. */
  owns: (key: string) => boolean;
  /** This node's topology epoch. */
  epoch: () => number;
  /** Sync state writes (the node's `fsync` setting, as for records). */
  sync: boolean;
  limits: PaxosLimits;
  maxClockSkewMs: number;
  /** Ballots older than this are refused and states at rest older than this are pruned (paxosRetentionMs). */
  retentionMs: number;
  log: Logger;
  now?: () => number;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

/** Refused before anything was touched: the proposer may count it as "certainly not processed". */
function refused(err: unknown): never {
  if (isKvError(err)) throw new KvError(err.code, err.message, { outcome: 'failed', ...(err.details ? { details: err.details } : {}) });
  throw err;
}

export function toStored(rec: PaxosRecord): StoredRecord {
  const v = rec.value;
  const value = v === null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return rec.expiresAt === undefined ? { version: rec.version, value } : { version: rec.version, value, expiresAt: rec.expiresAt };
}

export function toPaxosRecord(rec: StoredRecord | undefined): PaxosRecord | null {
  if (rec === undefined) return null;
  return rec.expiresAt === undefined ? { version: rec.version, value: rec.value } : { version: rec.version, value: rec.value, expiresAt: rec.expiresAt };
}

export interface PruneResult { scanned: number; deleted: number; finished: number }

export class PaxosReplica {
  private readonly now: () => number;
  private readonly locks = new Map<string, Promise<unknown>>();
  private inflight = 0;
  private pruneFrom = '';
  private timer: NodeJS.Timeout | undefined;
  private pruning = false;
  /** Runs a serial read of the key through the coordinator (finishes what is in progress). */
  private finisher: ((key: string) => Promise<unknown>) | undefined;
  readonly stats = { requests: 0, refused: 0, pruned: 0, finished: 0 };

  constructor(private readonly o: PaxosReplicaOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Serve cas.msg for peers. */
  register(transport: Transport): void {
    transport.handle('cas.msg', (_from, payload) => {
      if (!Array.isArray(payload) || payload.length !== 2) refused(new KvError('KV_INVALID_ARGUMENT', 'cas.msg takes [epoch, request]'));
      const epoch = payload[0];
      if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) refused(new KvError('KV_INVALID_ARGUMENT', 'invalid epoch in cas.msg'));
      let msg;
      try {
        msg = validatePaxosMessage(payload[1], this.o.limits);
      } catch (err) {
        refused(err);
      }
      if (!isPaxosRequest(msg)) refused(new KvError('KV_INVALID_ARGUMENT', `cas.msg carries requests, not ${msg.type}`));
      return this.step(msg, epoch);
    });
    transport.handle('cas.pending', (_from, payload) => {
      const p = Array.isArray(payload) && payload.length === 1 ? payload[0] : undefined;
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p > 0xffff) throw new KvError('KV_INVALID_ARGUMENT', 'cas.pending takes [partition]');
      return this.pendingKeys(p);
    });
  }

  /** Keys of partition `p` whose state here holds a proposal in progress (at most PENDING_MAX). */
  async pendingKeys(p: number): Promise<string[]> {
    const out: string[] = [];
    for await (const [k, v] of this.o.backend.range(SUBLEVELS.paxos, { gte: hex4(p), lt: hex4(p + 1) })) {
      if (this.decode(v).accepted !== null) out.push(k.slice(4));
      if (out.length >= PENDING_MAX) break;
    }
    return out;
  }

  /** How the coordinator finishes stale unfinished proposals while pruning (set at wiring). */
  setFinisher(f: (key: string) => Promise<unknown>): void {
    this.finisher = f;
  }

  /**
   * One validated request at the sender's `epoch`: the remote handler and the coordinator's
   * own copy take this same path.
   */
  async step(msg: PaxosRequest, epoch: number): Promise<PaxosReply> {
    this.stats.requests++;
    try {
      this.admit(msg, epoch);
    } catch (err) {
      this.stats.refused++;
      refused(err);
    }
    this.inflight++;
    try {
      return await this.locked(msg.key, () => this.handle(msg, epoch));
    } finally {
      this.inflight--;
    }
  }

  private admit(msg: PaxosRequest, epoch: number): void {
    if (this.inflight >= MAX_INFLIGHT) throw new KvError('KV_TOO_MANY_REQUESTS', `more than ${MAX_INFLIGHT} paxos requests in flight here`);
    this.o.fence.check(msg.key, epoch);
    if (!this.o.owns(msg.key)) {
      const local = this.o.epoch();
      if (epoch < local) throw new KvError('KV_STALE_EPOCH', `not a replica of the key at epoch ${local}`, { details: { epoch: local } });
      throw new KvError('KV_UNAVAILABLE', `this node is not a replica of the key at its epoch ${local}`);
    }
    // A far-future ballot would block the key for everyone until real time caught up with it.
    const now = this.now();
    checkVersionBound(msg.ballot, now, this.o.maxClockSkewMs);
    if (msg.type !== 'prepare') checkVersionBound(msg.record.version, now, this.o.maxClockSkewMs);
  }

  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.then(() => undefined, () => undefined);
    this.locks.set(key, tail);
    void tail.then(() => { if (this.locks.get(key) === tail) this.locks.delete(key); });
    return run;
  }

  private stateKey(key: string): string {
    return hex4(this.o.partitionOf(key)) + key;
  }

  /** The key's acceptor state (EMPTY when none), validated: a state that breaks the invariants was not written here. */
  async load(key: string): Promise<AcceptorState> {
    const buf = await this.o.backend.get(SUBLEVELS.paxos, this.stateKey(key));
    if (buf === undefined) return EMPTY_ACCEPTOR_STATE;
    return this.decode(buf);
  }

  private decode(buf: Buffer): AcceptorState {
    try {
      return validateAcceptorState(packr.unpack(buf), this.o.limits);
    } catch (err) {
      throw new KvError('KV_INTERNAL', `corrupt paxos state on disk: ${(err as Error).message}`, { cause: err });
    }
  }

  private save(key: string, state: AcceptorState): Promise<void> {
    return this.o.backend.batch([{ type: 'put', sub: SUBLEVELS.paxos, key: this.stateKey(key), value: packr.pack(state) }], this.o.sync);
  }

  /** The ballot every state implicitly promised: anything older is refused. */
  private horizon(): Version {
    return makeVersion({ wall: Math.max(0, this.now() - this.o.retentionMs), logical: 0 }, '0');
  }

  private async handle(msg: PaxosRequest, epoch: number): Promise<PaxosReply> {
    const stored = await this.load(msg.key);
    const horizon = this.horizon();
    // Refusing old ballots is what makes pruning safe: a pruned promise was older than this.
    const state = stored.promised === null || stored.promised < horizon ? { ...stored, promised: horizon } : stored;
    const current = msg.type === 'prepare' ? toPaxosRecord(await this.o.replica.read(msg.key, epoch)) : null;
    const step = handleRequest(state, msg, current);
    if (step.write !== undefined) await this.o.replica.apply(msg.key, toStored(step.write), epoch);
    if (step.changed) await this.save(msg.key, step.state);
    return step.reply;
  }

  // ---- pruning ----------------------------------------------------------------------

  start(): void {
    const tick = (): void => {
      void this.prune().catch((err: unknown) => this.o.log.debug({ err }, 'paxos state pruning failed; retried next round'))
        .finally(() => { if (this.timer !== undefined) this.timer = setTimeout(tick, PRUNE_INTERVAL_MS).unref(); });
    };
    this.timer = setTimeout(tick, PRUNE_INTERVAL_MS).unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * One pruning round over the next PRUNE_BATCH states (wrapping around): states at rest whose
   * promise is older than the horizon, or of keys this node no longer owns, are deleted;
   * unfinished proposals older than the horizon are finished by a serial read, and dropped
   * once a read after them has run.
   */
  async prune(): Promise<PruneResult> {
    const result: PruneResult = { scanned: 0, deleted: 0, finished: 0 };
    if (this.pruning) return result;
    this.pruning = true;
    try {
      const horizon = this.horizon();
      const seen: [string, string][] = [];
      for await (const [k] of this.o.backend.range(SUBLEVELS.paxos, { gt: this.pruneFrom, limit: PRUNE_BATCH })) seen.push([k, k.slice(4)]);
      this.pruneFrom = seen.length < PRUNE_BATCH ? '' : (seen[seen.length - 1] as [string, string])[0];
      result.scanned = seen.length;
      for (const [, key] of seen) {
        const verdict = await this.locked(key, () => this.pruneOne(key, horizon, false));
        if (verdict === 'deleted') result.deleted++;
        if (verdict !== 'stale' || result.finished >= PRUNE_FINISH_MAX || this.finisher === undefined) continue;
        try {
          await this.finisher(key);
        } catch (err) {
          this.o.log.debug({ err, key }, 'could not finish a stale paxos proposal; retried next round');
          continue;
        }
        result.finished++;
        if ((await this.locked(key, () => this.pruneOne(key, horizon, true))) === 'deleted') result.deleted++;
      }
      this.stats.pruned += result.deleted;
      this.stats.finished += result.finished;
      return result;
    } finally {
      this.pruning = false;
    }
  }

  /** Under the key's lock. `finished`: a serial read ran after the horizon was taken. */
  private async pruneOne(key: string, horizon: Version, finished: boolean): Promise<'kept' | 'deleted' | 'stale'> {
    const buf = await this.o.backend.get(SUBLEVELS.paxos, this.stateKey(key));
    if (buf === undefined) return 'kept';
    const s = this.decode(buf);
    const old = s.promised === null || s.promised < horizon;
    const owned = this.o.owns(key);
    const del: BatchOp = { type: 'del', sub: SUBLEVELS.paxos, key: this.stateKey(key) };
    if (s.accepted === null) {
      if (!old && owned) return 'kept';
      await this.o.backend.batch([del], this.o.sync);
      return 'deleted';
    }
    if (!owned && old) {
      // The new owners decide alone now; what is left here can never be read again.
      await this.o.backend.batch([del], this.o.sync);
      return 'deleted';
    }
    if (s.accepted.ballot >= horizon) return 'kept';
    if (!finished) return 'stale';
    // A serial read after this proposal finished it if it was chosen (and committed it to every
    // replica); if it was not, no later prepare can find it here any more once it is dropped.
    if (old) {
      await this.o.backend.batch([del], this.o.sync);
      return 'deleted';
    }
    await this.save(key, { ...s, accepted: null });
    return 'kept';
  }

  /** For tests and operators: how many keys hold Paxos state here. */
  async stateCount(): Promise<number> {
    let n = 0;
    for await (const _ of this.o.backend.range(SUBLEVELS.paxos, {})) n++;
    return n;
  }

  /** Inspect a key's state (tests). */
  async stateOf(key: string): Promise<AcceptorState | undefined> {
    const buf = await this.o.backend.get(SUBLEVELS.paxos, this.stateKey(key));
    return buf === undefined ? undefined : this.decode(buf);
  }
}
