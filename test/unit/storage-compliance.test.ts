/**
 * One compliance suite for the record store, run against the LevelDB backend and its
 * in-memory twin (abstract-level's habit): both must behave the same.
 */
import { expect } from 'chai';
import { join } from 'node:path';
import type { Backend } from '../../lib/storage/backend.ts';
import { readdirSync } from 'node:fs';
import { DEFAULT_LEVEL_OPTIONS, LevelBackend } from '../../lib/storage/level-backend.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { RecordStore } from '../../lib/storage/record-store.ts';
import { decodeRecord, encodeRecord, validateRecord } from '../../lib/storage/record.ts';
import { makeVersion } from '../../lib/core/hlc.ts';
import { partitionOf } from '../../lib/core/partitioner.ts';
import { isKvError } from '../../lib/errors.ts';
import { removeDir, tempDir } from '../helpers/proc.ts';

const Q = 16;
const v = (wall: number, node = 'n1'): string => makeVersion({ wall, logical: 0 }, node);

const backends: Array<[string, () => { backend: Backend; dispose: () => void }]> = [
  ['memory', () => ({ backend: new MemoryBackend(), dispose: () => undefined })],
  ['level', () => {
    const dir = tempDir('kv-store-');
    return { backend: new LevelBackend(join(dir, 'db')), dispose: () => removeDir(dir) };
  }],
];

