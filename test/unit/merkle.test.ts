import { expect } from 'chai';
import fc from 'fast-check';
import xxhash from 'xxhash-wasm';
import { isKvError } from '../../lib/errors.ts';
import { makeVersion, type Version } from '../../lib/core/hlc.ts';
import { DEFAULT_MERKLE_SHAPE, MerkleTree, merkleDepth, type Hash64, type MerkleShape } from '../../lib/core/merkle.ts';
import { seededRng, shuffle } from '../../lib/core/rng.ts';

const v = (n: number, node = 'n1'): Version => makeVersion({ wall: 1_700_000_000_000 + n, logical: 0 }, node);

function expectKvError(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(isKvError(caught), String(caught)).to.equal(true);
  expect((caught as { code: string }).code).to.equal(code);
}

function rebuilt(hash: Hash64, records: ReadonlyMap<string, Version>, shape: MerkleShape): MerkleTree {
  const t = new MerkleTree(hash, shape);
  for (const [k, ver] of records) t.update(k, null, ver);
  return t;
}

describe('merkle tree (TicTac, in place)', () => {
  let h64: Hash64;
  before(async () => {
    h64 = (await xxhash()).h64;
  });

  it('default shape is 1024 segments of width 32, two levels below the root', () => {
    const t = new MerkleTree(h64);
    expect([t.segments, t.width, t.depth]).to.deep.equal([1024, 32, 2]);
    expect(t.shape).to.deep.equal(DEFAULT_MERKLE_SHAPE);
  });

  it('rejects shapes that are not powers of the width with KV_CONFIG', () => {
    expectKvError(() => merkleDepth({ segments: 32, width: 4 }), 'KV_CONFIG');
    expectKvError(() => merkleDepth({ segments: 100, width: 10 }), 'KV_CONFIG');
    expectKvError(() => merkleDepth({ segments: 16, width: 1 }), 'KV_CONFIG');
    expectKvError(() => merkleDepth({ segments: 2 ** 21, width: 2 }), 'KV_CONFIG');
    expect(merkleDepth({ segments: 1, width: 2 })).to.equal(0);
    expect(merkleDepth({ segments: 4096, width: 64 })).to.equal(2);
  });

  it('an empty tree has a zero root and no non-zero leaves', () => {
    const t = new MerkleTree(h64);
    expect(t.root()).to.equal(0n);
    expect(t.leaves()).to.deep.equal([]);
  });

  it('incremental XOR updates equal a from-scratch build after any sequence of puts, deletes and purges', () => {
    const shapes: MerkleShape[] = [DEFAULT_MERKLE_SHAPE, { segments: 64, width: 4 }, { segments: 1, width: 2 }];
    fc.assert(fc.property(
      fc.constantFrom(...shapes),
      fc.array(fc.record({ key: fc.integer({ min: 0, max: 40 }), op: fc.constantFrom('put', 'delete', 'purge') }), { maxLength: 120 }),
      (shape, ops) => {
        const tree = new MerkleTree(h64, shape);
        const records = new Map<string, Version>();
        let clock = 0;
        for (const { key, op } of ops) {
          const k = `key-${key}`;
          const old = records.get(k) ?? null;
          // A delete writes a tombstone: a new version like any other.
          const next = op === 'purge' ? null : v(++clock, op === 'delete' ? 'n2' : 'n1');
          tree.update(k, old, next);
          if (next === null) records.delete(k);
          else records.set(k, next);
        }
        const fresh = rebuilt(h64, records, shape);
        expect(tree.root()).to.equal(fresh.root());
        expect(tree.leaves()).to.deep.equal(fresh.leaves());
      }), { numRuns: 150 });
  });

  it('every inner node is the XOR of its children', () => {
    const t = new MerkleTree(h64, { segments: 64, width: 4 });
    for (let i = 0; i < 300; i++) t.update(`k${i}`, null, v(i));
    for (let level = 0; level < t.depth; level++) {
      for (let i = 0; i < 4 ** level; i++) {
        let x = 0n;
        for (let j = 0; j < 4; j++) x ^= t.node(level + 1, i * 4 + j);
        expect(t.node(level, i), `level ${level} node ${i}`).to.equal(x);
      }
    }
  });

  it('the root does not depend on the order writes arrive in', () => {
    const entries = Array.from({ length: 500 }, (_, i) => [`user:${i}`, v(i * 7)] as const);
    const roots = new Set<bigint>();
    const rng = seededRng(11);
    for (let round = 0; round < 4; round++) {
      const t = new MerkleTree(h64);
      for (const [k, ver] of shuffle([...entries], rng)) t.update(k, null, ver);
      roots.add(t.root());
    }
    expect(roots.size).to.equal(1);
    expect([...roots][0]).to.not.equal(0n);
  });

  it('leafDelta is pure and composes: old→new equals old→absent then absent→new', () => {
    const t = new MerkleTree(h64);
    t.update('a', null, v(1));
    const before = t.root();
    const d = t.leafDelta('a', v(1), v(2));
    expect(t.root()).to.equal(before);
    expect(d.segment).to.equal(t.segmentOf('a'));
    expect(d.delta).to.equal(t.leafDelta('a', v(1), null).delta ^ t.leafDelta('a', null, v(2)).delta);
    expect(t.leafDelta('a', v(1), v(1)).delta).to.equal(0n);
    expect(d.delta).to.not.equal(0n);
  });

  it('applying the same delta twice restores the tree (rollback of a failed batch)', () => {
    const t = new MerkleTree(h64);
    for (let i = 0; i < 50; i++) t.update(`k${i}`, null, v(i));
    const root = t.root();
    const { segment, delta } = t.leafDelta('k3', v(3), v(99));
    t.apply(segment, delta);
    expect(t.root()).to.not.equal(root);
    t.apply(segment, delta);
    expect(t.root()).to.equal(root);
  });

  it('a tombstone changes the root and purging it restores the root without the key', () => {
    const t = new MerkleTree(h64);
    t.update('x', null, v(1));
    const withoutY = t.root();
    t.update('y', null, v(2));
    const live = t.root();
    t.update('y', v(2), v(3, 'n2'));
    expect(t.root()).to.not.equal(live);
    expect(t.root()).to.not.equal(withoutY);
    t.update('y', v(3, 'n2'), null);
    expect(t.root()).to.equal(withoutY);
  });

  it('fromLeaves reloads persisted leaves into the same tree', () => {
    const shape = { segments: 256, width: 16 };
    const t = new MerkleTree(h64, shape);
    for (let i = 0; i < 400; i++) t.update(`k${i}`, null, v(i));
    const copy = MerkleTree.fromLeaves(h64, t.leaves(), shape);
    expect(copy.root()).to.equal(t.root());
    for (let i = 0; i < 16; i++) expect(copy.node(1, i)).to.equal(t.node(1, i));
    const viaSet = new MerkleTree(h64, shape);
    for (const [s, val] of t.leaves()) viaSet.setLeaf(s, val);
    expect(viaSet.root()).to.equal(t.root());
    expect(viaSet.leaf(t.segmentOf('k5'))).to.equal(t.leaf(t.segmentOf('k5')));
  });

  it('rejects corrupt persisted leaves with KV_INVALID_ARGUMENT', () => {
    const t = new MerkleTree(h64);
    expectKvError(() => t.setLeaf(1024, 1n), 'KV_INVALID_ARGUMENT');
    expectKvError(() => t.setLeaf(-1, 1n), 'KV_INVALID_ARGUMENT');
    expectKvError(() => t.setLeaf(3, -1n), 'KV_INVALID_ARGUMENT');
    expectKvError(() => t.setLeaf(3, 1n << 64n), 'KV_INVALID_ARGUMENT');
    expectKvError(() => MerkleTree.fromLeaves(h64, [[0.5, 1n]]), 'KV_INVALID_ARGUMENT');
    expect(t.root()).to.equal(0n);
  });

  it('keys of one partition (xxh64 mod Q) still spread over the segments', () => {
    // The partitioner uses the low bits of xxh64(key); segments use the top bits. Were
    // they the same bits, one partition's keys would share 1024/Q segments.
    const q = 64n;
    const t = new MerkleTree(h64);
    const used = new Set<number>();
    let inPartition = 0;
    for (let i = 0; i < 20_000; i++) {
      const key = `key-${i}`;
      if (h64(key) % q !== 7n) continue;
      inPartition++;
      used.add(t.segmentOf(key));
    }
    expect(inPartition).to.be.greaterThan(250);
    // ~312 keys into 1024 segments: ~270 distinct expected.
    expect(used.size).to.be.greaterThan(200);
  });
});
