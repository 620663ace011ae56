/**
 * Peers that cannot lie, against a real `kv node`: each attack of the issue as its own
 * test, sent by a transport in this process that knows the cluster secret, first as a
 * stranger (never joined), then as a member that joined with a signed join and never runs
 * Raft or gossip. Each is refused with its code (or dropped and counted) while the node
 * keeps serving and its data reads back intact.
 */
import { join } from 'node:path';
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import type { WsTransport } from '../../lib/net/ws-transport.ts';
import { joinThrough, signJoin } from '../../lib/node/join.ts';
import { cleanupAll, freePort, spawnNode, tempDir, waitHealthy, type NodeProc } from '../helpers/proc.ts';
import { pollUntil } from '../helpers/poll.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { futureVersion, hostilePeer, raw, TEST_SECRET } from './helpers.ts';

interface View { clusterId: string; epoch: number; members: { id: string; state: string }[]; raft: { role: string; term: number; leader: string; voters: string[]; learners: string[] } }

async function view(addr: string): Promise<View> {
  return JSON.parse((await raw(addr, 'GET', '/cluster')).body.toString()) as View;
}

async function counter(addr: string, name: string, label: string): Promise<number> {
  const text = (await raw(addr, 'GET', '/metrics')).body.toString();
  const m = new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function refusedWith(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return err instanceof KvError ? err.code : String(err);
  }
  return 'accepted';
}

