/**
 * The data path with real processes (DESIGN.md §2, §8): quorum reads and writes through
 * every coordinator, failures of replicas, honest outcomes, read repair, hinted handoff
 * and sloppy quorums, on 3- and 5-node clusters of `kv node` processes.
 *
 * Each describe shares one cluster and its tests run in order on it (a later test starts
 * from the state the earlier one left: a node killed, a write missed). Anti-entropy is
 * slowed to one partition per ~84 s (24 h / 1024 partitions) and the keys that assert
 * repairs avoid the few partitions a walk reaches during the file, so every repair seen
 * here comes from the mechanism under test (read repair or hints), not from Merkle sync.
 *
 * Wall time: about 45-60 s on a 2-core machine (three clusters, eleven node processes).
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { partitionOf } from '../../lib/core/partitioner.ts';
import { KvClientError, type KvClient } from '../../lib/client/client.ts';
import { TestCluster, type ClusterView } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';

const FAST = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100'];
/** The longest interval config allows: anti-entropy stays out of the way of the repairs under test. */
const SLOW_AE = ['--anti-entropy-interval-ms', String(24 * 3600 * 1000)];
/** A paused peer must not hang a poll: every HTTP call to /cluster* gives up after this. */
const HTTP_TIMEOUT_MS = 2000;
/** Generous for loaded machines: gossip, restarts and hint rounds (1 s) all fit well inside. */
const DEADLINE_MS = 30_000;
/** maxValueBytes default: the largest value a client may store. */
const MAX_VALUE_BYTES = 1024 * 1024;

interface RingTable { epoch: number; partitions: number; n: number; table: { partition: number; replicas: string[]; fallbacks: string[] }[] }
interface LocalRecord { id: string; key: string; version: string; tombstone: boolean; bytes: number }

async function getJson<T>(c: TestCluster, id: string, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://${c.addr(id)}${path}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  return { status: res.status, body: (await res.json()) as T };
}

async function view(c: TestCluster, id: string): Promise<ClusterView> {
  const { status, body } = await getJson<ClusterView>(c, id, '/cluster');
  if (status !== 200) throw new Error(`/cluster on ${id}: ${status}`);
  return body;
}

/** The record node `id` itself stores for `key` (GET /cluster/records/:key), undefined on 404. */
async function localRecord(c: TestCluster, id: string, key: string): Promise<LocalRecord | undefined> {
  const { status, body } = await getJson<LocalRecord>(c, id, `/cluster/records/${encodeURIComponent(key)}`);
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`/cluster/records on ${id}: ${status} ${JSON.stringify(body)}`);
  return body;
}

async function ring(c: TestCluster, id = 'n1'): Promise<RingTable> {
  const { status, body } = await getJson<RingTable>(c, id, '/cluster/ring');
  if (status !== 200) throw new Error(`/cluster/ring on ${id}: ${status}`);
  return body;
}

function replicasOfKey(t: RingTable, key: string): string[] {
  const row = t.table[partitionOf(key, t.partitions)];
  if (!row) throw new Error(`no ring row for ${key}`);
  return row.replicas;
}

/**
 * Partitions an anti-entropy walk may reach while this file runs: a walk starts ~1 s
 * after a node (re)starts and takes one of the node's partitions (ascending) per
 * interval/partitions ≥ 84 s, so the first three of each node's partitions are plenty.
 */
function aeReachable(t: RingTable): Set<number> {
  const out = new Set<number>();
  const seen = new Map<string, number>();
  for (const row of t.table) {
    for (const id of row.replicas) {
      const n = seen.get(id) ?? 0;
      if (n < 3) out.add(row.partition);
      seen.set(id, n + 1);
    }
  }
  return out;
}

/** Fresh keys `prefix-<i>` outside the anti-entropy partitions that satisfy `pred` (e.g. on given replicas). */
function keyGen(t: RingTable, prefix: string, pred: (replicas: string[]) => boolean = () => true): () => string {
  const avoid = aeReachable(t);
  let i = 0;
  return () => {
    for (;;) {
      const key = `${prefix}-${i++}`;
      if (!avoid.has(partitionOf(key, t.partitions)) && pred(replicasOfKey(t, key))) return key;
      if (i > 1_000_000) throw new Error(`no key for ${prefix}`);
    }
  };
}

