/**
 * Expiring keys on real processes, with read repair, hinted handoff and a fast anti-entropy
 * walk all on. A key held live by all three replicas is overwritten with a TTL while one
 * replica is down (SIGKILL): the TTL record reaches two replicas and a hint for the third.
 * It expires while that replica is still down; the replica comes back holding the older live
 * value. Checked on every node's own record (/cluster/records/:key) and through quorum reads:
 *   - every replica ends up with the same record (same version, same expiresAt), expired;
 *   - no quorum read through any node ever answers a value after the expiry;
 *   - no replica ever holds a live version again (neither the older value nor the TTL one),
 *     through read repair, the hint or anti-entropy;
 *   - tombstone GC purges it from every replica (grace counted from the expiry), and it
 *     stays gone through further anti-entropy walks.
 * Also: X-Kv-Expires on reads, ?ttl= validation.
 *
 * Wall time ≈ 30 s, most of it the 15 s grace counted from the expiry. The grace stays 15 s
 * so the hint (kept for the grace less the request timeout and clock skew, 12 s) still lives
 * when the replica comes back. (The cluster forming only adds owners, so GC is not also held
 * back for hand-offs: HANDOFF_GC_MARGIN_MS in lib/node/anti-entropy.ts.)
 */
import { expect } from 'chai';
import { partitionOf } from '../../lib/core/partitioner.ts';
import { KvClient } from '../../lib/client/client.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';

const GRACE_MS = 15_000;
const ARGS = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100', '--partitions', '64',
  '--anti-entropy-interval-ms', '1000', '--tombstone-grace-ms', String(GRACE_MS), '--request-timeout-ms', '2000', '--max-clock-skew-ms', '1000'];

interface RingView { partitions: number; table: { partition: number; replicas: string[] }[] }
interface LocalRecord { version: string; tombstone: boolean; expiresAt?: number; expired?: boolean }

