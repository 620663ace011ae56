/**
 * Key → partition → preference list (DESIGN.md §5).
 *
 * partition(key) = xxh64(key) mod Q, Q a power of two. The partition table places the
 * string `p<partition>` on a consistent-hash ring (the `hashring` package) over the
 * member ids; the first N distinct nodes replicate the partition, the rest in ring
 * order are fallbacks for hinted handoff. The table is a pure function of (members,
 * Q, N, vnodes), so every node computes the same one for the same epoch.
 */
import { hash } from 'node:crypto';
import HashRing from 'hashring';
import xxhash from 'xxhash-wasm';
import { assert } from '../errors.ts';

const hasher = await xxhash();

/**
 * MD5 of a string as a Buffer: the bytes hashring's default 'md5' gives (createHash per call), in
 * one call; a table build hashes ~1,700 strings at Q = 1024 and 4 members.
 */
function md5(s: string): Buffer {
  return hash('md5', s, 'buffer');
}

/** 64-bit xxHash of a UTF-8 string. */
export function h64(s: string): bigint {
  return hasher.h64(s);
}

export function partitionOf(key: string, q: number): number {
  // Q is a power of two, so the low bits are the remainder; xxh64's low bits are well mixed.
  return Number(hasher.h64(key) & BigInt(q - 1));
}

export interface RingSpec {
  members: readonly string[];
  partitions: number;
  n: number;
  vnodes: number;
}

export interface PartitionTable {
  readonly partitions: number;
  readonly n: number;
  /** For each partition: all members in preference order; the first min(N, members) are replicas. */
  readonly preference: readonly (readonly string[])[];
  /** Short hex digest of the whole table: equal on every node for the same epoch. */
  readonly checksum: string;
}

/**
 * Tables built lately, by (Q, N, vnodes, sorted members); the oldest goes first. A topology change
 * builds a table for the members after it, which becomes the current one of the next epoch: a
 * join's or a decommission's epochs go back and forth between two member sets. A build blocks the
 * event loop for 2-35 ms at Q = 1024 (every node at once, at every epoch).
 */
const recentTables = new Map<string, PartitionTable>();
/** Entries of `recentTables` at most: the member sets of a few changes in a row; one table holds Q
 *  lists of member ids (under 1 MB at Q = 1024). */
export const PARTITION_TABLE_CACHE = 8;

export function buildPartitionTable(spec: RingSpec): PartitionTable {
  assert((spec.partitions & (spec.partitions - 1)) === 0, 'Q is a power of two');
  const members = [...spec.members].sort();
  // The table's identity, and the seed of its checksum. Member ids never hold ',' (NODE_ID_RE).
  const id = `${spec.partitions}/${spec.n}/${spec.vnodes}/${members.join(',')}`;
  const known = recentTables.get(id);
  if (known) return known;
  const table = computeTable(spec, members, id);
  if (recentTables.size >= PARTITION_TABLE_CACHE) recentTables.delete(recentTables.keys().next().value as string);
  recentTables.set(id, table);
  return table;
}

function computeTable(spec: RingSpec, members: readonly string[], id: string): PartitionTable {
  const preference: string[][] = [];
  if (members.length === 0) {
    for (let p = 0; p < spec.partitions; p++) preference.push([]);
  } else {
    const servers: Record<string, { vnodes: number }> = {};
    for (const m of members) servers[m] = { vnodes: spec.vnodes };
    // 'max cache size' 0 would disable hashring's LRU; we compute each partition once anyway.
    const ring = new HashRing(servers, md5, { 'max cache size': 1 });
    for (let p = 0; p < spec.partitions; p++) preference.push(ring.range(`p${p}`, members.length, true));
    ring.end();
  }
  let digest = hasher.h64(id);
  for (const list of preference) digest = hasher.h64(`${digest.toString(16)}|${list.join(',')}`);
  // Shared by every caller through the cache: frozen, so a caller that mutates it fails loudly.
  for (const list of preference) Object.freeze(list);
  return Object.freeze({ partitions: spec.partitions, n: spec.n, preference: Object.freeze(preference), checksum: digest.toString(16).padStart(16, '0') });
}

/** The replicas of a partition: the first min(N, members) nodes of its preference list. */
export function replicasOf(table: PartitionTable, partition: number): readonly string[] {
  const list = table.preference[partition];
  assert(list !== undefined, `partition ${partition} in range`);
  return list.length <= table.n ? list : list.slice(0, table.n);
}