describe('security: peers that cannot lie (real process)', function () {
  this.timeout(60_000);
  let node: NodeProc;
  let clusterId: string;
  let tombVersion: string;
  const target = (): { id: string; addr: string } => ({ id: 'n1', addr: node.addr });

  /** The node still serves, and its data is what the honest client wrote. */
  async function intact(): Promise<void> {
    const live = await raw(node.addr, 'GET', '/kv/k-live');
    expect(live.status).to.equal(200);
    expect(live.body.toString()).to.equal('good');
    expect((await raw(node.addr, 'GET', '/kv/k-dead')).status).to.equal(404);
    const rec = JSON.parse((await raw(node.addr, 'GET', '/cluster/records/k-dead')).body.toString()) as { tombstone: boolean; version: string };
    expect(rec).to.include({ tombstone: true, version: tombVersion });
    const v = await view(node.addr);
    expect(v.raft.role).to.equal('leader');
    expect(v.raft.leader).to.equal('n1');
  }

  before(async () => {
    node = spawnNode({ id: 'n1', port: await freePort(), dataDir: join(tempDir('kv-sec-peers-'), 'n1'), args: ['--bootstrap', '--partitions', '64'] });
    await waitHealthy(node);
    clusterId = (await view(node.addr)).clusterId;
    expect((await raw(node.addr, 'PUT', '/kv/k-live', { body: 'good' })).status).to.equal(200);
    expect((await raw(node.addr, 'PUT', '/kv/k-dead', { body: 'old' })).status).to.equal(200);
    const del = await raw(node.addr, 'DELETE', '/kv/k-dead');
    tombVersion = (JSON.parse(del.body.toString()) as { version: string }).version;
  });

  after(cleanupAll);

  describe('a stranger with the secret', () => {
    let ghost: WsTransport;
    before(async () => { ghost = await hostilePeer('ghost', clusterId, target(), 1); });
    after(() => ghost.close());

    it('gets KV_FORBIDDEN for replication, hint, anti-entropy and admin requests', async () => {
      const rec = [futureVersion(0, 'ghost'), Buffer.from('evil')];
      expect(await refusedWith(ghost.request('n1', 'rep.put', ['k-live', rec, 1]))).to.equal('KV_FORBIDDEN');
      expect(await refusedWith(ghost.request('n1', 'rep.get', ['k-live', 1]))).to.equal('KV_FORBIDDEN');
      expect(await refusedWith(ghost.request('n1', 'hint.put', ['n1', 'k-live', rec]))).to.equal('KV_FORBIDDEN');
      expect(await refusedWith(ghost.request('n1', 'ae.push', [['k-live', rec]]))).to.equal('KV_FORBIDDEN');
      expect(await refusedWith(ghost.request('n1', 'ae.purge', [['k-dead', tombVersion]]))).to.equal('KV_FORBIDDEN');
      expect(await refusedWith(ghost.request('n1', 'admin', { kind: 'decommission', id: 'n1' }))).to.equal('KV_FORBIDDEN');
      await intact();
    });

    it('has its Raft and gossip messages dropped and counted, with a log line naming it', async () => {
      const before = await counter(node.addr, 'kv_peer_refused_total', 'reason="not-member"');
      const term = (await view(node.addr)).raft.term;
      ghost.send('n1', 'raft', { type: 'heartbeat', from: 'ghost', to: 'n1', term: term + 10, commit: 0 });
      ghost.send('n1', 'swim', { t: 'ping', seq: 1 });
      await pollUntil(async () => (await counter(node.addr, 'kv_peer_refused_total', 'reason="not-member"')) >= before + 2, { what: 'refusals counted' });
      await pollUntil(() => /peer message refused.*ghost|ghost.*peer message refused/.test(node.output()), { what: 'refusal logged with the peer id' });
      expect((await view(node.addr)).raft.term).to.equal(term);
      await intact();
    });
  });

  describe('a member that joined with a signed join and never runs Raft', () => {
    let evil: WsTransport;
    let epoch: number;
    before(async () => {
      await joinThrough(node.addr, TEST_SECRET, 'evil', '127.0.0.1:9');
      epoch = (await view(node.addr)).epoch;
      evil = await hostilePeer('evil', clusterId, target(), epoch);
    });
    after(() => evil.close());

    it('a Raft snapshot with invalid data (null, fake members) is refused and counted; the topology stays', async () => {
      const term = (await view(node.addr)).raft.term;
      const snap = (data: unknown): unknown => ({ type: 'snapshot', from: 'evil', to: 'n1', term: term + 1,
        snapshot: { index: 10_000, term: term + 1, config: { voters: ['evil'], learners: [] }, data } });
      evil.send('n1', 'raft', snap(null));
      evil.send('n1', 'raft', snap({ clusterId, partitions: 3, n: 3, vnodes: 1, epoch: 99, members: [] }));
      evil.send('n1', 'raft', snap({ clusterId: 'other', partitions: 64, n: 1, vnodes: 160, epoch: 9, members: [{ id: 'evil', addr: '1.2.3.4:5', state: 'normal' }] }));
      await pollUntil(async () => (await counter(node.addr, 'kv_peer_refused_total', 'reason="raft-snapshot"')) >= 3, { what: 'snapshots refused' });
      const v = await view(node.addr);
      expect(v.epoch).to.equal(epoch);
      expect(v.raft.term).to.equal(term);
      await intact();
    });

    it('a Raft message whose from names another node is refused; the leader does not step down', async () => {
      const term = (await view(node.addr)).raft.term;
      evil.send('n1', 'raft', { type: 'heartbeat', from: 'n-ghost', to: 'n1', term: term + 5, commit: 0 });
      evil.send('n1', 'raft', { type: 'vote', from: 'n-ghost', to: 'n1', term: term + 5, lastIndex: 1_000_000, lastTerm: term + 5 });
      await pollUntil(async () => (await counter(node.addr, 'kv_peer_refused_total', 'reason="raft-from"')) >= 2, { what: 'raft-from refusals' });
      const v = await view(node.addr);
      expect(v.raft.term).to.equal(term);
      expect(v.raft.leader).to.equal('n1');
      await intact();
    });

    it('ae.push of far-future versions is refused with KV_CLOCK_SKEW and counted; writes keep winning', async () => {
      const poison = [['k-live', ['ffffffffffffffff:zzz', Buffer.from('poison')]], ['k-dead', [futureVersion(3_600_000), Buffer.from('zombie')]]];
      expect(await refusedWith(evil.request('n1', 'ae.push', poison))).to.equal('KV_CLOCK_SKEW');
      expect(await counter(node.addr, 'kv_versions_refused_total', 'source="ae.push"')).to.be.at.least(2);
      await intact();
      expect((await raw(node.addr, 'PUT', '/kv/k-other', { body: 'one' })).status).to.equal(200);
      expect((await raw(node.addr, 'PUT', '/kv/k-other', { body: 'two' })).status).to.equal(200);
      expect((await raw(node.addr, 'GET', '/kv/k-other')).body.toString()).to.equal('two');
    });

    it('hint.put of a far-future version is refused with KV_CLOCK_SKEW and counted', async () => {
      expect(await refusedWith(evil.request('n1', 'hint.put', ['n1', 'k-live', ['ffffffffffffffff:zzz', Buffer.from('poison')]]))).to.equal('KV_CLOCK_SKEW');
      expect(await counter(node.addr, 'kv_versions_refused_total', 'source="hint"')).to.be.at.least(1);
      await intact();
    });

    it('ae.purge from a node that does not collect the partition\'s tombstones is refused; the delete stays', async () => {
      expect(await refusedWith(evil.request('n1', 'ae.purge', [['k-dead', tombVersion]]))).to.equal('KV_FORBIDDEN');
      await intact();
    });

    it('a signed join for a node that never connects stays a learner; Raft keeps its quorum and commits a real join', async () => {
      await pollUntil(async () => (await view(node.addr)).raft.learners.includes('evil'), { what: 'evil added as a learner' });
      // The voter policy runs every second; several rounds must pass without a promotion.
      const until = Date.now() + 4000;
      while (Date.now() < until) {
        expect((await view(node.addr)).raft.voters).to.deep.equal(['n1']);
        await new Promise((r) => setTimeout(r, 250));
      }
      const p = spawnNode({ id: 'n2', port: await freePort(), dataDir: join(tempDir('kv-sec-peers-'), 'n2'), args: ['--join', node.addr, '--partitions', '64'] });
      // evil stays `joining` forever, and ownership changes go one at a time: n2 waits until the
      // operator removes the stuck joiner, which removenode does once gossip has it dead.
      await pollUntil(() => p.output().includes('KV_TOPOLOGY_BUSY'), { what: 'n2 told to wait', timeoutMs: 30_000 });
      await pollUntil(async () => (await raw(node.addr, 'POST', '/cluster/removenode', { body: JSON.stringify({ id: 'evil' }) })).status === 202,
        { what: 'evil removable (dead to gossip)', timeoutMs: 60_000 });
      await waitHealthy(p, 60_000);
      await pollUntil(async () => (await view(node.addr)).raft.voters.includes('n2'), { timeoutMs: 30_000, what: 'n2 promoted' });
      expect((await view(node.addr)).raft.voters).to.not.include('evil');
      await intact();
    });
  });

  it('a join cannot be replayed, altered, or taken to another seed; a seed without the secret is found out', async () => {
    const nj = Buffer.alloc(32, 7);
    const ch = JSON.parse((await raw(node.addr, 'POST', '/cluster/join/challenge', { body: JSON.stringify({ id: 'late', addr: '127.0.0.1:9', nonce: nj.toString('hex') }) })).body.toString());
    const { join } = signJoin(TEST_SECRET, 'late', '127.0.0.1:9', nj, ch);
    const post = async (b: unknown): Promise<number> => (await raw(node.addr, 'POST', '/cluster/join', { body: JSON.stringify(b) })).status;
    expect(await post({ ...join, id: 'other' }), 'ticket bound to the id').to.equal(401);
    expect(await post({ ...join, mac: join.mac.replace(/^./, (c) => (c === '0' ? '1' : '0')) }), 'mac').to.equal(401);
    expect(await post({ ...join, exp: join.exp + 1 }), 'expiry is signed').to.equal(401);
    expect(await post({ ...join, seed: 'n2' }), 'another seed').to.equal(401);
    expect(await post(join)).to.equal(200);
    expect(await post(join), 'replay').to.equal(401);
    expect(() => signJoin('a-different-secret-0123', 'late', '127.0.0.1:9', nj, ch)).to.throw(KvError, /could not prove/);
    await intact();
    // 'late' never comes: as a joining member it would block every other ownership change (one at a
    // time) until removed, which removenode does once gossip has it dead.
    await pollUntil(async () => (await raw(node.addr, 'POST', '/cluster/removenode', { body: JSON.stringify({ id: 'late' }) })).status === 202,
      { what: 'late removable (dead to gossip)', timeoutMs: 60_000 });
    await pollUntil(async () => !(await view(node.addr)).members.some((m) => m.id === 'late'), { what: 'late removed', timeoutMs: 30_000 });
  });
});