/** Polls until every node in `observers` reports `target` with `liveness`. */
async function waitLiveness(c: TestCluster, observers: string[], target: string, liveness: 'alive' | 'dead'): Promise<void> {
  await pollUntil(async () => {
    const views = await Promise.all(observers.map((id) => view(c, id)));
    return views.every((v) => v.members.find((m) => m.id === target)?.liveness === liveness);
  }, { timeoutMs: DEADLINE_MS, intervalMs: 100, what: `${observers.join(',')} to see ${target} ${liveness}` });
}

/** A restarted node is back for the data path once it and the others see each other alive. */
async function waitAllAlive(c: TestCluster, ids: string[]): Promise<void> {
  await pollUntil(async () => {
    const views = await Promise.all(ids.map((id) => view(c, id)));
    return views.every((v) => ids.every((t) => v.members.find((m) => m.id === t)?.liveness === 'alive'));
  }, { timeoutMs: DEADLINE_MS, intervalMs: 100, what: `${ids.join(',')} all alive to each other` });
}

/** The KvClientError a server answered with (not a client-side timeout or socket error). */
async function serverError(p: Promise<unknown>): Promise<KvClientError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof KvClientError) return err;
    throw err;
  }
  throw new Error('expected the request to fail');
}

function value(i: number): Buffer {
  // Every byte value occurs, so a text or encoding step anywhere on the path would show.
  const b = randomBytes(1 + (i * 37) % 2000);
  b[0] = 0x00;
  b[b.length - 1] = 0xff;
  return b;
}

/** Keys that need percent-encoding or are multi-byte UTF-8, stored beside the plain ones. */
const ODD_KEYS = ['a/b c?d=e&f', 'ключ-🔑', '%2F..%00', ' leading and trailing '];

/**
 * Writes through every coordinator and reads each key back through every other one
 * with default w/r, for binary values of many sizes up to the 1 MiB limit.
 */
async function crossCoordinatorReadBack(c: TestCluster, tag: string, perNode: number): Promise<number> {
  const ids = c.running();
  const written: { key: string; value: Buffer; via: string; version: string }[] = [];
  for (const [n, via] of ids.entries()) {
    const client = c.client([via]);
    const batch: { key: string; value: Buffer }[] = [];
    for (let i = 0; i < perNode; i++) batch.push({ key: `${tag}-${via}-${i}`, value: value(n * perNode + i) });
    batch.push({ key: `${tag}-${via}-max`, value: randomBytes(MAX_VALUE_BYTES) });
    batch.push({ key: `${tag}-${via}-empty`, value: Buffer.alloc(0) });
    batch.push({ key: `${ODD_KEYS[n % ODD_KEYS.length]}-${tag}-${via}`, value: value(n) });
    for (const { key, value: v } of batch) {
      const { version } = await client.put(key, v);
      written.push({ key, value: v, via, version });
    }
  }
  let reads = 0;
  for (const w of written) {
    for (const other of ids.filter((id) => id !== w.via)) {
      const got = await c.client([other]).get(w.key);
      expect(got, `${w.key} written via ${w.via}, read via ${other}`).to.not.equal(undefined);
      expect(got?.version, `${w.key} version via ${other}`).to.equal(w.version);
      expect(Buffer.compare(got?.value ?? Buffer.alloc(1), w.value), `${w.key} bytes via ${other}`).to.equal(0);
      reads++;
    }
  }
  // A delete through one coordinator is a delete through every other.
  for (const via of ids) {
    const key = `${tag}-${via}-0`;
    await c.client([via]).del(key);
    for (const other of ids.filter((id) => id !== via)) expect(await c.client([other]).get(key), `${key} deleted via ${via}, read via ${other}`).to.equal(undefined);
  }
  return reads;
}

interface TrafficOp { key: string; version: string; startedAt: number }

/**
 * Closed-loop client traffic: each worker PUTs a fresh key (w=2) through one live node
 * and GETs it (r=2) through the next, until stopped. Every failure is recorded.
 */
