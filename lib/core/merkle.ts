/**
 * Per-partition Merkle tree updated in place (TicTac AAE, as in leveled; REFERENCES.md
 * "Anti-entropy", DESIGN.md §9).
 *
 * A key maps to one of S segments (leaves). A leaf is the XOR, over the segment's keys,
 * of H(key, version). XOR is its own inverse, so a write that moves a key from version
 * `old` to `new` changes exactly one leaf by H(key, old) ^ H(key, new): the storage
 * layer persists the new leaf value in the same LevelDB batch as the record, and the
 * tree never needs a scan or a rebuild to stay current. A tombstone is a version like
 * any other, so deleted keys keep hashing until they are purged.
 *
 * Inner nodes are the XOR of their children (so every node is the XOR of the leaves
 * below it). That makes an update O(depth) with no dirty tracking and no re-hashing,
 * and keeps trees mergeable (the root of a set of partitions is the XOR of their roots).
 * It gives up nothing against honest divergence: two different leaf sets hide a
 * difference from their parent only if the XOR of 64-bit hash deltas cancels (~2^-64).
 *
 * Storage contract: in the batch that writes a record, also write (a) the new value of
 * its leaf, `leaf(segment)` right after `apply`, and (b) the segment index entry
 * (partition, segment, key) → version that the exchange lists segments from. On open,
 * `fromLeaves` reloads the persisted leaves; nothing is rehashed.
 *
 * Pure: the 64-bit hash is injected (xxh64 from xxhash-wasm in the node). Every replica
 * of a cluster must use the same hash and shape, or their trees never agree (the
 * exchange detects a shape mismatch, not a hash mismatch).
 */
import { KvError, assert } from '../errors.ts';
import type { Version } from './hlc.ts';

/** A well-mixed 64-bit hash of a string (xxh64). Results are taken modulo 2^64. */
export type Hash64 = (input: string) => bigint;

export interface MerkleShape {
  /** Leaves per tree: a power of two, width^depth. */
  readonly segments: number;
  /** Children per inner node: a power of two ≥ 2. */
  readonly width: number;
}

/**
 * 1024 segments, width 32 (depth 2: root → 32 branches → 1024 leaves).
 * - Memory: all levels take (1 + 32 + 1024) × 8 B ≈ 8.3 KiB per tree, allocated on the
 *   first write. A node of a 3-node cluster with N=3 holds all Q=1024 partitions:
 *   ≈ 8.5 MiB. 4096/64 would cost ≈ 33 MiB for the same node.
 * - Segment population: 10 M keys per node over 1024 partitions is ~10 k keys per
 *   partition, ~10 keys per segment, so listing one differing segment costs ~10 entries.
 *   (Riak uses 1 M segments per tree because its 64 default partitions are huge.)
 * - Descent: two round trips below the root, each sending 32 hashes (256 B) per
 *   differing branch.
 */
export const DEFAULT_MERKLE_SHAPE: MerkleShape = Object.freeze({ segments: 1024, width: 32 });

/** Bounds on a tree's shape: 2^20 segments is 8 MiB per tree, already too big for Q trees. */
export const MERKLE_SEGMENTS_MAX = 2 ** 20;
export const MERKLE_WIDTH_MAX = 1024;

const MASK64 = (1n << 64n) - 1n;

export interface LeafDelta {
  readonly segment: number;
  /** XOR this into leaf `segment`; 0n when nothing changes. */
  readonly delta: bigint;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/** Depth of a valid shape (0 when the single leaf is the root); throws KV_CONFIG otherwise. */
export function merkleDepth(shape: MerkleShape): number {
  const { segments, width } = shape;
  if (!isPowerOfTwo(segments) || segments > MERKLE_SEGMENTS_MAX) {
    throw new KvError('KV_CONFIG', `merkle segments must be a power of two in [1, ${MERKLE_SEGMENTS_MAX}], got ${segments}`);
  }
  if (!isPowerOfTwo(width) || width < 2 || width > MERKLE_WIDTH_MAX) {
    throw new KvError('KV_CONFIG', `merkle width must be a power of two in [2, ${MERKLE_WIDTH_MAX}], got ${width}`);
  }
  let depth = 0;
  let n = 1;
  while (n < segments) {
    n *= width;
    depth++;
  }
  if (n !== segments) {
    throw new KvError('KV_CONFIG', `merkle segments (${segments}) must be a power of width (${width})`);
  }
  return depth;
}

export class MerkleTree {
  readonly segments: number;
  readonly width: number;
  readonly depth: number;
  private readonly hash: Hash64;
  /** Segments take the TOP bits of H(key): the partitioner takes the low bits (mod Q), so
   * with power-of-two Q and S the two stay independent. */
  private readonly segmentShift: bigint;
  /** levels[d] holds width^d nodes; null until the first non-zero update. */
  private levels: BigUint64Array[] | null = null;

