/**
 * Listing keys: `GET /kv?prefix=P&limit=L&cursor=C` (ListService) and the peer request it
 * is built on (lib/core/listing.ts has the merge and the cursor):
 *   list.scan  [partition, epoch, after|null, prefix, maxEntries]
 *              → [[[key, version, tombstone, expiresAt|null]...], reached|null, done]
 *
 * A page walks partitions from the cursor on; each partition is read from R of its current
 * replicas (at the coordinator's epoch, fenced like every data request), so every key
 * acknowledged at W before the listing reached it is found (R + W > N); tombstones and
 * expired records are left out. The cost is a scan of every record of every partition on R
 * replicas, prefix or not (records are stored by partition and hash segment, not by key), so
 * it is bounded and throttled at both ends:
 *   - a page returns at most `limit` keys (default 100, max 1000), 1 MiB of keys, finishes at
 *     most 1024 partitions (8 scanned ahead in parallel) and stops after 2 s, answering what
 *     it has with a cursor (a page can be short, even empty, while the cursor is not null;
 *     only a null cursor means done);
 *   - a replica reads at most 4096 records or 16 MiB per request and returns at most 1000
 *     entries or 512 KiB, with at most 8 scans running and 64 waiting on one node;
 *   - a coordinator runs at most 4 pages at once; more get 429 KV_TOO_MANY_REQUESTS.
 */
import { KvError, isKvError } from '../errors.ts';
import { isVersion } from '../core/hlc.ts';
import { replicasOf } from '../core/partitioner.ts';
import { required, type QuorumSpec } from '../core/quorum.ts';
import { decodeCursor, encodeCursor, mergeScans, type ListCursor, type MergedScan, type ScanAnswer, type ScanEntry } from '../core/listing.ts';
import type { Topology } from '../core/topology.ts';
import type { ListOptions, ListPage, ListService } from '../api/service.ts';
import { LIST_MAX_LIMIT } from '../api/kv-params.ts';
import { dataKey, type RecordStore } from '../storage/record-store.ts';
import type { Transport } from '../net/transport.ts';
import { validateKey } from './replica.ts';

/** Key bytes per page at most (keys can be 1 KiB each). */
const PAGE_MAX_KEY_BYTES = 1024 * 1024;
/** Partitions a page finishes at most: a sparse prefix costs several short pages, not one unbounded one. */
const PAGE_MAX_PARTITIONS = 1024;
/** Partitions scanned ahead, in parallel, while the page is filled in order: most partitions of a sparse prefix are empty, and one round trip each in turn would make a page slow. */
const PAGE_PREFETCH = 8;
/** Scan requests one page makes at most (partitions with many non-matching records take several). */
const PAGE_MAX_SCANS = 1024;
/** Wall time after which a page answers with what it has (and a cursor). Below the client deadlines. */
const PAGE_TIME_BUDGET_MS = 2000;
/** Pages in flight on one coordinator. */
const MAX_PAGES_IN_FLIGHT = 4;
/** Records one replica reads per scan request: a few ms of LevelDB iteration. */
const SCAN_MAX_RECORDS = 4096;
/** Record bytes (values included: the store keeps them with the key) one scan request reads at most. */
const SCAN_MAX_READ_BYTES = 16 * 1024 * 1024;
/** Entry bytes per scan answer: a quarter of the peer frame limit. */
const SCAN_MAX_BYTES = 512 * 1024;
/** Scans running at once on one replica, and waiting behind them before KV_TOO_MANY_REQUESTS. */
const SCANS_RUNNING = 8;
const SCANS_WAITING = 64;
/** Stale-epoch retries of one partition scan: one catch-up normally suffices. */
const MAX_SCAN_ATTEMPTS = 3;

export interface ListDeps {
  selfId: string;
  transport: Transport;
  store: RecordStore;
  /** Refuses scans at an epoch older than the partition's last ownership change. */
  fence: { checkPartition(partition: number, epoch: number): void };
  topology: () => Topology;
  catchUp: (epoch: number, deadlineMs: number) => Promise<void>;
  isAlive: (id: string) => boolean;
  /** Default replicas read per partition (the configured R). */
  defaultR: number;
  maxKeyBytes: number;
  requestTimeoutMs: number;
  now?: () => number;
}

