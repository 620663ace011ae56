/**
 * key → stored version (null = absent) for at most `capacity` keys, with O(1) work per access
 * whatever the number of keys written.
 *
 * Two generations instead of one LRU Map: new and used keys go into `young`; when it holds
 * capacity/2 keys it becomes `old` and the previous `old` is dropped whole. A key looked up in
 * `old` moves to `young`, so a key in use outlives the next rotation. An LRU on one Map (delete
 * the first key past the bound) is not O(1) in V8: a deleted Map entry stays a hole until the
 * table is rehashed, and `keys().next()` walks every hole before the first live entry, so past the
 * bound each eviction walked tens of thousands of holes (75-220 µs a write at 100,000 keys, the
 * largest cost of a write once more keys had been written than the cache holds).
 */
import type { Version } from '../core/hlc.ts';

/** Default capacity: the hot set of a typical workload, ~19 MB with 10-byte keys (lib/storage/memory-bound.ts). */
export const DEFAULT_VERSION_CACHE_KEYS = 100_000;

export class VersionCache {
  private young = new Map<string, Version | null>();
  private old = new Map<string, Version | null>();
  /** Keys per generation: both together hold at most `capacity`. */
  private readonly generation: number;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new Error(`assertion failed: version cache capacity ${capacity}`);
    this.generation = Math.max(1, Math.floor(capacity / 2));
  }

  /** The cached version, or undefined when the key is not cached (then only the store knows). */
  get(key: string): Version | null | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o !== undefined) this.set(key, o);
    return o;
  }

  /** Record the version now stored for `key` (exact: the record store is the only writer). */
  set(key: string, version: Version | null): void {
    if (this.capacity === 0) return;
    this.young.set(key, version);
    if (this.young.size >= this.generation) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  /** Entries held, a key in both generations counted twice (what memory is spent on). */
  get size(): number {
    return this.young.size + this.old.size;
  }
}