for (const [name, make] of backends) {
  describe(`record store compliance (${name})`, () => {
    let store: RecordStore;
    let dispose: () => void;

    beforeEach(async () => {
      const made = make();
      dispose = made.dispose;
      store = new RecordStore({ backend: made.backend, partitions: Q, segments: 64, sync: false });
      await store.open();
    });

    afterEach(async () => {
      await store.close();
      dispose();
    });

    it('returns undefined for a missing key and the record for a stored one', async () => {
      expect(await store.get('nope')).to.equal(undefined);
      await store.apply('k', { version: v(1), value: Buffer.from([0, 1, 255]) });
      const rec = await store.get('k');
      expect(rec?.version).to.equal(v(1));
      expect(rec?.value && [...rec.value]).to.deep.equal([0, 1, 255]);
    });

    it('applies only newer versions (last writer wins on version, not arrival)', async () => {
      expect((await store.apply('k', { version: v(5), value: Buffer.from('five') })).applied).to.equal(true);
      const older = await store.apply('k', { version: v(3), value: Buffer.from('three') });
      expect(older).to.deep.equal({ applied: false, version: v(5) });
      const same = await store.apply('k', { version: v(5), value: Buffer.from('other') });
      expect(same.applied).to.equal(false);
      expect((await store.get('k'))?.value?.toString()).to.equal('five');
      expect((await store.apply('k', { version: v(5, 'n2'), value: Buffer.from('tie') })).applied, 'node id breaks ties').to.equal(true);
    });

    it('serializes concurrent writes to one key: the highest version wins whatever the order', async () => {
      const versions = Array.from({ length: 200 }, (_, i) => v(1000 + ((i * 7919) % 200)));
      const results = await Promise.all(versions.map((ver) => store.apply('hot', { version: ver, value: Buffer.from(ver) })));
      const max = [...versions].sort().at(-1);
      expect((await store.get('hot'))?.version).to.equal(max);
      expect(results.filter((r) => r.applied).length).to.be.greaterThan(0);
      for (const r of results) expect(r.version <= (max as string)).to.equal(true);
      expect(await store.partitionKeyCount(partitionOf('hot', Q))).to.equal(1);
    });

    it('keeps last-writer-wins exact when the version cache evicts (cache of 2 keys)', async () => {
      const small = new RecordStore({ backend: new MemoryBackend(), partitions: Q, segments: 64, sync: false, versionCacheSize: 2 });
      await small.open();
      const keys = ['a', 'b', 'c', 'd', 'e'];
      for (const k of keys) await small.apply(k, { version: v(10), value: Buffer.from(`${k}10`) });
      for (const k of keys) expect((await small.apply(k, { version: v(5), value: Buffer.from('old') })).applied, `${k} older`).to.equal(false);
      for (const k of keys) expect((await small.apply(k, { version: v(20), value: Buffer.from('new') })).applied, `${k} newer`).to.equal(true);
      await small.purge('a', v(20));
      expect((await small.apply('a', { version: v(1), value: Buffer.from('after purge') })).applied, 'absent after purge').to.equal(true);
      for (const k of keys.slice(1)) expect((await small.get(k))?.version).to.equal(v(20));
      await small.close();
    });

    it('keeps tombstones as records and counts them until purged', async () => {
      const p = partitionOf('gone', Q);
      await store.apply('gone', { version: v(1), value: Buffer.from('x') });
      await store.apply('gone', { version: v(2), value: null });
      expect((await store.get('gone'))?.value).to.equal(null);
      expect(await store.partitionKeyCount(p)).to.equal(1);
      expect(await store.apply('gone', { version: v(1), value: Buffer.from('late') }).then((r) => r.applied), 'an older write cannot resurrect').to.equal(false);
      expect(await store.purge('gone', v(1)), 'purge needs the exact stored version').to.equal(false);
      expect(await store.purge('gone', v(2))).to.equal(true);
      expect(await store.get('gone')).to.equal(undefined);
      expect(await store.partitionKeyCount(p)).to.equal(0);
    });

    it('scans one partition in (segment, key) order and only that partition', async () => {
      const keys = Array.from({ length: 300 }, (_, i) => `key-${i}`);
      await Promise.all(keys.map((k, i) => store.apply(k, { version: v(i + 1), value: Buffer.from(k) })));
      let total = 0;
      for (let p = 0; p < Q; p++) {
        const seen: string[] = [];
        for await (const [k] of store.scanPartition(p)) seen.push(k);
        const order = (k: string): string => `${String(store.locate(k).segment).padStart(8, '0')}/${k}`;
        expect(seen.map(order)).to.deep.equal(seen.map(order).sort());
        for (const k of seen) expect(partitionOf(k, Q)).to.equal(p);
        for (const k of seen) expect(store.locate(k).partition).to.equal(p);
        expect(seen.length).to.equal(await store.partitionKeyCount(p));
        total += seen.length;
        if (seen.length > 2) {
          const rest: string[] = [];
          for await (const [k] of store.scanPartition(p, { after: seen[0] as string, limit: 2 })) rest.push(k);
          expect(rest).to.deep.equal(seen.slice(1, 3));
        }
      }
      expect(total).to.equal(keys.length);
    });

    it('lists exactly one Merkle segment of a partition with scanSegment', async () => {
      const keys = Array.from({ length: 400 }, (_, i) => `seg-${i}`);
      await Promise.all(keys.map((k, i) => store.apply(k, { version: v(i + 1), value: Buffer.from(k) })));
      const { partition, segment } = store.locate('seg-7');
      const expected = keys.filter((k) => { const l = store.locate(k); return l.partition === partition && l.segment === segment; }).sort();
      const got: string[] = [];
      for await (const [k] of store.scanSegment(partition, segment)) got.push(k);
      expect(got).to.deep.equal(expected);
      expect(got).to.include('seg-7');
    });

    it('refuses use before open and after close with KV_STORE_NOT_OPEN', async () => {
      const fresh = new RecordStore({ backend: new MemoryBackend(), partitions: Q, segments: 64, sync: false });
      let caught: unknown;
      try { await fresh.get('x'); } catch (err) { caught = err; }
      expect(isKvError(caught, 'KV_STORE_NOT_OPEN')).to.equal(true);
      await store.close();
      caught = undefined;
      try { await store.apply('x', { version: v(1), value: null }); } catch (err) { caught = err; }
      expect(isKvError(caught, 'KV_STORE_NOT_OPEN')).to.equal(true);
    });

    it('waits for queued writes before closing', async () => {
      const writes = Array.from({ length: 100 }, (_, i) => store.apply(`q${i}`, { version: v(i + 1), value: Buffer.from('x') }));
      await store.close();
      const results = await Promise.all(writes);
      expect(results.every((r) => r.applied)).to.equal(true);
    });

    it('refuses writes beyond the queue limit instead of growing without bound', async () => {
      const small = new RecordStore({ backend: new MemoryBackend(), partitions: Q, segments: 64, sync: false, maxQueuedWrites: 10 });
      await small.open();
      const outcomes = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => small.apply(`k${i}`, { version: v(1), value: null })));
      const refused = outcomes.filter((o) => o.status === 'rejected');
      expect(refused.length).to.be.greaterThan(0);
      expect(isKvError((refused[0] as PromiseRejectedResult).reason, 'KV_TOO_MANY_REQUESTS')).to.equal(true);
      await small.close();
    });
  });
}

