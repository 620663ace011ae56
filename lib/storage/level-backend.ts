import { Level } from 'level';
import { KvError } from '../errors.ts';
import { SUBLEVELS, type Backend, type BatchOp, type RangeOptions, type Sublevel } from './backend.ts';
import { DEFAULT_LEVEL_OPTIONS, type LevelOptions } from './level-options.ts';

export { DEFAULT_LEVEL_OPTIONS, type LevelOptions } from './level-options.ts';

type Db = Level<string, Buffer>;

/**
 * classic-level's implementation method behind `batch()` (abstract-level's contract for
 * implementations: `_batch(operations, options)`). Its native side reads only `type`, `key`
 * and `value` of each op and takes strings and Buffers alike.
 */
interface RawDb {
  _batch(ops: readonly { type: 'put' | 'del'; key: string; value?: Buffer }[], options: { sync: boolean }): Promise<void>;
  /** String key in, Buffer (or undefined) out with these options, on the calling thread. */
  _getSync(key: string, options: typeof RAW_GET): Buffer | undefined;
}

/** What abstract-level would pass down for a string key and a Buffer value. */
const RAW_GET = { keyEncoding: 'utf8', valueEncoding: 'buffer', fillCache: true } as const;

/**
 * LevelDB through `level` (classic-level on Node). Sublevels are plain key prefixes
 * (`<name>:`) on the root database rather than abstract-level sublevels: the write path
 * batches several ops per record, and skipping the per-op sublevel translation made
 * abstract-level's batch the largest single cost in the PUT profile (bench/profile.md).
 * Batches and reads go straight to classic-level's `_batch` and `_getSync`:
 * abstract-level's public methods clone, validate and re-encode every op (its `#arrayBatch`
 * was ~10 % of a node's CPU under PUT load), none of which this backend needs: keys are strings, values Buffers, the database
 * open (checked here), and no hooks or write events are used. Versions are pinned (level
 * 10 / classic-level 3), and the storage compliance suite runs against this backend.
 */
export class LevelBackend implements Backend {
  readonly kind = 'level' as const;
  private readonly db: Db;
  private readonly raw: RawDb;

  readonly options: Readonly<LevelOptions>;

  constructor(readonly location: string, options: Partial<LevelOptions> = {}) {
    this.options = { ...DEFAULT_LEVEL_OPTIONS, ...options };
    const o = this.options;
    this.db = new Level<string, Buffer>(location, {
      keyEncoding: 'utf8', valueEncoding: 'buffer',
      cacheSize: o.cacheBytes, writeBufferSize: o.writeBufferBytes, maxFileSize: o.maxFileBytes, maxOpenFiles: o.maxOpenFiles, blockSize: o.blockBytes,
    });
    this.raw = this.db as unknown as RawDb;
    for (const name of Object.values(SUBLEVELS)) if (name.length !== 1) throw new Error('assertion failed: one-character sublevel names');
  }

  async open(): Promise<void> {
    try {
      await this.db.open();
    } catch (err) {
      const cause = (err as { cause?: Error }).cause;
      throw new KvError('KV_STORE_NOT_OPEN', `cannot open LevelDB at ${this.location}: ${cause?.message ?? (err as Error).message}`, { cause: err });
    }
  }

  /** Idempotent: the record store closes its backend, and a node's stop closes it again after a failed start. */
  async close(): Promise<void> {
    if (this.db.status === 'closed' || this.db.status === 'closing') return;
    await this.db.close();
  }

  private checkOpen(): void {
    if (this.db.status !== 'open') throw new KvError('KV_STORE_NOT_OPEN', `store is ${this.db.status}`);
  }

  /**
   * Point reads run on the event loop (`_getSync`), not on libuv's pool. A read served by
   * LevelDB's block cache or the OS page cache takes 2-3 µs of CPU that way; the pool's
   * hand-off to a worker thread and back cost ~30 µs per read (most of it in futex system
   * calls), and was 42 % of a node's CPU under GET load (bench/profile.md). A read that misses
   * the page cache blocks the loop for one disk read, which the pool would only hide, not save.
   */
  async get(sub: Sublevel, key: string): Promise<Buffer | undefined> {
    this.checkOpen();
    return this.raw._getSync(`${sub}:${key}`, RAW_GET) ?? undefined;
  }

  async getMany(sub: Sublevel, keys: readonly string[]): Promise<(Buffer | undefined)[]> {
    this.checkOpen();
    return keys.map((k) => this.raw._getSync(`${sub}:${k}`, RAW_GET) ?? undefined);
  }

  async batch(ops: readonly BatchOp[], sync: boolean): Promise<void> {
    this.checkOpen();
    if (ops.length === 0) return;
    const mapped = ops.map((op) => (op.type === 'put'
      ? { type: 'put' as const, key: `${op.sub}:${op.key}`, value: op.value as Buffer }
      : { type: 'del' as const, key: `${op.sub}:${op.key}` }));
    await this.raw._batch(mapped, { sync });
  }

  async *range(sub: Sublevel, opts: RangeOptions): AsyncIterable<[string, Buffer]> {
    this.checkOpen();
    const prefix = `${sub}:`;
    // ';' follows ':' in code-unit order: `<sub>;` bounds the whole prefix from above.
    const bounds: { gte?: string; gt?: string; lt?: string; lte?: string } = {};
    if (opts.gt !== undefined) bounds.gt = prefix + opts.gt;
    else bounds.gte = prefix + (opts.gte ?? '');
    if (opts.lte !== undefined) bounds.lte = prefix + opts.lte;
    else bounds.lt = opts.lt !== undefined ? prefix + opts.lt : `${sub};`;
    const it = this.db.iterator({ ...bounds, limit: opts.limit ?? -1, ...(opts.reverse ? { reverse: true } : {}) });
    try {
      for await (const [k, v] of it) yield [k.slice(prefix.length), v];
    } finally {
      await it.close();
    }
  }
}
