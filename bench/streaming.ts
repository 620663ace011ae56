/**
 * Data movement rates on topology change, with real processes (issue: streaming ≥ 20 MB/s
 * without raising client p99 by more than 2×):
 *
 *   npm run bench:streaming [-- --value-bytes 1024,65536 --mb 50 --ops join,decommission,removenode,replace --clients 4 --client-rate 0]
 *
 * For each value size: a 3-node cluster (N=3, default Q) is loaded with about --mb MB of
 * values (keys key-0...), then, in order, with a light client load (--clients connections, 4 by
 * default, reading random keys through n1 and n2; 0: none, so node CPU is the stream's own; closed
 * loop unless --client-rate R sends R requests per second on a fixed schedule, latency counted
 * from each request's scheduled time) running all the time:
 *   join          a 4th node joins (it streams its partitions from the current owners);
 *   decommission  that node leaves again (it streams its partitions to their new owners, which
 *                 dropped them after the join: the bench waits for those hand-offs first);
 *   removenode    a 4th node joins, the survivors drop the partitions it took over (hand-offs,
 *                 waited for), it is killed, and `removenode` re-replicates its partitions from the
 *                 two survivors holding each onto the third (about 3/4 of the data moves);
 *   replace       n3 is killed and a fresh process replaces it under the same id.
 * Each reports the operation's records and its duration (GET /cluster/operations on the node
 * that ran it), the payload rate (records × (key + value bytes) / duration), the client
 * p99 during the operation (the worst of its 2 s windows, then each window's in order: the first
 * holds the topology change and, for a join or a replace, the new process's start-up on the same
 * cores) beside the p99 of the same load just before it, and the CPU seconds
 * the node processes used meanwhile (all nodes, and the busiest one: the stream's bottleneck
 * when it is near one core; a node started for the operation counts its start-up too; beside it
 * the node CPU per second the client load alone used in the 5 s before: a closed-loop load takes
 * whatever CPU the stream leaves, so the two do not simply add up), the client load's requests per
 * second before and during, and the adaptive window of partitions in flight as /metrics showed
 * it once a second on every node (kv_stream_window_partitions: floor 2, ceiling
 * streamMaxPartitions) with the highest lag it reacted to (kv_stream_lag_seconds), and each node's
 * highest p99 event-loop lag over those samples (kv_nodejs_eventloop_lag_p99_seconds): which node lags;
 * and, per node and method (bulk or merkle), how long the stream took per partition and peer
 * (kv_stream_exchange_seconds over the operation: count, mean, bucket p50/p90).
 *
 * `--cpu-prof DIR`: every node runs V8's CPU profiler (as `node --cpu-prof`) writing into DIR; nodes stop with
 * SIGTERM (so the profile is written) instead of SIGKILL, and each operation prints the window
 * to pass to `node --import tsx bench/top-profile.ts DIR --since-us A --until-us B`.
 *
 * Figures depend on the machine's load: take the final ones on a quiet machine.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from '../lib/cli/args.ts';
import { preload, runLoad, type LoadResult } from './load.ts';
import { TestCluster } from '../test/helpers/cluster.ts';
import { pollUntil } from '../test/helpers/poll.ts';
import { freePort, spawnNode, waitHealthy } from '../test/helpers/proc.ts';
import { cpuSeconds } from './load.ts';
import { LAG_SAMPLE_MS } from '../lib/api/metrics.ts';

const flags = parseArgs(process.argv.slice(2), new Set()).flags;
const SIZES = String(flags['value-bytes'] ?? '1024,65536').split(',').map(Number);
const MB_LOAD = Number(flags['mb'] ?? 50);
/** Connections of the client load. */
const CLIENTS = Number(flags['clients'] ?? 4);
/** Requests per second of the client load over all its connections, on a fixed schedule (open
 *  loop, bench/load.ts); 0: closed loop (each connection sends its next request when the last one
 *  is answered, so the load takes whatever CPU the nodes leave). */