function startTraffic(c: TestCluster, nodes: string[], nextKey: () => string, concurrency = 4):
  { ops: TrafficOp[]; errors: string[]; stop: () => Promise<void> } {
  const clients = nodes.map((id) => c.client([id]));
  const ops: TrafficOp[] = [];
  const errors: string[] = [];
  let stopped = false;
  let seq = 0;
  const worker = async (): Promise<void> => {
    while (!stopped) {
      const i = seq++;
      const key = nextKey();
      const v = value(i);
      const startedAt = Date.now();
      const writer = clients[i % clients.length] as KvClient;
      const reader = clients[(i + 1) % clients.length] as KvClient;
      try {
        const { version } = await writer.put(key, v, { w: 2 });
        const got = await reader.get(key, { r: 2 });
        if (!got || Buffer.compare(got.value, v) !== 0 || got.version !== version) errors.push(`${key}: read back ${got ? got.version : 'nothing'}, wrote ${version}`);
        else ops.push({ key, version, startedAt });
      } catch (err) {
        errors.push(`${key}: ${(err as Error).message}`);
      }
    }
  };
  const running = Promise.all(Array.from({ length: concurrency }, worker));
  return { ops, errors, stop: async () => { stopped = true; await running; } };
}

/**
 * Runs traffic over `live`, kill -9s `victim` mid-stream, keeps going until every live
 * node sees the victim dead and `after` more ops succeeded. Returns the ops, split by phase.
 */
async function trafficThroughKill(c: TestCluster, live: string[], victim: string, nextKey: () => string, after = 40):
  Promise<{ errors: string[]; ops: TrafficOp[]; killAt: number; beforeKill: number; undetected: number; detected: number }> {
  const t = startTraffic(c, live, nextKey);
  try {
    await pollUntil(() => t.ops.length >= 20 || t.errors.length > 0, { timeoutMs: DEADLINE_MS, what: 'traffic warm-up' });
    const killAt = Date.now();
    await c.kill(victim, 'SIGKILL');
    await waitLiveness(c, live, victim, 'dead');
    const detectedAt = Date.now();
    const target = t.ops.length + after;
    await pollUntil(() => t.ops.length >= target || t.errors.length > 0, { timeoutMs: DEADLINE_MS, what: `${after} ops after detection` });
    await t.stop();
    return {
      errors: t.errors, ops: t.ops, killAt,
      beforeKill: t.ops.filter((o) => o.startedAt < killAt).length,
      undetected: t.ops.filter((o) => o.startedAt >= killAt && o.startedAt < detectedAt).length,
      detected: t.ops.filter((o) => o.startedAt >= detectedAt).length,
    };
  } finally {
    await t.stop();
  }
}

describe('data path: 3 real nodes, hinted handoff on, read repair off', function () {
  this.timeout(120_000);
  let c: TestCluster;
  let t: RingTable;
  let hinted: TrafficOp[] = [];
  /** Records every replica should end up with (N=3 of 3 nodes: all of them), tombstones included. */
  let stored = 0;
  const refused: string[] = [];

  before(async () => {
    c = await TestCluster.start(3, { args: [...FAST, ...SLOW_AE, '--read-repair', 'false'] });
    t = await ring(c);
  });

  after(async () => {
    await c?.stop();
  });

  it('reads back every write through every other coordinator (binary values, 0 B to 1 MiB, odd keys)', async () => {
    expect(t.n).to.equal(3);
    const reads = await crossCoordinatorReadBack(c, 'x3', 20);
    expect(reads).to.equal(3 * 23 * 2);
    stored += 3 * 23;
  });

  it('keeps w=2/r=2 traffic error-free through a kill -9 of a replica, before and after gossip marks it dead', async () => {
    const r = await trafficThroughKill(c, ['n1', 'n2'], 'n3', keyGen(t, 'traffic3'));
    expect(r.errors).to.deep.equal([]);
    expect(r.beforeKill).to.be.greaterThan(0);
    // Ops started between the kill and the verdict went to a replica that could not answer.
    expect(r.undetected, 'ops started while n3 was dead but not yet known dead').to.be.greaterThan(0);
    expect(r.detected).to.be.at.least(40);
    // Written while n3 was down: each one left a hint for it.
    hinted = r.ops.filter((o) => o.startedAt >= r.killAt);
    stored += r.ops.length;
  });

  it('fails w=all fast with 503 KV_UNAVAILABLE "failed" while a replica is down, and stores nothing', async () => {
    await waitLiveness(c, ['n1', 'n2'], 'n3', 'dead');
    const next = keyGen(t, 'wall3');
    for (const via of ['n1', 'n2']) {
      const key = next();
      const err = await serverError(c.client([via]).put(key, 'never', { w: 'all' }));
      expect(err.httpStatus).to.equal(503);
      expect(err.code).to.equal('KV_UNAVAILABLE');
      expect(err.outcome).to.equal('failed');
      refused.push(key);
    }
    for (const key of refused) {
      for (const id of ['n1', 'n2']) expect(await localRecord(c, id, key), `${key} on ${id}`).to.equal(undefined);
    }
  });

  it('delivers the hints of a restarted replica without any client read, and never a refused write', async () => {
    // Only keys outside the early anti-entropy partitions were written, and read repair is off:
    // the records can only reach n3 as hints.
    expect(hinted.length).to.be.greaterThan(0);
    await c.restart('n3');
    const missing = new Map(hinted.map((o) => [o.key, o.version]));
    await pollUntil(async () => {
      for (const [key, version] of [...missing]) {
        const rec = await localRecord(c, 'n3', key);
        if (rec?.version === version) missing.delete(key);
      }
      return missing.size === 0;
    }, { timeoutMs: DEADLINE_MS, intervalMs: 250, what: `n3 to hold all ${hinted.length} hinted keys` });
    // n3's own count agrees: it holds every record the cluster acknowledged, and nothing else.
    // (Polled: hints of writes cut off by the kill replay in the same rounds, in parallel.)
    const count = async (): Promise<number> => {
      const parts = await getJson<{ partitions: { keys: number }[] }>(c, 'n3', '/cluster/partitions');
      return parts.body.partitions.reduce((sum, p) => sum + p.keys, 0);
    };
    await pollUntil(async () => (await count()) >= stored, { timeoutMs: DEADLINE_MS, what: `n3 to count ${stored} records` });
    expect(await count(), 'records n3 counts in /cluster/partitions').to.equal(stored);
    // Hints for n3 have all been replayed; a write refused with "failed" left none to replay.
    for (const key of refused) {
      for (const id of ['n1', 'n2', 'n3']) expect(await localRecord(c, id, key), `${key} on ${id}`).to.equal(undefined);
    }
  });
});

