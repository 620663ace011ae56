/**
 * Merkle anti-entropy with real processes, read repair and hinted handoff OFF, so the
 * exchange is the only way data can reach a replica that missed it (DESIGN.md §9,
 * guarantees 4 and 5):
 * - a replica that was down during 10,000 writes (`npm run test:full`; 4,000 in `npm test`)
 *   holds every one of them after its
 *   restart, and every partition's Merkle root is equal on all replicas;
 * - a key deleted while a replica was down stays deleted: its tombstone is kept while
 *   the replica is away, reaches it after restart, and is then purged everywhere;
 *   no read with r=all ever returns the old value.
 *
 * One 3-node cluster, Q=64. Wall time ≈ 40 s on a quiet 2-core machine.
 */
import { expect } from 'chai';
import { partitionOf } from '../../lib/core/partitioner.ts';
import { KvClientError, type KvClient } from '../../lib/client/client.ts';
import { pool } from '../helpers/pool.ts';
import { count, testSize } from '../helpers/scale.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { FatalPollError, pollUntil } from '../helpers/poll.ts';

const Q = 64;
const ARGS = [
  '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100',
  '--partitions', String(Q), '--anti-entropy-interval-ms', '2000', '--tombstone-grace-ms', '1000',
  '--read-repair', 'false', '--hinted-handoff', 'false',
];
const WRITES = testSize(10_000, 4_000);

interface PartitionInfo { partition: number; replicas: string[]; keys: number; merkleRoot: string }
interface PartitionsView { id: string; epoch: number; partitions: PartitionInfo[] }

async function partitions(c: TestCluster, id: string): Promise<PartitionsView> {
  const res = await fetch(`http://${c.addr(id)}/cluster/partitions`);
  if (!res.ok) throw new Error(`/cluster/partitions on ${id}: ${res.status}`);
  return (await res.json()) as PartitionsView;
}

/** Sum of every sample of `name` (all label sets) in a node's /metrics. */
async function metric(c: TestCluster, id: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${c.addr(id)}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** This node's own record of `key`, or undefined on 404. */
async function localRecord(c: TestCluster, id: string, key: string): Promise<{ version: string; tombstone: boolean } | undefined> {
  const res = await fetch(`http://${c.addr(id)}/cluster/records/${encodeURIComponent(key)}`);
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`/cluster/records on ${id}: ${res.status}`);
  return (await res.json()) as { version: string; tombstone: boolean };
}

/** Every partition's root is equal on all `ids` (each of them holds every partition: N = members = 3). */
async function rootsEqual(c: TestCluster, ids: string[]): Promise<Map<string, PartitionsView> | undefined> {
  const views = new Map<string, PartitionsView>();
  for (const id of ids) views.set(id, await partitions(c, id));
  for (let p = 0; p < Q; p++) {
    const roots = new Set(ids.map((id) => views.get(id)?.partitions.find((x) => x.partition === p)?.merkleRoot));
    if (roots.size !== 1) return undefined;
  }
  return views;
}

