/**
 * Data movement on topology change with real processes (DESIGN.md §9): the Merkle
 * exchange streams a joining node's partitions to it before it turns normal, and a
 * leaving node's partitions to their new owners before it is removed. Read repair and
 * hinted handoff are OFF, so streaming and anti-entropy are the only ways data moves.
 *
 * - A 4th node joins a 3-node cluster holding 50,000 keys (`npm run test:full`; 12,000 in
 *   `npm test`) while a client reads and
 *   overwrites keys through every node: no request fails, no read is wrong, and the new
 *   node afterwards replicates ~3/4 of the partitions with exactly their keys.
 * - A decommissioned node's keys all remain readable, with the right values, after it
 *   is removed and killed.
 *
 * One cluster, Q=64, 100-byte values. Wall time ≈ 40 s on a quiet 2-core machine with 12,000
 * keys, ≈ 2 min with 50,000 (most of it writing and reading the keys over HTTP).
 */
import { expect } from 'chai';
import { partitionOf } from '../../lib/core/partitioner.ts';
import type { KvClient } from '../../lib/client/client.ts';
import { pool } from '../helpers/pool.ts';
import { count, testSize } from '../helpers/scale.ts';
import { TestCluster, type ClusterView } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';

const Q = 64;
const ARGS = [
  '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100',
  '--partitions', String(Q), '--anti-entropy-interval-ms', '2000',
  '--read-repair', 'false', '--hinted-handoff', 'false',
];
const KEYS = testSize(50_000, 12_000);
const VALUE_BYTES = 100;

interface PartitionInfo { partition: number; replicas: string[]; keys: number; merkleRoot: string }
interface PartitionsView { id: string; epoch: number; partitions: PartitionInfo[] }
interface RingView { epoch: number; table: { partition: number; replicas: string[] }[] }

const keyOf = (i: number): string => `join-${i}`;
/** Value of key i after its g-th write (g = 0: the preload). */
const valueOf = (i: number, g: number): string => `${i}.${g}.`.padEnd(VALUE_BYTES, 'x');

async function getJson<T>(c: TestCluster, id: string, path: string): Promise<T> {
  const res = await fetch(`http://${c.addr(id)}${path}`);
  if (!res.ok) throw new Error(`${path} on ${id}: ${res.status}`);
  return (await res.json()) as T;
}

/** Every partition's Merkle root is the same on each of its current replicas (per `ids`' views). */
async function replicaRootsEqual(c: TestCluster, ids: string[]): Promise<boolean> {
  const views = new Map<string, PartitionsView>();
  for (const id of ids) views.set(id, await getJson<PartitionsView>(c, id, '/cluster/partitions'));
  const epochs = new Set([...views.values()].map((v) => v.epoch));
  if (epochs.size !== 1) return false;
  const ring = await getJson<RingView>(c, ids[0] as string, '/cluster/ring');
  return ring.table.every(({ partition, replicas }) => {
    const roots = replicas.map((r) => views.get(r)?.partitions.find((x) => x.partition === partition)?.merkleRoot);
    return roots.every((x) => x !== undefined && x === roots[0]);
  });
}

/**
 * Closed-loop client: reads (70 %) and overwrites (30 %) random keys, one request per key
 * at a time, and checks each read against the last acknowledged write of that key.
 */
