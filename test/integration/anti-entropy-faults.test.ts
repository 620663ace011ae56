/**
 * The anti-entropy runtime (lib/node/anti-entropy.ts) wired in one process exactly as a
 * node wires it: RecordStore + MerkleIndex per replica, AntiEntropy over a MemoryNetwork
 * transport. Faults the real-process tests cannot aim at precisely:
 * - records too big to move in one frame together (large values, one exchange);
 * - a responder that loses its session in the middle of an exchange (restart, or the
 *   initiator stalled past the responder's idle timeout) must not count as "replica
 *   confirmed", or tombstone GC purges a tombstone that replica never received;
 * - a former owner's copy of a partition (kept after a join moved it away) must not bring
 *   back a delete that was purged meanwhile once the partition moves back to it;
 * - a joiner that cannot reach enough owners of a partition (N - W + 1) waits for one to come
 *   back instead of finishing its stream without a write acknowledged by the others.
 *
 * Wall time < 1 s.
 */
import { expect } from 'chai';
import { makeVersion } from '../../lib/core/hlc.ts';
import { DEFAULT_MERKLE_SHAPE } from '../../lib/core/merkle.ts';
import { h64, partitionOf, replicasOf } from '../../lib/core/partitioner.ts';
import { Topology } from '../../lib/core/topology.ts';
import { Metrics } from '../../lib/api/metrics.ts';
import { MemoryNetwork } from '../../lib/net/index.ts';
import type { RequestOptions, Transport, TransportEvent, Handler } from '../../lib/net/index.ts';
import { AntiEntropy } from '../../lib/node/anti-entropy.ts';
import { createLogger } from '../../lib/node/log.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { MerkleIndex } from '../../lib/storage/merkle-index.ts';
import { RecordStore } from '../../lib/storage/record-store.ts';
import type { StoredRecord } from '../../lib/storage/record.ts';
import { pollUntil } from '../helpers/poll.ts';

const Q = 16;
const GRACE_MS = 1000;

