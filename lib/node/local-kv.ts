/**
 * The KV service of a node that owns every key alone (a one-member cluster): the
 * coordinator stamps an HLC version and applies the record to its own store.
 */
import { KvError } from '../errors.ts';
import { makeVersion, type Hlc } from '../core/hlc.ts';
import { required } from '../core/quorum.ts';
import type { KvService, ReadOptions, ReadResult, WriteOptions } from '../api/service.ts';
import type { RecordStore } from '../storage/record-store.ts';

export class LocalKv implements KvService {
  constructor(
    private readonly nodeId: string,
    private readonly n: number,
    private readonly store: RecordStore,
    private readonly hlc: Hlc,
    private readonly now: () => number = Date.now,
  ) {}

  replicationFactor(): number {
    return this.n;
  }

  private check(spec: WriteOptions['w'] | ReadOptions['r']): void {
    if (spec !== undefined && required(spec, 1) > 1) {
      throw new KvError('KV_UNAVAILABLE', `only 1 replica exists; ${required(spec, 1)} were required`, { outcome: 'failed' });
    }
  }

  async put(key: string, value: Buffer, opts: WriteOptions): Promise<{ version: string }> {
    this.check(opts.w);
    const version = makeVersion(this.hlc.now(this.now()), this.nodeId);
    const res = await this.store.apply(key, { version, value });
    return { version: res.version };
  }

  async del(key: string, opts: WriteOptions): Promise<{ version: string }> {
    this.check(opts.w);
    const version = makeVersion(this.hlc.now(this.now()), this.nodeId);
    const res = await this.store.apply(key, { version, value: null });
    return { version: res.version };
  }

  async get(key: string, opts: ReadOptions): Promise<ReadResult | undefined> {
    this.check(opts.r);
    const rec = await this.store.get(key);
    if (!rec || rec.value === null || (rec.expiresAt !== undefined && rec.expiresAt <= this.now())) return undefined;
    return { value: rec.value, version: rec.version };
  }
}
