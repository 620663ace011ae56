/**
 * The coordinator driven in-process: memory transport, memory backends, real replica
 * handlers and hint stores, a wall-clock offset per node. Each test injects one fault
 * (a skewed clock, a paused replica, a stale epoch, down replicas) and checks the answer
 * and what the replicas hold afterwards.
 */
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { makeVersion, parseVersion } from '../../lib/core/hlc.ts';
import { parseSession } from '../../lib/core/session.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { Hlc } from '../../lib/core/hlc.ts';
import { DurableClock } from '../../lib/node/clock.ts';
import { Harness, clusterCommands, topologyOf } from '../helpers/coordinator-harness.ts';
import { pollUntil } from '../helpers/poll.ts';

async function failure(p: Promise<unknown>): Promise<KvError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof KvError) return err;
    throw err;
  }
  throw new Error('expected the request to fail');
}

describe('coordinator (in-process, memory transport)', function () {
  this.timeout(20_000);
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('stamps a later write above an earlier one even when its coordinator\'s clock is 3 s behind', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { offsets: { d: -3000 } });
    for (let i = 0; i < 40; i++) {
      const key = `k${i}`;
      const first = await h.node('a').coordinator.put(key, Buffer.from('first'), {});
      const second = await h.node('d').coordinator.put(key, Buffer.from('second'), {});
      expect(second.version > first.version, `${second.version} above ${first.version}`).to.equal(true);
      const read = await h.node('b').coordinator.get(key, { r: 'all' });
      expect(read.value?.toString(), key).to.equal('second');
    }
  });

  it('counts only replicas that applied: refused-older answers make it re-stamp above the version held', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const key = 'held';
    // Two replicas hold a version 2 s in the future (inside the skew bound) that the coordinator has never seen.
    const ahead = makeVersion({ wall: Date.now() + 2000, logical: 7 }, 'zz');
    for (const id of ['b', 'c']) await h.node(id).store.apply(key, { version: ahead, value: Buffer.from('future') });
    const w = await h.node('a').coordinator.put(key, Buffer.from('now'), { w: 2 });
    expect(w.version > ahead, 'the acknowledged version is above what the replicas held').to.equal(true);
    for (const id of ['a', 'b', 'c']) {
      const rec = await h.node(id).store.get(key);
      expect(rec?.version, id).to.equal(w.version);
    }
  });

  it('answers a write with w=2 while one replica is paused, and a read with r=2 through the other two', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    h.node('c').pause();
    const started = Date.now();
    const w = await h.node('a').coordinator.put('p', Buffer.from('v'), { w: 2 });
    const r = await h.node('b').coordinator.get('p', { r: 2 });
    expect(r.value?.toString()).to.equal('v');
    expect(r.version).to.equal(w.version);
    expect(Date.now() - started, 'neither waited for the paused replica\'s deadline').to.be.below(1500);
    h.node('c').resume();
  });

  it('answers 504 KV_TIMEOUT "unknown" when two replicas are paused (one applied it, the others may)', async () => {
    h = await Harness.start(['a', 'b', 'c'], { requestTimeoutMs: 300 });
    const key = h.keyWhere('t', (r) => r.includes('a'));
    for (const id of ['b', 'c']) h.node(id).pause();
    const err = await failure(h.node('a').coordinator.put(key, Buffer.from('v'), { w: 2 }));
    expect(err.code).to.equal('KV_TIMEOUT');
    expect(err.outcome).to.equal('unknown');
    for (const id of ['b', 'c']) h.node(id).resume();
  });

  it('retries inside the request after a replica refuses a stale epoch, and answers from the new owners', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { members: ['a', 'b', 'c'] });
    const old = h.latest;
    // d joins and becomes normal: b, c and d apply it; coordinator a has not yet.
    const newer = topologyOf([...clusterCommands(['a', 'b', 'c']), { op: 'add', id: 'd', addr: 'd:1' }, { op: 'normal', id: 'd' }]);
    h.latest = newer;
    for (const id of ['b', 'c', 'd']) h.setTopology(id, newer);
    const key = h.keyWhere('e', (r) => !r.includes('a'));
    expect(h.replicasOf(key, old)).to.include('a');
    const w = await h.node('a').coordinator.put(key, Buffer.from('v'), { w: 2 });
    expect(h.node('a').topology.epoch, 'caught up inside the request').to.equal(newer.epoch);
    let holding = 0;
    for (const id of h.replicasOf(key, newer)) if ((await h.node(id).store.get(key))?.version === w.version) holding++;
    expect(holding, 'the new owners applied it').to.be.at.least(2);
  });

  it('fails a strict w=2 with 503 "failed" when two replicas are down, and succeeds sloppy with hints that reach them later', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd', 'e']);
    const key = h.keyWhere('s', (r) => r[0] === 'a');
    const [, r2, r3] = h.replicasOf(key) as [string, string, string];
    h.alive.delete(r2);
    h.alive.delete(r3);
    const strict = await failure(h.node('a').coordinator.put(key, Buffer.from('v'), { w: 2 }));
    expect(strict.code).to.equal('KV_UNAVAILABLE');
    expect(strict.outcome).to.equal('failed');
    for (const id of [r2, r3]) expect(await h.node(id).store.get(key), `${id} holds nothing`).to.equal(undefined);
    const sloppy = await h.node('a').coordinator.put(key, Buffer.from('v'), { w: 2, sloppy: true });
    h.alive.add(r2);
    h.alive.add(r3);
    await pollUntil(async () => {
      for (const id of [r2, r3]) if ((await h?.node(id).store.get(key))?.version !== sloppy.version) return false;
      return true;
    }, { what: 'hints delivered to both replicas', timeoutMs: 10_000 });
  });

  it('gives a session read-your-writes through another coordinator at r=1 while the other replicas missed the write', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { hints: false });
    for (let i = 0; i < 20; i++) {
      // a is a replica but not the first asked; a node that is no replica coordinates the reads.
      const key = h.keyWhere(`rw${i}-`, (r) => r.includes('a') && r[0] !== 'a');
      const reader = ['b', 'c', 'd'].find((id) => !h?.replicasOf(key).includes(id)) as string;
      const others = h.replicasOf(key).filter((id) => id !== 'a');
      // Only a gets the write (w=1): the other replicas are down meanwhile, and hints are off.
      for (const id of others) h.alive.delete(id);
      const w = await h.node('a').coordinator.put(key, Buffer.from(`v${i}`), { w: 1 });
      for (const id of others) h.alive.add(id);
      const plain = await h.node(reader).coordinator.get(key, { r: 1 });
      expect(plain.value, 'without the session, r=1 asks a replica that missed it').to.equal(undefined);
      const r = await h.node(reader).coordinator.get(key, { r: 1, session: parseSession(w.session as string) });
      expect(r.value?.toString(), key).to.equal(`v${i}`);
      expect(r.version).to.equal(w.version);
    }
  });

  it('answers a session read that only a paused replica could serve with 504 KV_SESSION_UNAVAILABLE, not a quorum timeout', async () => {
    h = await Harness.start(['a', 'b', 'c'], { hints: false, requestTimeoutMs: 600 });
    const key = h.keyWhere('paused-', () => true);
    // Only a gets the write (w=1), then a stalls (SIGSTOP-like): still alive to gossip, its requests wait.
    for (const id of ['b', 'c']) h.alive.delete(id);
    const w = await h.node('a').coordinator.put(key, Buffer.from('v'), { w: 1 });
    for (const id of ['b', 'c']) h.alive.add(id);
    h.node('a').pause();
    try {
      const err = await failure(h.node('b').coordinator.get(key, { r: 1, session: parseSession(w.session as string) }));
      expect(err.code, err.message).to.equal('KV_SESSION_UNAVAILABLE');
    } finally {
      h.node('a').resume();
    }
  });

  it('repairs the consulted replicas that are behind before a quorum read answers', async () => {
    h = await Harness.start(['a', 'b', 'c'], { hints: false });
    const key = 'br';
    const now = Date.now();
    const fresh = makeVersion({ wall: now, logical: 0 }, 'a');
    await h.node('a').store.apply(key, { version: fresh, value: Buffer.from('new') });
    await h.node('b').store.apply(key, { version: fresh, value: Buffer.from('new') });
    await h.node('c').store.apply(key, { version: makeVersion({ wall: now - 1000, logical: 0 }, 'a'), value: Buffer.from('old') });
    h.node('b').pause(); // a slow third replica: the answer must not wait for it, and no late repair runs
    const r = await h.node('c').coordinator.get(key, { r: 2 });
    expect(r.value?.toString()).to.equal('new');
    expect((await h.node('c').store.get(key))?.version, 'c repaired before the answer').to.equal(fresh);
    h.node('b').resume();
  });
});

describe('durable HLC', () => {
  it('stamps above its earlier versions after a restart with the wall clock 5 s back', async () => {
    const backend = new MemoryBackend();
    await backend.open();
    let offset = 0;
    const now = (): number => Date.now() + offset;
    const first = new DurableClock({ hlc: new Hlc({ maxClockSkewMs: 10_000 }), backend, leaseMs: 2000, now });
    await first.open();
    let last = { wall: 0, logical: 0 };
    for (let i = 0; i < 100; i++) {
      const ts = first.stamp();
      last = ts instanceof Promise ? await ts : ts;
    }
    offset = -5000; // the restarted process sees a clock 5 s behind
    const second = new DurableClock({ hlc: new Hlc({ maxClockSkewMs: 10_000 }), backend, leaseMs: 2000, now });
    await second.open();
    const ts = second.stamp();
    const next = ts instanceof Promise ? await ts : ts;
    expect(next.wall > last.wall || (next.wall === last.wall && next.logical > last.logical), `${JSON.stringify(next)} above ${JSON.stringify(last)}`).to.equal(true);
  });
});
