/**
 * The coordinator (DESIGN.md §8): any node answers any key. It finds the key's
 * replicas for the current epoch, contacts the live ones in parallel and answers after
 * W acks (writes) or R replies (reads), keeping the outcome honest (§2):
 *   - fewer live replicas than required → KV_UNAVAILABLE, nothing sent ("failed");
 *   - sent, but fewer than W acks → KV_QUORUM_NOT_MET or KV_TIMEOUT ("unknown"),
 *     unless no replica can have applied it (every attempt failed before sending).
 * Reads return the highest version and repair stale replicas in the background.
 */
import { KvError, isKvError } from '../errors.ts';
import { compareVersions, makeVersion, type Hlc, type Version } from '../core/hlc.ts';
import { partitionOf, replicasOf } from '../core/partitioner.ts';
import { required, type QuorumSpec } from '../core/quorum.ts';
import type { Topology } from '../core/topology.ts';
import type { KvService, ReadOptions, ReadResult, WriteOptions } from '../api/service.ts';
import { recordToWire, validateRecord, type StoredRecord } from '../storage/record.ts';
import type { RecordStore } from '../storage/record-store.ts';
import type { Transport } from '../net/transport.ts';
import type { HintStore } from './hints.ts';
import type { Fence } from './replica.ts';
import type { Logger } from './log.ts';

export interface CoordinatorDeps {
  selfId: string;
  store: RecordStore;
  transport: Transport;
  hlc: Hlc;
  hints: HintStore | undefined;
  fence: Fence;
  log: Logger;
  topology: () => Topology;
  /** Resolves once the local topology reaches `epoch` (or rejects after a bounded wait). */
  catchUp: (epoch: number) => Promise<void>;
  isAlive: (id: string) => boolean;
  /** Suspected by gossip (still tried, but last). */
  isSuspect?: (id: string) => boolean;
  defaults: { w: number; r: number };
  requestTimeoutMs: number;
  readRepair: boolean;
  onReadRepair?: (n: number) => void;
  now?: () => number;
}

/** A read still short of R replies after this long also asks the remaining replicas
 *  (Cassandra's speculative retry). 50 ms is far above a healthy LAN read and far below the deadline. */
const SPECULATIVE_READ_MS = 50;

/** Stale-epoch retries inside one client request. 3: one catch-up normally suffices; more means churn. */
const MAX_EPOCH_RETRIES = 3;

/** Refusals a replica (or the transport) gives before touching the store. */
const REFUSED_BEFORE_APPLY = new Set(['KV_STALE_EPOCH', 'KV_TOO_MANY_REQUESTS', 'KV_INVALID_ARGUMENT', 'KV_INVALID_KEY',
  'KV_VALUE_TOO_LARGE', 'KV_STORE_NOT_OPEN', 'KV_CLOCK_SKEW', 'KV_UNAUTHORIZED', 'KV_FRAME_TOO_LARGE', 'KV_CLOSED']);

/** Whether a failed replica write may still have been applied (lost answer, timeout, crash mid-way). */
export function mayHaveApplied(err: KvError): boolean {
  if (err.outcome === 'failed') return false;
  if (err.outcome === 'unknown') return true;
  return !REFUSED_BEFORE_APPLY.has(err.code);
}

