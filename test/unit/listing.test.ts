/**
 * Listing driven in-process (memory transport, real Lister handlers on every node): pages
 * with small limits return every live key exactly once, leave out tombstones and expired
 * records, find a key held by only one of the R replicas asked, survive a topology change
 * between pages, and refuse malformed scan requests.
 */
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { makeVersion } from '../../lib/core/hlc.ts';
import { Harness, clusterCommands, topologyOf } from '../helpers/coordinator-harness.ts';
import { pollUntil } from '../helpers/poll.ts';

async function listAll(h: Harness, via: string, prefix: string, limit: number): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await h.node(via).lister.list({ prefix, limit, ...(cursor === undefined ? {} : { cursor }) });
    expect(page.keys.length).to.be.at.most(limit);
    keys.push(...page.keys.map((k) => k.key));
    cursor = page.cursor ?? undefined;
    pages++;
  } while (cursor !== undefined);
  return { keys, pages };
}

describe('listing (in-process, memory transport)', function () {
  this.timeout(30_000);
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('lists every live key of a prefix exactly once over small pages, without tombstones and expired records', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd']);
    const c = h.node('a').coordinator;
    const want = new Set<string>();
    for (let i = 0; i < 300; i++) {
      await c.put(`p/${i}`, Buffer.from('v'), {});
      want.add(`p/${i}`);
    }
    for (let i = 0; i < 20; i++) await c.put(`q/${i}`, Buffer.from('other prefix'), {});
    for (let i = 0; i < 300; i += 7) {
      await c.del(`p/${i}`, {});
      want.delete(`p/${i}`);
    }
    let expiresBy = 0;
    for (let i = 1; i < 300; i += 11) {
      if (!want.has(`p/${i}`)) continue;
      await c.put(`p/${i}`, Buffer.from('short-lived'), { ttlMs: 1 });
      expiresBy = Date.now() + 1;
      want.delete(`p/${i}`);
    }
    await pollUntil(() => Date.now() > expiresBy, { what: 'the 1 ms TTLs to pass' });
    const { keys, pages } = await listAll(h, 'b', 'p/', 17);
    expect(keys.length, 'no key twice').to.equal(new Set(keys).size);
    expect(new Set(keys)).to.deep.equal(want);
    expect(pages).to.be.above(want.size / 17);
    expect((await listAll(h, 'c', '', 1000)).keys.length).to.equal(want.size + 20);
  });

  it('finds a key that only one of the replicas asked holds, and lets a newer tombstone on one replica hide it', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const key = 'solo';
    const v1 = makeVersion({ wall: Date.now(), logical: 0 }, 'a');
    await h.node('b').store.apply(key, { version: v1, value: Buffer.from('x') });
    // a (itself no holder) reads all three replicas.
    expect((await h.node('a').lister.list({ prefix: 'solo', limit: 10, r: 'all' })).keys.map((k) => k.key)).to.deep.equal([key]);
    const v2 = makeVersion({ wall: Date.now() + 1, logical: 0 }, 'c');
    await h.node('c').store.apply(key, { version: v2, value: null });
    expect((await h.node('a').lister.list({ prefix: 'solo', limit: 10, r: 'all' })).keys).to.deep.equal([]);
  });

  it('keeps a cursor valid across a topology change between pages', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { members: ['a', 'b', 'c'] });
    for (let i = 0; i < 200; i++) await h.node('a').coordinator.put(`t${i}`, Buffer.from('v'), { w: 'all' });
    const first = await h.node('a').lister.list({ prefix: 't', limit: 50 });
    // d joins and takes over some partitions (it was given their records, as streaming would).
    const newer = topologyOf([...clusterCommands(['a', 'b', 'c']), { op: 'add', id: 'd', addr: 'd:1' }, { op: 'normal', id: 'd' }]);
    for (let i = 0; i < 200; i++) {
      const rec = await h.node('a').store.get(`t${i}`);
      if (rec) await h.node('d').store.apply(`t${i}`, rec);
    }
    h.latest = newer;
    for (const id of ['b', 'c', 'd']) h.setTopology(id, newer); // a catches up when a replica says its epoch is stale
    const seen = first.keys.map((k) => k.key);
    let cursor = first.cursor ?? undefined;
    while (cursor !== undefined) {
      const page = await h.node('a').lister.list({ prefix: 't', limit: 50, cursor });
      seen.push(...page.keys.map((k) => k.key));
      cursor = page.cursor ?? undefined;
    }
    expect(h.node('a').topology.epoch, 'the coordinator caught up during the listing').to.equal(newer.epoch);
    expect(seen.length).to.equal(200);
    expect(new Set(seen).size).to.equal(200);
  });

  it('refuses malformed scans and cursors from another prefix', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const t = h.node('a').transport;
    const epoch = h.latest.epoch;
    for (const payload of [null, [0, epoch, null, 'p'], [999, epoch, null, 'p', 10], [0, epoch, null, 'p', 0], [0, epoch, null, 'p', 5000], [0, epoch, '', 'p', 10], [0, -1, null, 'p', 10]]) {
      const err = await t.request('b', 'list.scan', payload).catch((e: unknown) => e);
      expect(err, JSON.stringify(payload)).to.be.instanceOf(KvError);
      expect(['KV_INVALID_ARGUMENT', 'KV_INVALID_KEY']).to.include((err as KvError).code);
    }
    const page = await h.node('a').lister.list({ prefix: 'p', limit: 1 });
    if (page.cursor !== null) {
      const err = await h.node('a').lister.list({ prefix: 'other', limit: 1, cursor: page.cursor }).catch((e: unknown) => e);
      expect((err as KvError).code).to.equal('KV_INVALID_ARGUMENT');
    }
  });
});