describe('record codec', () => {
  it('round-trips values, tombstones and expiry', () => {
    for (const rec of [{ version: v(1), value: Buffer.from('abc') }, { version: v(2), value: null }, { version: v(3), value: Buffer.alloc(0), expiresAt: 123 }]) {
      expect(decodeRecord(encodeRecord(rec))).to.deep.equal(rec);
    }
  });

  it('rejects malformed records from peers', () => {
    for (const bad of [null, 1, [], ['x', null], [v(1)], [v(1), 'string-not-bytes'], [v(1), null, 'soon'], [v(1), null, 1, 2]]) {
      expect(validateRecord(bad), JSON.stringify(bad)).to.equal(undefined);
    }
  });
});

describe('LevelDB backend lifecycle', () => {
  it('reports a clear error when the directory is locked by another open store', async () => {
    const dir = tempDir('kv-lock-');
    const a = new LevelBackend(join(dir, 'db'));
    await a.open();
    const b = new LevelBackend(join(dir, 'db'));
    let caught: unknown;
    try { await b.open(); } catch (err) { caught = err; }
    expect(isKvError(caught, 'KV_STORE_NOT_OPEN')).to.equal(true);
    expect((caught as Error).message).to.contain('cannot open LevelDB');
    await a.close();
    removeDir(dir);
  });

  it('takes its memory options: a 64 KiB write buffer flushes tables, and every record survives compaction and a reopen', async () => {
    const dir = tempDir('kv-opts-');
    const opts = { writeBufferBytes: 64 * 1024, maxFileBytes: 1024 * 1024, cacheBytes: 256 * 1024, maxOpenFiles: 74 };
    const open = async (): Promise<RecordStore> => {
      const s = new RecordStore({ backend: new LevelBackend(join(dir, 'db'), opts), partitions: Q, segments: 64, sync: false, versionCacheSize: 0 });
      await s.open();
      return s;
    };
    let s = await open();
    expect((s.backend as LevelBackend).options).to.deep.equal({ ...DEFAULT_LEVEL_OPTIONS, ...opts });
    const value = Buffer.alloc(200, 7);
    // 2,000 records of ~220 B are ~7 write buffers of 64 KiB; with the default 4 MiB buffer no table would be written.
    for (let i = 0; i < 2000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => s.apply(`k${i + j}`, { version: v(i + j + 1), value })));
    }
    await s.close();
    expect(readdirSync(join(dir, 'db')).filter((f) => f.endsWith('.ldb')).length).to.be.greaterThan(0);
    s = await open();
    const versions = await Promise.all(Array.from({ length: 2000 }, async (_, i) => (await s.get(`k${i}`))?.version));
    expect(versions.every((ver, i) => ver === v(i + 1))).to.equal(true);
    let counted = 0;
    for (let p = 0; p < Q; p++) counted += await s.partitionKeyCount(p);
    expect(counted).to.equal(2000);
    await s.close();
    removeDir(dir);
  });
});
