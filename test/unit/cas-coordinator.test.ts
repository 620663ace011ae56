/**
 * Conditional writes driven in-process: memory transport, memory backends, the real
 * PaxosReplica handlers and CasCoordinator on every node (test/helpers/coordinator-harness.ts).
 * Each test checks the answer and what the replicas hold afterwards: records written as
 * ordinary records at version = ballot, acceptor state on disk, honest outcomes under
 * paused replicas, contention and held commits.
 */
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { makeVersion } from '../../lib/core/hlc.ts';
import { parseSession } from '../../lib/core/session.ts';
import type { PaxosRequest } from '../../lib/core/paxos/index.ts';
import { partitionOf, replicasOf } from '../../lib/core/partitioner.ts';
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

/** A cas.msg payload's request, if it is one. */
function paxosMsg(type: string, payload: unknown): PaxosRequest | undefined {
  return type === 'cas.msg' && Array.isArray(payload) ? payload[1] as PaxosRequest : undefined;
}

const b = (s: string): Buffer => Buffer.from(s);

describe('CAS coordinator (in-process, memory transport)', function () {
  this.timeout(30_000);
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('writes an uncontended conditional PUT in two round trips; the record lands on every replica at version = ballot, with the acceptor state persisted', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const cas = h.node('a').cas;
    const before = { ...cas.stats };
    const w = await cas.casWrite('k', b('v1'), { condition: { ifNoneMatch: true } });
    expect(w.applied).to.equal(true);
    if (!w.applied) return;
    expect(cas.stats.roundTrips - before.roundTrips, 'round trips').to.equal(2);
    expect(cas.stats.messages - before.messages, 'prepare, propose, commit to 3 replicas').to.equal(9);
    for (const id of ['a', 'b', 'c']) {
      await pollUntil(async () => (await h?.node(id).store.get('k'))?.version === w.version, { what: `commit on ${id}`, timeoutMs: 5000 });
      expect((await h.node(id).store.get('k'))?.value?.toString()).to.equal('v1');
      const st = await h.node(id).paxos.stateOf('k');
      expect(st?.committed?.version, `${id} state says committed`).to.equal(w.version);
      expect(st?.accepted, `${id} holds no unfinished proposal`).to.equal(null);
    }
    const read = await h.node('b').coordinator.get('k', { r: 2 });
    expect(read.version, 'a plain read sees an ordinary record').to.equal(w.version);
  });

  it('creates once with If-None-Match, then answers the current version to a false condition and writes on the right one', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const first = await h.node('a').cas.casWrite('once', b('x'), { condition: { ifNoneMatch: true } });
    const second = await h.node('b').cas.casWrite('once', b('y'), { condition: { ifNoneMatch: true } });
    expect(first.applied).to.equal(true);
    expect(second).to.deep.include({ applied: false, current: first.applied ? first.version : 'never' });
    const stale = await h.node('c').cas.casWrite('once', b('z'), { condition: { ifMatch: makeVersion({ wall: 1, logical: 0 }, 'a') } });
    expect(stale.applied).to.equal(false);
    const ok = await h.node('c').cas.casWrite('once', b('z'), { condition: { ifMatch: first.applied ? first.version : '' } });
    expect(ok.applied).to.equal(true);
    const read = await h.node('a').cas.serialGet('once', {});
    expect(read.value?.toString()).to.equal('z');
  });

  it('deletes with If-Match (a tombstone at the ballot), after which If-None-Match creates again and If-Match of the old version fails', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const put = await h.node('a').cas.casWrite('d', b('1'), { condition: { ifNoneMatch: true } });
    if (!put.applied) throw new Error('put refused');
    const del = await h.node('b').cas.casWrite('d', null, { condition: { ifMatch: put.version } });
    expect(del.applied).to.equal(true);
    const gone = await h.node('c').cas.serialGet('d', {});
    expect(gone.value).to.equal(undefined);
    expect(gone.version, 'the tombstone\'s version').to.equal(del.applied ? del.version : '');
    expect((await h.node('a').cas.casWrite('d', null, { condition: { ifMatch: put.version } })).applied).to.equal(false);
    expect((await h.node('c').cas.casWrite('d', b('2'), { condition: { ifNoneMatch: true } })).applied).to.equal(true);
  });

  it('counts an increment once per success with three coordinators racing on one key', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const key = 'counter';
    await h.node('a').cas.casWrite(key, b('0'), { condition: { ifNoneMatch: true } });
    let acked = 0;
    let unknown = 0;
    const seen = new Set<number>();
    const worker = async (id: string): Promise<void> => {
      const cas = (h as Harness).node(id).cas;
      for (let done = 0; done < 10;) {
        const cur = await cas.serialGet(key, {});
        const n = Number(cur.value?.toString());
        const w = await cas.casWrite(key, b(String(n + 1)), { condition: { ifMatch: cur.version as string } }).catch((err: unknown) => err);
        if (w instanceof KvError) {
          // Duelling proposers: busy (nothing written) or unknown (a proposal may be finished by another).
          expect(['KV_BUSY', 'KV_TIMEOUT'], w.message).to.include(w.code);
          if (w.code === 'KV_TIMEOUT') unknown++;
          continue;
        }
        if (w instanceof Error) throw w;
        if ((w as { applied: boolean }).applied) {
          expect(seen.has(n + 1), `value ${n + 1} acknowledged twice`).to.equal(false);
          seen.add(n + 1);
          acked++;
          done++;
        }
      }
    };
    await Promise.all(['a', 'b', 'c'].map(worker));
    const final = Number((await h.node('b').cas.serialGet(key, {})).value?.toString());
    expect(acked).to.equal(30);
    expect(final, `${acked} acknowledged, ${unknown} unknown`).to.be.within(acked, acked + unknown);
    const stats = ['a', 'b', 'c'].map((id) => (h as Harness).node(id).cas.stats);
    const attempts = stats.reduce((s, x) => s + x.attempts, 0);
    const ops = stats.reduce((s, x) => s + x.operations, 0);
    expect(attempts, 'contention made some operations retry').to.be.above(ops);
  });

  it('answers with one replica paused, and reports a write whose proposes are held on two replicas as unknown (504), which a later read resolves', async () => {
    h = await Harness.start(['a', 'b', 'c'], { requestTimeoutMs: 1500, casAttemptTimeoutMs: 400 });
    const key = h.keyWhere('p', (r) => r.includes('a'));
    h.node('c').pause();
    const ok = await h.node('a').cas.casWrite(key, b('1'), { condition: { ifNoneMatch: true } });
    expect(ok.applied).to.equal(true);
    h.node('c').resume();
    // b and c take prepares but hold proposes: a alone accepts, so nothing is known chosen.
    for (const id of ['b', 'c']) h.node(id).hold((type, payload) => paxosMsg(type, payload)?.type === 'propose');
    const err = await failure(h.node('a').cas.casWrite(key, b('2'), { condition: { ifMatch: ok.applied ? ok.version : '' } }));
    expect(err.code).to.equal('KV_TIMEOUT');
    expect(err.outcome).to.equal('unknown');
    for (const id of ['b', 'c']) h.node(id).release();
    // Whatever happened, a serial read settles it and every later reader agrees.
    const r1 = await h.node('b').cas.serialGet(key, {});
    const r2 = await h.node('c').cas.serialGet(key, {});
    expect(['1', '2']).to.include(r1.value?.toString());
    expect(r2.value?.toString()).to.equal(r1.value?.toString());
  });

  it('answers 503 "failed" when a majority is down, without sending anything', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const key = h.keyWhere('f', (r) => r.includes('a'));
    h.alive.delete('b');
    h.alive.delete('c');
    const before = h.node('a').paxos.stats.requests;
    const err = await failure(h.node('a').cas.casWrite(key, b('x'), { condition: { ifNoneMatch: true } }));
    expect(err.code).to.equal('KV_UNAVAILABLE');
    expect(err.outcome).to.equal('failed');
    expect(h.node('a').paxos.stats.requests, 'not even the local acceptor was asked').to.equal(before);
  });

  it('gives a serial read the CAS whose commits never reached the replicas a plain read asks, and a session read too', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { hints: false });
    const key = h.keyWhere('s', (r) => !r.includes('d'));
    const [r1, r2, r3] = h.replicasOf(key) as [string, string, string];
    const first = await h.node('d').cas.casWrite(key, b('old'), { condition: { ifNoneMatch: true } });
    if (!first.applied) throw new Error('refused');
    for (const id of [r1, r2, r3]) await pollUntil(async () => (await h?.node(id).store.get(key))?.version === first.version, { what: 'first commit' });
    // The next commit reaches r1 only.
    for (const id of [r2, r3]) h.node(id).hold((type, payload) => paxosMsg(type, payload)?.type === 'commit');
    const w = await h.node('d').cas.casWrite(key, b('new'), { condition: { ifMatch: first.version } });
    if (!w.applied) throw new Error('refused');
    h.alive.delete(r1);
    const plain = await h.node('d').coordinator.get(key, { r: 2 });
    expect(plain.value?.toString(), 'a plain quorum read of the two replicas without the commit').to.equal('old');
    const serial = await h.node('d').cas.serialGet(key, {});
    expect(serial.value?.toString(), 'the serial read finishes it').to.equal('new');
    expect(serial.version).to.equal(w.version);
    h.alive.add(r1);
    for (const id of [r2, r3]) h.node(id).release();
  });

  it('makes the session token of a CAS answer cover it: a plain session read waits for the commit', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { hints: false });
    const key = h.keyWhere('t', (r) => !r.includes('d'));
    const reps = h.replicasOf(key);
    for (const id of reps.slice(1)) h.node(id).hold((type, payload) => paxosMsg(type, payload)?.type === 'commit');
    const w = await h.node('d').cas.casWrite(key, b('mine'), { condition: { ifNoneMatch: true } });
    if (!w.applied) throw new Error('refused');
    h.alive.delete(reps[0] as string);
    const read = h.node('d').coordinator.get(key, { r: 1, session: parseSession(w.session as string) });
    setTimeout(() => { for (const id of reps.slice(1)) h?.node(id).release(); }, 200);
    const got = await read;
    expect(got.value?.toString()).to.equal('mine');
    h.alive.add(reps[0] as string);
  });

  it('treats an expired record as a tombstone of its version: If-None-Match takes it, If-Match of its version does not', async () => {
    h = await Harness.start(['a', 'b', 'c']);
    const lock = await h.node('a').cas.casWrite('lock', b('owner-1'), { condition: { ifNoneMatch: true }, ttlMs: 150 });
    if (!lock.applied) throw new Error('refused');
    expect((await h.node('b').cas.casWrite('lock', b('owner-2'), { condition: { ifNoneMatch: true } })).applied, 'held').to.equal(false);
    const rec = await h.node('a').store.get('lock');
    expect(rec?.expiresAt, 'the expiry is in the record').to.be.a('number');
    await pollUntil(() => Date.now() > (rec?.expiresAt ?? 0) + 5, { what: 'expiry' });
    expect((await h.node('c').cas.serialGet('lock', {})).value, 'reads as absent').to.equal(undefined);
    expect((await h.node('c').cas.casWrite('lock', b('x'), { condition: { ifMatch: lock.version } })).applied).to.equal(false);
    expect((await h.node('b').cas.casWrite('lock', b('owner-2'), { condition: { ifNoneMatch: true } })).applied, 'freed by its TTL').to.equal(true);
  });

  it('refuses hostile or misrouted cas.msg requests before touching anything, with outcome failed', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd']);
    const t = h.node('a').transport;
    const key = h.keyWhere('h', (r) => r.includes('b') && !r.includes('d'));
    const epoch = h.latest.epoch;
    const ballot = makeVersion({ wall: Date.now(), logical: 0 }, 'a');
    const future = makeVersion({ wall: Date.now() + 3_600_000, logical: 0 }, 'a');
    const cases: [string, string, unknown][] = [
      ['b', 'KV_INVALID_ARGUMENT', 'nonsense'],
      ['b', 'KV_INVALID_ARGUMENT', [epoch, { type: 'prepare', key, ballot: 'not-a-version' }]],
      ['b', 'KV_INVALID_ARGUMENT', [epoch, { type: 'promise', key, ballot, accepted: null, committed: null, record: null }]],
      ['b', 'KV_INVALID_ARGUMENT', [epoch, { type: 'propose', key, ballot, record: { version: future, value: null } }]],
      ['b', 'KV_INVALID_ARGUMENT', [-1, { type: 'prepare', key, ballot }]],
      ['b', 'KV_CLOCK_SKEW', [epoch, { type: 'prepare', key, ballot: future }]],
      ['d', 'KV_UNAVAILABLE', [epoch, { type: 'prepare', key, ballot }]],
    ];
    for (const [to, want, payload] of cases) {
      const err = await failure(t.request(to, 'cas.msg', payload));
      expect(err.code, JSON.stringify(payload).slice(0, 80)).to.equal(want);
      expect(err.outcome, want).to.equal('failed');
    }
    expect(await h.node('b').paxos.stateCount(), 'no state was written').to.equal(0);
    const ok = await t.request('b', 'cas.msg', [epoch, { type: 'prepare', key, ballot }]);
    expect(ok).to.deep.include({ type: 'promise', key, ballot });
  });

  it('prunes acceptor state past the retention horizon: at rest at once, an unfinished proposal after a serial read finished it', async () => {
    h = await Harness.start(['a', 'b', 'c'], { paxosRetentionMs: 60_000 });
    const keyA = h.keyWhere('ra', (r) => r.includes('a'));
    const keyB = h.keyWhere('rb', (r) => r.includes('a'));
    const w = await h.node('a').cas.casWrite(keyA, b('1'), { condition: { ifNoneMatch: true } });
    if (!w.applied) throw new Error('refused');
    // An unfinished proposal on a's acceptor alone, as a crashed proposer would leave it.
    const ballot = makeVersion({ wall: Date.now(), logical: 9 }, 'zz');
    const epoch = h.latest.epoch;
    await h.node('a').paxos.step({ type: 'prepare', key: keyB, ballot }, epoch);
    await h.node('a').paxos.step({ type: 'propose', key: keyB, ballot, record: { version: ballot, value: b('orphan') } }, epoch);
    for (const id of ['a', 'b', 'c']) await pollUntil(async () => (await h?.node(id).paxos.stateOf(keyA))?.accepted === null, { what: 'commits' });
    expect((await h.node('a').paxos.prune()).deleted, 'nothing is old yet').to.equal(0);
    for (const n of h.nodes.values()) n.offsetMs = 120_000; // two minutes later
    const res = await h.node('a').paxos.prune();
    expect(res.finished, 'the orphan was finished by a serial read').to.equal(1);
    expect(await h.node('a').paxos.stateOf(keyA), 'state at rest pruned').to.equal(undefined);
    expect((await h.node('a').paxos.stateOf(keyB))?.accepted ?? null, 'the orphan is gone from the state').to.equal(null);
    // Whatever the read decided about the orphan, every replica now agrees, and CAS still works.
    const r = await h.node('b').cas.serialGet(keyB, {});
    const again = await h.node('c').cas.serialGet(keyB, {});
    expect(again.version).to.equal(r.version);
    expect((await h.node('b').cas.casWrite(keyA, b('2'), { condition: { ifMatch: w.version } })).applied).to.equal(true);
  });

  it('finishes, before a joining node becomes normal, a chosen proposal whose commits never left, so the new owners alone see it', async () => {
    h = await Harness.start(['a', 'b', 'c', 'd'], { members: ['a', 'b', 'c'] });
    const joining = topologyOf([...clusterCommands(['a', 'b', 'c']), { op: 'add', id: 'd', addr: 'd:1' }]);
    const joined = topologyOf([...clusterCommands(['a', 'b', 'c']), { op: 'add', id: 'd', addr: 'd:1' }, { op: 'normal', id: 'd' }]);
    const owners = (key: string, t: typeof joined): string[] => [...replicasOf(t.table('current'), partitionOf(key, t.partitions))];
    // A key that d takes over from one old owner (`gone`), keeping the other two.
    let key = '';
    for (let i = 0; key === '' && i < 10_000; i++) {
      const k = `j${i}`;
      const was = owners(k, h.latest);
      if (owners(k, joined).includes('d') && owners(k, joined).filter((id) => was.includes(id)).length === 2) key = k;
    }
    const before = owners(key, h.latest);
    const after = owners(key, joined);
    const gone = before.find((id) => !after.includes(id)) as string;
    const kept = before.filter((id) => id !== gone);
    // A proposal accepted by `gone` and one kept owner (a majority of the old owners: chosen), never committed.
    const ballot = makeVersion({ wall: Date.now(), logical: 1 }, 'zz');
    const epoch = h.latest.epoch;
    for (const id of [gone, kept[0] as string]) {
      await h.node(id).paxos.step({ type: 'prepare', key, ballot }, epoch);
      await h.node(id).paxos.step({ type: 'propose', key, ballot, record: { version: ballot, value: b('chosen') } }, epoch);
    }
    // d joins: every node sees it as a future owner, and d settles before becoming normal.
    h.latest = joining;
    for (const id of ['a', 'b', 'c', 'd']) h.setTopology(id, joining);
    const settled = await h.node('d').cas.settleOwnershipChange('join', () => false);
    expect(settled).to.deep.equal({ keys: 1, unsettled: 0 });
    h.latest = joined;
    for (const id of ['a', 'b', 'c', 'd']) h.setTopology(id, joined);
    // The new owners without the kept owner that accepted it: only d and the other kept owner answer.
    h.alive.delete(kept[0] as string);
    const read = await h.node('d').cas.serialGet(key, {});
    expect(read.value?.toString(), 'the chosen value survives the change of owners').to.equal('chosen');
    expect(read.version).to.equal(ballot);
  });
});