describe('data path: 3 real nodes, hinted handoff off (read repair, r=1, unknown outcomes)', function () {
  this.timeout(120_000);
  let c: TestCluster;
  let t: RingTable;
  const paused = new Set<string>();
  let repairKey = '';
  let r1Key = '';
  const versions = new Map<string, string>();

  function pause(id: string): void {
    paused.add(id);
    c.signal(id, 'SIGSTOP');
  }
  function resume(id: string): void {
    c.signal(id, 'SIGCONT');
    paused.delete(id);
  }

  before(async () => {
    c = await TestCluster.start(3, { args: [...FAST, ...SLOW_AE, '--hinted-handoff', 'false', '--request-timeout-ms', '1500'] });
    t = await ring(c);
    const next = keyGen(t, 'stale');
    repairKey = next();
    r1Key = next();
  });

  after(async () => {
    // Never leave a stopped process behind, whatever failed.
    for (const id of [...paused]) resume(id);
    await c?.stop();
  });

  it('brings back a replica that missed a w=2 write without the record (hints off)', async () => {
    await c.kill('n3');
    const client = c.client(['n1']);
    for (const key of [repairKey, r1Key]) versions.set(key, (await client.put(key, `v-${key}`, { w: 2 })).version);
    await c.restart('n3');
    await waitAllAlive(c, ['n1', 'n2', 'n3']);
    for (const key of [repairKey, r1Key]) {
      expect(await localRecord(c, 'n3', key), `${key} on n3`).to.equal(undefined);
      for (const id of ['n1', 'n2']) expect((await localRecord(c, id, key))?.version, `${key} on ${id}`).to.equal(versions.get(key));
    }
  });

  it('answers r=1 from the first replica to reply: the stale one alone returns not-found for an acknowledged write; r=2 returns it', async () => {
    // With n1 and n2 paused, only n3's own (missing) copy can answer first.
    let got: Awaited<ReturnType<KvClient['get']>> | 'unset' = 'unset';
    pause('n1');
    pause('n2');
    try {
      got = await c.client(['n3']).get(r1Key, { r: 1 });
    } finally {
      resume('n1');
      resume('n2');
    }
    expect(got, 'r=1 through the stale replica').to.equal(undefined);
    // R+W>N: any two replies include one of the two that acknowledged.
    const quorum = await pollUntil(async () => {
      try {
        return await c.client(['n3']).get(r1Key, { r: 2 });
      } catch (err) {
        if (err instanceof KvClientError && err.code === 'KV_UNAVAILABLE') return undefined;
        throw err;
      }
    }, { timeoutMs: DEADLINE_MS, what: 'r=2 read through n3' });
    expect(quorum.version).to.equal(versions.get(r1Key));
    expect(quorum.value.toString()).to.equal(`v-${r1Key}`);
  });

  it('repairs the stale replica in the background after a read with r=all', async () => {
    expect(await localRecord(c, 'n3', repairKey), 'still missing on n3 before the read').to.equal(undefined);
    const got = await pollUntil(async () => {
      try {
        return await c.client(['n1']).get(repairKey, { r: 'all' });
      } catch (err) {
        // r=all is refused (before reading anything) until n1 sees n3 alive again.
        if (err instanceof KvClientError && err.code === 'KV_UNAVAILABLE') return undefined;
        throw err;
      }
    }, { timeoutMs: DEADLINE_MS, what: 'r=all read through n1' });
    expect(got.version).to.equal(versions.get(repairKey));
    const rec = await pollUntil(async () => {
      const r = await localRecord(c, 'n3', repairKey);
      return r?.version === versions.get(repairKey) ? r : undefined;
    }, { timeoutMs: DEADLINE_MS, what: 'n3 repaired' });
    expect(rec.bytes).to.equal(Buffer.byteLength(`v-${repairKey}`));
    expect(rec.tombstone).to.equal(false);
  });

  it('answers w=all sent right after a kill -9 (before gossip knows) with 504 "unknown", since two replicas applied it', async () => {
    const key = keyGen(t, 'wall-undetected')();
    await c.kill('n3');
    const err = await serverError(c.client(['n1']).put(key, 'partial', { w: 'all' }));
    expect(err.httpStatus).to.equal(504);
    expect(err.code).to.be.oneOf(['KV_TIMEOUT', 'KV_QUORUM_NOT_MET']);
    expect(err.outcome).to.equal('unknown');
    for (const id of ['n1', 'n2']) expect(await localRecord(c, id, key), `${key} on ${id}`).to.not.equal(undefined);
  });

  it('answers 504 "unknown" (not "failed") when one replica applied a w=2 write, one is paused and one is dead', async () => {
    const key = keyGen(t, 'unknown')();
    await c.kill('n3'); // no-op when the test before already killed it
    // Paused right before the write: gossip still calls n2 alive, so the write is sent to it.
    pause('n2');
    let err: KvClientError;
    try {
      err = await serverError(c.client(['n1']).put(key, 'maybe', { w: 2 }));
    } finally {
      resume('n2');
    }
    expect(err.httpStatus).to.equal(504);
    expect(err.code).to.be.oneOf(['KV_TIMEOUT', 'KV_QUORUM_NOT_MET']);
    expect(err.outcome).to.equal('unknown');
    // Why "failed" would have been a lie: n1 stored it, and n2 applies the request it was
    // sent once it runs again, so the write surfaces.
    expect(await localRecord(c, 'n1', key), 'applied on the coordinator').to.not.equal(undefined);
    await pollUntil(async () => (await localRecord(c, 'n2', key)) !== undefined,
      { timeoutMs: DEADLINE_MS, what: 'the unknown write to surface on n2 after SIGCONT' });
  });
});