describe('anti-entropy repair and tombstone GC (real processes, read repair and hints off)', function () {
  this.timeout(300_000);
  let c: TestCluster;
  let client: KvClient;

  before(async () => {
    c = await TestCluster.start(3, { args: ARGS });
    client = c.client(['n1', 'n2']);
  });

  after(async () => {
    await c?.stop();
  });

  it(`a replica down during ${count(WRITES)} writes holds all of them after restart, with equal roots everywhere`, async () => {
    await c.kill('n3');
    const versions: string[] = new Array<string>(WRITES);
    const errors = await pool(WRITES, 48, async (i) => {
      versions[i] = (await client.put(`down-${i}`, `value-${i}`, { w: 2 })).version;
    });
    expect(errors, String(errors[0])).to.have.length(0);
    const repairedBefore = (await Promise.all(['n1', 'n2'].map((id) => metric(c, id, 'kv_ae_keys_repaired_total')))).reduce((a, b) => a + b, 0);

    await c.restart('n3');
    const views = await pollUntil(async () => {
      const v = await rootsEqual(c, ['n1', 'n2', 'n3']);
      const n3Keys = v?.get('n3')?.partitions.reduce((a, p) => a + p.keys, 0);
      return n3Keys === WRITES ? v : undefined;
    }, { timeoutMs: 90_000, intervalMs: 500, what: `equal Merkle roots on n1..n3 and ${count(WRITES)} keys on n3` });
    const n3 = views.get('n3') as PartitionsView;
    expect(n3.partitions.filter((p) => p.keys > 0)).to.have.length(Q);
    expect(n3.partitions.every((p) => p.merkleRoot !== '0000000000000000')).to.equal(true);

    // The records themselves, with the acknowledged version, are on n3.
    const wrong: string[] = [];
    const recErrors = await pool(WRITES, 32, async (i) => {
      const rec = await localRecord(c, 'n3', `down-${i}`);
      if (rec === undefined || rec.version !== versions[i] || rec.tombstone) wrong.push(`down-${i}: ${JSON.stringify(rec)}`);
    });
    expect(recErrors, String(recErrors[0])).to.have.length(0);
    expect(wrong, wrong.slice(0, 5).join('\n')).to.have.length(0);

    // Nothing but anti-entropy could have moved them (read repair and hints are off).
    const repaired = (await Promise.all(['n1', 'n2', 'n3'].map((id) => metric(c, id, 'kv_ae_keys_repaired_total')))).reduce((a, b) => a + b, 0);
    expect(repaired - repairedBefore).to.be.at.least(WRITES);
  });

  it('a key deleted while a replica was down stays deleted, and its tombstone is purged only after that replica got it', async () => {
    // A key whose GC leader (first replica) is not the replica we stop: the leader keeps
    // walking while n3 is away and must not purge.
    const ring = await client.json<{ table: { partition: number; replicas: string[] }[] }>('GET', '/cluster/ring');
    let key = '';
    for (let i = 0; key === ''; i++) {
      const k = `gc-key-${i}`;
      if (ring.table[partitionOf(k, Q)]?.replicas[0] !== 'n3') key = k;
    }
    const leader = ring.table[partitionOf(key, Q)]?.replicas[0] as string;
    await client.put(key, 'old-value', { w: 'all' });
    for (const id of ['n1', 'n2', 'n3']) expect((await localRecord(c, id, key))?.tombstone, id).to.equal(false);

    await c.kill('n3');
    const del = await client.del(key, { w: 2 });

    /** r=all while every replica is up, r=2 while one is down; a value is a resurrection. */
    const readMustMiss = async (): Promise<void> => {
      for (const r of ['all', 2] as const) {
        try {
          const got = await client.get(key, { r });
          if (got !== undefined) throw new FatalPollError(`resurrection: GET ${key}?r=${r} returned ${got.value.toString()} (${got.version})`);
          return;
        } catch (err) {
          if (err instanceof FatalPollError) throw err;
          if (!(err instanceof KvClientError && err.code === 'KV_UNAVAILABLE')) throw err;
        }
      }
      throw new Error('no read quorum');
    };

    // While n3 is away, the leader completes walks past the grace period and keeps the tombstone.
    const walks0 = await metric(c, leader, 'kv_ae_walks_total');
    await pollUntil(async () => {
      await readMustMiss();
      return (await metric(c, leader, 'kv_ae_walks_total')) >= walks0 + 3;
    }, { timeoutMs: 30_000, intervalMs: 100, what: `three anti-entropy walks on ${leader}` });
    for (const id of ['n1', 'n2']) {
      const rec = await localRecord(c, id, key);
      expect(rec, `${id} still holds the tombstone while n3 is down`).to.deep.include({ version: del.version, tombstone: true });
    }

    await c.restart('n3');
    let sawTombstoneOnN3 = false;
    await pollUntil(async () => {
      await readMustMiss();
      const recs = await Promise.all(['n1', 'n2', 'n3'].map((id) => localRecord(c, id, key)));
      const n3 = recs[2];
      if (n3?.tombstone) sawTombstoneOnN3 = true;
      if (n3 !== undefined && !n3.tombstone && recs.every((r, i) => i === 2 || r === undefined)) {
        throw new FatalPollError(`n3 holds the old value ${JSON.stringify(n3)} but the tombstone is gone everywhere else`);
      }
      return recs.every((r) => r === undefined);
    }, { timeoutMs: 60_000, intervalMs: 100, what: `no record of ${key} on any node` });
    // Either we saw n3 hold the tombstone, or n3 dropped it in the same round as the others; n3 never kept the value.
    expect(sawTombstoneOnN3 || (await localRecord(c, 'n3', key)) === undefined).to.equal(true);

    const purged = (await Promise.all(['n1', 'n2', 'n3'].map((id) => metric(c, id, 'kv_ae_tombstones_purged_total')))).reduce((a, b) => a + b, 0);
    expect(purged).to.be.at.least(1);

    // Still deleted after every node completed another full walk (nothing brings it back).
    const walks = await Promise.all(['n1', 'n2', 'n3'].map((id) => metric(c, id, 'kv_ae_walks_total')));
    await pollUntil(async () => {
      await readMustMiss();
      const now = await Promise.all(['n1', 'n2', 'n3'].map((id) => metric(c, id, 'kv_ae_walks_total')));
      return now.every((w, i) => w >= (walks[i] as number) + 1);
    }, { timeoutMs: 30_000, intervalMs: 100, what: 'one more walk on every node' });
    for (const id of ['n1', 'n2', 'n3']) expect(await localRecord(c, id, key), id).to.equal(undefined);
    expect(await client.get(key, { r: 'all' })).to.equal(undefined);
  });
});
