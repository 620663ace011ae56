/**
 * The record store: write-if-newer (LWW on HLC version) over a Backend.
 *
 * Writes go through one group-commit pipeline: while one batch is being read and
 * written, later writes queue and go out together in the next batch (one LevelDB
 * getMany + one batch for all of them). That gives per-key serialization, keeps the
 * per-partition key counts and Merkle leaves (updated in the SAME batch as the records)
 * consistent without locks, and amortizes thread-pool hops and fsync.
 *
 * Bulk paths share that pipeline: `applyMany` queues a whole page of records as items of
 * the same queue (one promise for the page, each key located once), so they serialize with
 * client writes and go out in big commits (up to maxBulkBatchWrites / maxBatchBytes);
 * `dropPartition` deletes a partition chunk by chunk, each chunk one commit run between the
 * others, keeping every key a commit changed since the drop began (never a newer write).
 */
import { KvError } from '../errors.ts';
import type { Version } from '../core/hlc.ts';
import { countAfter, decideBatch, type ApplyResult, type BatchDecision, type RecordChange } from '../core/lww.ts';
import { h64 } from '../core/partitioner.ts';
import { SUBLEVELS, type Backend, type BatchOp } from './backend.ts';
import { decodeRecord, encodeRecord, type StoredRecord } from './record.ts';
import { DEFAULT_VERSION_CACHE_KEYS, VersionCache } from './version-cache.ts';

export type { RecordChange, ApplyResult } from '../core/lww.ts';

/**
 * Hook for the anti-entropy index: called inside a commit, before the batch is written;
 * the ops it returns (new leaf values) go into the same batch as the records.
 */
export interface PartitionIndex {
  /** Called before a partition's first commit; `empty`: its persisted key count is 0. */
  load(partition: number, empty: boolean): Promise<void>;
  onCommit(partition: number, changes: readonly RecordChange[]): BatchOp[];
  /** The batch of `onCommit` failed: undo its in-memory effect. */
  onAbort(partition: number, changes: readonly RecordChange[]): void;
}

export interface RecordStoreOptions {
  backend: Backend;
  /** Q: keys live in partition xxh64(key) mod Q (the low bits). */
  partitions: number;
  /** Merkle segments per partition (the top bits of the same hash); records are stored in
   *  (partition, segment, key) order so one segment is one range read. */
  segments: number;
  /** Sync each batch to disk before acknowledging. */
  sync: boolean;
  index?: PartitionIndex;
  /** Writes folded into one batch at most. Default 512: big enough to amortize a sync, small
   *  enough that one batch stays well under LevelDB's write buffer (16 MiB by default) with small values. */
  maxBatchWrites?: number;
  /** Keys whose stored version is kept in memory, so most writes skip the LevelDB read of
   *  their read-compare-write. Default 100,000 (~19 MB with 10-byte keys, lib/storage/memory-bound.ts):
   *  the hot set of a typical workload. */
  versionCacheSize?: number;
  /** Writes queued on the whole store before new ones are refused with KV_TOO_MANY_REQUESTS.
   *  Default 50,000 (≈ a few seconds of peak write rate); bounds memory under overload. */
  maxQueuedWrites?: number;
  /** Writes folded into one batch at most while the queue holds a page of `applyMany`. Default
   *  1024: fewer, bigger commits cost less CPU per record, but the synchronous part of a LevelDB
   *  batch (≈ 8-12 µs per 1 KiB record measured in-process) blocks the event loop, and 1024 keeps
   *  one commit near 10 ms, half streaming's lag target (streamLagTargetMs). */
  maxBulkBatchWrites?: number;
  /** Key and value bytes of one batch at most (its first write always goes). Default 4 MiB: a
   *  quarter of LevelDB's default write buffer, and a short block of the event loop for 64 KiB values. */
  maxBatchBytes?: number;
  /** Records deleted per commit of `dropPartition` at most. Default 1024 (as maxBulkBatchWrites: one
   *  commit blocks the event loop for a short time). */
  dropChunkRecords?: number;
  /** Keys bytes and value bytes read per chunk of `dropPartition` at most (one record always).
   *  Default 4 MiB. */
  dropChunkBytes?: number;
  /** Keys written into a partition while it is being dropped (kept, not dropped) at most; past
   *  that the drop fails with KV_TOO_MANY_REQUESTS and is retried by its caller. Default 100,000. */
  maxDropKeptKeys?: number;
}

