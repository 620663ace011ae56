import { expect } from 'chai';
import { DEFAULT_LEVEL_OPTIONS } from '../../lib/storage/level-backend.ts';
import { HEAP_HEADROOM, MERKLE_TREE_BYTES, TABLE_META_FRACTION, VERSION_ENTRY_BYTES, storeMemoryBound } from '../../lib/storage/memory-bound.ts';

const MiB = 1024 * 1024;

describe('store memory bound', () => {
  const o = { leveldb: { ...DEFAULT_LEVEL_OPTIONS }, versionCacheKeys: 100_000, keyBytes: 10, partitions: 1024 };

  it('adds the block cache, two memtables and the open tables\' metadata for the bytes on disk', () => {
    const b = storeMemoryBound(o, 50 * MiB);
    expect(b.leveldbBytes).to.equal(8 * MiB + 2 * 16 * MiB + TABLE_META_FRACTION * 50 * MiB);
    expect(b.heapBytes).to.equal(HEAP_HEADROOM * (100_000 * (VERSION_ENTRY_BYTES + 10) + 1024 * MERKLE_TREE_BYTES));
    expect(b.totalBytes).to.equal(b.leveldbBytes + b.heapBytes);
  });

  it('stops growing with the data once maxOpenFiles tables are open', () => {
    const cap = storeMemoryBound(o);
    expect(cap.leveldbBytes).to.equal(8 * MiB + 32 * MiB + TABLE_META_FRACTION * 250 * 8 * MiB);
    expect(storeMemoryBound(o, 1e12).totalBytes).to.equal(cap.totalBytes);
    expect(storeMemoryBound(o, 1e9).totalBytes).to.be.below(cap.totalBytes);
  });

  it('follows every option it names', () => {
    const base = storeMemoryBound(o, 0).totalBytes;
    expect(storeMemoryBound({ ...o, leveldb: { ...o.leveldb, cacheBytes: 9 * MiB } }, 0).totalBytes - base).to.equal(MiB);
    expect(storeMemoryBound({ ...o, leveldb: { ...o.leveldb, writeBufferBytes: 17 * MiB } }, 0).totalBytes - base).to.equal(2 * MiB);
    expect(storeMemoryBound({ ...o, versionCacheKeys: 0 }, 0).heapBytes).to.equal(HEAP_HEADROOM * 1024 * MERKLE_TREE_BYTES);
  });
});
