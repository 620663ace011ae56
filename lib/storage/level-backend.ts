import { Level } from 'level';
import { KvError } from '../errors.ts';
import { SUBLEVELS, type Backend, type BatchOp, type RangeOptions, type Sublevel } from './backend.ts';

type Db = Level<string, Buffer>;
type Sub = ReturnType<Db['sublevel']>;

/** LevelDB through `level` (classic-level on Node). */
export class LevelBackend implements Backend {
  readonly kind = 'level' as const;
  private readonly db: Db;
  private readonly subs = new Map<Sublevel, Sub>();

  constructor(readonly location: string) {
    this.db = new Level<string, Buffer>(location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    for (const name of Object.values(SUBLEVELS)) {
      this.subs.set(name, this.db.sublevel<string, Buffer>(name, { keyEncoding: 'utf8', valueEncoding: 'buffer' }) as unknown as Sub);
    }
  }

  async open(): Promise<void> {
    try {
      await this.db.open();
    } catch (err) {
      const cause = (err as { cause?: Error }).cause;
      throw new KvError('KV_STORE_NOT_OPEN', `cannot open LevelDB at ${this.location}: ${cause?.message ?? (err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  private sub(name: Sublevel): Sub {
    const s = this.subs.get(name);
    if (!s) throw new Error(`assertion failed: unknown sublevel ${name}`);
    return s;
  }

  private checkOpen(): void {
    if (this.db.status !== 'open') throw new KvError('KV_STORE_NOT_OPEN', `store is ${this.db.status}`);
  }

  async get(sub: Sublevel, key: string): Promise<Buffer | undefined> {
    this.checkOpen();
    return ((await this.sub(sub).get(key)) as Buffer | undefined) ?? undefined;
  }

  async getMany(sub: Sublevel, keys: readonly string[]): Promise<(Buffer | undefined)[]> {
    this.checkOpen();
    return (await this.sub(sub).getMany(keys as string[])).map((v) => (v as Buffer | undefined) ?? undefined);
  }

  async batch(ops: readonly BatchOp[], sync: boolean): Promise<void> {
    this.checkOpen();
    if (ops.length === 0) return;
    const mapped = ops.map((op) =>
      op.type === 'put'
        ? { type: 'put' as const, sublevel: this.sub(op.sub), key: op.key, value: op.value as Buffer }
        : { type: 'del' as const, sublevel: this.sub(op.sub), key: op.key });
    // The sublevel typing of `level` does not express cross-sublevel batches well.
    await this.db.batch(mapped as never, { sync });
  }

  async *range(sub: Sublevel, opts: RangeOptions): AsyncIterable<[string, Buffer]> {
    this.checkOpen();
    const it = this.sub(sub).iterator({ ...opts, limit: opts.limit ?? -1 });
    try {
      for await (const entry of it) yield entry as [string, Buffer];
    } finally {
      await it.close();
    }
  }
}