/** One `applyMany` call: its items share this, and its promise settles once all are decided. */
interface Page {
  results: ApplyResult[];
  left: number;
  failed: boolean;
  resolve: (r: ApplyResult[]) => void;
  reject: (e: unknown) => void;
}


interface PendingWrite {
  /** Set on a marker that runs alone, with no commit in flight. */
  exclusive?: () => Promise<void>;
  key: string;
  partition: number;
  segment: number;
  rec: StoredRecord | null; // null = purge (remove entirely) if the stored version equals purgeVersion
  purgeVersion?: Version;
  /** Set on an item of `applyMany`: its page and its index there (resolve/reject unused). */
  page?: Page;
  slot?: number;
  resolve: (r: ApplyResult | undefined) => void;
  reject: (e: unknown) => void;
}

function noop(): void {
  // an item of a page is settled through its page
}

function settle(it: PendingWrite, r: ApplyResult | undefined): void {
  const page = it.page;
  if (page === undefined) { it.resolve(r); return; }
  page.results[it.slot as number] = r as ApplyResult;
  if (--page.left === 0 && !page.failed) page.resolve(page.results);
}

function fail(it: PendingWrite, err: unknown): void {
  const page = it.page;
  if (page === undefined) { it.reject(err); return; }
  if (!page.failed) { page.failed = true; page.reject(err); }
}

/** Key and value bytes of a queued write (what a batch's byte bound counts). */
function itemBytes(it: PendingWrite): number {
  return it.key.length + (it.rec?.value?.length ?? 0);
}

interface PartitionState {
  loaded: boolean;
  count: number;
}

const PARTITION_HEX = 4;
const SEGMENT_HEX = 5;
const PREFIX = PARTITION_HEX + SEGMENT_HEX;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

/** `<partition 4 hex><segment 5 hex><key>`: partitions and segments are contiguous ranges. */
export function dataKey(partition: number, segment: number, key: string): string {
  return hex(partition, PARTITION_HEX) + hex(segment, SEGMENT_HEX) + key;
}

export function partitionRange(partition: number): { gte: string; lt: string } {
  return { gte: hex(partition, PARTITION_HEX), lt: hex(partition + 1, PARTITION_HEX) };
}

function segmentRange(partition: number, segment: number): { gte: string; lt: string } {
  return { gte: hex(partition, PARTITION_HEX) + hex(segment, SEGMENT_HEX), lt: hex(partition, PARTITION_HEX) + hex(segment + 1, SEGMENT_HEX) };
}

function countKey(partition: number): string {
  return COUNT_PREFIX + hex(partition, PARTITION_HEX);
}

const COUNT_PREFIX = 'c';

export class RecordStore {
  readonly backend: Backend;
  readonly partitions: number;
  readonly segments: number;
  private readonly partitionMask: bigint;
  private readonly segmentShift: bigint;
  private readonly sync: boolean;
  private readonly index: PartitionIndex | undefined;
  private readonly maxBatchWrites: number;
  private readonly maxQueuedWrites: number;
  private readonly maxBulkBatchWrites: number;
  private readonly maxBatchBytes: number;
  private readonly dropChunkRecords: number;
  private readonly dropChunkBytes: number;
  private readonly maxDropKeptKeys: number;
  /** Items of `applyMany` pages in the queue (while any, batches may grow to maxBulkBatchWrites). */
  private queuedPageItems = 0;
  /** Partitions being dropped → keys a commit changed since their drop began (kept). */
  private readonly dropKept = new Map<number, Set<string>>();
  private readonly partitionStates = new Map<number, PartitionState>();
  private readonly queue: PendingWrite[] = [];
  /** key → stored version (null = absent). Exact for the keys it holds: this store is the only writer. */
  private readonly versions: VersionCache;
  private running = false;
  private state: 'new' | 'open' | 'closing' | 'closed' = 'new';
  private readonly drained = new Set<() => void>();