interface Plan {
  epoch: number;
  replicas: readonly string[];
  /** Pending owners (joining nodes) that also receive writes but do not count toward W. */
  extra: string[];
  /** Live fallbacks in preference order, for hints. */
  fallbacks: string[];
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
    const extra = future === current ? [] : replicasOf(future, p).filter((id) => !replicas.includes(id));
    const pref = current.preference[p] ?? [];
    const fallbacks = pref.slice(replicas.length).filter((id) => this.alive(id));
    return { epoch: t.epoch, replicas, extra, fallbacks };
  }

  private alive(id: string): boolean {
    return id === this.d.selfId || this.d.isAlive(id);
  }

  private need(spec: QuorumSpec | undefined, def: number, replicas: number): number {
    // The configured default shrinks with small clusters (a 1-node dev cluster answers with defaults);
    // an explicit number is taken as asked.
    return spec === undefined ? Math.min(def, replicas) : required(spec, replicas);
  }

  put(key: string, value: Buffer, opts: WriteOptions): Promise<{ version: Version }> {
    return this.write(key, value, opts);
  }

  del(key: string, opts: WriteOptions): Promise<{ version: Version }> {
    return this.write(key, null, opts);
  }

  private async write(key: string, value: Buffer | null, opts: WriteOptions): Promise<{ version: Version }> {
    const rec: StoredRecord = { version: makeVersion(this.d.hlc.now(this.now()), this.d.selfId), value };
    const deadline = this.now() + this.d.requestTimeoutMs;
    let sentSomewhere = false;
    for (let attempt = 0; ; attempt++) {
      const plan = this.plan(key);
      const need = this.need(opts.w, this.d.defaults.w, plan.replicas.length);
      if (need > plan.replicas.length) {
        throw new KvError('KV_UNAVAILABLE', `w=${need} but the key has only ${plan.replicas.length} replicas`, { outcome: sentSomewhere ? 'unknown' : 'failed' });
      }
      const live = plan.replicas.filter((id) => this.alive(id));
      const down = plan.replicas.filter((id) => !this.alive(id));
      const hintsUsable = this.d.hints !== undefined;
      const sloppyCapacity = opts.sloppy && hintsUsable ? Math.min(down.length, plan.fallbacks.length) : 0;
      if (live.length + sloppyCapacity < need) {
        throw new KvError('KV_UNAVAILABLE', `w=${need} but only ${live.length} of ${plan.replicas.length} replicas are alive; nothing was written`,
          { outcome: sentSomewhere ? 'unknown' : 'failed' });
      }
      const result = await this.replicate(key, rec, plan, live, down, need, !!opts.sloppy, deadline, opts.signal);
      sentSomewhere ||= result.maybeApplied;
      if (result.acks >= need) return { version: rec.version };
      if (result.staleEpoch !== undefined && attempt < MAX_EPOCH_RETRIES && this.now() < deadline) {
        await this.d.catchUp(result.staleEpoch);
        continue;
      }
      if (!sentSomewhere) {
        throw new KvError('KV_UNAVAILABLE', `could not reach enough replicas (${result.acks}/${need}); nothing was written`, { outcome: 'failed' });
      }
      if (result.timedOut) {
        throw new KvError('KV_TIMEOUT', `only ${result.acks} of ${need} replicas acknowledged within ${this.d.requestTimeoutMs} ms; the write may still surface`, { outcome: 'unknown' });
      }
      throw new KvError('KV_QUORUM_NOT_MET', `only ${result.acks} of ${need} replicas acknowledged; the write may still surface`, { outcome: 'unknown' });
    }
  }

  /**
   * Sends the record to every live replica (and pending owners), hints for the down
   * ones, and resolves as soon as `need` acks are in, or when nothing more can come.
   * Replicas that did not ack by then get a hint in the background.
   */
  private replicate(key: string, rec: StoredRecord, plan: Plan, live: readonly string[], down: readonly string[], need: number,
    sloppy: boolean, deadline: number, signal: AbortSignal | undefined):
    Promise<{ acks: number; maybeApplied: boolean; timedOut: boolean; staleEpoch: number | undefined }> {
    return new Promise((resolve) => {
      let acks = 0;
      let outstanding = 0;
      let maybeApplied = false;
      let staleEpoch: number | undefined;
      let settled = false;
      const acked = new Set<string>();
      const wire = [key, recordToWire(rec), plan.epoch];
      const finish = (timedOut: boolean): void => {
        if (settled) return;
        settled = true;
        // Requests still in flight at the deadline may yet be applied.
        if (timedOut && outstanding > 0) maybeApplied = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve({ acks, maybeApplied, timedOut, staleEpoch });
      };
      const onAbort = (): void => finish(true);
      const timer = setTimeout(() => finish(true), Math.max(0, deadline - this.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      const track = (id: string, counts: boolean, p: Promise<unknown>): void => {
        outstanding++;
        p.then(() => {
          maybeApplied = true;
          acked.add(id);
          if (counts) acks++;
        }, (err: unknown) => {
          const kv = isKvError(err) ? err : new KvError('KV_INTERNAL', String(err));
          if (mayHaveApplied(kv)) maybeApplied = true;
          if (kv.code === 'KV_STALE_EPOCH') staleEpoch = Math.max(staleEpoch ?? 0, Number(kv.details?.['epoch'] ?? 0));
        }).finally(() => {
          outstanding--;
          if (acks >= need || outstanding === 0) {
            finish(false);
            // A write reported as failed must never surface later, so it leaves no hints.
            if (outstanding === 0 && (acks >= need || maybeApplied)) this.hintMissing(key, rec, plan, acked, sloppy);
          }
        });
      };
      for (const id of live) track(id, true, this.sendPut(id, key, rec, wire, deadline));
      for (const id of plan.extra) if (this.alive(id)) track(id, false, this.sendPut(id, key, rec, wire, deadline));
      if (sloppy && this.d.hints) {
        down.forEach((target, i) => {
          const fb = plan.fallbacks[i];
          if (fb) track(`hint:${target}`, true, this.storeHint(fb, target, key, rec, deadline).then((ok) => {
            if (!ok) throw new KvError('KV_UNAVAILABLE', 'hint refused', { outcome: 'failed' });
          }));
        });
      }
      if (outstanding === 0) finish(false);
    });
  }

  private sendPut(id: string, key: string, rec: StoredRecord, wire: unknown[], deadline: number): Promise<unknown> {
    if (id === this.d.selfId) {
      return Promise.resolve().then(() => {
        this.d.fence.check(key, wire[2] as number);
        return this.d.store.apply(key, rec);
      });
    }
    return this.d.transport.request(id, 'rep.put', wire, { timeoutMs: Math.max(1, deadline - this.now()) });
  }

  private storeHint(fallback: string, target: string, key: string, rec: StoredRecord, deadline: number): Promise<boolean> {
    const hints = this.d.hints as HintStore;
    if (fallback === this.d.selfId) return hints.add(target, key, rec);
    return this.d.transport.request<boolean>(fallback, 'hint.put', [target, key, recordToWire(rec)], { timeoutMs: Math.max(1, deadline - this.now()) });
  }

  /** Background: replicas (current owners) that did not ack get a hint, unless hints are off. */
  private hintMissing(key: string, rec: StoredRecord, plan: Plan, acked: Set<string>, sloppy: boolean): void {
    if (!this.d.hints) return;
    const missing = plan.replicas.filter((id) => !acked.has(id) && !(sloppy && acked.has(`hint:${id}`)));
    if (missing.length === 0) return;
    const fallback = plan.fallbacks[0] ?? this.d.selfId;
    for (const target of missing) {
      this.storeHint(target === fallback ? this.d.selfId : fallback, target, key, rec, this.now() + this.d.requestTimeoutMs)
        .catch((err: unknown) => this.d.log.debug({ err, target }, 'hint not stored'));
    }
  }

  async get(key: string, opts: ReadOptions): Promise<ReadResult | undefined> {
    const deadline = this.now() + this.d.requestTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const plan = this.plan(key);
      const need = this.need(opts.r, this.d.defaults.r, plan.replicas.length);
      if (need > plan.replicas.length) throw new KvError('KV_UNAVAILABLE', `r=${need} but the key has only ${plan.replicas.length} replicas`);
      const live = plan.replicas.filter((id) => this.alive(id));
      if (live.length < need) throw new KvError('KV_UNAVAILABLE', `r=${need} but only ${live.length} of ${plan.replicas.length} replicas are alive`);
      const res = await this.gather(key, plan, live, need, deadline, opts.signal);
      if (res.replies.size >= need) {
        const best = res.best;
        if (!best || best.value === null || (best.expiresAt !== undefined && best.expiresAt <= this.now())) return undefined;
        return { value: best.value, version: best.version };
      }
      if (res.staleEpoch !== undefined && attempt < MAX_EPOCH_RETRIES && this.now() < deadline) {
        await this.d.catchUp(res.staleEpoch);
        continue;
      }
      if (res.timedOut) throw new KvError('KV_TIMEOUT', `only ${res.replies.size} of ${need} replicas answered within ${this.d.requestTimeoutMs} ms`);
      throw new KvError('KV_UNAVAILABLE', `only ${res.replies.size} of ${need} replicas answered`);
    }
  }

  /**
   * Asks the first `need` replicas (this node first, then live before suspect), adds the
   * next one whenever one fails, and all the rest if the answer is slow (speculative
   * retry), so a paused replica costs a short delay rather than the whole deadline.
   */
  private gather(key: string, plan: Plan, live: readonly string[], need: number, deadline: number, signal: AbortSignal | undefined):
    Promise<{ replies: Map<string, StoredRecord | null>; best: StoredRecord | undefined; timedOut: boolean; staleEpoch: number | undefined }> {
    const order = [...live].sort((a, b) => this.readRank(a) - this.readRank(b));
    return new Promise((resolve) => {
      const replies = new Map<string, StoredRecord | null>();
      let best: StoredRecord | undefined;
      let outstanding = 0;
      let next = 0;
      let staleEpoch: number | undefined;
      let settled = false;
      const finish = (timedOut: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(speculative);
        signal?.removeEventListener('abort', onAbort);
        resolve({ replies: new Map(replies), best, timedOut, staleEpoch });
      };
      const onAbort = (): void => finish(true);
      const timer = setTimeout(() => finish(true), Math.max(0, deadline - this.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      const ask = (): void => {
        const id = order[next++] as string;
        outstanding++;
        this.readOne(id, key, plan.epoch, deadline).then((rec) => {
          replies.set(id, rec);
          if (rec && (!best || compareVersions(rec.version, best.version) > 0)) best = rec;
        }, (err: unknown) => {
          if (isKvError(err, 'KV_STALE_EPOCH')) staleEpoch = Math.max(staleEpoch ?? 0, Number(err.details?.['epoch'] ?? 0));
          else if (next < order.length && !settled) ask();
        }).finally(() => {
          outstanding--;
          if (replies.size >= need) finish(false);
          if (outstanding === 0) {
            finish(false);
            this.repair(key, plan.epoch, replies, best);
          }
        });
      };
      const speculative = setTimeout(() => {
        while (!settled && next < order.length) ask();
      }, SPECULATIVE_READ_MS);
      while (next < Math.min(need, order.length)) ask();
    });
  }

  /** Read order: this node (no network hop), then live members, then suspects. */
  private readRank(id: string): number {
    if (id === this.d.selfId) return 0;
    return this.d.isSuspect?.(id) ? 2 : 1;
  }

  private async readOne(id: string, key: string, epoch: number, deadline: number): Promise<StoredRecord | null> {
    if (id === this.d.selfId) {
      this.d.fence.check(key, epoch);
      return (await this.d.store.get(key)) ?? null;
    }
    const wire = await this.d.transport.request(id, 'rep.get', [key, epoch], { timeoutMs: Math.max(1, deadline - this.now()) });
    if (wire === null) return null;
    const rec = validateRecord(wire);
    if (!rec) throw new KvError('KV_INTERNAL', `malformed record from ${id}`);
    return rec;
  }

  /** Read repair: push the winning record to every replica that answered with less. */
  private repair(key: string, epoch: number, replies: Map<string, StoredRecord | null>, best: StoredRecord | undefined): void {
    if (!this.d.readRepair || !best) return;
    const stale = [...replies].filter(([, rec]) => !rec || compareVersions(rec.version, best.version) < 0).map(([id]) => id);
    if (stale.length === 0) return;
    this.d.onReadRepair?.(stale.length);
    const wire = [key, recordToWire(best), epoch];
    const deadline = this.now() + this.d.requestTimeoutMs;
    for (const id of stale) {
      this.sendPut(id, key, best, wire, deadline).catch((err: unknown) => this.d.log.debug({ err, id, key }, 'read repair failed'));
    }
  }
}
