/**
 * What a node's store may hold in memory beyond a node with an empty store, as a function of
 * its options (README "Performance", Scale). None of it grows with the number of keys past a bound
 * the options set:
 *
 *   LevelDB   cacheBytes + 2 · writeBufferBytes                    block cache, memtable + the one flushing
 *           + TABLE_META_FRACTION · min(disk, maxOpenFiles · maxFileBytes)   index blocks and Bloom filters of open tables
 *   V8 heap   HEAP_HEADROOM · (versionCacheKeys · (VERSION_ENTRY_BYTES + key bytes)   the version cache
 *                              + partitions · MERKLE_TREE_BYTES)                    one Merkle tree per partition held
 *
 * The constants are measured or taken from V8's heap sizing: see each one's comment.
 * bench:scale checks the bound against each stage's RSS (README "Performance", Scale).
 * Load-dependent memory (requests and bodies in flight, queued writes) is bounded by other
 * options (maxInflightBytes, maxInflightRequests, the store's write queue) and is not part of this.
 */
import type { LevelOptions } from './level-options.ts';

const KiB = 1024;

/**
 * Bytes of one version-cache entry besides its key's characters: the key string's header, the
 * version string (`<16 hex>:<node id>`, a short node id), and the Map entry. Measured: 188 B per
 * entry with 10-character keys and a 2-character node id (100,000 entries, heap after a full GC).
 */
export const VERSION_ENTRY_BYTES = 190;

/** One partition's Merkle tree at the default shape: (1 + 32 + 1024) leaves and branches × 8 B, plus the object. */
export const MERKLE_TREE_BYTES = 8.5 * KiB;

/**
 * An open LevelDB table keeps its index block and its Bloom filter (10 bits an entry) in memory,
 * outside the block cache. Measured from the table footers of 1M-key stores of bench:scale's
 * 100-byte values (which compress to a few bytes, the worst case: many entries per table byte):
 * 6.5-6.7 % of the table bytes, with 2 MiB, 8 MiB and 32 MiB tables alike. Larger or less
 * compressible values make it smaller.
 */
export const TABLE_META_FRACTION = 0.08;

/**
 * V8 lets its old space grow to up to 4x the live objects before its next full collection
 * (its largest heap growing factor, used while the program allocates fast: a node under write
 * load). At a million keys a heap snapshot (live objects only) of one node held 38.5 MB, while
 * the other two, with the same data and options, reported 87-97 MB of heap used: garbage that
 * waits for the next full collection.
 */
export const HEAP_HEADROOM = 4;

export interface StoreMemoryOptions {
  leveldb: LevelOptions;
  versionCacheKeys: number;
  /** Average key length in bytes (the bench's keys: 10; the most: maxKeyBytes). */
  keyBytes: number;
  partitions: number;
}

export interface StoreMemoryBound {
  leveldbBytes: number;
  heapBytes: number;
  totalBytes: number;
}

/**
 * The bound for a store of `diskBytes` on disk; without `diskBytes`, for any amount of data
 * (the open-table term at its cap).
 */
export function storeMemoryBound(o: StoreMemoryOptions, diskBytes = Infinity): StoreMemoryBound {
  const l = o.leveldb;
  const tables = Math.min(diskBytes, l.maxOpenFiles * l.maxFileBytes);
  const leveldbBytes = l.cacheBytes + 2 * l.writeBufferBytes + TABLE_META_FRACTION * tables;
  const heapBytes = HEAP_HEADROOM * (o.versionCacheKeys * (VERSION_ENTRY_BYTES + o.keyBytes) + o.partitions * MERKLE_TREE_BYTES);
  return { leveldbBytes, heapBytes, totalBytes: leveldbBytes + heapBytes };
}