  constructor(opts: RecordStoreOptions) {
    this.backend = opts.backend;
    this.partitions = opts.partitions;
    this.segments = opts.segments;
    this.partitionMask = BigInt(opts.partitions - 1);
    this.segmentShift = BigInt(64 - Math.log2(opts.segments));
    this.sync = opts.sync;
    this.index = opts.index;
    this.maxBatchWrites = opts.maxBatchWrites ?? 512;
    this.maxQueuedWrites = opts.maxQueuedWrites ?? 50_000;
    this.maxBulkBatchWrites = Math.max(this.maxBatchWrites, opts.maxBulkBatchWrites ?? 1024);
    this.maxBatchBytes = opts.maxBatchBytes ?? 4 * 1024 * 1024;
    this.dropChunkRecords = opts.dropChunkRecords ?? 1024;
    this.dropChunkBytes = opts.dropChunkBytes ?? 4 * 1024 * 1024;
    this.maxDropKeptKeys = opts.maxDropKeptKeys ?? 100_000;
    this.versions = new VersionCache(opts.versionCacheSize ?? DEFAULT_VERSION_CACHE_KEYS);
  }

  async open(): Promise<void> {
    if (this.state !== 'new') throw new KvError('KV_STORE_NOT_OPEN', `cannot open a store that is ${this.state}`);
    await this.backend.open();
    this.state = 'open';
  }

