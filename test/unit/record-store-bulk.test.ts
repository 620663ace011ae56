/**
 * The record store's bulk paths: `applyMany` (a streaming page in few commits, serialized with
 * client writes) and `dropPartition` (a hand-off's drop in chunks that keeps newer writes).
 * Key counts and Merkle leaves must stay what a rebuild from the records computes.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import type { Backend, BatchOp, RangeOptions, Sublevel } from '../../lib/storage/backend.ts';
import { LevelBackend } from '../../lib/storage/level-backend.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { MerkleIndex } from '../../lib/storage/merkle-index.ts';
import { RecordStore, type RecordStoreOptions } from '../../lib/storage/record-store.ts';
import type { StoredRecord } from '../../lib/storage/record.ts';
import { DEFAULT_MERKLE_SHAPE } from '../../lib/core/merkle.ts';
import { makeVersion } from '../../lib/core/hlc.ts';
import { h64 } from '../../lib/core/partitioner.ts';
import { isKvError } from '../../lib/errors.ts';
import { removeDir, tempDir } from '../helpers/proc.ts';

const Q = 8;
const v = (wall: number, node = 'n1'): string => makeVersion({ wall, logical: 0 }, node);
const rec = (wall: number, value: string | null = `v${wall}`): StoredRecord => ({ version: v(wall), value: value === null ? null : Buffer.from(value) });

/** A backend that counts batches and lets a test act at chosen points (a write arriving mid-drop). */
class Spy implements Backend {
  readonly kind: 'level' | 'memory';
  batches: BatchOp[][] = [];
  /** Sublevels of every range read, in order. */
  ranges: Sublevel[] = [];
  onBatch: ((ops: readonly BatchOp[]) => void) | undefined;
  onRangeDone: (() => void) | undefined;
  constructor(private readonly inner: Backend) { this.kind = inner.kind; }
  open(): Promise<void> { return this.inner.open(); }
  close(): Promise<void> { return this.inner.close(); }
  get(sub: Sublevel, key: string): Promise<Buffer | undefined> { return this.inner.get(sub, key); }
  getMany(sub: Sublevel, keys: readonly string[]): Promise<(Buffer | undefined)[]> { return this.inner.getMany(sub, keys); }
  async batch(ops: readonly BatchOp[], sync: boolean): Promise<void> {
    this.batches.push([...ops]);
    this.onBatch?.(ops);
    return this.inner.batch(ops, sync);
  }
  async *range(sub: Sublevel, opts: RangeOptions): AsyncIterable<[string, Buffer]> {
    this.ranges.push(sub);
    try {
      yield* this.inner.range(sub, opts);
    } finally {
      if (sub === 'd') this.onRangeDone?.();
    }
  }
}

const backends: Array<[string, () => { backend: Backend; dispose: () => void }]> = [
  ['memory', () => ({ backend: new MemoryBackend(), dispose: () => undefined })],
  ['level', () => {
    const dir = tempDir('kv-bulk-');
    return { backend: new LevelBackend(join(dir, 'db')), dispose: () => removeDir(dir) };
  }],
];