  constructor(hash: Hash64, shape: MerkleShape = DEFAULT_MERKLE_SHAPE) {
    this.depth = merkleDepth(shape);
    this.segments = shape.segments;
    this.width = shape.width;
    this.hash = hash;
    this.segmentShift = BigInt(64 - Math.log2(shape.segments));
  }

  /** Rebuild from persisted leaf values (zero leaves may be omitted). */
  static fromLeaves(hash: Hash64, leaves: Iterable<readonly [segment: number, value: bigint]>,
    shape: MerkleShape = DEFAULT_MERKLE_SHAPE): MerkleTree {
    const tree = new MerkleTree(hash, shape);
    for (const [segment, value] of leaves) tree.setLeaf(segment, value);
    return tree;
  }

  get shape(): MerkleShape {
    return { segments: this.segments, width: this.width };
  }

  segmentOf(key: string): number {
    if (this.segments === 1) return 0;
    return Number(BigInt.asUintN(64, this.hash(key)) >> this.segmentShift);
  }

  /** H(key, version). The version comes first and never holds '\n', so the input is unambiguous. */
  entryHash(key: string, version: Version): bigint {
    return BigInt.asUintN(64, this.hash(`${version}\n${key}`));
  }

  /**
   * The leaf change for a key going from `oldVersion` to `newVersion` (null = absent:
   * a first write, or a purged tombstone). Pure: the tree is not touched.
   */
  leafDelta(key: string, oldVersion: Version | null, newVersion: Version | null): LeafDelta {
    const segment = this.segmentOf(key);
    if (oldVersion === newVersion) return { segment, delta: 0n };
    let delta = 0n;
    if (oldVersion !== null) delta ^= this.entryHash(key, oldVersion);
    if (newVersion !== null) delta ^= this.entryHash(key, newVersion);
    return { segment, delta };
  }

  /**
   * XOR `delta` into a leaf and every node above it. Storage: apply before awaiting the
   * batch that persists `leaf(segment)`, so concurrent writes to one segment each persist
   * a value that includes the earlier ones; if the batch fails, apply the same delta again.
   */
  apply(segment: number, delta: bigint): void {
    assert(Number.isInteger(segment) && segment >= 0 && segment < this.segments, `segment ${segment} out of range`);
    assert(typeof delta === 'bigint' && delta >= 0n && delta <= MASK64, 'delta must be an unsigned 64-bit bigint');
    if (delta === 0n) return;
    const levels = this.levels ?? this.allocate();
    let index = segment;
    for (let d = this.depth; d >= 0; d--) {
      const level = levels[d] as BigUint64Array;
      level[index] = (level[index] as bigint) ^ delta;
      index = Math.floor(index / this.width);
    }
  }

  /** leafDelta + apply, for callers that keep only the in-memory tree (tests, sims). */
  update(key: string, oldVersion: Version | null, newVersion: Version | null): LeafDelta {
    const change = this.leafDelta(key, oldVersion, newVersion);
    this.apply(change.segment, change.delta);
    return change;
  }

  /** Load a persisted leaf value. Out-of-range input is corrupt data, not a programmer error. */
  setLeaf(segment: number, value: bigint): void {
    if (!Number.isInteger(segment) || segment < 0 || segment >= this.segments) {
      throw new KvError('KV_INVALID_ARGUMENT', `merkle segment ${segment} out of range [0, ${this.segments})`);
    }
    if (typeof value !== 'bigint' || value < 0n || value > MASK64) {
      throw new KvError('KV_INVALID_ARGUMENT', `merkle leaf value must be an unsigned 64-bit bigint`);
    }
    this.apply(segment, this.leaf(segment) ^ value);
  }

  leaf(segment: number): bigint {
    return this.node(this.depth, segment);
  }

  root(): bigint {
    return this.node(0, 0);
  }

  /** Node `index` of level `level` (0 = root, depth = leaves). */
  node(level: number, index: number): bigint {
    assert(Number.isInteger(level) && level >= 0 && level <= this.depth, `level ${level} out of range`);
    assert(Number.isInteger(index) && index >= 0 && index < this.width ** level, `node ${index} out of range at level ${level}`);
    if (this.levels === null) return 0n;
    return (this.levels[level] as BigUint64Array)[index] as bigint;
  }

  /** Non-zero leaves, for persisting or comparing trees. */
  leaves(): Array<[segment: number, value: bigint]> {
    const out: Array<[number, bigint]> = [];
    if (this.levels === null) return out;
    const leaves = this.levels[this.depth] as BigUint64Array;
    for (let s = 0; s < leaves.length; s++) {
      const v = leaves[s] as bigint;
      if (v !== 0n) out.push([s, v]);
    }
    return out;
  }

  private allocate(): BigUint64Array[] {
    const levels: BigUint64Array[] = [];
    for (let d = 0; d <= this.depth; d++) levels.push(new BigUint64Array(this.width ** d));
    this.levels = levels;
    return levels;
  }
}
