import { KvError } from '../errors.ts';
import { SUBLEVELS, type Backend, type BatchOp, type RangeOptions, type Sublevel } from './backend.ts';

/** In-memory twin of LevelBackend for tests; same contract, no durability. */
export class MemoryBackend implements Backend {
  readonly kind = 'memory' as const;
  private status: 'new' | 'open' | 'closed' = 'new';
  private readonly maps = new Map<Sublevel, Map<string, Buffer>>(
    Object.values(SUBLEVELS).map((s) => [s, new Map<string, Buffer>()]));

  async open(): Promise<void> {
    this.status = 'open';
  }

  async close(): Promise<void> {
    this.status = 'closed';
  }

  private map(sub: Sublevel): Map<string, Buffer> {
    if (this.status !== 'open') throw new KvError('KV_STORE_NOT_OPEN', `store is ${this.status}`);
    const m = this.maps.get(sub);
    if (!m) throw new Error(`assertion failed: unknown sublevel ${sub}`);
    return m;
  }

  async get(sub: Sublevel, key: string): Promise<Buffer | undefined> {
    return this.map(sub).get(key);
  }

  async getMany(sub: Sublevel, keys: readonly string[]): Promise<(Buffer | undefined)[]> {
    const m = this.map(sub);
    return keys.map((k) => m.get(k));
  }

  async batch(ops: readonly BatchOp[], _sync: boolean): Promise<void> {
    for (const op of ops) this.map(op.sub);
    for (const op of ops) {
      if (op.type === 'put') this.map(op.sub).set(op.key, op.value as Buffer);
      else this.map(op.sub).delete(op.key);
    }
  }

  async *range(sub: Sublevel, opts: RangeOptions): AsyncIterable<[string, Buffer]> {
    const m = this.map(sub);
    const keys = [...m.keys()].filter((k) =>
      (opts.gte === undefined || k >= opts.gte) && (opts.gt === undefined || k > opts.gt) &&
      (opts.lt === undefined || k < opts.lt) && (opts.lte === undefined || k <= opts.lte)).sort();
    if (opts.reverse) keys.reverse();
    const limit = opts.limit === undefined || opts.limit < 0 ? Infinity : opts.limit;
    let n = 0;
    for (const k of keys) {
      if (n++ >= limit) return;
      const v = m.get(k);
      if (v !== undefined) yield [k, v];
    }
  }
}