const CLIENT_RATE = Number(flags['client-rate'] ?? 0);
if (!Number.isFinite(CLIENT_RATE) || CLIENT_RATE < 0) throw new Error(`--client-rate must be a number of requests per second, 0 for a closed loop (got ${String(flags['client-rate'])})`);
const OPS = new Set(String(flags['ops'] ?? 'join,decommission,removenode,replace').split(','));
const PROFILE_DIR = typeof flags['cpu-prof'] === 'string' ? flags['cpu-prof'] : undefined;
/**
 * Node 20 refuses --cpu-prof in NODE_OPTIONS: each node preloads a script that runs V8's
 * profiler through node:inspector and writes `CPU.<pid>.cpuprofile` (what --cpu-prof writes) on exit.
 */
function profilePreload(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(resolve(dir), 'cpu-prof-preload.cjs');
  writeFileSync(file, `const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');
const session = new inspector.Session();
session.connect();
session.post('Profiler.enable', () => session.post('Profiler.start'));
let done = false;
process.on('exit', () => {
  if (done) return;
  done = true;
  session.post('Profiler.stop', (err, r) => { if (!err) writeFileSync(${JSON.stringify(resolve(dir))} + '/CPU.' + process.pid + '.cpuprofile', JSON.stringify(r.profile)); });
});
`);
  return file;
}
const NODE_ENV: Record<string, string> = PROFILE_DIR === undefined ? {} : { NODE_OPTIONS: `${process.env['NODE_OPTIONS'] ?? ''} --require ${profilePreload(PROFILE_DIR)}`.trim() };
/** A node's end: SIGTERM while profiling (its profile is written on a clean exit), SIGKILL otherwise. */
const END_SIGNAL: NodeJS.Signals = PROFILE_DIR === undefined ? 'SIGKILL' : 'SIGTERM';
const ARGS = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100', '--anti-entropy-interval-ms', '600000'];
const MB = 1_000_000;

interface OpView { kind: string; target: string; state: string; records: number; startedAt: number; finishedAt?: number; done: number; total: number }

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function operation(c: TestCluster, on: string, kind: string, target: string): Promise<OpView> {
  return pollUntil(async () => {
    const res = await fetch(`http://${c.addr(on)}/cluster/operations`);
    const { operations } = await res.json() as { operations: OpView[] };
    const op = operations.filter((o) => o.kind === kind && o.target === target).at(-1);
    if (op?.state === 'failed') throw new Error(`${kind} failed: ${JSON.stringify(op)}`);
    return op?.state === 'done' ? op : undefined;
  }, { timeoutMs: 900_000, intervalMs: 200, what: `${kind} of ${target} done on ${on}` });
}

async function stateOf(c: TestCluster, id: string): Promise<string | undefined> {
  return (await c.view('n1')).members.find((m) => m.id === id)?.state;
}

/**
 * Every node has dropped the partitions it no longer replicates (hand-offs done): each
 * partition with keys in a node's GET /cluster/partitions lists that node among its replicas.
 */
async function handoffsDone(c: TestCluster, ids: string[]): Promise<void> {
  await pollUntil(async () => {
    for (const id of ids) {
      const res = await fetch(`http://${c.addr(id)}/cluster/partitions`);
      const { partitions } = await res.json() as { partitions: { replicas: string[]; keys: number }[] };
      if (partitions.some((x) => x.keys > 0 && !x.replicas.includes(id))) return false;
    }
    return true;
  }, { timeoutMs: 600_000, intervalMs: 500, what: `hand-offs done on ${ids.join(', ')}` });
}

/** CPU seconds used so far by each running node process. */
function cpuNow(c: TestCluster): Map<string, number> {
  return new Map([...c.nodes].map(([id, p]) => [id, cpuSeconds(p.child.pid) ?? NaN]));
}