/** Delegates to a real transport and lets a test act just before each request goes out. */
class TapTransport implements Transport {
  constructor(private readonly inner: Transport, private readonly before: (type: string, payload: unknown, to: string) => void) {}
  get selfId(): string { return this.inner.selfId; }
  handle(type: string, handler: Handler): void { this.inner.handle(type, handler); }
  send(to: string, type: string, payload: unknown): boolean { return this.inner.send(to, type, payload); }
  request<T = unknown>(to: string, type: string, payload: unknown, opts?: RequestOptions): Promise<T> {
    try {
      this.before(type, payload, to);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.inner.request<T>(to, type, payload, opts);
  }
  isConnected(peer: string): boolean { return this.inner.isConnected(peer); }
  connectedPeers(): string[] { return this.inner.connectedPeers(); }
  on(event: TransportEvent, listener: (peer: string) => void): () => void { return this.inner.on(event, listener); }
  stats(): ReturnType<Transport['stats']> { return this.inner.stats(); }
  close(): Promise<void> { return this.inner.close(); }
}

interface Replica { id: string; store: RecordStore; index: MerkleIndex; ae: AntiEntropy }

interface Group { nodes: Map<string, Replica>; topology: Topology; net: MemoryNetwork; close: () => Promise<void> }

/**
 * Replicas `ids` sharing one Topology (every node at the same epoch); the first id creates
 * the cluster with replication factor `n`, the others (or only `members`) are added as
 * normal members; the rest are on the network, ready to join.
 * `tap` watches a's outgoing requests; `clockOffsetMs` shifts b's injected clock.
 */
async function group(ids: string[], n: number,
  opts: { tap?: (type: string, payload: unknown, to: string) => void; clockOffsetMs?: () => number; members?: string[]; isAlive?: (id: string) => boolean } = {}): Promise<Group> {
  const topology = new Topology();
  topology.apply({ op: 'create', clusterId: 'test', partitions: Q, n, vnodes: 160, id: ids[0] as string, addr: '127.0.0.1:1' });
  for (const id of (opts.members ?? ids).slice(1)) {
    topology.apply({ op: 'add', id, addr: '127.0.0.1:2' });
    topology.apply({ op: 'normal', id });
  }
  const net = new MemoryNetwork();
  const log = createLogger('test', 'silent');
  const transports: Transport[] = [];
  const nodes = new Map<string, Replica>();
  for (const id of ids) nodes.set(id, await replica(net, id, topology, transports, log, opts));
  // MemoryNetwork links transports asynchronously.
  await pollUntil(() => transports.every((t) => ids.every((peer) => peer === t.selfId || t.isConnected(peer))), { what: 'memory links' });
  const close = async (): Promise<void> => {
    for (const t of transports) await t.close();
    for (const r of nodes.values()) await r.store.close();
  };
  return { nodes, topology, net, close };
}

async function replica(net: MemoryNetwork, id: string, topology: Topology, transports: Transport[], log: ReturnType<typeof createLogger>,
  opts: { tap?: (type: string, payload: unknown, to: string) => void; clockOffsetMs?: () => number; isAlive?: (id: string) => boolean }): Promise<Replica> {
  const backend = new MemoryBackend();
  const index = new MerkleIndex(backend, h64, DEFAULT_MERKLE_SHAPE);
  const store = new RecordStore({ backend, partitions: Q, segments: DEFAULT_MERKLE_SHAPE.segments, sync: false, index });
  await store.open();
  const real = net.transport({ selfId: id });
  transports.push(real);
  const transport = id === 'a' && opts.tap ? new TapTransport(real, opts.tap) : real;
  const offset = id === 'b' ? opts.clockOffsetMs : undefined;
  const ae = new AntiEntropy({
    selfId: id, store, index, transport, metrics: new Metrics({ defaultMetrics: false }), log,
    topology: () => topology, isAlive: opts.isAlive ?? (() => true), intervalMs: 60_000, tombstoneGraceMs: GRACE_MS,
    maxKeyBytes: 1024, maxValueBytes: 1024 * 1024, ...(offset ? { now: () => Date.now() + offset() } : {}),
  });
  return { id, store, index, ae };
}

type Table = ReturnType<Topology['table']>;

/**
 * a and b own everything (N=2) and c is being added: the tables before and after, and `apply`,
 * which commits a change and calls onTopology on every node, as a real node does on each
 * committed change (Membership 'change' events).
 */
async function joiningC(): Promise<{ g: Group; node: (id: string) => Replica; apply: (cmd: Parameters<Topology['apply']>[0]) => Promise<void>; before: Table; future: Table }> {
  const g = await group(['a', 'b', 'c'], 2, { members: ['a', 'b'] });
  const t = g.topology;
  const node = (id: string): Replica => g.nodes.get(id) as Replica;
  const apply = async (cmd: Parameters<Topology['apply']>[0]): Promise<void> => {
    t.apply(cmd);
    await Promise.all([...g.nodes.values()].map((r) => r.ae.onTopology(t)));
  };
  await Promise.all([...g.nodes.values()].map((r) => r.ae.onTopology(t)));
  const before = t.table('current');
  await apply({ op: 'add', id: 'c', addr: '127.0.0.1:3' });
  return { g, node, apply, before, future: t.table('future') };
}

/** Writes `n` keys of partition `p` on `r` (values from `value`); returns the keys. */
async function fill(r: Replica, p: number, n: number, value: (i: number) => Buffer): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; keys.length < n; i++) if (partitionOf(`fill-${i}`, Q) === p) keys.push(`fill-${i}`);
  const version = makeVersion({ wall: Date.now(), logical: 0 }, r.id);
  await Promise.all(keys.map((k, i) => r.store.apply(k, { version, value: value(i) })));
  return keys;
}

/** A record's state on one replica, for assertion messages. */
async function state(r: Replica, key: string): Promise<string> {
  const rec = await r.store.get(key);
  return rec === undefined ? 'none' : rec.value === null ? 'tombstone' : `value ${rec.value.toString()}`;
}

