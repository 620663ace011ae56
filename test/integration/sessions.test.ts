/**
 * Session guarantees on real processes (X-Kv-Session): a client writes through one node
 * with w=1 and reads through another at r=1, with a replica paused (SIGSTOP); KvClient
 * carries the token itself. Every read returns the value written or a newer one. A token
 * from the future is refused, and the header round-trips for curl-style clients.
 */
import { expect } from 'chai';
import { partitionOf } from '../../lib/core/partitioner.ts';
import { KvClient } from '../../lib/client/client.ts';
import { TestCluster } from '../helpers/cluster.ts';

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
});