  /** Waits for queued writes, then closes the backend. */
  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    while (this.running || this.queue.length > 0) await new Promise<void>((resolve) => this.drained.add(resolve));
    this.state = 'closed';
    await this.backend.close();
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new KvError('KV_STORE_NOT_OPEN', `store is ${this.state}`);
  }

  /** Partition and Merkle segment of a key, from one hash (must match MerkleTree.segmentOf). */
  locate(key: string): { partition: number; segment: number } {
    const h = h64(key);
    return { partition: Number(h & this.partitionMask), segment: this.segments === 1 ? 0 : Number(BigInt.asUintN(64, h) >> this.segmentShift) };
  }

  /** The stored record (tombstones included), or undefined. */
  async get(key: string): Promise<StoredRecord | undefined> {
    this.checkOpen();
    const { partition, segment } = this.locate(key);
    const buf = await this.backend.get(SUBLEVELS.data, dataKey(partition, segment, key));
    return buf === undefined ? undefined : decodeRecord(buf);
  }

  /** Write-if-newer: stores `rec` only if its version is above the stored one. */
  apply(key: string, rec: StoredRecord): Promise<ApplyResult> {
    return this.enqueue(key, rec, undefined) as Promise<ApplyResult>;
  }

  /**
   * Remove a key entirely, but only while its stored version is still `version`
   * (tombstone GC and hand-off cleanup must never drop a newer write).
   */
  async purge(key: string, version: Version): Promise<boolean> {
    return (await this.enqueue(key, null, version)) !== undefined;
  }

  private enqueue(key: string, rec: StoredRecord | null, purgeVersion: Version | undefined): Promise<ApplyResult | undefined> {
    this.checkOpen();
    if (this.queue.length >= this.maxQueuedWrites) {
      return Promise.reject(new KvError('KV_TOO_MANY_REQUESTS', `store write queue is full (${this.maxQueuedWrites})`));
    }
    const { partition, segment } = this.locate(key);
    const promise = new Promise<ApplyResult | undefined>((resolve, reject) => {
      this.queue.push(purgeVersion === undefined ? { key, partition, segment, rec, resolve, reject } : { key, partition, segment, rec, purgeVersion, resolve, reject });
    });
    if (!this.running) void this.run();
    return promise;
  }

  /**
   * Write-if-newer for a page of records already validated (a streaming page): one promise for
   * the page, each key located once, its items queued together so they go out in as few commits
   * as maxBulkBatchWrites / maxBatchBytes allow, in order with every other write. With
   * `partition`, every key must be of it (KV_FRAME_INVALID, nothing queued).
   */
  applyMany(records: ReadonlyArray<readonly [string, StoredRecord]>, opts: { partition?: number } = {}): Promise<ApplyResult[]> {
    this.checkOpen();
    if (records.length === 0) return Promise.resolve([]);
    if (this.queue.length + records.length > this.maxQueuedWrites) {
      return Promise.reject(new KvError('KV_TOO_MANY_REQUESTS', `store write queue is full (${this.maxQueuedWrites})`));
    }
    const items: PendingWrite[] = [];
    for (const [key, rec] of records) {
      const { partition, segment } = this.locate(key);
      if (opts.partition !== undefined && partition !== opts.partition) {
        return Promise.reject(new KvError('KV_FRAME_INVALID', `key of another partition in a page of partition ${opts.partition}`));
      }
      items.push({ key, partition, segment, rec, slot: items.length, resolve: noop, reject: noop });
    }
    return new Promise<ApplyResult[]>((resolve, reject) => {
      const page: Page = { results: new Array<ApplyResult>(items.length), left: items.length, failed: false, resolve, reject };
      for (const it of items) {
        it.page = page;
        this.queue.push(it);
      }
      this.queuedPageItems += items.length;
      if (!this.running) void this.run();
    });
  }

  /**
   * Delete every record of `partition` (a hand-off's drop) except the keys a commit changed
   * after the drop began: those hold writes newer than what was handed off, and stay. Records
   * are read a chunk at a time (dropChunkRecords / dropChunkBytes) beside the pipeline; each
   * chunk's deletes, key count and Merkle leaves then go out in one commit run between the
   * others, with no read of stored versions: what the chunk read is still stored unless a
   * commit changed it since, and such a key is kept. Returns the records deleted.
   */
  async dropPartition(partition: number): Promise<number> {
    this.checkOpen();
    if (this.dropKept.has(partition)) throw new KvError('KV_TOO_MANY_REQUESTS', `partition ${partition} is being dropped already`);
    const kept = new Set<string>();
    // Every commit decided from now on adds the keys it changes here before writing them; the
    // first read waits for a commit decided before (in flight now) to be written.
    this.dropKept.set(partition, kept);
    let dropped = 0;
    try {
      await this.runAlone(async () => undefined);
      const range = partitionRange(partition);
      let after: string | undefined;
      for (;;) {
        const chunk: Array<[string, Version]> = [];
        let bytes = 0;
        for await (const [k, v] of this.backend.range(SUBLEVELS.data, { ...(after === undefined ? { gte: range.gte } : { gt: after }), lt: range.lt, limit: this.dropChunkRecords })) {
          chunk.push([k, decodeRecord(v).version]);
          bytes += k.length + v.length;
          if (bytes >= this.dropChunkBytes) break;
        }
        if (chunk.length === 0) break;
        after = (chunk[chunk.length - 1] as [string, Version])[0];
        if (kept.size > this.maxDropKeptKeys) {
          throw new KvError('KV_TOO_MANY_REQUESTS', `more than ${this.maxDropKeptKeys} keys written into partition ${partition} while it was being dropped`);
        }
        dropped += await this.runAlone(() => this.dropChunk(partition, chunk, kept));
      }
    } finally {
      this.dropKept.delete(partition);
    }
    return dropped;
  }

  /** One chunk of `dropPartition`, run with no commit in flight: data keys and the versions read. */
  private async dropChunk(partition: number, chunk: ReadonlyArray<[string, Version]>, kept: ReadonlySet<string>): Promise<number> {
    this.checkOpen();
    await this.loadPartitions([partition]);
    const ops: BatchOp[] = [];
    const list: RecordChange[] = [];
    for (const [dk, version] of chunk) {
      const key = dk.slice(PREFIX);
      if (kept.has(key)) continue;
      list.push({ key, oldVersion: version, newVersion: null });
      ops.push({ type: 'del', sub: SUBLEVELS.data, key: dk });
    }
    if (list.length === 0) return 0;
    await this.writeChanges(ops, new Map([[partition, list]]));
    for (const c of list) this.versions.set(c.key, null);
    return list.length;
  }

  /** Run `fn` with every commit held back (scrub of a partition's tree). */
  exclusive(_partition: number, fn: () => Promise<void>): Promise<void> {
    return this.runAlone(fn);
  }

  /** Run `fn` alone in the pipeline, between commits; its result settles the promise. */
  private runAlone<T>(fn: () => Promise<T>): Promise<T> {
    this.checkOpen();
    const done = new Promise<T>((resolve, reject) => {
      this.queue.push({ exclusive: async () => resolve(await fn()), key: '', partition: 0, segment: 0, rec: null, resolve: noop, reject });
    });
    if (!this.running) void this.run();
    return done;
  }

  /**
   * The single writer: while one batch is being read and written, new writes queue up
   * and go out together in the next (group commit). One writer gives per-key
   * serialization, ordered Merkle-leaf updates and one LevelDB read + one batch for many
   * writes, whatever partitions they fall in.
   */
  private async run(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      // Let the poll phase finish first: writes arriving from every socket that is readable
      // now join this batch instead of waiting behind a batch of one. One LevelDB batch costs
      // a thread-pool round trip however few writes it holds (bench/profile.md).
      if (this.queue.length < this.maxBatchWrites) await new Promise<void>((resolve) => setImmediate(resolve));
      const first = this.queue[0] as PendingWrite;
      if (first.exclusive) {
        this.queue.shift();
        try {
          await first.exclusive();
          first.resolve(undefined);
        } catch (err) {
          first.reject(err);
        }
        continue;
      }
      // Bounded in writes (more while a page of applyMany waits) and in bytes; the first always goes.
      const limit = this.queuedPageItems > 0 ? this.maxBulkBatchWrites : this.maxBatchWrites;
      let n = 0;
      let bytes = 0;
      while (n < this.queue.length && n < limit) {
        const it = this.queue[n] as PendingWrite;
        if (it.exclusive) break;
        bytes += itemBytes(it);
        if (n > 0 && bytes > this.maxBatchBytes) break;
        n++;
      }
      const items = this.queue.splice(0, n);
      for (const it of items) if (it.page) this.queuedPageItems--;
      try {
        await this.commit(items);
      } catch (err) {
        for (const it of items) fail(it, err);
      }
    }
    this.running = false;
    for (const d of this.drained) { this.drained.delete(d); d(); }
  }

  private partitionState(p: number): PartitionState {
    let st = this.partitionStates.get(p);
    if (!st) {
      st = { loaded: false, count: 0 };
      this.partitionStates.set(p, st);
    }
    return st;
  }

  /** One group commit: decide (pure, lib/core/lww.ts), then write records, counts and Merkle leaves in one batch. */
  private async commit(items: PendingWrite[]): Promise<void> {
    await this.loadPartitions(new Set(items.map((it) => it.partition)));
    const where = new Map<string, PendingWrite>();
    for (const it of items) if (!where.has(it.key)) where.set(it.key, it);
    const dk = (k: string): string => { const w = where.get(k) as PendingWrite; return dataKey(w.partition, w.segment, k); };
    const d = decideBatch(items, await this.storedVersions([...where.keys()], dk));
    if (this.dropKept.size > 0) {
      for (const [p, list] of d.changes) {
        const kept = this.dropKept.get(p);
        if (kept) for (const c of list) kept.add(c.key);
      }
    }
    if (d.changes.size > 0) await this.writeBatch(d, dk);
    for (const [k, v] of d.versions) this.versions.set(k, v);
    items.forEach((it, i) => settle(it, d.results[i]));
  }

  /** Key counts and Merkle leaves of partitions the batch touches for the first time. */
  private async loadPartitions(partitions: Iterable<number>): Promise<void> {
    const loads: Promise<void>[] = [];
    for (const p of partitions) {
      const st = this.partitionState(p);
      if (st.loaded) continue;
      loads.push((async () => {
        const c = await this.backend.get(SUBLEVELS.merkle, countKey(p));
        st.count = c === undefined ? 0 : c.readUInt32BE(0);
        await this.index?.load(p, st.count === 0);
        st.loaded = true;
      })());
    }
    if (loads.length > 0) await Promise.all(loads);
  }

  private async writeBatch(d: BatchDecision<StoredRecord>, dk: (k: string) => string): Promise<void> {
    const ops: BatchOp[] = [];
    for (const [k, rec] of d.writes) {
      ops.push(rec === null
        ? { type: 'del', sub: SUBLEVELS.data, key: dk(k) }
        : { type: 'put', sub: SUBLEVELS.data, key: dk(k), value: encodeRecord(rec) });
    }
    await this.writeChanges(ops, d.changes);
  }

  /** Write `ops` with the key counts and Merkle leaves of `changes`, in one batch. */
  private async writeChanges(ops: BatchOp[], changes: ReadonlyMap<number, readonly RecordChange[]>): Promise<void> {
    const counts = new Map<number, number>();
    for (const [p, list] of changes) {
      const count = countAfter(this.partitionState(p).count, list);
      counts.set(p, count);
      const cbuf = Buffer.allocUnsafe(4);
      cbuf.writeUInt32BE(count, 0);
      ops.push({ type: 'put', sub: SUBLEVELS.merkle, key: countKey(p), value: cbuf });
      if (this.index) ops.push(...this.index.onCommit(p, list));
    }
    try {
      await this.backend.batch(ops, this.sync);
    } catch (err) {
      for (const [p, list] of changes) this.index?.onAbort(p, list);
      throw err;
    }
    for (const [p, count] of counts) this.partitionState(p).count = count;
  }

  /** Stored versions of `keys`: from the version cache, the misses in one LevelDB read. */
  private async storedVersions(keys: readonly string[], dk: (k: string) => string): Promise<Map<string, Version | null>> {
    const out = new Map<string, Version | null>();
    const misses: string[] = [];
    for (const k of keys) {
      const v = this.versions.get(k);
      if (v === undefined) misses.push(k);
      else out.set(k, v);
    }
    if (misses.length > 0) {
      const stored = await this.backend.getMany(SUBLEVELS.data, misses.map(dk));
      misses.forEach((k, i) => {
        const buf = stored[i];
        out.set(k, buf === undefined ? null : decodeRecord(buf).version);
      });
    }
    return out;
  }

  /** Stored records (tombstones included) of one partition in key order, from `after` on. */
  async *scanPartition(partition: number, opts: { after?: string; limit?: number } = {}): AsyncIterable<[string, StoredRecord]> {
    this.checkOpen();
    const range = partitionRange(partition);
    const from = opts.after === undefined ? { gte: range.gte } : { gt: dataKey(partition, this.locate(opts.after).segment, opts.after) };
    for await (const [k, v] of this.backend.range(SUBLEVELS.data, { ...from, lt: range.lt, limit: opts.limit ?? -1 })) {
      yield [k.slice(PREFIX), decodeRecord(v)];
    }
  }

  /** Stored records (tombstones included) of one Merkle segment of a partition. */
  async *scanSegment(partition: number, segment: number): AsyncIterable<[string, StoredRecord]> {
    this.checkOpen();
    for await (const [k, v] of this.backend.range(SUBLEVELS.data, segmentRange(partition, segment))) {
      yield [k.slice(PREFIX), decodeRecord(v)];
    }
  }

  /** Records (tombstones included) held for a partition, from the persisted counter. */
  async partitionKeyCount(partition: number): Promise<number> {
    this.checkOpen();
    const st = this.partitionStates.get(partition);
    if (st?.loaded) return st.count;
    const c = await this.backend.get(SUBLEVELS.merkle, countKey(partition));
    return c === undefined ? 0 : c.readUInt32BE(0);
  }
}
