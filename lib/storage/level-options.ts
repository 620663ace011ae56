/**
 * LevelDB's memory and file options with their defaults, apart from the backend so that the
 * configuration can name the defaults without loading LevelDB.
 */
/**
 * LevelDB's own memory and file knobs (classic-level's open options). Each is part of the
 * node's stated memory bound (README "Performance", Scale): LevelDB holds at most `cacheBytes` of
 * uncompressed blocks, two memtables of `writeBufferBytes` (the one filling and the one being
 * flushed), and the index and Bloom filter of up to `maxOpenFiles` tables, each table at most
 * about `maxFileBytes` long.
 */
export interface LevelOptions {
  /** LRU cache of uncompressed data blocks. */
  cacheBytes: number;
  /** Memtable size: writes collect in memory (and the log) up to this, then go to a level-0 table. */
  writeBufferBytes: number;
  /** Target size of one table file: fewer, larger files mean fewer compactions to schedule. */
  maxFileBytes: number;
  /** Tables kept open, with their index blocks and Bloom filters in memory. */
  maxOpenFiles: number;
  /** Uncompressed bytes per data block: the unit of a read from disk and of the block cache. */
  blockBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Defaults (README configuration table). Keys hash all over the key space, so every level-0
 * table overlaps all of level 1 and compaction work per write grows with the data: loading a
 * fresh store to 1M records (3 LevelDB entries a write: record, Merkle leaf, count), the
 * compaction and batch threads took 21 → 49 µs per write from 100k to 1M with LevelDB's own
 * 4 MiB write buffer and 2 MiB files, 18 → 32 µs with 16 MiB and 8 MiB (the event loop's share,
 * ~25-30 µs, the same in both). The price is 24 MiB more memtable memory and up to 16 MiB of
 * log to replay at a restart. 250 open tables of 8 MiB cover ~2 GB of tables, what LevelDB's
 * 1000 of 2 MiB covered, and keep the open-table term of the memory bound where it was.
 */
export const DEFAULT_LEVEL_OPTIONS: Readonly<LevelOptions> = Object.freeze({
  cacheBytes: 8 * MiB,
  writeBufferBytes: 16 * MiB,
  maxFileBytes: 8 * MiB,
  maxOpenFiles: 250,
  blockBytes: 4 * KiB,
});