describe('data path: 5 real nodes (N=3), hinted handoff and sloppy quorums', function () {
  this.timeout(180_000);
  let c: TestCluster;
  let t: RingTable;
  const refused: string[] = [];
  let sloppy: { key: string; version: string; replicas: string[] } | undefined;

  before(async () => {
    c = await TestCluster.start(5, { args: [...FAST, ...SLOW_AE] });
    t = await ring(c);
  });

  after(async () => {
    await c?.stop();
  });

  it('places each key on 3 of the 5 nodes and reads back every write through every other coordinator', async () => {
    expect(t.n).to.equal(3);
    expect(t.table.every((row) => row.replicas.length === 3 && row.fallbacks.length === 2)).to.equal(true);
    const reads = await crossCoordinatorReadBack(c, 'x5', 8);
    expect(reads).to.equal(5 * 11 * 4);
    // The writes land on their replicas and nowhere else (the third copy may trail the w=2 answer).
    for (const key of ['x5-n1-1', 'x5-n4-3']) {
      const want = [...replicasOfKey(t, key)].sort();
      const holders = await pollUntil(async () => {
        const h: string[] = [];
        for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) if (await localRecord(c, id, key)) h.push(id);
        return h.length >= want.length ? h : undefined;
      }, { timeoutMs: DEADLINE_MS, what: `${key} on its ${want.length} replicas` });
      expect(holders, key).to.deep.equal(want);
    }
  });

  it('keeps w=2/r=2 traffic error-free through a kill -9 of a node, before and after gossip marks it dead', async () => {
    const r = await trafficThroughKill(c, ['n1', 'n2', 'n3', 'n4'], 'n5', keyGen(t, 'traffic5'));
    expect(r.errors).to.deep.equal([]);
    expect(r.undetected, 'ops started while n5 was dead but not yet known dead').to.be.greaterThan(0);
    expect(r.detected).to.be.at.least(40);
    // n5 replicates about 3/5 of the keys: the traffic did go through its absence.
    expect(r.ops.filter((o) => replicasOfKey(t, o.key).includes('n5')).length).to.be.greaterThan(0);
  });

  it('fails w=all fast with 503 "failed" for a key whose replica is down, and stores it nowhere', async () => {
    const key = keyGen(t, 'wall5', (reps) => reps.includes('n5'))();
    const via = replicasOfKey(t, key).find((id) => id !== 'n5') as string;
    const err = await serverError(c.client([via]).put(key, 'never', { w: 'all' }));
    expect([err.httpStatus, err.code, err.outcome]).to.deep.equal([503, 'KV_UNAVAILABLE', 'failed']);
    refused.push(key);
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(await localRecord(c, id, key), `${key} on ${id}`).to.equal(undefined);
  });

  it('with 2 of 3 replicas down, w=2 fails ("failed") unless sloppy=true, where hints on fallbacks count', async () => {
    await c.kill('n4');
    const next = keyGen(t, 'sloppy', (reps) => reps.includes('n4') && reps.includes('n5'));
    const strictKey = next();
    const sloppyKey = next();
    const row = t.table[partitionOf(sloppyKey, t.partitions)];
    // A fallback coordinates: it stores one hint itself and sends the other to the second fallback.
    const via = row?.fallbacks[0] as string;
    await waitLiveness(c, [via], 'n4', 'dead');
    await waitLiveness(c, [via], 'n5', 'dead');

    const err = await serverError(c.client([via]).put(strictKey, 'strict', { w: 2 }));
    expect([err.httpStatus, err.code, err.outcome]).to.deep.equal([503, 'KV_UNAVAILABLE', 'failed']);
    refused.push(strictKey);

    const { version } = await c.client([via]).put(sloppyKey, 'sloppy', { w: 2, sloppy: true });
    const replicas = replicasOfKey(t, sloppyKey);
    const liveReplica = replicas.find((id) => id !== 'n4' && id !== 'n5') as string;
    // Any W of the first N live nodes of the preference list count (Dynamo's sloppy quorum), so the
    // two hints may have answered before the one live replica: its copy lands just after.
    await pollUntil(async () => (await localRecord(c, liveReplica, sloppyKey))?.version === version,
      { timeoutMs: DEADLINE_MS, what: `${sloppyKey} on the live replica ${liveReplica}` });
    // Hints are not records: the fallbacks hold no copy of their own.
    for (const fb of row?.fallbacks ?? []) expect(await localRecord(c, fb, sloppyKey), `${sloppyKey} on fallback ${fb}`).to.equal(undefined);
    for (const id of ['n1', 'n2', 'n3']) expect(await localRecord(c, id, strictKey), `${strictKey} on ${id}`).to.equal(undefined);
    sloppy = { key: sloppyKey, version, replicas };
  });

  it('hands the sloppy write to both restarted replicas, and never a refused one', async () => {
    expect(sloppy).to.not.equal(undefined);
    const s = sloppy as NonNullable<typeof sloppy>;
    await c.restart('n4');
    await c.restart('n5');
    for (const id of ['n4', 'n5']) {
      await pollUntil(async () => (await localRecord(c, id, s.key))?.version === s.version,
        { timeoutMs: DEADLINE_MS, intervalMs: 200, what: `${s.key} handed off to ${id}` });
    }
    // Every replica now holds the sloppy write: it was acknowledged and it stayed.
    for (const id of s.replicas) expect((await localRecord(c, id, s.key))?.version, `${s.key} on ${id}`).to.equal(s.version);
    for (const key of refused) {
      for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) expect(await localRecord(c, id, key), `${key} on ${id}`).to.equal(undefined);
    }
  });
});
