/**
 * What Merkle anti-entropy costs (docs/anti-entropy.md, "Measured"):
 *
 *   npm run bench:anti-entropy [-- --m 1000000 --d 0,10,1000,10000 --partitions 1024
 *       --record-bytes 100 --concurrency 4 --join-keys 50000 --value-bytes 1024 --seed 1]
 *
 * 1. Repair, in one process, without HTTP: two RecordStores over LevelDB (temp dirs) with
 *    their MerkleIndex, wired exactly as a node wires them, and two AntiEntropy instances
 *    over a MemoryNetwork. M records (--record-bytes values) are applied to store A
 *    through RecordStore.apply (the load rate is reported), A's LevelDB dir is copied
 *    to B, then for each d in --d: d keys diverge (a mix of missing on either side,
 *    stale on either side, and deleted), and A exchanges every partition with B
 *    (--concurrency exchanges at a time). Reported per d: repair time, tree bytes
 *    (ExchangeResult.bytes: Merkle messages only), wire bytes (every frame both ways,
 *    records and envelopes included, from the transports' stats), records moved, and
 *    the bytes of a full transfer of M (sum of key + encoded record sizes) beside them.
 *    Each run checks that exactly d records moved and every root is equal afterwards.
 *    d runs one after another on the same stores (each starts from the converged state).
 * 2. Join streaming (--join-keys > 0): a real 3-node cluster (default Q) is loaded with
 *    --join-keys keys of --value-bytes, a 4th node joins, and the bench reports the time
 *    from its start to `normal` on every node, the records the new node pulled (from its
 *    log line "join streaming done" and its /cluster/partitions), and MB/s of
 *    key + value payload over the streaming time and over start→normal.
 *
 * --m 0 skips part 1, --join-keys 0 skips part 2. Figures depend on the machine's load:
 * take the final ones on a quiet machine.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from '../lib/cli/args.ts';
import { encodeTs, makeVersion, type Version } from '../lib/core/hlc.ts';
import { DEFAULT_MERKLE_SHAPE } from '../lib/core/merkle.ts';
import { h64 } from '../lib/core/partitioner.ts';
import { seededRng } from '../lib/core/rng.ts';
import { Topology } from '../lib/core/topology.ts';
import { Metrics } from '../lib/api/metrics.ts';
import { MemoryNetwork, type MemoryTransport } from '../lib/net/index.ts';
import { AntiEntropy } from '../lib/node/anti-entropy.ts';
import { createLogger } from '../lib/node/log.ts';
import { LevelBackend } from '../lib/storage/level-backend.ts';
import { MerkleIndex } from '../lib/storage/merkle-index.ts';
import { RecordStore } from '../lib/storage/record-store.ts';
import { encodeRecord, type StoredRecord } from '../lib/storage/record.ts';
import { preload } from './load.ts';
import { TestCluster } from '../test/helpers/cluster.ts';
import { pollUntil } from '../test/helpers/poll.ts';

const flags = parseArgs(process.argv.slice(2), new Set()).flags;
function num(name: string, dflt: number): number {
  const v = flags[name] === undefined ? dflt : Number(flags[name]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`);
  return v;
}
const M = num('m', 1_000_000);
const DS = String(flags['d'] ?? '0,10,1000,10000').split(',').map((x) => Number(x));
const Q = num('partitions', 1024);
const RECORD_BYTES = num('record-bytes', 100);
const CONCURRENCY = Math.max(1, num('concurrency', 4));
const JOIN_KEYS = num('join-keys', 50_000);
const VALUE_BYTES = num('value-bytes', 1024);
const SEED = num('seed', 1);
if (M > 0 && DS.some((d) => !Number.isSafeInteger(d) || d < 0 || d > M)) throw new Error('--d must list integers in [0, m]');
if (Q < 1 || (Q & (Q - 1)) !== 0) throw new Error('--partitions must be a power of two');

/** Applies in flight while loading: below RecordStore's 50,000 queue bound, big enough to fill its 512-write batches. */
const LOAD_WAVE = 40_000;
const MB = 1e6;
/** CPU seconds (user + system, libuv's LevelDB threads included) since `from`. */
const cpuSeconds = (from: NodeJS.CpuUsage): number => { const u = process.cpuUsage(from); return (u.user + u.system) / 1e6; };
const out = (s: string): void => { process.stdout.write(`${s}\n`); };
const fmtBytes = (b: number): string => (b >= MB ? `${(b / MB).toFixed(2)} MB` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`);

const dirs: string[] = [];
let cluster: TestCluster | undefined;
const cleanup = (): void => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); };
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { void (cluster?.stop() ?? Promise.resolve()).finally(() => { cleanup(); process.exit(130); }); });
}

interface Side { backend: LevelBackend; store: RecordStore; index: MerkleIndex }

async function openSide(dir: string): Promise<Side> {
  const backend = new LevelBackend(join(dir, 'db'));
  const index = new MerkleIndex(backend, h64, DEFAULT_MERKLE_SHAPE);
  const store = new RecordStore({ backend, partitions: Q, segments: DEFAULT_MERKLE_SHAPE.segments, sync: false, index });
  await store.open();
  return { backend, store, index };
}

/** A versioned record written at `wall` ms by `node`; `logical` keeps versions of one ms distinct. */
function version(wall: number, logical: number, node: string): Version {
  return makeVersion({ wall, logical }, node);
}

async function applyAll(store: RecordStore, n: number, make: (i: number) => [string, StoredRecord]): Promise<void> {
  for (let start = 0; start < n; start += LOAD_WAVE) {
    const wave: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(n, start + LOAD_WAVE); i++) {
      const [k, rec] = make(i);
      wave.push(store.apply(k, rec));
    }
    await Promise.all(wave);
  }
}

async function repairBench(): Promise<void> {
  out(`## Repair: M = ${M.toLocaleString('en')} records of ${RECORD_BYTES} B, Q = ${Q}, ${DEFAULT_MERKLE_SHAPE.segments} segments × width ${DEFAULT_MERKLE_SHAPE.width}, ${CONCURRENCY} exchanges at a time`);
  const root = mkdtempSync(join(tmpdir(), 'kv-bench-ae-'));
  dirs.push(root);
  const value = Buffer.alloc(RECORD_BYTES, 0x61);
  const t0 = Date.now() - 3_600_000;
  const loadVersion = (i: number): Version => version(t0 + Math.floor(i / 65_536), i % 65_536, 'a');
  const keyOf = (i: number): string => `key-${i}`;

  let a = await openSide(join(root, 'a'));
  let fullBytes = 0;
  const loadStart = performance.now();
  const loadCpu = process.cpuUsage();
  await applyAll(a.store, M, (i) => {
    const k = keyOf(i);
    const rec = { version: loadVersion(i), value };
    fullBytes += Buffer.byteLength(k) + encodeRecord(rec).length;
    return [k, rec];
  });
  const loadS = (performance.now() - loadStart) / 1000;
  out(`load: ${M.toLocaleString('en')} records through RecordStore.apply in ${loadS.toFixed(1)} s (${Math.round(M / loadS).toLocaleString('en')} records/s, ` +
    `${cpuSeconds(loadCpu).toFixed(1)} s CPU)`);
  await a.store.close();
  const copyStart = performance.now();
  cpSync(join(root, 'a'), join(root, 'b'), { recursive: true });
  out(`copy: LevelDB dir A → B in ${((performance.now() - copyStart) / 1000).toFixed(2)} s`);
  a = await openSide(join(root, 'a'));
  const b = await openSide(join(root, 'b'));
  out(`full transfer of M: ${fmtBytes(fullBytes)} (sum of key + encoded record bytes, no framing)`);
  // Trees load lazily from their persisted leaves on first use: do it outside the timed runs.
  const treeStart = performance.now();
  for (let p = 0; p < Q; p++) await Promise.all([a.index.tree(p), b.index.tree(p)]);
  out(`trees: ${2 * Q} loaded from persisted leaves in ${((performance.now() - treeStart) / 1000).toFixed(2)} s`);

  const topology = new Topology();
  topology.apply({ op: 'create', clusterId: 'bench', partitions: Q, n: 2, vnodes: 160, id: 'a', addr: '127.0.0.1:1' });
  topology.apply({ op: 'add', id: 'b', addr: '127.0.0.1:2' });
  topology.apply({ op: 'normal', id: 'b' });
  const net = new MemoryNetwork();
  const log = createLogger('bench', 'silent');
  const transports: MemoryTransport[] = [];
  const make = (id: 'a' | 'b', side: Side): AntiEntropy => {
    const transport = net.transport({ selfId: id, hlcNow: () => encodeTs({ wall: Date.now(), logical: 0 }) });
    transports.push(transport);
    return new AntiEntropy({
      selfId: id, store: side.store, index: side.index, transport, metrics: new Metrics({ defaultMetrics: false }), log,
      topology: () => topology, isAlive: () => true, intervalMs: 60_000, tombstoneGraceMs: 3_600_000,
      maxKeyBytes: 1024, maxValueBytes: 1024 * 1024,
    });
  };
  const aeA = make('a', a);
  make('b', b);
  await pollUntil(() => transports[0]?.isConnected('b'), { what: 'memory link a-b' });
  const wireBytes = (): number => transports.reduce((s, t) => s + t.stats().bytesOut, 0);

  const rng = seededRng(SEED);
  const rows: string[] = [];
  let run = 0;
  for (const d of DS) {
    run++;
    // Divergence, round robin over: new key on A only, new key on B only, newer value on A,
    // newer value on B, tombstone on A (a delete B missed). Existing keys are distinct picks.
    const picked = new Set<number>();
    const now = Date.now();
    const onA: Array<[string, StoredRecord]> = [];
    const onB: Array<[string, StoredRecord]> = [];
    for (let j = 0; j < d; j++) {
      const v = version(now, j % 65_536, j % 2 === 0 ? 'a' : 'b');
      const kind = j % 5;
      if (kind < 2) {
        (kind === 0 ? onA : onB).push([`new-${run}-${j}`, { version: v, value }]);
        continue;
      }
      let i = rng.int(M);
      while (picked.has(i)) i = rng.int(M);
      picked.add(i);
      if (kind === 2) onA.push([keyOf(i), { version: v, value: Buffer.alloc(RECORD_BYTES, 0x62) }]);
      else if (kind === 3) onB.push([keyOf(i), { version: v, value: Buffer.alloc(RECORD_BYTES, 0x63) }]);
      else onA.push([keyOf(i), { version: v, value: null }]);
    }
    await applyAll(a.store, onA.length, (i) => onA[i] as [string, StoredRecord]);
    await applyAll(b.store, onB.length, (i) => onB[i] as [string, StoredRecord]);

    const wire0 = wireBytes();
    let treeBytes = 0;
    let moved = 0;
    let repaired = 0;
    let next = 0;
    const started = performance.now();
    const cpu = process.cpuUsage();
    const worker = async (): Promise<void> => {
      while (next < Q) {
        const r = await aeA.exchange(next++, 'b');
        treeBytes += r.bytes;
        moved += r.pushed + r.pulled;
        if (r.outcome === 'repaired') repaired++;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const seconds = (performance.now() - started) / 1000;
    const cpuS = cpuSeconds(cpu);
    const wire = wireBytes() - wire0;
    let unequal = 0;
    for (let p = 0; p < Q; p++) if ((await a.index.root(p)) !== (await b.index.root(p))) unequal++;
    const row = `d=${String(d).padEnd(7)} repair ${seconds.toFixed(2).padStart(7)} s (CPU ${cpuS.toFixed(2)} s)   tree ${fmtBytes(treeBytes).padStart(9)}   wire ${fmtBytes(wire).padStart(9)}` +
      `   = ${((100 * wire) / fullBytes).toFixed(3).padStart(7)} % of full   moved ${moved} (expected ${d})   partitions repaired ${repaired}/${Q}   unequal roots after ${unequal}`;
    out(row);
    rows.push(row);
    if (moved !== d || unequal !== 0) process.exitCode = 1;
  }
  for (const t of transports) await t.close();
  await a.store.close();
  await b.store.close();
}

async function joinBench(): Promise<void> {
  out(`\n## Join streaming: 3 nodes, ${JOIN_KEYS.toLocaleString('en')} keys × ${VALUE_BYTES} B, then a 4th node joins (default Q, N=3)`);
  const c = new TestCluster(['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100'], { KV_LOG_LEVEL: 'info' });
  cluster = c;
  try {
    await c.add('n1', { bootstrap: true });
    await c.add('n2');
    await c.add('n3');
    await c.waitConverged(3);
    const value = Buffer.alloc(VALUE_BYTES, 0x61);
    const per = Math.ceil(JOIN_KEYS / 3);
    const loadStart = performance.now();
    await Promise.all(['n1', 'n2', 'n3'].map((id, j) => preload(c.addr(id), Math.max(0, Math.min(per, JOIN_KEYS - j * per)), value,
      (k) => ({ method: 'PUT', path: `/kv/key-${j * per + k}`, body: value }))));
    const loadS = (performance.now() - loadStart) / 1000;
    out(`load: ${JOIN_KEYS.toLocaleString('en')} PUTs (w=2) in ${loadS.toFixed(1)} s`);

    const started = performance.now();
    const p4 = await c.add('n4');
    const healthyS = (performance.now() - started) / 1000;
    await pollUntil(async () => {
      const views = await Promise.all(['n1', 'n2', 'n3', 'n4'].map((id) => c.view(id)));
      return views.every((v) => v.members.find((m) => m.id === 'n4')?.state === 'normal');
    }, { timeoutMs: 600_000, intervalMs: 25, what: 'n4 normal on every node' });
    const normalS = (performance.now() - started) / 1000;
    const line = p4.output().split('\n').find((l) => l.includes('join streaming done'));
    const logged = line ? JSON.parse(line) as { records?: number; ms?: number; partitions?: number } : {};
    const parts = await (await fetch(`http://${c.addr('n4')}/cluster/partitions`)).json() as { partitions: { keys: number; replicas: string[] }[] };
    const keys = parts.partitions.filter((p) => p.replicas.includes('n4')).reduce((s, p) => s + p.keys, 0);
    const payload = keys * (VALUE_BYTES + 'key-00000'.length);
    out(`n4: healthy after ${healthyS.toFixed(1)} s, normal after ${normalS.toFixed(1)} s; streamed ${logged.partitions ?? '?'} partitions, ` +
      `${logged.records ?? '?'} records pulled in ${logged.ms === undefined ? '?' : (logged.ms / 1000).toFixed(1)} s; holds ${keys.toLocaleString('en')} keys`);
    const streamS = logged.ms === undefined ? normalS : logged.ms / 1000;
    out(`join streaming rate: ${(payload / MB / streamS).toFixed(2)} MB/s of key+value payload over streaming ` +
      `(${(payload / MB / normalS).toFixed(2)} MB/s over start→normal), ${Math.round(keys / streamS).toLocaleString('en')} records/s`);
  } finally {
    await c.stop();
    cluster = undefined;
  }
}

try {
  out(`anti-entropy bench (${new Date().toISOString()}, node ${process.version}); figures depend on machine load`);
  if (M > 0) await repairBench();
  if (JOIN_KEYS > 0) await joinBench();
} finally {
  cleanup();
}