/** Client load through n1 and n2 while `during` runs; returns its result and the baseline just before. */
interface Measured { op: OpView; base: LoadResult; busy: LoadResult; perWindowP99: number[]; cpu: Map<string, number>; windows: number[]; lagMaxMs: number; nodeLagMs: Map<string, number>; idleRate: number; thresholds: number[]; exchanges: Map<string, ExchangeTimes> }

/** One node's kv_stream_exchange_seconds for one method: cumulative bucket counts by upper bound, sum and count. */
interface ExchangeHist { buckets: Map<number, number>; sum: number; count: number }
type ExchangeTimes = Map<string, ExchangeHist>;

/** Every node's kv_stream_exchange_seconds (per method), as /metrics shows it now. */
async function exchangeTimes(c: TestCluster): Promise<Map<string, ExchangeTimes>> {
  const all = new Map<string, ExchangeTimes>();
  await Promise.all([...c.nodes.keys()].map(async (id) => {
    const byMethod: ExchangeTimes = new Map();
    try {
      const text = await (await fetch(`http://${c.addr(id)}/metrics`)).text();
      for (const m of text.matchAll(/^kv_stream_exchange_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/gm)) {
        const labels = Object.fromEntries([...(m[2] as string).matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        const method = labels['method'] ?? '?';
        const h = byMethod.get(method) ?? { buckets: new Map(), sum: 0, count: 0 };
        byMethod.set(method, h);
        const v = Number(m[3]);
        if (m[1] === 'bucket') h.buckets.set(labels['le'] === '+Inf' ? Infinity : Number(labels['le']), v);
        else if (m[1] === 'sum') h.sum = v;
        else h.count = v;
      }
    } catch {
      // a node starting or killed meanwhile
    }
    all.set(id, byMethod);
  }));
  return all;
}

/** What `after` observed since `before` (a node absent before counts from zero). */
function exchangesSince(before: Map<string, ExchangeTimes>, after: Map<string, ExchangeTimes>): Map<string, ExchangeTimes> {
  const out = new Map<string, ExchangeTimes>();
  for (const [id, methods] of after) {
    const d: ExchangeTimes = new Map();
    for (const [method, h] of methods) {
      const b = before.get(id)?.get(method);
      const count = h.count - (b?.count ?? 0);
      if (count <= 0) continue;
      d.set(method, { count, sum: h.sum - (b?.sum ?? 0), buckets: new Map([...h.buckets].map(([le, n]) => [le, n - (b?.buckets.get(le) ?? 0)])) });
    }
    if (d.size > 0) out.set(id, d);
  }
  return out;
}

/** The upper bound of the bucket holding quantile q: "at most" that many seconds. */
function bucketQuantile(h: ExchangeHist, q: number): number {
  for (const [le, n] of [...h.buckets].sort((a, b) => a[0] - b[0])) if (n >= q * h.count) return le;
  return Infinity;
}

/** One sample of every node's streaming window and observed lag (windows of nodes not streaming are 0). */
async function paceSample(c: TestCluster, nodeLagMs: Map<string, number>, thresholds: number[]): Promise<{ windows: number[]; lagMs: number }> {
  const windows: number[] = [];
  let lagMs = 0;
  await Promise.all([...c.nodes.keys()].map(async (id) => {
    try {
      const text = await (await fetch(`http://${c.addr(id)}/metrics`)).text();
      // Every node's own p99 event-loop lag since the last scrape (prom-client resets it on each one).
      // Its samples are whole intervals of LAG_SAMPLE_MS: the lag is what they add to it.
      const own = Math.max(0, 1000 * Number(/^kv_nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text)?.[1] ?? 0) - LAG_SAMPLE_MS);
      if (Number.isFinite(own)) nodeLagMs.set(id, Math.max(nodeLagMs.get(id) ?? 0, own));
      const w = Number(/^kv_stream_window_partitions (\S+)$/m.exec(text)?.[1] ?? 0);
      if (w > 0) {
        windows.push(w);
        thresholds.push(1000 * Number(/^kv_stream_lag_threshold_seconds (\S+)$/m.exec(text)?.[1] ?? NaN));
        lagMs = Math.max(lagMs, 1000 * Number(/^kv_stream_lag_seconds (\S+)$/m.exec(text)?.[1] ?? 0));
      }
    } catch {
      // a node starting or killed meanwhile
    }
  }));
  return { windows, lagMs };
}

async function underLoad(c: TestCluster, keys: number, during: () => Promise<OpView>): Promise<Measured> {
  // --clients 0: no load, only the time passes (node CPU is then the stream's alone).
  const load = (durationMs: number, name: string): Promise<LoadResult> => (CLIENTS === 0
    ? new Promise((r) => setTimeout(() => r({ name, requests: 0, errors: 0, seconds: durationMs / 1000, throughput: 0, p50ms: NaN, p99ms: NaN }), durationMs))
    : runLoad({
      name, targets: [c.addr('n1'), c.addr('n2')], concurrency: CLIENTS, durationMs, ...(CLIENT_RATE > 0 ? { rate: CLIENT_RATE } : {}),
      request: () => ({ method: 'GET', path: `/kv/key-${Math.floor(Math.random() * keys)}?r=2` }),
    }));
  const cpuBase = cpuNow(c);
  const base = await load(5000, 'before');
  const cpu0 = cpuNow(c);
  // Node CPU per second of the client load alone (the 5 s before), what the operation's figure includes too.
  // (Nodes running both times: one killed for the operation has no CPU to read.)
  const idleRate = [...cpu0].filter(([id, x]) => Number.isFinite(x) && Number.isFinite(cpuBase.get(id))).reduce((s, [id, x]) => s + (x - (cpuBase.get(id) as number)), 0) / base.seconds;
  const sinceUs = process.hrtime.bigint() / 1000n;
  const started = performance.now();
  let stop = false;
  const results: LoadResult[] = [];
  const background = (async () => {
    while (!stop) results.push(await load(2000, 'during'));
  })();
  const windows: number[] = [];
  let lagMaxMs = 0;
  const nodeLagMs = new Map<string, number>();
  const thresholds: number[] = [];
  const sampler = (async () => {
    while (!stop) {
      const s = await paceSample(c, nodeLagMs, thresholds);
      windows.push(...s.windows);
      lagMaxMs = Math.max(lagMaxMs, s.lagMs);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const ex0 = await exchangeTimes(c);
  const op = await during();
  const cpu1 = cpuNow(c);
  const exchanges = exchangesSince(ex0, await exchangeTimes(c));
  if (PROFILE_DIR !== undefined) out(`profile window: --since-us ${sinceUs} --until-us ${process.hrtime.bigint() / 1000n}`);
  // A node started or killed meanwhile counts from 0 or not at all.
  const cpu = new Map([...cpu1].filter(([, s]) => Number.isFinite(s)).map(([id, s]) => [id, s - (Number.isFinite(cpu0.get(id)) ? cpu0.get(id) as number : 0)]));
  stop = true;
  await background;
  await sampler;
  const elapsed = (performance.now() - started) / 1000;
  const during_ = CLIENTS === 0 ? results : results.filter((r) => r.requests > 0);
  const p99 = Math.max(...during_.map((r) => r.p99ms));
  const busy: LoadResult = { name: 'during', requests: during_.reduce((s, r) => s + r.requests, 0), errors: during_.reduce((s, r) => s + r.errors, 0),
    seconds: elapsed, throughput: during_.reduce((s, r) => s + r.requests, 0) / elapsed, p50ms: NaN, p99ms: p99 };
  return { op, base, busy, perWindowP99: during_.map((r) => r.p99ms), cpu, windows, lagMaxMs, nodeLagMs, idleRate, thresholds, exchanges };
}

function report(name: string, valueBytes: number, r: Measured): void {
  const seconds = ((r.op.finishedAt ?? r.op.startedAt) - r.op.startedAt) / 1000;
  const payload = r.op.records * (valueBytes + 'key-00000'.length);
  out(`${name.padEnd(13)} ${String(r.op.records).padStart(7)} records in ${seconds.toFixed(1).padStart(5)} s: ${(payload / MB / seconds).toFixed(1).padStart(6)} MB/s; ` +
    (CLIENTS === 0 ? 'no client load' : `client p99 ${r.base.p99ms.toFixed(1)} ms before, ${r.busy.p99ms.toFixed(1)} ms during (worst 2 s window, ${(r.busy.p99ms / r.base.p99ms).toFixed(2)}x), errors ${r.busy.errors}`));
  if (CLIENTS > 0) out(`${''.padEnd(13)} client load: ${r.base.throughput.toFixed(0)} req/s before, ${r.busy.throughput.toFixed(0)} during (${CLIENT_RATE > 0 ? `open loop at ${CLIENT_RATE}/s` : 'closed loop'}, ${CLIENTS} connections)`);
  if (CLIENTS > 0) out(`${''.padEnd(13)} client p99 per 2 s window, in order (the first starts with the operation): ${r.perWindowP99.map((x) => x.toFixed(1)).join(', ')} ms`);
  const total = [...r.cpu.values()].reduce((a, b) => a + b, 0);
  const [top, topS] = [...r.cpu].reduce((a, b) => (b[1] > a[1] ? b : a), ['-', 0]);
  const w = r.windows;
  out(`${''.padEnd(13)} window of partitions in flight: ${w.length === 0 ? 'not seen' : `mean ${(w.reduce((a, b) => a + b, 0) / w.length).toFixed(1)}, min ${Math.min(...w)}, max ${Math.max(...w)} over ${w.length} samples; highest lag it saw ${r.lagMaxMs.toFixed(0)} ms, ` +
    `threshold (kv_stream_lag_threshold_seconds) mean ${(r.thresholds.reduce((a, b) => a + b, 0) / Math.max(1, r.thresholds.length)).toFixed(0)} ms`}`);
  out(`${''.padEnd(13)} highest p99 event-loop lag per node (beyond its ${LAG_SAMPLE_MS} ms sampling, 1 s scrapes): ${[...r.nodeLagMs].sort().map(([id, ms]) => `${id} ${ms.toFixed(0)} ms`).join(', ')}`);
  out(`${''.padEnd(13)} node CPU meanwhile: ${total.toFixed(1)} s in all (${((total * 1e6) / Math.max(1, r.op.records)).toFixed(0)} µs per record), busiest ${top} ${topS.toFixed(1)} s (${((100 * topS) / r.busy.seconds).toFixed(0)} % of a core over ${r.busy.seconds.toFixed(1)} s); ` +
    `the client load alone used ${r.idleRate.toFixed(2)} s/s before`);
  const ms = (x: number): string => (Number.isFinite(x) ? (1000 * x).toFixed(x < 0.01 ? 1 : 0) : 'inf');
  const ex = [...r.exchanges].sort().flatMap(([id, methods]) => [...methods].sort().map(([method, h]) =>
    `${id} ${method} ${h.count} (mean ${ms(h.sum / h.count)} ms, p50 ≤ ${ms(bucketQuantile(h, 0.5))}, p90 ≤ ${ms(bucketQuantile(h, 0.9))} ms)`));
  out(`${''.padEnd(13)} partition exchanges of the stream (kv_stream_exchange_seconds): ${ex.length === 0 ? 'none (only a join, a decommission and a replace stream; a removenode copies with ae.sync exchanges)' : ex.join('; ')}`);
}

async function oneSize(valueBytes: number): Promise<void> {
  const keys = Math.max(1000, Math.round((MB_LOAD * MB) / valueBytes));
  out(`\n## ${valueBytes} B values: ${keys.toLocaleString('en')} keys (${((keys * valueBytes) / MB).toFixed(0)} MB), 3 nodes, N=3`);
  const c = await TestCluster.start(3, { args: ARGS, env: NODE_ENV });
  try {
    const value = Buffer.alloc(valueBytes, 0x61);
    const per = Math.ceil(keys / 3);
    await Promise.all(['n1', 'n2', 'n3'].map((id, j) => preload(c.addr(id), Math.max(0, Math.min(per, keys - j * per)), value,
      (k) => ({ method: 'PUT', path: `/kv/key-${j * per + k}`, body: value }))));
    if (OPS.has('join') || OPS.has('decommission')) {
      const r = await underLoad(c, keys, async () => {
        await c.add('n4', { healthyTimeoutMs: 600_000 });
        return operation(c, 'n4', 'join', 'n4');
      });
      report('join', valueBytes, r);
      if (OPS.has('decommission')) {
        // The former owners drop what n4 took over; only then does the decommission have something to move back.
        await handoffsDone(c, ['n1', 'n2', 'n3', 'n4']);
        const d = await underLoad(c, keys, async () => {
          // Right after the join's streaming the 'normal' commit may still be on its way: 409 KV_TOPOLOGY_BUSY until then.
          await pollUntil(async () => {
            const res = await fetch(`http://${c.addr('n1')}/cluster/decommission`, { method: 'POST', body: JSON.stringify({ id: 'n4' }) });
            if (res.status !== 200 && res.status !== 409) throw new Error(`decommission: ${res.status} ${await res.text()}`);
            return res.status === 200;
          }, { timeoutMs: 60_000, intervalMs: 100, what: 'decommission of n4 admitted' });
          const op = await operation(c, 'n4', 'decommission', 'n4');
          await pollUntil(async () => (await stateOf(c, 'n4')) === undefined, { timeoutMs: 120_000, what: 'n4 removed' });
          return op;
        });
        report('decommission', valueBytes, d);
      }
      await c.kill('n4', END_SIGNAL);
    }
    if (OPS.has('removenode')) {
      await c.add('n5', { healthyTimeoutMs: 600_000 });
      await pollUntil(async () => (await stateOf(c, 'n5')) === 'normal', { timeoutMs: 600_000, what: 'n5 normal' });
      // The survivors drop what n5 took over, so removenode must copy it back onto one of them.
      await handoffsDone(c, ['n1', 'n2', 'n3', 'n5']);
      await c.kill('n5', END_SIGNAL);
      await pollUntil(async () => (await c.view('n1')).members.find((m) => m.id === 'n5')?.liveness === 'dead', { timeoutMs: 60_000, what: 'n5 dead' });
      const r = await underLoad(c, keys, async () => {
        const res = await fetch(`http://${c.addr('n1')}/cluster/removenode`, { method: 'POST', body: JSON.stringify({ id: 'n5' }) });
        if (res.status !== 202) throw new Error(`removenode: ${res.status} ${await res.text()}`);
        return operation(c, 'n1', 'removenode', 'n5');
      });
      report('removenode', valueBytes, r);
    }
    if (OPS.has('replace')) {
      await c.kill('n3', END_SIGNAL);
      await pollUntil(async () => (await c.view('n1')).members.find((m) => m.id === 'n3')?.liveness === 'dead', { timeoutMs: 60_000, what: 'n3 dead' });
      const r = await underLoad(c, keys, async () => {
        const port = await freePort();
        const p = spawnNode({ id: 'n3', port, dataDir: join(c.root, 'n3-new'), args: ['--replace', 'n3', '--join', c.addr('n1'), ...ARGS], env: NODE_ENV });
        c.nodes.set('n3', p);
        c.ports.set('n3', port);
        await waitHealthy(p, 600_000);
        return operation(c, 'n3', 'replace', 'n3');
      });
      report('replace', valueBytes, r);
    }
  } finally {
    if (PROFILE_DIR !== undefined) await Promise.all([...c.nodes.keys()].map((id) => c.kill(id, 'SIGTERM')));
    await c.stop();
  }
}

out(`streaming bench (${new Date().toISOString()}, node ${process.version}); figures depend on machine load`);
for (const size of SIZES) await oneSize(size);