class Workload {
  reads = 0;
  writes = 0;
  readonly failed: string[] = [];
  readonly wrong: string[] = [];
  readonly gen = new Uint32Array(KEYS);
  private readonly busy = new Set<number>();
  /** Requests sent through each client, by index. */
  readonly sent: number[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  /** `clients` may grow while the workload runs. */
  constructor(readonly clients: KvClient[], concurrency: number) {
    this.done = Promise.all(Array.from({ length: concurrency }, () => this.worker())).then(() => undefined);
  }

  private async worker(): Promise<void> {
    while (!this.stopped) {
      const i = Math.floor(Math.random() * KEYS);
      if (this.busy.has(i)) continue;
      this.busy.add(i);
      const c = Math.floor(Math.random() * this.clients.length);
      const client = this.clients[c] as KvClient;
      this.sent[c] = (this.sent[c] ?? 0) + 1;
      try {
        if (Math.random() < 0.3) {
          const g = (this.gen[i] as number) + 1;
          await client.put(keyOf(i), valueOf(i, g));
          this.gen[i] = g;
          this.writes++;
        } else {
          const got = await client.get(keyOf(i));
          const want = valueOf(i, this.gen[i] as number);
          if (got?.value.toString() !== want) this.wrong.push(`${keyOf(i)}: got ${got?.value.toString().slice(0, 12) ?? '404'}, want ${want.slice(0, 12)}`);
          this.reads++;
        }
      } catch (err) {
        this.failed.push(`${keyOf(i)}: ${(err as Error).message}`);
      } finally {
        this.busy.delete(i);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

describe('anti-entropy data movement: join and decommission (real processes)', function () {
  this.timeout(300_000);
  let c: TestCluster;
  let workload: Workload | undefined;

  before(async function () {
    this.timeout(240_000);
    c = await TestCluster.start(3, { args: ARGS });
    const client = c.client(['n1', 'n2', 'n3']);
    const started = Date.now();
    const errors = await pool(KEYS, 64, async (i) => { await client.put(keyOf(i), valueOf(i, 0)); });
    if (errors.length > 0) throw new Error(`preload: ${errors.length} writes failed, first: ${String(errors[0])}`);
    console.log(`      preloaded ${KEYS} keys in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  after(async () => {
    await workload?.stop();
    await c?.stop();
  });

  it(`a 4th node joins a cluster holding ${count(KEYS)} keys under client traffic: no failed or wrong reads, then owns its share`, async () => {
    const w = new Workload([c.client(['n1', 'n2', 'n3'])], 8);
    workload = w;
    const started = Date.now();
    await c.add('n4', { args: ARGS });
    // Coordinating through the joining node too: it reads from the current owners until it is normal.
    w.clients.push(c.client(['n4']));
    await c.waitConverged(4, 180_000);
    const joinMs = Date.now() - started;
    // Keep the traffic on until reads have run against the new ring (n4 a replica).
    const readsAtNormal = w.reads;
    await pollUntil(() => w.reads >= readsAtNormal + 1000, { timeoutMs: 60_000, what: '1,000 reads after n4 turned normal' });
    await w.stop();
    console.log(`      join: ${(joinMs / 1000).toFixed(1)} s to normal; ${w.reads} reads, ${w.writes} writes during the test`);
    expect(w.failed, w.failed.slice(0, 5).join('\n')).to.have.length(0);
    expect(w.wrong, w.wrong.slice(0, 5).join('\n')).to.have.length(0);
    expect(w.reads).to.be.at.least(1000);
    expect(w.sent[1] ?? 0, 'requests coordinated by n4').to.be.greaterThan(0);

    // Owns its share: ~3/4 of the partitions (N=3 of 4 nodes), each with exactly its keys.
    const ring = await getJson<RingView>(c, 'n4', '/cluster/ring');
    const mine = new Set(ring.table.filter((e) => e.replicas.includes('n4')).map((e) => e.partition));
    expect(mine.size).to.be.within(Math.round(0.55 * Q), Math.round(0.95 * Q));
    const expected = new Map<number, number>();
    for (let i = 0; i < KEYS; i++) {
      const p = partitionOf(keyOf(i), Q);
      if (mine.has(p)) expected.set(p, (expected.get(p) ?? 0) + 1);
    }
    const view = await getJson<PartitionsView>(c, 'n4', '/cluster/partitions');
    const held = view.partitions.filter((x) => mine.has(x.partition));
    expect(held).to.have.length(mine.size);
    for (const x of held) expect(x.keys, `keys of partition ${x.partition} on n4`).to.equal(expected.get(x.partition));
    const total = held.reduce((a, x) => a + x.keys, 0);
    expect(total).to.be.within(0.55 * KEYS, 0.95 * KEYS);

    // Its stream timed every partition exchange: each of its partitions with at least N - W + 1 = 2
    // owners, the first of them in bulk unless a client write got there first.
    const metrics = await (await fetch(`http://${c.addr('n4')}/metrics`)).text();
    const exchanged = (method: string): number => Number(new RegExp(`^kv_stream_exchange_seconds_count\\{method="${method}"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 0);
    expect(exchanged('bulk'), 'bulk exchanges timed on n4').to.be.greaterThan(0);
    expect(exchanged('bulk') + exchanged('merkle'), 'partition exchanges timed on n4').to.be.at.least(2 * mine.size);

    // A sample of its keys, read from n4's own store with the latest acknowledged value's version present.
    const sample = Array.from({ length: KEYS }, (_, i) => i).filter((i) => mine.has(partitionOf(keyOf(i), Q))).filter((_, j) => j % 37 === 0);
    const missing: string[] = [];
    const errors = await pool(sample.length, 16, async (j) => {
      const key = keyOf(sample[j] as number);
      const res = await fetch(`http://${c.addr('n4')}/cluster/records/${encodeURIComponent(key)}`);
      const rec = res.ok ? (await res.json()) as { tombstone: boolean; bytes: number } : undefined;
      if (!rec || rec.tombstone || rec.bytes !== VALUE_BYTES) missing.push(`${key}: ${res.status}`);
    });
    expect(errors, String(errors[0])).to.have.length(0);
    expect(missing, missing.slice(0, 5).join('\n')).to.have.length(0);

    await pollUntil(() => replicaRootsEqual(c, ['n1', 'n2', 'n3', 'n4']), { timeoutMs: 60_000, intervalMs: 500, what: 'equal roots on every partition\'s replicas' });
  });

  it('a decommissioned node\'s keys all remain readable after it is removed and killed', async () => {
    const gen = workload?.gen ?? new Uint32Array(KEYS);
    const client = c.client(['n1', 'n3', 'n4']);
    const before = await getJson<RingView>(c, 'n1', '/cluster/ring');
    const held = new Set(before.table.filter((e) => e.replicas.includes('n2')).map((e) => e.partition));
    expect(held.size).to.be.greaterThan(0);

    await client.json('POST', '/cluster/decommission', { id: 'n2' }, c.addr('n1'));
    await pollUntil(async () => {
      const views = await Promise.all(['n1', 'n3', 'n4'].map((id) => c.view(id)));
      const v0 = views[0] as ClusterView;
      return views.every((v) => v.epoch === v0.epoch && v.ringChecksum === v0.ringChecksum &&
        v.members.every((m) => m.id !== 'n2') && v.members.filter((m) => m.state === 'normal').length === 3);
    }, { timeoutMs: 180_000, intervalMs: 250, what: 'n2 removed on n1, n3, n4' });
    await c.kill('n2');

    const keys = Array.from({ length: KEYS }, (_, i) => i).filter((i) => held.has(partitionOf(keyOf(i), Q)));
    const wrong: string[] = [];
    const errors = await pool(keys.length, 48, async (j) => {
      const i = keys[j] as number;
      const got = await client.get(keyOf(i));
      if (got?.value.toString() !== valueOf(i, gen[i] as number)) wrong.push(`${keyOf(i)}: ${got?.value.toString().slice(0, 12) ?? '404'}`);
    });
    expect(errors, String(errors[0])).to.have.length(0);
    expect(wrong, wrong.slice(0, 5).join('\n')).to.have.length(0);
    expect(keys.length).to.be.greaterThan(0.5 * KEYS);

    // Not just a quorum: every remaining replica of every partition converges.
    await pollUntil(() => replicaRootsEqual(c, ['n1', 'n3', 'n4']), { timeoutMs: 60_000, intervalMs: 500, what: 'equal roots on every partition\'s replicas' });
    const views = await Promise.all(['n1', 'n3', 'n4'].map((id) => getJson<PartitionsView>(c, id, '/cluster/partitions')));
    for (const v of views) expect(v.partitions.reduce((a, x) => a + x.keys, 0), v.id).to.equal(KEYS);
  });
});