/** A counting semaphore with a bounded queue. */
class Gate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number, private readonly maxWaiting: number, private readonly what: string) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) {
      if (this.waiting.length >= this.maxWaiting) throw new KvError('KV_TOO_MANY_REQUESTS', `too many ${this.what} in flight; retry later`, { outcome: 'failed' });
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

function parseScanAnswer(raw: unknown, maxEntries: number, maxKeyBytes: number): ScanAnswer {
  const bad = (): never => { throw new KvError('KV_INTERNAL', 'malformed list.scan answer'); };
  if (!Array.isArray(raw) || raw.length !== 3 || !Array.isArray(raw[0]) || raw[0].length > maxEntries || typeof raw[2] !== 'boolean') return bad();
  const entries: ScanEntry[] = (raw[0] as unknown[]).map((e) => {
    if (!Array.isArray(e) || e.length !== 4 || !isVersion(e[1]) || typeof e[2] !== 'boolean' || (e[3] !== null && !Number.isSafeInteger(e[3]))) return bad();
    const key = validateKey(e[0], maxKeyBytes);
    return e[3] === null ? { key, version: e[1], tombstone: e[2] } : { key, version: e[1], tombstone: e[2], expiresAt: e[3] as number };
  });
  const reached = raw[1] === null ? null : validateKey(raw[1], maxKeyBytes);
  if (!raw[2] && reached === null) return bad();
  return { entries, reached, done: raw[2] };
}

export class Lister implements ListService {
  private readonly now: () => number;
  private readonly pages = new Gate(MAX_PAGES_IN_FLIGHT, 0, 'listing pages');
  private readonly scans = new Gate(SCANS_RUNNING, SCANS_WAITING, 'listing scans');
  readonly stats = { pages: 0, scans: 0, served: 0 };

  constructor(private readonly d: ListDeps) {
    this.now = d.now ?? Date.now;
  }

