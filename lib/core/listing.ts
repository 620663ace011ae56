/**
 * Listing keys (GET /kv?prefix=&limit=&cursor=), the pure parts: merging what R replicas
 * of one partition returned into the keys that are certain, and the opaque cursor.
 *
 * A listing walks partitions 0..Q-1 in turn and, inside one, the records in the order the
 * store keeps them (`order(key)`, the Merkle segment then the key). Q is fixed at cluster
 * creation and a key's partition and segment are functions of the key alone, so a position
 * (partition, last key) means the same thing at every epoch: the cursor survives topology
 * changes, whoever owns the partition next.
 *
 * Each replica scans from the position on, bounded, and says how far it got (`reached`).
 * Past the shortest reach not every replica has spoken yet, so only keys up to it are
 * settled; for those the highest version wins, and a key whose winner is a tombstone or has
 * expired (at the coordinator's clock) is left out. With R + W > N every key acknowledged
 * before the listing reached its position is held by one of the R replicas.
 */
import { KvError } from '../errors.ts';
import { h64 } from './partitioner.ts';
import type { Version } from './hlc.ts';

export interface ScanEntry {
  readonly key: string;
  readonly version: Version;
  readonly tombstone: boolean;
  readonly expiresAt?: number;
}

/** One replica's answer for a partition, from a position on. */
export interface ScanAnswer {
  readonly entries: readonly ScanEntry[];
  /** The last key scanned (matching the prefix or not); null when nothing was scanned. */
  readonly reached: string | null;
  /** The scan reached the partition's end. */
  readonly done: boolean;
}

export interface MergedScan {
  /** Live keys up to `next`, in scan order, with their winning versions. */
  readonly keys: { key: string; version: Version }[];
  /** Where the partition's next scan starts (exclusive); null when `done`. */
  readonly next: string | null;
  readonly done: boolean;
}

export function isLiveEntry(e: ScanEntry, nowMs: number): boolean {
  return !e.tombstone && (e.expiresAt === undefined || e.expiresAt > nowMs);
}

/**
 * Merge the answers of R replicas for one partition scanned from the same position.
 * `order(key)` gives a key's place in the scan order as a comparable string.
 */
export function mergeScans(answers: readonly ScanAnswer[], order: (key: string) => string, nowMs: number): MergedScan {
  let bound: string | undefined;
  let next: string | null = null;
  for (const a of answers) {
    if (a.done) continue;
    if (a.reached === null) throw new KvError('KV_INTERNAL', 'a replica scan that is not done must say how far it got');
    const pos = order(a.reached);
    if (bound === undefined || pos < bound) {
      bound = pos;
      next = a.reached;
    }
  }
  const done = bound === undefined;
  const best = new Map<string, ScanEntry>();
  for (const a of answers) {
    for (const e of a.entries) {
      if (bound !== undefined && order(e.key) > bound) continue;
      const prev = best.get(e.key);
      if (prev === undefined || e.version > prev.version) best.set(e.key, e);
    }
  }
  const keys = [...best.values()].filter((e) => isLiveEntry(e, nowMs))
    .map((e) => ({ key: e.key, version: e.version, pos: order(e.key) }))
    .sort((a, b) => (a.pos < b.pos ? -1 : a.pos > b.pos ? 1 : 0))
    .map(({ key, version }) => ({ key, version }));
  return { keys, next: done ? null : next, done };
}

// ---- cursor ---------------------------------------------------------------------------

/** A listing position: partition `partition`, after `after` in its scan order (null: from its start). */
export interface ListCursor {
  readonly partition: number;
  readonly after: string | null;
}

const CURSOR_VERSION = 1;

/** The prefix a cursor belongs to, so a cursor is not silently reused with another prefix. */
function prefixTag(prefix: string): string {
  return BigInt.asUintN(64, h64(prefix)).toString(16).padStart(16, '0');
}

/** The opaque cursor: base64url of `[1, partition, after, prefix tag]`. */
export function encodeCursor(c: ListCursor, prefix: string): string {
  return Buffer.from(JSON.stringify([CURSOR_VERSION, c.partition, c.after, prefixTag(prefix)]), 'utf8').toString('base64url');
}

export function decodeCursor(raw: string, prefix: string, limits: { partitions: number; maxKeyBytes: number }): ListCursor {
  const bad = (why: string): never => { throw new KvError('KV_INVALID_ARGUMENT', `invalid cursor: ${why}`); };
  // base64url of a 1 KiB key plus the rest, with room: a longer string is not one of ours.
  if (raw.length === 0 || raw.length > 4 * (limits.maxKeyBytes + 64) || !/^[A-Za-z0-9_-]+$/.test(raw)) bad('not a cursor from this API');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    return bad('not a cursor from this API');
  }
  if (!Array.isArray(parsed) || parsed.length !== 4 || parsed[0] !== CURSOR_VERSION) return bad('not a cursor from this API');
  const [, partition, after, tag] = parsed as [unknown, unknown, unknown, unknown];
  if (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0 || partition >= limits.partitions) bad('partition out of range');
  if (after !== null && (typeof after !== 'string' || after.length === 0 || Buffer.byteLength(after) > limits.maxKeyBytes)) bad('bad position');
  if (tag !== prefixTag(prefix)) bad('it belongs to a listing with another prefix');
  return { partition: partition as number, after: after as string | null };
}
