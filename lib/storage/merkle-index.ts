/**
 * Keeps one Merkle tree per partition current as records change (DESIGN.md §9): the
 * record store calls `onCommit` inside its serialized commit, the changed
 * leaves are XOR-updated in memory and their new values written in the SAME batch as
 * the records, so trees never need a scan to stay current. Trees load lazily from the
 * persisted leaves. `rebuild` (scrub) recomputes a tree from the data itself.
 */
import { MerkleTree, DEFAULT_MERKLE_SHAPE, type Hash64, type MerkleShape } from '../core/merkle.ts';
import { SUBLEVELS, type Backend, type BatchOp } from './backend.ts';
import type { PartitionIndex, RecordChange } from './record-store.ts';

const LEAF_PREFIX = 'l';

function leafKey(partition: number, segment: number): string {
  return LEAF_PREFIX + partition.toString(16).padStart(4, '0') + segment.toString(16).padStart(5, '0');
}

function leafRange(partition: number): { gte: string; lt: string } {
  return { gte: LEAF_PREFIX + partition.toString(16).padStart(4, '0'), lt: LEAF_PREFIX + (partition + 1).toString(16).padStart(4, '0') };
}

function u64(v: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(v, 0);
  return b;
}

export class MerkleIndex implements PartitionIndex {
  private readonly trees = new Map<number, Promise<MerkleTree>>();
  private readonly loaded = new Map<number, MerkleTree>();

  constructor(private readonly backend: Backend, private readonly hash: Hash64, readonly shape: MerkleShape = DEFAULT_MERKLE_SHAPE) {}

  /** The partition's tree, loaded from its persisted leaves on first use. */
  tree(partition: number): Promise<MerkleTree> {
    let t = this.trees.get(partition);
    if (!t) {
      t = (async () => {
        const leaves: Array<[number, bigint]> = [];
        for await (const [k, v] of this.backend.range(SUBLEVELS.merkle, leafRange(partition))) {
          leaves.push([parseInt(k.slice(5), 16), v.readBigUInt64BE(0)]);
        }
        const tree = MerkleTree.fromLeaves(this.hash, leaves, this.shape);
        this.loaded.set(partition, tree);
        return tree;
      })();
      this.trees.set(partition, t);
      t.catch(() => this.trees.delete(partition));
    }
    return t;
  }

  /**
   * Load the partition's tree before its first commit. `empty`: the store holds no record of it
   * (its persisted count is 0), so every leaf is zero (a leaf is the XOR of its records' hashes,
   * written in the same batch as the records and the count): the tree starts empty without a
   * range read, which a stream into a new owner would otherwise pay once per partition.
   */
  async load(partition: number, empty: boolean): Promise<void> {
    if (empty && !this.trees.has(partition)) {
      const tree = new MerkleTree(this.hash, this.shape);
      this.loaded.set(partition, tree);
      this.trees.set(partition, Promise.resolve(tree));
      return;
    }
    await this.tree(partition);
  }

  onCommit(partition: number, changes: readonly RecordChange[]): BatchOp[] {
    const tree = this.loaded.get(partition);
    if (!tree) throw new Error('assertion failed: merkle tree loaded before commit');
    const touched = new Set<number>();
    for (const c of changes) {
      const d = tree.leafDelta(c.key, c.oldVersion, c.newVersion);
      tree.apply(d.segment, d.delta);
      touched.add(d.segment);
    }
    const ops: BatchOp[] = [];
    for (const s of touched) ops.push({ type: 'put', sub: SUBLEVELS.merkle, key: leafKey(partition, s), value: u64(tree.leaf(s)) });
    return ops;
  }

  onAbort(partition: number, changes: readonly RecordChange[]): void {
    const tree = this.loaded.get(partition);
    if (!tree) return;
    // XOR is its own inverse: applying the same deltas again restores the tree.
    for (const c of changes) {
      const d = tree.leafDelta(c.key, c.oldVersion, c.newVersion);
      tree.apply(d.segment, d.delta);
    }
  }

  /** Root of a partition's tree, as 16 hex digits. */
  async root(partition: number): Promise<string> {
    return (await this.tree(partition)).root().toString(16).padStart(16, '0');
  }

  /**
   * Scrub: replace the tree with one computed from `entries` (the partition's records).
   * Must run while no commit for the partition is in flight (RecordStore.exclusive).
   * Returns whether the stored tree was wrong.
   */
  async rebuild(partition: number, entries: AsyncIterable<[string, string]>): Promise<boolean> {
    const fresh = new MerkleTree(this.hash, this.shape);
    for await (const [key, version] of entries) fresh.update(key, null, version);
    const current = await this.tree(partition);
    if (fresh.root() === current.root() && fresh.leaves().length === current.leaves().length &&
      fresh.leaves().every(([s, v]) => current.leaf(s) === v)) return false;
    const ops: BatchOp[] = [];
    for (const [s] of current.leaves()) ops.push({ type: 'del', sub: SUBLEVELS.merkle, key: leafKey(partition, s) });
    for (const [s, v] of fresh.leaves()) ops.push({ type: 'put', sub: SUBLEVELS.merkle, key: leafKey(partition, s), value: u64(v) });
    await this.backend.batch(ops, false);
    this.loaded.set(partition, fresh);
    this.trees.set(partition, Promise.resolve(fresh));
    return true;
  }
}