for (const [name, make] of backends) {
  describe(`record store bulk paths (${name})`, () => {
    let spy: Spy;
    let index: MerkleIndex;
    let store: RecordStore;
    let dispose: () => void;

    const open = async (opts: Partial<RecordStoreOptions> = {}): Promise<void> => {
      const made = make();
      dispose = made.dispose;
      spy = new Spy(made.backend);
      index = new MerkleIndex(spy, h64, DEFAULT_MERKLE_SHAPE);
      store = new RecordStore({ backend: spy, partitions: Q, segments: DEFAULT_MERKLE_SHAPE.segments, sync: false, index, ...opts });
      await store.open();
    };

    afterEach(async () => {
      await store.close();
      dispose();
    });

    /** Every partition's count and tree match its records (what scrub would recompute). */
    async function consistent(): Promise<void> {
      for (let p = 0; p < Q; p++) {
        let n = 0;
        for await (const _ of store.scanPartition(p)) n++;
        expect(await store.partitionKeyCount(p), `count of partition ${p}`).to.equal(n);
        let wrong = true;
        await store.exclusive(p, async () => {
          const entries = (async function* () {
            for await (const [k, r] of store.scanPartition(p)) yield [k, r.version] as [string, string];
          })();
          wrong = await index.rebuild(p, entries);
        });
        expect(wrong, `Merkle tree of partition ${p} needed a repair`).to.equal(false);
      }
    }

    const keysOf = (p: number, n: number, prefix = 'k'): string[] => {
      const out: string[] = [];
      for (let i = 0; out.length < n; i++) if (store.locate(`${prefix}${i}`).partition === p) out.push(`${prefix}${i}`);
      return out;
    };

    it('applies a page write-if-newer and answers each record as apply would', async () => {
      await open();
      await store.apply('a', rec(5));
      await store.apply('b', rec(1));
      const results = await store.applyMany([['a', rec(3)], ['b', rec(2)], ['c', rec(1, null)], ['a', rec(6)], ['b', rec(2)]]);
      expect(results).to.deep.equal([
        { applied: false, version: v(5) }, { applied: true, version: v(2) }, { applied: true, version: v(1) },
        { applied: true, version: v(6) }, { applied: false, version: v(2) },
      ]);
      expect((await store.get('a'))?.value?.toString()).to.equal('v6');
      expect((await store.get('c'))?.value).to.equal(null);
      expect(await store.applyMany([])).to.deep.equal([]);
      await consistent();
    });

    it('folds a page into one commit, and splits one over the byte bound', async () => {
      await open({ maxBatchBytes: 64 * 1024 });
      const page = Array.from({ length: 1000 }, (_, i) => [`p${i}`, rec(i + 1, 'x'.repeat(50))] as const);
      spy.batches = [];
      await store.applyMany(page);
      expect(spy.batches.length, 'one commit for 1,000 records of 50 B').to.equal(1);
      const big = Array.from({ length: 64 }, (_, i) => [`big${i}`, rec(i + 1, 'y'.repeat(4000))] as const);
      spy.batches = [];
      await store.applyMany(big);
      // 64 × 4 KB = 256 KB: at least four batches of at most 64 KiB of records each.
      expect(spy.batches.length).to.be.within(4, 6);
      for (const b of spy.batches) {
        const bytes = b.filter((op) => op.sub === 'd').reduce((s, op) => s + op.key.length + (op.value?.length ?? 0), 0);
        expect(bytes).to.be.at.most(64 * 1024 + 200);
      }
      await consistent();
    });

    it('refuses a page with a key of another partition before applying any (KV_FRAME_INVALID)', async () => {
      await open();
      const [k0, k1] = keysOf(0, 2);
      const other = keysOf(1, 1)[0] as string;
      let caught: unknown;
      try { await store.applyMany([[k0 as string, rec(1)], [other, rec(1)], [k1 as string, rec(1)]], { partition: 0 }); } catch (err) { caught = err; }
      expect(isKvError(caught, 'KV_FRAME_INVALID')).to.equal(true);
      expect(await store.get(k0 as string)).to.equal(undefined);
      expect(await store.partitionKeyCount(0)).to.equal(0);
      expect((await store.applyMany([[k0 as string, rec(1)], [k1 as string, rec(1)]], { partition: 0 })).every((x) => x.applied)).to.equal(true);
    });

    it('refuses a page beyond the queue bound with KV_TOO_MANY_REQUESTS', async () => {
      await open({ maxQueuedWrites: 10 });
      let caught: unknown;
      try { await store.applyMany(Array.from({ length: 11 }, (_, i) => [`q${i}`, rec(1)] as const)); } catch (err) { caught = err; }
      expect(isKvError(caught, 'KV_TOO_MANY_REQUESTS')).to.equal(true);
      expect((await store.applyMany(Array.from({ length: 10 }, (_, i) => [`q${i}`, rec(1)] as const))).length).to.equal(10);
    });

    it('keeps last-writer-wins exact with client writes to the same keys queued before, among and after a page', async () => {
      await open({ maxBatchWrites: 4, maxBulkBatchWrites: 16 });
      const keys = Array.from({ length: 50 }, (_, i) => `w${i}`);
      // Page versions 10..; client writes to every other key, half newer (20+), half older (1).
      const before = keys.filter((_, i) => i % 4 === 0).map((k) => store.apply(k, rec(30)));
      const page = store.applyMany(keys.map((k) => [k, rec(10)] as const));
      const after = keys.filter((_, i) => i % 4 === 1).map((k) => store.apply(k, rec(20)));
      const older = keys.filter((_, i) => i % 4 === 2).map((k) => store.apply(k, rec(1)));
      const [pageResults] = await Promise.all([page, ...before, ...after, ...older]);
      const got = await Promise.all(keys.map(async (k) => (await store.get(k))?.version));
      keys.forEach((k, i) => {
        const want = i % 4 === 0 ? v(30) : i % 4 === 1 ? v(20) : v(10);
        expect(got[i], k).to.equal(want);
        expect((pageResults as { applied: boolean }[])[i]?.applied, `page record of ${k}`).to.equal(i % 4 !== 0);
      });
      await consistent();
    });

    it('drops a partition in chunks of bounded commits, other partitions untouched', async () => {
      await open({ dropChunkRecords: 7 });
      const mine = keysOf(3, 40);
      const others = keysOf(4, 5);
      await store.applyMany([...mine, ...others].map((k, i) => [k, rec(i + 1, i % 5 === 0 ? null : 'x')] as const));
      spy.batches = [];
      expect(await store.dropPartition(3)).to.equal(40);
      expect(spy.batches.length).to.equal(Math.ceil(40 / 7));
      for (const b of spy.batches) expect(b.filter((op) => op.sub === 'd').length).to.be.at.most(7);
      expect(await store.partitionKeyCount(3)).to.equal(0);
      for (const k of mine) expect(await store.get(k)).to.equal(undefined);
      expect(await store.partitionKeyCount(4)).to.equal(5);
      expect(await store.dropPartition(3)).to.equal(0);
      // Write-if-newer after the drop: the keys are absent, so an old version is stored again.
      expect((await store.apply(mine[0] as string, rec(1))).applied).to.equal(true);
      await consistent();
    });

    it('keeps every key written while its partition is being dropped, in a chunk read already or not yet', async () => {
      await open({ dropChunkRecords: 10 });
      const mine = keysOf(2, 30);
      await store.applyMany(mine.map((k) => [k, rec(5)] as const));
      // While the first chunk is being read (keys 0..9 in data order), a client overwrites one of it
      // and one of a later chunk; after the first chunk's commit, another of the last chunk.
      const order: string[] = [];
      for await (const [k] of store.scanPartition(2)) order.push(k);
      const writes: Promise<unknown>[] = [];
      let ranges = 0;
      spy.onRangeDone = () => {
        if (ranges++ === 0) writes.push(store.apply(order[3] as string, rec(9)), store.apply(order[15] as string, rec(9)));
      };
      let dels = 0;
      spy.onBatch = (ops) => {
        if (ops.some((op) => op.type === 'del') && dels++ === 0) writes.push(store.apply(order[25] as string, rec(9)), store.apply(order[26] as string, rec(1)));
      };
      const dropped = await store.dropPartition(2);
      await Promise.all(writes);
      const left = new Map<string, string>();
      for await (const [k, r] of store.scanPartition(2)) left.set(k, r.version);
      // The older write to order[26] did not apply (v5 was stored then): it is no newer write and goes.
      expect([...left]).to.have.deep.members([[order[3], v(9)], [order[15], v(9)], [order[25], v(9)]]);
      expect(dropped).to.equal(27);
      await consistent();
    });

    it('starts the tree of a partition that holds nothing without reading its leaves, exact before and after a reopen', async () => {
      await open();
      const three = keysOf(3, 12);
      const five = keysOf(5, 6);
      // Partition 1 never held anything; partition 3 is emptied (its leaves persist as zeros).
      await store.applyMany([...three, ...five].map((k, i) => [k, rec(i + 1)] as const));
      expect(await store.dropPartition(3)).to.equal(12);
      await store.close();
      // Reopen the same data with a fresh store and index (nothing loaded in memory).
      index = new MerkleIndex(spy, h64, DEFAULT_MERKLE_SHAPE);
      store = new RecordStore({ backend: spy, partitions: Q, segments: DEFAULT_MERKLE_SHAPE.segments, sync: false, index });
      await store.open();
      spy.ranges = [];
      await store.applyMany([...keysOf(1, 4, 'a'), ...three.slice(0, 5)].map((k) => [k, rec(50)] as const));
      expect(spy.ranges, 'leaf reads for partitions 1 and 3 (both empty)').to.deep.equal([]);
      // A partition that holds records still loads its persisted leaves before its first commit.
      expect((await store.apply(five[0] as string, rec(60))).applied).to.equal(true);
      expect(spy.ranges).to.deep.equal(['m']);
      await consistent();
    });

    it('refuses a second drop of a partition being dropped (KV_TOO_MANY_REQUESTS)', async () => {
      await open({ dropChunkRecords: 2 });
      await store.applyMany(keysOf(1, 10).map((k) => [k, rec(1)] as const));
      const first = store.dropPartition(1);
      let caught: unknown;
      try { await store.dropPartition(1); } catch (err) { caught = err; }
      expect(isKvError(caught, 'KV_TOO_MANY_REQUESTS')).to.equal(true);
      expect(await first).to.equal(10);
    });
  });
}
