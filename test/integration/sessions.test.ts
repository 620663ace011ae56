/**
 * Session guarantees on real processes (X-Kv-Session): a client writes through one node
 * with w=1 and reads through another at r=1, with a replica paused (SIGSTOP); KvClient
 * carries the token itself. Every read returns the value written or a newer one. A token
 * from the future is refused, and the header round-trips for curl-style clients. The CLI
 * keeps its session across invocations, and a session of another cluster is ignored.
 */
import { expect } from 'chai';
import { partitionOf } from '../../lib/core/partitioner.ts';
import { sessionKeyHash } from '../../lib/core/session.ts';
import { KvClient } from '../../lib/client/client.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { runKv, tempDir, removeDir } from '../helpers/proc.ts';

const ARGS = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100', '--partitions', '64', '--hinted-handoff', 'false', '--read-repair', 'false'];

interface RingView { partitions: number; table: { partition: number; replicas: string[] }[] }

describe('session tokens across coordinators (real processes)', function () {
  this.timeout(180_000);
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(5, { args: ARGS });
  });

  after(async () => {
    c.signal('n5', 'SIGCONT');
    await c?.stop();
  });

  it('reads its own w=1 writes at r=1 through another coordinator while a replica is paused', async () => {
    const ring = await (await fetch(`http://${c.addr('n1')}/cluster/ring`)).json() as RingView;
    const replicas = (key: string): string[] => ring.table[partitionOf(key, ring.partitions)]?.replicas ?? [];
    c.signal('n5', 'SIGSTOP');
    const writer = new KvClient({ nodes: [c.addr('n1')] });
    try {
      let rounds = 0;
      for (let i = 0; rounds < 150; i++) {
        const key = `sess-${i}`;
        const owners = replicas(key);
        if (!owners.includes('n1') || !owners.includes('n5')) continue;
        const reader = ['n2', 'n3', 'n4'].find((id) => !owners.includes(id)) as string;
        const w = await writer.put(key, `v${i}`, { w: 1 });
        // Same client (same session), another coordinator that is no replica of the key.
        const got = await writer.get(key, { r: 1, node: c.addr(reader) });
        expect(got?.value.toString(), `${key} through ${reader}`).to.equal(`v${i}`);
        expect(got && got.version >= w.version).to.equal(true);
        rounds++;
      }
    } finally {
      writer.close();
      c.signal('n5', 'SIGCONT');
    }
  });

  it('returns the token on every answer, accepts it back from plain HTTP clients, and refuses one from the future', async () => {
    const put = await fetch(`http://${c.addr('n1')}/kv/curl-key?w=1`, { method: 'PUT', body: 'x' });
    const token = put.headers.get('x-kv-session');
    expect(token, 'a write answers with a session token').to.match(/^[0-9a-f]{16}:n\d,[0-9a-f]{16}:[0-9a-f]{16}:n\d$/);
    const get = await fetch(`http://${c.addr('n2')}/kv/curl-key?r=1`, { headers: { 'x-kv-session': token as string } });
    expect(get.status).to.equal(200);
    expect(await get.text()).to.equal('x');
    expect(get.headers.get('x-kv-session')).to.equal(token);
    const future = `${(Date.now() + 3_600_000).toString(16).padStart(12, '0')}0000:n1`;
    const bad = await fetch(`http://${c.addr('n1')}/kv/curl-key?w=1`, { method: 'PUT', body: 'y', headers: { 'x-kv-session': future } });
    expect(bad.status).to.equal(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).to.equal('KV_INVALID_ARGUMENT');
    const junk = await fetch(`http://${c.addr('n1')}/kv/curl-key`, { headers: { 'x-kv-session': 'not a token' } });
    expect(junk.status).to.equal(400);
    expect((await fetch(`http://${c.addr('n1')}/kv/curl-key`)).status, 'the node keeps serving').to.equal(200);
  });

  it('the CLI keeps its session across invocations: a later `kv get` waits for the earlier `kv put` instead of reading older', async () => {
    const ring = await (await fetch(`http://${c.addr('n1')}/cluster/ring`)).json() as RingView;
    const key = Array.from({ length: 1000 }, (_, i) => `cli-sess-${i}`).find((k) => {
      const owners = ring.table[partitionOf(k, ring.partitions)]?.replicas ?? [];
      return owners.includes('n1') && !owners.includes('n2');
    }) as string;
    const others = (ring.table[partitionOf(key, ring.partitions)]?.replicas ?? []).filter((id) => id !== 'n1');
    const dir = tempDir('kv-cli-session-');
    const env = { KV_SESSION_FILE: `${dir}/sessions.json` };
    const cli = (...args: string[]) => runKv(args, { env, timeoutMs: 60_000 });
    try {
      expect((await cli('put', key, 'old', '--w', 'all', '--node', c.addr('n1'))).code).to.equal(0);
      // The other replicas miss the next write: they are down while it is made (hints and read repair are off).
      await Promise.all(others.map((id) => c.kill(id)));
      const put = await cli('put', key, 'new', '--w', '1', '--node', c.addr('n1'));
      expect(put.code, put.stderr).to.equal(0);
      c.signal('n1', 'SIGSTOP');
      try {
        await Promise.all(others.map((id) => c.restart(id)));
        // n1, the one replica holding 'new', is stalled. Without the session a read at r=1 gets 'old' …
        const plain = await cli('get', key, '--r', '1', '--node', c.addr('n2'), '--no-session');
        expect(plain.stdout, plain.stderr).to.equal('old');
        // … with it, the next invocation refuses to answer older than what the last one wrote.
        const held = await cli('get', key, '--r', '1', '--node', c.addr('n2'));
        expect(held.code).to.equal(1);
        expect(held.stderr).to.include('KV_SESSION_UNAVAILABLE');
      } finally {
        c.signal('n1', 'SIGCONT');
      }
      await pollUntil(async () => {
        const got = await cli('get', key, '--r', '1', '--node', c.addr('n2'));
        return got.stdout === 'new' ? true : undefined;
      }, { timeoutMs: 60_000, what: 'the session read returns the write once n1 is back' });
    } finally {
      c.signal('n1', 'SIGCONT');
      removeDir(dir);
    }
  });

  it('ignores a session of another cluster (X-Kv-Session-Cluster) and names its own (X-Kv-Cluster)', async () => {
    const ring = await (await fetch(`http://${c.addr('n1')}/cluster/ring`)).json() as RingView;
    const key = Array.from({ length: 1000 }, (_, i) => `other-cluster-${i}`).find((k) => (ring.table[partitionOf(k, ring.partitions)]?.replicas ?? []).includes('n3')) as string;
    const put = await fetch(`http://${c.addr('n1')}/kv/${key}?w=all`, { method: 'PUT', body: 'x' });
    const cluster = put.headers.get('x-kv-cluster');
    expect(cluster).to.match(/^[0-9a-f-]{36}$/);
    // A token demanding a version of the key this cluster never had (2 s ahead, within the skew
    // bound), while a replica that might hold it is down: a session of this cluster cannot be served.
    const ahead = `${(Date.now() + 2_000).toString(16).padStart(12, '0')}0000:n1`;
    const foreign = `${ahead},${sessionKeyHash(key)}:${ahead}`;
    await c.kill('n3');
    try {
      const ignored = await fetch(`http://${c.addr('n2')}/kv/${key}?r=1`, { headers: { 'x-kv-session': foreign, 'x-kv-session-cluster': 'another-cluster' } });
      expect(ignored.status).to.equal(200);
      expect(await ignored.text()).to.equal('x');
      expect(ignored.headers.get('x-kv-cluster')).to.equal(cluster);
      expect(ignored.headers.get('x-kv-session')).to.not.include(ahead);
      const honoured = await fetch(`http://${c.addr('n2')}/kv/${key}?r=1`, { headers: { 'x-kv-session': foreign, 'x-kv-session-cluster': cluster as string } });
      expect(honoured.status, 'the same token, named as this cluster\'s').to.equal(504);
      expect(((await honoured.json()) as { error: { code: string } }).error.code).to.equal('KV_SESSION_UNAVAILABLE');
    } finally {
      await c.restart('n3');
    }
  });
});
