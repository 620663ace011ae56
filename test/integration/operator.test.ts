/**
 * The operator's commands on real processes: `kv removenode` of a killed node and
 * `kv node --replace` of a killed node, each under client traffic, with read repair, hints
 * and periodic anti-entropy off, so only the re-replication they do can make every
 * acknowledged write readable at r=all afterwards; both refuse a live target. `kv status`
 * and `kv ring --key` checked field by field against /cluster and /cluster/records; `kv
 * repair` runs a walk with progress.
 */
import { join } from 'node:path';
import { expect } from 'chai';
import type { KvClient } from '../../lib/client/client.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { freePort, runKv, spawnNode, waitHealthy } from '../helpers/proc.ts';

const ARGS = [
  '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100', '--partitions', '64',
  '--read-repair', 'false', '--hinted-handoff', 'false', '--anti-entropy-interval-ms', '600000',
];

/** Writers of unique keys at w=2 through the given clients; remembers what was acknowledged. */
class Writers {
  readonly acked = new Map<string, string>();
  private stopped = false;
  private seq = 0;
  private readonly done: Promise<unknown>;

  constructor(prefix: string, private readonly clients: () => KvClient[]) {
    this.done = Promise.all(Array.from({ length: 4 }, () => this.loop(prefix)));
  }