  /** Serve list.scan for peers. */
  register(transport: Transport): void {
    transport.handle('list.scan', (_from, payload) => {
      if (!Array.isArray(payload) || payload.length !== 5) throw new KvError('KV_INVALID_ARGUMENT', 'list.scan takes [partition, epoch, after, prefix, maxEntries]');
      const [p, epoch, after, prefix, max] = payload as unknown[];
      if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p >= this.d.store.partitions) throw new KvError('KV_INVALID_ARGUMENT', 'partition out of range');
      if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) throw new KvError('KV_INVALID_ARGUMENT', 'invalid epoch');
      if (typeof prefix !== 'string' || Buffer.byteLength(prefix) > this.d.maxKeyBytes) throw new KvError('KV_INVALID_ARGUMENT', 'invalid prefix');
      if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > LIST_MAX_LIMIT) throw new KvError('KV_INVALID_ARGUMENT', `maxEntries must be 1..${LIST_MAX_LIMIT}`);
      return this.scanLocal(p, epoch, after === null ? null : validateKey(after, this.d.maxKeyBytes), prefix, max);
    });
  }

  /** This replica's records of partition `p` after `after`, bounded; the wire form of a ScanAnswer. */
  private scanLocal(p: number, epoch: number, after: string | null, prefix: string, max: number): Promise<unknown[]> {
    this.d.fence.checkPartition(p, epoch);
    const t = this.d.topology();
    // Only a current owner holds the whole partition (a joining node is still streaming it).
    if (t.epoch === 0 || !replicasOf(t.table('current'), p).includes(this.d.selfId)) {
      if (epoch < t.epoch) throw new KvError('KV_STALE_EPOCH', `not a replica of partition ${p} at epoch ${t.epoch}`, { details: { epoch: t.epoch } });
      throw new KvError('KV_UNAVAILABLE', `this node is not a replica of partition ${p} at its epoch ${t.epoch}`);
    }
    return this.scans.run(async () => {
      this.stats.served++;
      const entries: unknown[] = [];
      let reached: string | null = null;
      let bytes = 0;
      let read = 0;
      let readBytes = 0;
      let done = true;
      for await (const [key, rec] of this.d.store.scanPartition(p, after === null ? {} : { after })) {
        if (read >= SCAN_MAX_RECORDS || readBytes >= SCAN_MAX_READ_BYTES || entries.length >= max || bytes >= SCAN_MAX_BYTES) {
          done = false;
          break;
        }
        read++;
        readBytes += key.length + (rec.value?.length ?? 0);
        reached = key;
        if (!key.startsWith(prefix)) continue;
        entries.push([key, rec.version, rec.value === null, rec.expiresAt ?? null]);
        bytes += Buffer.byteLength(key) + rec.version.length + 16;
      }
      return [entries, reached, done];
    });
  }

  async list(opts: ListOptions): Promise<ListPage> {
    return this.pages.run(() => this.page(opts));
  }

  private async page(opts: ListOptions): Promise<ListPage> {
    const t = this.d.topology();
    if (t.epoch === 0) throw new KvError('KV_UNAVAILABLE', 'this node has not joined a cluster yet');
    const q = t.partitions;
    let pos: ListCursor = opts.cursor === undefined ? { partition: 0, after: null }
      : decodeCursor(opts.cursor, opts.prefix, { partitions: q, maxKeyBytes: this.d.maxKeyBytes });
    const limit = opts.limit;
    const keys: ListPage['keys'] = [];
    const started = this.now();
    const deadline = started + this.d.requestTimeoutMs;
    let bytes = 0;
    let partitions = 0;
    let scans = 0;
    this.stats.pages++;
    // First scans of the partitions after the current one, started ahead; a failure is rethrown when its turn comes.
    const ahead = new Map<number, Promise<MergedScan | { failed: unknown }>>();
    const prefetch = (from: number): void => {
      for (let p = from; p < Math.min(q, from + PAGE_PREFETCH); p++) {
        if (ahead.has(p)) continue;
        scans++;
        ahead.set(p, this.scanPartition({ partition: p, after: null }, opts.prefix, limit - keys.length, opts.r, deadline).catch((failed: unknown) => ({ failed })));
      }
    };
    prefetch(pos.partition + 1);
    while (pos.partition < q && keys.length < limit && bytes < PAGE_MAX_KEY_BYTES && partitions < PAGE_MAX_PARTITIONS &&
      scans < PAGE_MAX_SCANS && this.now() - started < PAGE_TIME_BUDGET_MS) {
      if (opts.signal?.aborted) throw new KvError('KV_TIMEOUT', 'client went away');
      let m: MergedScan;
      const early = pos.after === null ? ahead.get(pos.partition) : undefined;
      if (early !== undefined) {
        const got = await early;
        if ('failed' in got) throw got.failed;
        m = got;
      } else {
        scans++;
        m = await this.scanPartition(pos, opts.prefix, limit - keys.length, opts.r, deadline);
      }
      ahead.delete(pos.partition);
      prefetch(pos.partition + 1);
      let cut = false;
      for (const k of m.keys) {
        if (keys.length >= limit || bytes >= PAGE_MAX_KEY_BYTES) {
          cut = true;
          break;
        }
        keys.push(k);
        bytes += Buffer.byteLength(k.key);
        pos = { partition: pos.partition, after: k.key };
      }
      if (cut) break;
      if (m.done) {
        pos = { partition: pos.partition + 1, after: null };
        partitions++;
      } else {
        pos = { partition: pos.partition, after: m.next };
      }
    }
    return { keys, cursor: pos.partition >= q ? null : encodeCursor(pos, opts.prefix) };
  }

  /** One scan of one partition from `pos` on R current replicas, merged. */
  private async scanPartition(pos: ListCursor, prefix: string, max: number, r: QuorumSpec | undefined, deadline: number): Promise<MergedScan> {
    const p = pos.partition;
    const order = (key: string): string => dataKey(p, this.d.store.locate(key).segment, key);
    const afterPos = pos.after === null ? null : order(pos.after);
    for (let attempt = 1; ; attempt++) {
      const t = this.d.topology();
      const replicas = replicasOf(t.table('current'), p);
      const need = r === undefined ? Math.min(this.d.defaultR, replicas.length) : required(r, replicas.length);
      if (need > replicas.length) throw new KvError('KV_UNAVAILABLE', `r=${need} but partition ${p} has only ${replicas.length} replicas`);
      const live = replicas.filter((id) => id === this.d.selfId || this.d.isAlive(id)).sort((a, b) => Number(b === this.d.selfId) - Number(a === this.d.selfId));
      if (live.length < need) throw new KvError('KV_UNAVAILABLE', `r=${need} but only ${live.length} of partition ${p}'s ${replicas.length} replicas are alive`);
      const answers: ScanAnswer[] = [];
      let stale: number | undefined;
      let next = 0;
      const slot = async (): Promise<void> => {
        while (next < live.length) {
          const id = live[next++] as string;
          try {
            const a = await this.scanOne(id, p, t.epoch, pos.after, prefix, max, deadline);
            // A replica must make progress and stay after the position (a peer is not trusted).
            if (!a.done && afterPos !== null && order(a.reached as string) <= afterPos) throw new KvError('KV_INTERNAL', `list.scan from ${id} made no progress`);
            answers.push(afterPos === null ? a : { ...a, entries: a.entries.filter((e) => order(e.key) > afterPos) });
            return;
          } catch (err) {
            if (isKvError(err, 'KV_STALE_EPOCH')) stale = Math.max(stale ?? 0, Number(err.details?.['epoch'] ?? 0));
          }
        }
      };
      await Promise.all(Array.from({ length: need }, slot));
      this.stats.scans++;
      if (answers.length >= need) return mergeScans(answers, order, this.now());
      if (stale !== undefined && attempt < MAX_SCAN_ATTEMPTS && this.now() < deadline) {
        await this.d.catchUp(stale, deadline);
        continue;
      }
      throw new KvError('KV_UNAVAILABLE', `only ${answers.length} of ${need} replicas of partition ${p} answered the listing; retry with the same cursor`);
    }
  }

  private async scanOne(id: string, p: number, epoch: number, after: string | null, prefix: string, max: number, deadline: number): Promise<ScanAnswer> {
    const raw = id === this.d.selfId ? await this.scanLocal(p, epoch, after, prefix, max)
      : await this.d.transport.request(id, 'list.scan', [p, epoch, after, prefix, max], { timeoutMs: Math.max(1, deadline - this.now()) });
    return parseScanAnswer(raw, max, this.d.maxKeyBytes);
  }
}
