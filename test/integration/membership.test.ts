/**
 * Membership and epochs with real processes (DESIGN.md §6): joins through Raft, voter
 * seats (3, then 5 once there are 5 members), leader failover, restart of everyone,
 * one ring checksum everywhere, and peers that cannot authenticate are kept out.
 */
import { expect } from 'chai';
import WebSocket from 'ws';
import { TestCluster, type ClusterView } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { freePort, spawnNode, tempDir } from '../helpers/proc.ts';

const FAST = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100'];

async function leaderOf(c: TestCluster): Promise<string> {
  return pollUntil(async () => {
    const views = await Promise.all(c.running().map((id) => c.view(id).catch(() => undefined)));
    const leaders = new Set(views.map((v) => v?.raft.leader).filter(Boolean));
    const v = views.find((x) => x?.raft.role === 'leader');
    return leaders.size === 1 && v ? v.id : undefined;
  }, { what: 'a single agreed leader' });
}

describe('membership and epochs (real processes)', function () {
  this.timeout(240_000);
  let c: TestCluster;
  // The last test's own cluster (a short --dead-voter-ms) starts alongside the shared one and
  // waits idle for its test; its start is awaited (and any failure reported) there.
  let deadVoterCluster: Promise<TestCluster>;

  before(async () => {
    deadVoterCluster = TestCluster.start(4, { args: [...FAST, '--dead-voter-ms', '2000'] });
    deadVoterCluster.catch(() => undefined);
    c = await TestCluster.start(3, { args: FAST });
  });

  after(async () => {
    await c?.stop();
    await (await deadVoterCluster?.catch(() => undefined))?.stop(); // also if its test failed or never ran
  });

  it('bootstraps one node and joins two more: three voters, one epoch, one ring', async () => {
    const views = await c.waitConverged(3);
    const v = views[0] as ClusterView;
    expect(new Set(views.map((x) => x.ringChecksum)).size).to.equal(1);
    expect(v.ringChecksum).to.match(/^[0-9a-f]{16}$/);
    const voters = await pollUntil(async () => {
      const x = await c.view('n1');
      return x.raft.voters.length === 3 ? x.raft.voters : undefined;
    }, { what: 'three voters' });
    expect([...voters].sort()).to.deep.equal(['n1', 'n2', 'n3']);
  });

  it('keeps a 4th member as a learner and gives the 5th member and 4th a seat (5 voters)', async () => {
    await c.add('n4', { args: FAST });
    await c.waitConverged(4);
    const v4 = await pollUntil(async () => {
      const x = await c.view('n1');
      return x.raft.learners.includes('n4') ? x : undefined;
    }, { what: 'n4 as learner' });
    expect(v4.raft.voters).to.have.length(3);
    await c.add('n5', { args: FAST });
    await c.waitConverged(5);
    const v5 = await pollUntil(async () => {
      const x = await c.view(await leaderOf(c));
      return x.raft.voters.length === 5 ? x : undefined;
    }, { what: 'five voters' });
    expect(v5.raft.learners).to.deep.equal([]);
  });

  it('elects a new leader after kill -9 of the leader, and a further join still commits', async () => {
    const old = await leaderOf(c);
    const before = (await c.view(old)).raft.term;
    await c.kill(old);
    const fresh = await leaderOf(c);
    expect(fresh).to.not.equal(old);
    expect((await c.view(fresh)).raft.term).to.be.greaterThan(before);
    await c.add('n6', { args: FAST });
    const views = await pollUntil(async () => {
      const vs = await Promise.all(c.running().map((id) => c.view(id)));
      return vs.every((v) => v.members.some((m) => m.id === 'n6' && m.state === 'normal') && v.epoch === (vs[0] as ClusterView).epoch) ? vs : undefined;
    }, { what: 'n6 normal everywhere', timeoutMs: 90_000 });
    expect(new Set(views.map((v) => v.ringChecksum)).size).to.equal(1);
    await c.restart(old);
  });

  it('comes back after a restart of all nodes with the same epoch, members and ring', async () => {
    const before = await c.waitConverged(6);
    const b = before[0] as ClusterView;
    for (const id of c.running()) await c.kill(id);
    await Promise.all(['n1', 'n2', 'n3', 'n4', 'n5', 'n6'].map((id) => c.restart(id)));
    const after = await c.waitConverged(6);
    for (const v of after) {
      expect(v.epoch).to.equal(b.epoch);
      expect(v.ringChecksum).to.equal(b.ringChecksum);
      expect(v.members.map((m) => m.id)).to.deep.equal(b.members.map((m) => m.id));
    }
    await leaderOf(c);
  });

  it('refuses a node with the wrong secret, and the cluster is unaffected', async () => {
    const port = await freePort();
    const intruder = spawnNode({ id: 'intruder', port, dataDir: tempDir(), args: ['--join', c.addr('n1')], env: { KV_SECRET: 'wrong-secret-0123456789' } });
    const code = await intruder.exited;
    expect(code).to.not.equal(0);
    expect(intruder.output()).to.contain('KV_UNAUTHORIZED');
    const v = await c.view('n1');
    expect(v.members.map((m) => m.id)).to.not.include('intruder');
  });

  it('closes peer connections that fail the handshake or send garbage, and keeps serving', async () => {
    const closeCode = (send: (ws: WebSocket) => void): Promise<number> => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${c.addr('n2')}/_peer`);
      ws.on('open', () => send(ws));
      ws.on('close', (code) => resolve(code));
      ws.on('error', reject);
    });
    expect(await closeCode((ws) => ws.send(Buffer.from([0xc1, 0xff, 0x00])))).to.be.oneOf([4001, 4002]);
    expect(await closeCode((ws) => ws.send(Buffer.alloc(4 * 1024 * 1024)))).to.be.oneOf([1009, 4001, 4002]);
    expect(await closeCode((ws) => ws.send('{"hello":"world"}'))).to.be.oneOf([4001, 4002]);
    const health = await fetch(`http://${c.addr('n2')}/health`);
    expect(health.status).to.equal(200);
    const client = c.client();
    await client.put('after-garbage', 'still-fine');
    expect((await client.get('after-garbage'))?.value.toString()).to.equal('still-fine');
  });

  it('gives a long-dead voter\'s seat to a live learner', async () => {
    const d = await deadVoterCluster;
    const leader = await leaderOf(d);
    const v = await pollUntil(async () => {
      const x = await d.view(leader);
      return x.raft.voters.length === 3 && x.raft.learners.length === 1 ? x : undefined;
    }, { what: 'three voters and one learner' });
    const victim = v.raft.voters.find((id) => id !== leader) as string;
    const learner = v.raft.learners[0] as string;
    await d.kill(victim);
    const after = await pollUntil(async () => {
      const x = await d.view(leader);
      return x.raft.voters.length === 3 && !x.raft.voters.includes(victim) ? x : undefined;
    }, { what: `${victim}'s seat refilled`, timeoutMs: 60_000 });
    expect(after.raft.voters).to.include(learner);
    const client = d.client(d.running());
    await client.put('after-refill', 'ok');
    expect((await client.get('after-refill'))?.value.toString()).to.equal('ok');
  });
});
