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
import { ReadTracker, WriteTracker, required, type QuorumSpec, type WriteDecision } from '../core/quorum.ts';
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
  catchUp: (epoch: number, deadlineMs: number) => Promise<void>;
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
  /** The partition's whole preference list: fallbacks follow the replicas (see fallbacks()). */
  preference: readonly string[];
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
    return { epoch: t.epoch, replicas, extra, preference: current.preference[p] ?? [] };
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
      const live: string[] = [];
      const down: string[] = [];
      for (const id of plan.replicas) (this.alive(id) ? live : down).push(id);
      const fallbacks = opts.sloppy && this.d.hints !== undefined && down.length > 0 ? this.fallbacks(plan) : [];
      const sloppyCapacity = Math.min(down.length, fallbacks.length);
      if (live.length + sloppyCapacity < need) {
        throw new KvError('KV_UNAVAILABLE', `w=${need} but only ${live.length} of ${plan.replicas.length} replicas are alive; nothing was written`,
          { outcome: sentSomewhere ? 'unknown' : 'failed' });
      }
      const { decision, tracker } = await this.replicate(key, rec, plan, live, down, fallbacks, need, deadline, opts.signal);
      sentSomewhere ||= tracker.maybeApplied;
      if (decision.result === 'ok') return { version: rec.version };
      if (decision.staleEpoch !== undefined && attempt < MAX_EPOCH_RETRIES && this.now() < deadline) {
        await this.d.catchUp(decision.staleEpoch, deadline);
        continue;
      }
      if (!sentSomewhere) {
        throw new KvError('KV_UNAVAILABLE', `could not reach enough replicas (${tracker.ackCount}/${need}); nothing was written`, { outcome: 'failed' });
      }
      if (decision.result === 'unknown' && decision.reason === 'timeout') {
        throw new KvError('KV_TIMEOUT', `only ${tracker.ackCount} of ${need} replicas acknowledged within ${this.d.requestTimeoutMs} ms; the write may still surface`, { outcome: 'unknown' });
      }
      throw new KvError('KV_QUORUM_NOT_MET', `only ${tracker.ackCount} of ${need} replicas acknowledged; the write may still surface`, { outcome: 'unknown' });
    }
  }

  /**
   * Sends the record to every live replica (and pending owners, and sloppy hints for the
   * down ones) and resolves with the tracker's decision as soon as it is known or at the
   * deadline. Replicas that did not ack get a hint in the background once every answer
   * is in, unless the write is reported failed.
   */
  private replicate(key: string, rec: StoredRecord, plan: Plan, live: readonly string[], down: readonly string[],
    sloppyFallbacks: readonly string[], need: number, deadline: number, signal: AbortSignal | undefined): Promise<{ decision: WriteDecision; tracker: WriteTracker }> {
    const tracker = new WriteTracker(need);
    const wire = [key, recordToWire(rec), plan.epoch];
    const targets: Array<[string, boolean, () => Promise<unknown>]> = [];
    for (const id of live) targets.push([id, true, () => this.sendPut(id, key, rec, wire, deadline)]);
    for (const id of plan.extra) if (this.alive(id)) targets.push([id, false, () => this.sendPut(id, key, rec, wire, deadline)]);
    // Sloppy quorum: a hint on a live fallback stands in for each down replica (empty list otherwise).
    down.forEach((target, i) => {
      const fb = sloppyFallbacks[i];
      if (fb) targets.push([`hint:${target}`, true, () => this.storeHint(fb, target, key, rec, deadline).then((ok) => {
        if (!ok) throw new KvError('KV_UNAVAILABLE', 'hint refused', { outcome: 'failed' });
      })]);
    });
    return new Promise((resolve) => {
      let settled = false;
      const settle = (decision: WriteDecision): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve({ decision, tracker });
      };
      const onAbort = (): void => settle(tracker.expire());
      const timer = setTimeout(onAbort, Math.max(0, deadline - this.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      let hinted = false;
      for (const [id, counts] of targets) tracker.send(id, counts);
      for (const [id, , send] of targets) {
        send().then(() => tracker.record(id, { kind: 'ack' }), (err: unknown) => {
          const kv = isKvError(err) ? err : new KvError('KV_INTERNAL', String(err));
          tracker.record(id, mayHaveApplied(kv) ? { kind: 'lost' }
            : kv.code === 'KV_STALE_EPOCH' ? { kind: 'refused', staleEpoch: Number(kv.details?.['epoch'] ?? 0) } : { kind: 'refused' });
        }).finally(() => {
          const d = tracker.decision();
          if (d) settle(d);
          if (tracker.pending === 0 && !hinted) {
            hinted = true;
            this.hintMissing(key, rec, plan, tracker);
          }
        });
      }
      const d = tracker.decision();
      if (d) settle(d);
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
  private hintMissing(key: string, rec: StoredRecord, plan: Plan, tracker: WriteTracker): void {
    if (!this.d.hints) return;
    const missing = tracker.hintTargets(plan.replicas);
    if (missing.length === 0) return;
    const fallback = this.fallbacks(plan)[0] ?? this.d.selfId;
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
      const { tracker, records, timedOut } = await this.gather(key, plan, live, need, deadline, opts.signal);
      if (tracker.decision() === 'ok') {
        const from = tracker.best.from;
        const best = from === undefined ? undefined : records.get(from) ?? undefined;
        if (!best || best.value === null || (best.expiresAt !== undefined && best.expiresAt <= this.now())) return undefined;
        return { value: best.value, version: best.version };
      }
      if (tracker.staleEpoch !== undefined && attempt < MAX_EPOCH_RETRIES && this.now() < deadline) {
        await this.d.catchUp(tracker.staleEpoch, deadline);
        continue;
      }
      if (timedOut) throw new KvError('KV_TIMEOUT', `only ${tracker.replies.size} of ${need} replicas answered within ${this.d.requestTimeoutMs} ms`);
      throw new KvError('KV_UNAVAILABLE', `only ${tracker.replies.size} of ${need} replicas answered`);
    }
  }

  /**
   * Asks the first `need` replicas (this node first, then live before suspect), adds the
   * next one whenever one fails, and all the rest if the answer is slow (speculative
   * retry), so a paused replica costs a short delay rather than the whole deadline.
   */
  private gather(key: string, plan: Plan, live: readonly string[], need: number, deadline: number, signal: AbortSignal | undefined):
    Promise<{ tracker: ReadTracker; records: Map<string, StoredRecord | null>; timedOut: boolean }> {
    const tracker = new ReadTracker(need, [...live].sort((a, b) => this.readRank(a) - this.readRank(b)));
    const records = new Map<string, StoredRecord | null>();
    return new Promise((resolve) => {
      let settled = false;
      const settle = (timedOut: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(speculative);
        signal?.removeEventListener('abort', onAbort);
        resolve({ tracker, records, timedOut });
      };
      const onAbort = (): void => settle(true);
      const timer = setTimeout(onAbort, Math.max(0, deadline - this.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      const ask = (ids: string[]): void => {
        for (const id of ids) {
          this.readOne(id, key, plan.epoch, deadline).then((rec) => {
            records.set(id, rec);
            tracker.reply(id, rec ? rec.version : null);
          }, (err: unknown) => {
            const stale = isKvError(err, 'KV_STALE_EPOCH') ? Number(err.details?.['epoch'] ?? 0) : undefined;
            if (!settled) ask(tracker.fail(id, stale));
            else tracker.fail(id, stale);
          }).finally(() => {
            if (tracker.decision()) settle(false);
            if (tracker.outstanding === 0) this.repair(key, plan.epoch, tracker, records);
          });
        }
      };
      const speculative = setTimeout(() => { if (!settled) ask(tracker.speculate()); }, SPECULATIVE_READ_MS);
      ask(tracker.start());
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

  /** Read repair: push the winning record to every consulted replica that answered with less. */
  private repair(key: string, epoch: number, tracker: ReadTracker, records: Map<string, StoredRecord | null>): void {
    const from = tracker.best.from;
    const best = from === undefined ? undefined : records.get(from);
    if (!this.d.readRepair || !best) return;
    const stale = tracker.repairTargets();
    if (stale.length === 0) return;
    this.d.onReadRepair?.(stale.length);
    const wire = [key, recordToWire(best), epoch];
    const deadline = this.now() + this.d.requestTimeoutMs;
    for (const id of stale) {
      this.sendPut(id, key, best, wire, deadline).catch((err: unknown) => this.d.log.debug({ err, id, key }, 'read repair failed'));
    }
  }
}