  private async loop(prefix: string): Promise<void> {
    while (!this.stopped) {
      const key = `${prefix}-${this.seq++}`;
      const cs = this.clients();
      try {
        await (cs[this.seq % cs.length] as KvClient).put(key, `v-${key}`, { w: 2 });
        this.acked.set(key, `v-${key}`);
      } catch { /* not acknowledged */ }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

/** Reads every acknowledged key back at r=all, a few at a time. */
async function readAllBack(c: KvClient, acked: Map<string, string>): Promise<string[]> {
  const wrong: string[] = [];
  const entries = [...acked];
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < entries.length; i = next++) {
      const [key, value] = entries[i] as [string, string];
      const got = await c.get(key, { r: 'all' });
      if (got?.value.toString() !== value) wrong.push(`${key}: ${got?.value.toString() ?? 'not found'}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, lane));
  return wrong.sort();
}

async function stateOf(c: TestCluster, via: string, id: string): Promise<string | undefined> {
  return (await c.view(via)).members.find((m) => m.id === id)?.state;
}

describe('operator commands (real processes)', function () {
  this.timeout(300_000);
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(4, { args: ARGS });
  });

  after(async () => {
    await c?.stop();
  });

  it('kv status and kv ring --key say what /cluster and /cluster/records say', async () => {
    const client = c.client(['n1']);
    const { version } = await client.put('op-key', 'hello', { w: 'all' });
    const st = await runKv(['status', '--node', c.addr('n1'), '--json']);
    expect(st.code, st.all).to.equal(0);
    const stats = JSON.parse(st.all) as { cluster: { epoch: number; members: { id: string; state: string }[] }; nodes: { id: string; ok: boolean; state: string; stats?: { raft: { role: string }; epoch: number } }[] };
    const view = await c.view('n1');
    expect(stats.cluster.epoch).to.equal(view.epoch);
    expect(stats.nodes.map((n) => n.id).sort()).to.deep.equal(view.members.map((m) => m.id).sort());
    for (const m of view.members) {
      const n = stats.nodes.find((x) => x.id === m.id);
      expect(n?.state, m.id).to.equal(m.state);
      expect(n?.ok, m.id).to.equal(true);
    }
    const text = await runKv(['status', '--node', c.addr('n1')]);
    expect(text.code, text.all).to.equal(0);
    expect(text.all).to.match(new RegExp(`^cluster epoch ${view.epoch}  members 4 \\(4 normal\\)  leader ${view.raft.leader}  N 3 `, 'm'));
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(text.all, id).to.match(new RegExp(`^${id}\\s+127\\.0\\.0\\.1:${c.ports.get(id)}\\s+normal\\s+alive\\s+(leader|follower|learner)\\s+\\d+`, 'm'));
    const ring = await runKv(['ring', '--key', 'op-key', '--node', c.addr('n2'), '--json']);
    expect(ring.code, ring.all).to.equal(0);
    const r = JSON.parse(ring.all) as { replicas: { id: string; record: { version: string; tombstone: boolean } | null }[] };
    expect(r.replicas).to.have.length(3);
    for (const rep of r.replicas) {
      const local = await (await fetch(`http://${c.addr(rep.id)}/cluster/records/op-key`)).json() as { version: string; tombstone: boolean };
      expect(rep.record?.version, rep.id).to.equal(local.version);
      expect(rep.record?.version).to.equal(version);
      expect(rep.record?.tombstone).to.equal(false);
    }
  });

  it('kv repair walks the node\'s partitions now and reports progress to the end', async () => {
    const res = await runKv(['repair', '--node', c.addr('n2')]);
    expect(res.code, res.all).to.equal(0);
    expect(res.all).to.match(/^repair of n2: \d+% \d+\/\d+/m);
    expect(res.all).to.match(/^repair of n2 done: (\d+)\/\1, \d+ records$/m);
  });

  it('kv removenode refuses a live member, then removes a killed one under traffic with every acknowledged write readable at r=all', async () => {
    const live = await runKv(['removenode', 'n2', '--node', c.addr('n1')]);
    expect(live.code).to.not.equal(0);
    expect(live.all).to.include('KV_INVALID_ARGUMENT');
    expect(live.all).to.include('n2 is alive');
    const writers = new Writers('rm', () => [c.client(['n1']), c.client(['n2']), c.client(['n3'])]);
    try {
      await pollUntil(() => writers.acked.size >= 200, { what: 'writes before the kill', timeoutMs: 60_000 });
      await c.kill('n4');
      await pollUntil(async () => (await c.view('n1')).members.find((m) => m.id === 'n4')?.liveness === 'dead', { what: 'n4 dead to n1', timeoutMs: 60_000 });
      const res = await runKv(['removenode', 'n4', '--node', c.addr('n1')], { timeoutMs: 240_000 });
      expect(res.code, res.all).to.equal(0);
      expect(res.all).to.match(/^removenode n4 done: (\d+)\/\1, \d+ records$/m);
      expect(await stateOf(c, 'n1', 'n4')).to.equal(undefined);
    } finally {
      await writers.stop();
    }
    expect(writers.acked.size).to.be.greaterThan(300);
    expect(await readAllBack(c.client(['n2']), writers.acked), 'acknowledged writes missing at r=all').to.deep.equal([]);
  });

  it('kv node --replace refuses a live member, then takes over a killed one under traffic; reads wait for its streaming', async () => {
    const refusedPort = await freePort();
    const refused = spawnNode({ id: 'n2', port: refusedPort, dataDir: join(c.root, 'n2-impostor'), args: ['--replace', 'n2', '--join', c.addr('n1'), ...ARGS] });
    const code = await refused.exited;
    expect(code, refused.output()).to.not.equal(0);
    expect(refused.output()).to.include('only a dead member can be replaced');
    const writers = new Writers('rp', () => [c.client(['n1']), c.client(['n2'])]);
    try {
      await pollUntil(() => writers.acked.size >= 200, { what: 'writes before the kill', timeoutMs: 60_000 });
      await c.kill('n3');
      await pollUntil(async () => (await c.view('n1')).members.find((m) => m.id === 'n3')?.liveness === 'dead', { what: 'n3 dead to n1', timeoutMs: 60_000 });
      const port = await freePort();
      const replacement = spawnNode({ id: 'n3', port, dataDir: join(c.root, 'n3-replacement'), args: ['--replace', 'n3', '--join', c.addr('n1'), ...ARGS] });
      c.nodes.set('n3', replacement);
      c.ports.set('n3', port);
      await waitHealthy(replacement, 120_000);
      await pollUntil(async () => (await stateOf(c, 'n1', 'n3')) === 'normal', { what: 'the replacement normal', timeoutMs: 180_000 });
      const ops = await (await fetch(`http://${c.addr('n3')}/cluster/operations`)).json() as { operations: { kind: string; state: string; total: number; done: number }[] };
      const streamed = ops.operations.find((o) => o.kind === 'replace');
      expect(streamed?.state, JSON.stringify(ops)).to.equal('done');
      expect(streamed?.total, 'the dead member\'s partitions').to.be.greaterThan(0);
      expect(streamed?.done).to.equal(streamed?.total);
    } finally {
      await writers.stop();
    }
    const view = await c.view('n1');
    expect(view.members.find((m) => m.id === 'n3')?.addr, 'the replacement\'s address').to.equal(c.addr('n3'));
    expect(await readAllBack(c.client(['n1']), writers.acked), 'acknowledged writes missing at r=all').to.deep.equal([]);
  });
});