describe('expiring keys (TTL) on real processes', function () {
  this.timeout(300_000);
  let c: TestCluster;
  let client: KvClient;

  before(async () => {
    c = await TestCluster.start(4, { args: ARGS });
    // No session: a session would make reads wait for the TTL record's version even after GC purged it.
    client = new KvClient({ nodes: c.addrs(), session: false });
  });

  after(async () => {
    client?.close();
    await c?.stop();
  });

  async function local(id: string, key: string): Promise<LocalRecord | null> {
    const res = await fetch(`http://${c.addr(id)}/cluster/records/${encodeURIComponent(key)}`);
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`/cluster/records on ${id}: ${res.status}`);
    return (await res.json()) as LocalRecord;
  }

  /** Anti-entropy walks `id` has completed (its own entry in /cluster/stats). */
  async function walksCompleted(id: string): Promise<number> {
    const res = await fetch(`http://${c.addr(id)}/cluster/stats`);
    if (!res.ok) throw new Error(`/cluster/stats on ${id}: ${res.status}`);
    const stats = (await res.json()) as { nodes: { id: string; stats?: { antiEntropy: { walksCompleted: number } } }[] };
    const own = stats.nodes.find((n) => n.id === id)?.stats?.antiEntropy;
    if (own === undefined) throw new Error(`/cluster/stats on ${id} has no anti-entropy figures of its own`);
    return own.walksCompleted;
  }

  it('answers X-Kv-Expires on reads of a TTL value and refuses a bad ttl', async () => {
    const before = Date.now();
    await client.put('ttl-header', 'v', { ttl: 60 });
    const got = await client.get('ttl-header', { r: 'all' });
    expect(got?.expiresAt).to.be.within(before + 59_000, Date.now() + 61_000);
    const res = await fetch(`http://${c.addr('n2')}/kv/ttl-header`);
    expect(res.headers.get('x-kv-expires')).to.equal(String(got?.expiresAt));
    for (const bad of ['0', '-5', '1.5', 'soon']) {
      const r = await fetch(`http://${c.addr('n1')}/kv/ttl-bad?ttl=${bad}`, { method: 'PUT', body: 'x' });
      expect(r.status, bad).to.equal(400);
    }
    await client.put('ttl-plain', 'v');
    expect((await fetch(`http://${c.addr('n3')}/kv/ttl-plain`)).headers.get('x-kv-expires'), 'none without a TTL').to.equal(null);
  });

  it('expires alike on every replica with one down during the expiry, and never comes back through read repair, hints or anti-entropy', async () => {
    const key = 'ttl-key';
    const ring = await (await fetch(`http://${c.addr('n1')}/cluster/ring`)).json() as RingView;
    const replicas = ring.table[partitionOf(key, ring.partitions)]?.replicas as string[];
    const [r1, , down] = replicas as [string, string, string];
    const other = [...c.nodes.keys()].find((id) => !replicas.includes(id)) as string;
    const old = await client.put(key, 'old, no ttl', { w: 'all' });
    await c.kill(down, 'SIGKILL');
    await pollUntil(async () => (await c.view(r1)).members.find((m) => m.id === down)?.liveness === 'dead', { what: `${down} dead`, timeoutMs: 30_000 });
    const ttl = await client.put(key, 'expiring', { ttl: 3, w: 2, node: c.addr(other) });
    expect(ttl.version > old.version).to.equal(true);
    const held = await local(r1, key);
    const expiresAt = held?.expiresAt as number;
    expect(held?.version).to.equal(ttl.version);
    expect(expiresAt).to.be.a('number');
    expect((await client.get(key, { r: 2 }))?.value.toString()).to.equal('expiring');

    await pollUntil(() => Date.now() > expiresAt + 200, { what: 'the TTL to pass', timeoutMs: 10_000 });
    const violations: string[] = [];
    const watch = async (phase: string): Promise<void> => {
      for (const id of c.running()) {
        const rec = await local(id, key).catch(() => undefined);
        if (rec && !rec.tombstone && rec.expired !== true && rec.version !== old.version) violations.push(`${phase}: ${id} holds live ${rec.version}`);
        if (rec && rec.version === old.version && id !== down) violations.push(`${phase}: ${id} went back to the old value`);
        const got = await client.get(key, { r: 2, node: c.addr(id) }).catch(() => undefined);
        if (got !== undefined) violations.push(`${phase}: a quorum read through ${id} answered ${got.version}`);
      }
    };
    await watch('expired, replica down');
    await c.restart(down);
    // Back with the older live value: the hint, read repair and anti-entropy must bring the expired record, not the value.
    const converged = await pollUntil(async () => {
      await watch('replica back');
      const recs = await Promise.all(replicas.map((id) => local(id, key)));
      return recs.every((r) => r?.version === ttl.version && r.expiresAt === expiresAt && r.expired === true) ? recs : undefined;
    }, { what: 'every replica holding the same expired record', timeoutMs: 60_000, intervalMs: 200 });
    expect(converged).to.have.length(3);

    // Tombstone GC: the grace counts from the expiry; the first replica purges once every replica holds it.
    await pollUntil(async () => {
      await watch('waiting for GC');
      const recs = await Promise.all(c.running().map((id) => local(id, key)));
      return recs.every((r) => r === null);
    }, { what: 'the expired record purged from every node', timeoutMs: 150_000, intervalMs: 500 });
    // Two more complete anti-entropy walks on every node with reads going on: it stays gone everywhere.
    const walksAtGc = new Map(await Promise.all(c.running().map(async (id) => [id, await walksCompleted(id)] as const)));
    await pollUntil(async () => {
      await watch('after GC');
      for (const id of c.running()) if ((await local(id, key)) !== null) violations.push(`after GC: ${id} holds a record again`);
      const now = await Promise.all(c.running().map(async (id) => (await walksCompleted(id)) - (walksAtGc.get(id) ?? 0)));
      return now.every((n) => n >= 2);
    }, { what: 'two more anti-entropy walks on every node after GC', timeoutMs: 30_000, intervalMs: 250 });
    expect(violations).to.deep.equal([]);
  });
});