describe('anti-entropy runtime faults (in process: RecordStore + MerkleIndex + MemoryNetwork)', function () {
  this.timeout(30_000);

  it('moves records whose batch is bigger than one frame (64 values of 64 KiB missing on the peer)', async () => {
    const g = await group(['a', 'b'], 2);
    const a = g.nodes.get('a') as Replica;
    const b = g.nodes.get('b') as Replica;
    try {
      // All in one partition, so one exchange must move 4 MiB.
      const keys: string[] = [];
      for (let i = 0; keys.length < 64; i++) if (partitionOf(`big-${i}`, Q) === 3) keys.push(`big-${i}`);
      const value = Buffer.alloc(64 * 1024, 0x61);
      await Promise.all(keys.map((k, i) => a.store.apply(k, { version: makeVersion({ wall: Date.now(), logical: i }, 'a'), value })));
      const result = await a.ae.exchange(3, 'b').catch((err: Error) => err);
      expect(result, `exchange failed: ${(result as Error).message}`).to.not.be.instanceOf(Error);
      expect(await b.index.root(3)).to.equal(await a.index.root(3));
      expect(await b.store.partitionKeyCount(3)).to.equal(64);
    } finally {
      await g.close();
    }
  });

  it('does not purge a tombstone when the exchange with a replica was cut short by a lost responder session', async () => {
    // b loses its session between two messages of a's exchange, as after b's restart or a
    // stall of a past b's idle timeout: b's clock jumps past that timeout after the first message.
    let jumped = 0;
    let messages = 0;
    const g = await group(['a', 'b'], 2, {
      tap: (type) => { if (type === 'ae.msg' && ++messages === 2) jumped = 31_000; },
      clockOffsetMs: () => jumped,
    });
    const a = g.nodes.get('a') as Replica;
    const b = g.nodes.get('b') as Replica;
    const topology = g.topology;
    try {
      const table = topology.table('current');
      let key = '';
      for (let i = 0; key === ''; i++) if (replicasOf(table, partitionOf(`gone-${i}`, Q))[0] === 'a') key = `gone-${i}`;
      const p = partitionOf(key, Q);
      const t = Date.now() - 10 * GRACE_MS;
      const value = { version: makeVersion({ wall: t, logical: 0 }, 'a'), value: Buffer.from('old') };
      await a.store.apply(key, value);
      await b.store.apply(key, value);
      // The delete reached a only (b was down); it is past its grace period.
      const tombstone = { version: makeVersion({ wall: t + GRACE_MS, logical: 0 }, 'a'), value: null };
      await a.store.apply(key, tombstone);

      await a.ae.syncPartition(p);

      const onA = await a.store.get(key);
      const onB = await b.store.get(key);
      // Either b got the tombstone, or a still holds it: never "a forgot the delete, b has the value".
      const resurrected = onA === undefined && onB?.value !== null && onB !== undefined;
      expect(resurrected, `a: ${JSON.stringify(onA)}, b: ${JSON.stringify(onB)}`).to.equal(false);
    } finally {
      await g.close();
    }
  });
  it('bulk-pulls a partition it has nothing of (a new owner), a range at a time, without the key-by-key exchange', async () => {
    const g = await group(['a', 'b'], 2);
    const a = g.nodes.get('a') as Replica;
    const b = g.nodes.get('b') as Replica;
    try {
      const p = 3;
      let n = 0;
      for (let i = 0; n < 5000; i++) {
        const key = `bulk-${i}`;
        if (partitionOf(key, Q) !== p) continue;
        await b.store.apply(key, { version: makeVersion({ wall: Date.now(), logical: 0 }, 'b'), value: Buffer.alloc(300, n % 256) });
        n++;
      }
      const r = await a.ae.exchange(p, 'b', { bulk: 'pull' });
      expect(r.outcome).to.equal('bulk');
      expect(r.pulled).to.equal(5000);
      expect(await a.store.partitionKeyCount(p)).to.equal(5000);
      expect((await a.index.root(p)), 'same Merkle root as the source').to.equal(await b.index.root(p));
      // Now that a holds the partition, the same call runs the key-by-key exchange (in sync: nothing moves).
      const again = await a.ae.exchange(p, 'b', { bulk: 'pull' });
      expect(again.outcome).to.equal('in-sync');
    } finally {
      await g.close();
    }
  });

  it('bulk-copies a partition that holds fewer than half of the other side\'s records (client writes that reached a new owner first), keeping newer writes; with half or more, the key-by-key exchange', async () => {
    const g = await group(['a', 'b'], 2);
    const a = g.nodes.get('a') as Replica;
    const b = g.nodes.get('b') as Replica;
    const at = (wall: number, node: string): string => makeVersion({ wall, logical: 0 }, node);
    try {
      // Pull: b holds 400 records of partition 5; a got 150 client writes of the same keys first,
      // 100 newer than b's copies and 50 older.
      const keys = await fill(b, 5, 400, () => Buffer.from('b'));
      const newer = at(Date.now() + 60_000, 'c');
      await Promise.all(keys.slice(0, 150).map((k, i) => a.store.apply(k, { version: i < 100 ? newer : at(1, 'c'), value: Buffer.from('client') })));
      const pulled = await a.ae.exchange(5, 'b', { bulk: 'pull' });
      expect(pulled.outcome).to.equal('bulk');
      for (const [i, k] of keys.entries()) expect((await a.store.get(k))?.version, k).to.equal(i < 100 ? newer : (await b.store.get(k))?.version);
      expect(await a.store.partitionKeyCount(5)).to.equal(400);
      // onlyIntoEmpty: a partition holding anything gets the exchange (here b pulls a's 100 newer writes).
      const back = await b.ae.exchange(5, 'a', { bulk: 'pull', onlyIntoEmpty: true });
      expect(back.outcome).to.equal('repaired');
      expect(back.pulled).to.equal(100);
      // Push: a holds 300 records of partition 6, b holds 150 of them (half): the exchange, not a copy.
      const six = await fill(a, 6, 300, () => Buffer.from('a'));
      for (const k of six.slice(0, 150)) await b.store.apply(k, (await a.store.get(k)) as StoredRecord);
      const pushed = await a.ae.exchange(6, 'b', { bulk: 'push' });
      expect(pushed.outcome).to.equal('repaired');
      expect(pushed.pushed).to.equal(150);
      // With 149 of 300 on b (fewer than half): a copy.
      const seven = await fill(a, 7, 300, () => Buffer.from('a'));
      for (const k of seven.slice(0, 149)) await b.store.apply(k, (await a.store.get(k)) as StoredRecord);
      expect((await a.ae.exchange(7, 'b', { bulk: 'push' })).outcome).to.equal('bulk');
      for (const p of [5, 6, 7]) expect(await b.index.root(p), `roots of partition ${p}`).to.equal(await a.index.root(p));
      expect((await a.ae.scrub(0)).repaired + (await b.ae.scrub(0)).repaired, 'Merkle trees as the records say').to.equal(0);
    } finally {
      await g.close();
    }
  });

  it('keeps last-writer-wins exact while a bulk pull applies pages and client writes to the same keys arrive', async () => {
    const writes: Promise<unknown>[] = [];
    const want = new Map<string, string>();
    let a: Replica | undefined;
    let keys: string[] = [];
    let scans = 0;
    const g = await group(['a', 'b'], 2, {
      // From the second page on, a client writes every third key newer and every third older than b's copy.
      tap: (type) => {
        if (type !== 'ae.scan' || scans++ !== 1 || !a) return;
        keys.forEach((k, i) => {
          if (i % 3 === 2) return;
          const version = makeVersion({ wall: i % 3 === 0 ? Date.now() + 60_000 : 1, logical: 0 }, 'c');
          if (i % 3 === 0) want.set(k, version);
          writes.push((a as Replica).store.apply(k, { version, value: Buffer.from('client') }));
        });
      },
    });
    a = g.nodes.get('a') as Replica;
    const b = g.nodes.get('b') as Replica;
    try {
      const p = 7;
      keys = await fill(b, p, 9000, () => Buffer.alloc(200, 1));
      for (const k of keys) if (!want.has(k)) want.set(k, (await b.store.get(k))?.version as string);
      const r = await a.ae.exchange(p, 'b', { bulk: 'pull' });
      await Promise.all(writes);
      expect(r.outcome).to.equal('bulk');
      expect(scans, 'more than one page').to.be.greaterThan(1);
      for (const [i, k] of keys.entries()) expect((await a.store.get(k))?.version, `${k} (${i % 3 === 0 ? 'newer' : 'older'} client write)`).to.equal(i % 3 === 0 ? want.get(k) : (await b.store.get(k))?.version);
      expect(await a.store.partitionKeyCount(p)).to.equal(keys.length);
      const scrub = await a.ae.scrub(0);
      expect(scrub.repaired, 'Merkle trees as the records say').to.equal(0);
    } finally {
      await g.close();
    }
  });

  it('bulk-pushes a partition its peer holds nothing of (a leaving owner), in pages of at most 512 KiB and 4096 records', async () => {
    const pages: Array<{ records: number; bytes: number }> = [];
    const g = await group(['a', 'b'], 2, {
      tap: (type, payload) => {
        if (type !== 'ae.load') return;
        const records = (payload as { records: Array<[string, [string, Uint8Array | null]]> }).records;
        pages.push({ records: records.length, bytes: records.reduce((s, [k, r]) => s + k.length + (r[1]?.length ?? 0), 0) });
      },
    });
    const a = g.nodes.get('a') as Replica;
    const b = g.nodes.get('b') as Replica;
    try {
      const p = 5;
      const keys = await fill(a, p, 6000, (n) => Buffer.alloc(n % 10 === 0 ? 20_000 : 100, n % 256));
      const r = await a.ae.exchange(p, 'b', { bulk: 'push' });
      expect(r.outcome).to.equal('bulk');
      expect(r.pushed).to.equal(keys.length);
      expect(await b.store.partitionKeyCount(p)).to.equal(keys.length);
      expect(await b.index.root(p), 'same Merkle root as the source').to.equal(await a.index.root(p));
      expect(pages.length, 'several pages').to.be.at.least(3);
      for (const pg of pages) {
        expect(pg.records).to.be.at.most(4096);
        expect(pg.bytes).to.be.at.most(512 * 1024);
      }
    } finally {
      await g.close();
    }
  });

  it('bulk-pushes to a peer of an older version (no ae.load) in ae.push batches of at most 256 records', async () => {
    const g = await group(['a'], 1);
    const a = g.nodes.get('a') as Replica;
    const old = g.net.transport({ selfId: 'old' });
    const got: string[] = [];
    const batches: number[] = [];
    old.handle('ae.count', () => 0);
    old.handle('ae.push', (_from, payload) => {
      const records = payload as Array<[string, unknown]>;
      batches.push(records.length);
      for (const [k] of records) got.push(k);
      return records.length;
    });
    try {
      await pollUntil(() => old.isConnected('a'), { what: 'memory link to a' });
      const p = 9;
      const keys = await fill(a, p, 700, () => Buffer.from('v'));
      const r = await a.ae.exchange(p, 'old', { bulk: 'push' });
      expect([r.outcome, r.pushed]).to.deep.equal(['bulk', keys.length]);
      expect(got.sort()).to.deep.equal([...keys].sort());
      expect(Math.max(...batches)).to.be.at.most(256);
    } finally {
      await old.close();
      await g.close();
    }
  });

  it('refuses a streaming page over its bounds or with a key of another partition (KV_FRAME_*), applying none of it', async () => {
    const g = await group(['a'], 1);
    const a = g.nodes.get('a') as Replica;
    const peer = g.net.transport({ selfId: 'e' });
    const p = 7;
    const keysOf = (n: number, partition: number): string[] => {
      const out: string[] = [];
      for (let i = 0; out.length < n; i++) if (partitionOf(`page-${i}`, Q) === partition) out.push(`page-${i}`);
      return out;
    };
    const version = makeVersion({ wall: Date.now(), logical: 0 }, 'e');
    const page = (keys: string[], valueBytes: number): unknown[] => keys.map((k) => [k, [version, Buffer.alloc(valueBytes, 1)]]);
    let answer: unknown = null;
    peer.handle('ae.scan', () => answer);
    try {
      await pollUntil(() => peer.isConnected('a'), { what: 'memory link to a' });
      const cases: Array<[string, unknown, string]> = [
        ['4097 records', { records: page(keysOf(4097, p), 1), next: null, bytes: 0 }, 'KV_FRAME_INVALID'],
        // 1.17 MiB: over the 1 MiB page bound, under the transport's frame limit (so the refusal is the page check's).
        ['20 records of 60 KiB', { records: page(keysOf(20, p), 60 * 1024), next: null, bytes: 0 }, 'KV_FRAME_TOO_LARGE'],
        ['a key of another partition', { records: page([...keysOf(2, p), ...keysOf(1, p + 1)], 10), next: null, bytes: 0 }, 'KV_FRAME_INVALID'],
        ['no next', { records: [], bytes: 0 }, 'KV_FRAME_INVALID'],
      ];
      for (const [what, body, code] of cases) {
        answer = body;
        const err = await a.ae.exchange(p, 'e', { bulk: 'pull' }).then(() => undefined, (e: unknown) => e);
        expect((err as { code?: string } | undefined)?.code, `ae.scan answer with ${what}`).to.equal(code);
        const pushed = await peer.request('a', 'ae.load', { partition: p, records: (body as { records?: unknown }).records }).then(() => undefined, (e: unknown) => e);
        if (what !== 'no next') expect((pushed as { code?: string } | undefined)?.code, `ae.load with ${what}`).to.equal(code);
      }
      expect(await a.store.partitionKeyCount(p), 'nothing applied').to.equal(0);
    } finally {
      await peer.close();
      await g.close();
    }
  });

  it('keeps a partition it lost until every new owner confirmed it, pushing what only it had', async () => {
    const down = new Set<string>();
    const g = await group(['a', 'b', 'c'], 2, { members: ['a', 'b'], isAlive: (id) => !down.has(id) });
    const t = g.topology;
    const node = (id: string): Replica => g.nodes.get(id) as Replica;
    const apply = async (cmd: Parameters<Topology['apply']>[0]): Promise<void> => {
      t.apply(cmd);
      await Promise.all([...g.nodes.values()].map((r) => r.ae.onTopology(t)));
    };
    try {
      await Promise.all([...g.nodes.values()].map((r) => r.ae.onTopology(t)));
      const before = t.table('current');
      await apply({ op: 'add', id: 'c', addr: '127.0.0.1:3' });
      await node('c').ae.stream('join', () => false);
      const future = t.table('future');
      let key = '';
      for (let i = 0; key === ''; i++) if (replicasOf(future, partitionOf(`late-${i}`, Q)).includes('c')) key = `late-${i}`;
      const p = partitionOf(key, Q);
      const former = replicasOf(before, p).find((id) => !replicasOf(future, p).includes(id)) as string;
      // Written during the hand-off window, reaching only the former owner.
      await node(former).store.apply(key, { version: makeVersion({ wall: Date.now(), logical: 0 }, 'a'), value: Buffer.from('late') });
      down.add('c');
      await apply({ op: 'normal', id: 'c' });
      await node(former).ae.handOffAll();
      expect(node(former).ae.pendingHandoffs(), 'a new owner is down: the hand-off waits').to.include(p);
      expect(await state(node(former), key)).to.equal('value late');
      down.delete('c');
      await node(former).ae.handOffAll();
      expect(node(former).ae.pendingHandoffs()).to.not.include(p);
      expect(await state(node(former), key), 'dropped after the confirmation').to.equal('none');
      for (const id of replicasOf(t.table('current'), p)) expect(await state(node(id), key), `new owner ${id}`).to.equal('value late');
    } finally {
      await g.close();
    }
  });

  it('does not pull a partition back onto its former owner when a walk listed from before the change reaches it', async () => {
    const { g, node, apply, before, future } = await joiningC();
    try {
      const p = [...Array(Q).keys()].find((x) => replicasOf(future, x).includes('c') && !replicasOf(before, x).includes('c')) as number;
      const former = replicasOf(before, p).find((id) => !replicasOf(future, p).includes(id)) as string;
      const keys = await fill(node('a'), p, 20, () => Buffer.from('v'));
      await fill(node('b'), p, 20, () => Buffer.from('v'));
      await node('c').ae.stream('join', () => false);
      await apply({ op: 'normal', id: 'c' });
      await pollUntil(async () => (await node(former).store.partitionKeyCount(p)) === 0, { what: `former owner ${former} dropped partition ${p}`, timeoutMs: 10_000 });
      // The walk that listed p before the change gets to it now.
      await node(former).ae.syncPartition(p);
      expect(await node(former).store.partitionKeyCount(p), `${former} after syncPartition(${p})`).to.equal(0);
      expect(await node('c').store.partitionKeyCount(p), 'the new owner holds it').to.equal(keys.length);
    } finally {
      await g.close();
    }
  });

  it('does not bring a purged delete back from a former owner\'s stale copy when ownership returns', async () => {
    // a and b own everything (N=2); c joins and takes some partitions; a key deleted and
    // GC'd there; c leaves again, handing the partition back to its former owner.
    const { g, node, apply, before, future } = await joiningC();
    const t = g.topology;
    try {
      let key = '';
      for (let i = 0; key === ''; i++) if (replicasOf(future, partitionOf(`stale-${i}`, Q)).includes('c')) key = `stale-${i}`;
      const p = partitionOf(key, Q);
      const former = replicasOf(before, p).find((id) => !replicasOf(future, p).includes(id)) as string;
      const wall = Date.now() - 10 * GRACE_MS;
      const value = { version: makeVersion({ wall, logical: 0 }, 'a'), value: Buffer.from('old') };
      await node('a').store.apply(key, value);
      await node('b').store.apply(key, value);

      await node('c').ae.stream('join', () => false);
      await apply({ op: 'normal', id: 'c' });
      // The former owner hands the partition off: dropped once every new owner confirmed it.
      await pollUntil(async () => (await state(node(former), key)) === 'none', { what: `former owner ${former} dropped its copy`, timeoutMs: 10_000 });
      expect(node(former).ae.pendingHandoffs(), 'no hand-off left').to.not.include(p);
      const owners = replicasOf(t.table('current'), p);
      const tombstone = { version: makeVersion({ wall: wall + GRACE_MS, logical: 0 }, 'a'), value: null };
      for (const id of owners) await node(id).store.apply(key, tombstone);
      await node(owners[0] as string).ae.syncPartition(p);
      for (const id of owners) expect(await state(node(id), key), `${id} after GC`).to.equal('none');

      await apply({ op: 'leave', id: 'c' });
      await node('c').ae.stream('leave', () => false);
      await apply({ op: 'remove', id: 'c' });
      for (const id of ['a', 'b']) await node(id).ae.syncPartition(p);
      const states = await Promise.all(['a', 'b'].map(async (id) => `${id}: ${await state(node(id), key)}`));
      expect(states.filter((x) => x.includes('value')), states.join(', ')).to.deep.equal([]);
      await pollUntil(async () => (await node('c').store.partitionKeyCount(p)) === 0, { what: 'the removed node dropped what it held', timeoutMs: 10_000 });
    } finally {
      await g.close();
    }
  });
  it('streams a join from N - W + 1 owners of each partition: with two of three unreachable it waits, and then holds a write the reachable one lacks', async () => {
    // b, c and e own everything (N=3); a joins. A key acknowledged by c and e (W=2) is missing on b.
    const down = new Set(['c', 'e']);
    const attempts = new Map<string, number>();
    const g = await group(['b', 'c', 'e', 'a'], 3, {
      members: ['b', 'c', 'e'], isAlive: (id) => !down.has(id),
      tap: (type, _payload, to) => {
        attempts.set(to, (attempts.get(to) ?? 0) + 1);
        if (down.has(to)) throw new Error(`${to} is unreachable (${type})`);
      },
    });
    const t = g.topology;
    const node = (id: string): Replica => g.nodes.get(id) as Replica;
    try {
      t.apply({ op: 'add', id: 'a', addr: '127.0.0.1:4' });
      let key = '';
      for (let i = 0; key === ''; i++) if (replicasOf(t.table('future'), partitionOf(`held-${i}`, Q)).includes('a')) key = `held-${i}`;
      const acked = { version: makeVersion({ wall: Date.now(), logical: 0 }, 'c'), value: Buffer.from('acked') };
      await node('c').store.apply(key, acked);
      await node('e').store.apply(key, acked);

      let finished = false;
      const streaming = node('a').ae.stream('join', () => false).finally(() => { finished = true; });
      // e keeps being asked (c is skipped: b and e make up the two sources once e is back).
      await pollUntil(() => (attempts.get('e') ?? 0) >= 5, { what: 'the joiner retrying an unreachable owner', timeoutMs: 20_000 });
      expect(finished, 'the stream must not finish with one source for a partition').to.equal(false);
      expect(await state(node('a'), key), 'nothing of the key yet').to.equal('none');
      down.delete('e');
      await streaming;
      expect(await state(node('a'), key), 'the joiner holds the write b lacked').to.equal('value acked');
    } finally {
      await g.close();
    }
  });
});