describe('security: real nodes: a removed member, far-future read answers', function () {
  this.timeout(120_000);
  let c: TestCluster;
  before(async () => {
    c = new TestCluster(['--partitions', '64']);
    await c.add('n1', { bootstrap: true });
    // n2 accepts versions up to 24 h ahead, so a hostile member can plant them there (what a
    // replica of an older release, or with a wrong clock setting, might hold).
    await c.add('n2', { args: ['--max-clock-skew-ms', String(24 * 3600 * 1000)] });
    await c.add('n3');
    await c.add('n4');
    await c.waitConverged(4);
  });
  after(async () => { await c?.stop(); });

  it('after decommission, the removed node\'s requests are refused with KV_FORBIDDEN', async () => {
    const clusterId = (await view(c.addr('n1'))).clusterId;
    expect((await raw(c.addr('n1'), 'POST', '/cluster/decommission', { body: JSON.stringify({ id: 'n4' }) })).status).to.equal(200);
    await pollUntil(async () => (await c.view('n1')).members.every((m) => m.id !== 'n4'), { timeoutMs: 60_000, what: 'n4 removed' });
    // n4 still has the secret: posing as n4 it is now refused.
    const n4 = await hostilePeer('n4', clusterId, { id: 'n1', addr: c.addr('n1') }, (await c.view('n1')).epoch);
    try {
      // n1 also cuts a removed member's link at each membership change (the request then fails
      // on n4's side with KV_UNAVAILABLE, and n4 dials again): every answer is a refusal, and
      // one of them is n1's own KV_FORBIDDEN.
      const answers: string[] = [];
      await pollUntil(async () => {
        if (!n4.isConnected('n1')) return false;
        let answer = 'accepted';
        try {
          await n4.request('n1', 'rep.get', ['k', (await c.view('n1')).epoch]);
        } catch (err) {
          const remote = err instanceof KvError && err.details?.['remote'] === true;
          answer = `${err instanceof KvError ? err.code : String(err)}${remote ? '' : ' (link cut)'}`;
        }
        answers.push(answer);
        return answer === 'KV_FORBIDDEN';
      }, { timeoutMs: 30_000, what: 'a request of the removed n4 refused with KV_FORBIDDEN' });
      expect(answers.filter((x) => x !== 'KV_FORBIDDEN' && x !== 'KV_UNAVAILABLE (link cut)'), answers.join(', ')).to.have.length(0);
    } finally {
      await n4.close();
    }
    expect((await raw(c.addr('n1'), 'PUT', '/kv/after', { body: 'x' })).status).to.equal(200);
  });

  it('a replica answering a read with a far-future version is refused and counted; the read returns the honest value', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `read-${i}`);
    for (const k of keys) expect((await raw(c.addr('n1'), 'PUT', `/kv/${k}?w=all`, { body: 'honest' })).status).to.equal(200);
    const v = await view(c.addr('n1'));
    await joinThrough(c.addr('n1'), TEST_SECRET, 'evil', '127.0.0.1:9');
    const epoch = (await view(c.addr('n1'))).epoch;
    await pollUntil(async () => (await view(c.addr('n2'))).epoch >= epoch, { what: 'n2 at the epoch with evil' });
    const evil = await hostilePeer('evil', v.clusterId, { id: 'n2', addr: c.addr('n2') }, epoch);
    try {
      const planted = await evil.request('n2', 'ae.push', keys.map((k) => [k, [futureVersion(12 * 3600 * 1000, 'evil'), Buffer.from('poison')]]));
      expect(planted).to.equal(keys.length);
    } finally {
      await evil.close();
    }
    for (const k of keys) {
      const r = await raw(c.addr('n1'), 'GET', `/kv/${k}?r=2`);
      expect(r.status, k).to.equal(200);
      expect(r.body.toString(), k).to.equal('honest');
    }
    await pollUntil(async () => (await counter(c.addr('n1'), 'kv_versions_refused_total', 'source="read"')) >= 1, { what: 'read answers refused on n1' });
    // The honest replicas were not repaired with the poison.
    for (const k of keys) {
      const rec = JSON.parse((await raw(c.addr('n3'), 'GET', `/cluster/records/${k}`)).body.toString()) as { version: string };
      expect(rec.version.endsWith(':evil'), k).to.equal(false);
    }
  });

});
