/**
 * How kv grows with its data and with its cluster (issue 14, item 4):
 *
 *   npm run bench:scale [-- --stages 100000,300000,1000000 --max-keys N --clients 32
 *       --value-bytes 100 --window-s 10 --rounds 3 --idle-sizes 3,5,7,9 --idle-seconds 30
 *       --idle-rounds 3 --no-load --no-idle --idle-breakdown --idle-profile DIR
 *       --idle-args "--anti-entropy-interval-ms 86400000" --kv PATH/TO/bin/kv.js
 *       --node-args="--leveldb-cache-bytes 33554432"]
 *
 * Data (3 nodes, N=3, W=2, R=2, --value-bytes values, --clients concurrent keep-alive
 * HTTP clients spread over the nodes): first a warm-up window (overwrites of 1,000 keys:
 * a fresh process is cold), then on the near-empty store the baseline: --rounds write
 * windows (--window-s of PUTs of new keys) and --rounds read windows (GETs of random
 * keys among those just written). Then for each stage (--stages, cut at --max-keys): load new keys
 * up to the stage's count (the bulk rate is printed), then --rounds write windows and
 * --rounds read windows (random keys over everything stored; medians reported), the RSS
 * of every node (/proc/PID/status) with its V8 heap and external memory (/metrics),
 * the bytes of every node's data dir, and restart to healthy: kill -9 of one node,
 * restart from its data dir, time from the spawn to GET /health 200 (then the bench waits
 * until every view shows it alive before going on). Goals (reported, never asserted):
 * throughput at 1M keys >= 0.8x the empty-store figure, RSS bounded by configuration,
 * restart to healthy <= 5 s at 1M keys. The RSS bound printed beside each stage's RSS is
 * the memory bound (README "Performance", Scale): the largest empty-store RSS plus storeMemoryBound
 * (lib/storage/memory-bound.ts) of the nodes' options and the stage's bytes on disk.
 * --node-args adds node flags to the data cluster (storage options, say); the bound follows them.
 * The bound is this checkout's formula and defaults, also under --kv (another build's defaults may differ).
 *
 * Idle (no client traffic): for each size in --idle-sizes, a fresh cluster; once every
 * node shows every other alive and heard from (the time from the last node's /health
 * 200 to that is printed) and 10 s more have passed,
 * --idle-rounds windows of --idle-seconds: CPU per node from utime+stime in
 * /proc/PID/stat, as % of one core (median over rounds; the median and max over nodes
 * and the cluster's sum are printed). Goal: <= 2 % per node at 9 nodes.
 * --idle-breakdown repeats the largest size with anti-entropy walks off
 * (--anti-entropy-interval-ms 86400000) and then also gossip nearly off
 * (--swim-probe-interval-ms 60000): the differences are what the walks and the gossip
 * cost, the rest is Raft, metrics and the runtime. --idle-profile DIR runs the largest
 * size under --cpu-prof and prints the top functions of the idle window. --idle-args
 * adds node flags to every idle cluster (to profile a variant).
 * --kv runs another checkout's bin/kv.js (for a before/after of the same bench).
 *
 * The load generator shares the machine with the nodes: take final figures on a quiet
 * machine (the load average is printed at each step).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from '../lib/cli/args.ts';
import { levelOptions, loadConfig } from '../lib/config.ts';
import { DEFAULT_LEVEL_OPTIONS } from '../lib/storage/level-backend.ts';
import { storeMemoryBound } from '../lib/storage/memory-bound.ts';
import { median, percentile } from './load.ts';
import { summarise, formatSummary } from './top-profile.ts';
import { KV_BIN, freePort, tempDir, removeDir } from '../test/helpers/proc.ts';
import { pollUntil } from '../test/helpers/poll.ts';

const flags = parseArgs(process.argv.slice(2), new Set(['no-load', 'no-idle', 'idle-breakdown'])).flags;
function num(name: string, dflt: number): number {
  const v = flags[name] === undefined ? dflt : Number(flags[name]);
  if (Number.isNaN(v) || v < 0) throw new Error(`--${name} must be a non-negative number`);
  return v;
}
function list(name: string, dflt: string): number[] {
  const xs = String(flags[name] ?? dflt).split(',').filter((x) => x !== '').map(Number);
  if (xs.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`--${name} takes positive integers, e.g. ${dflt}`);
  return xs;
}
const maxKeys = num('max-keys', Infinity);
const stages = list('stages', '100000,300000,1000000').filter((k) => k <= maxKeys);
if (Number.isFinite(maxKeys) && !stages.includes(maxKeys)) stages.push(maxKeys);
const clients = num('clients', 32);
const valueBytes = num('value-bytes', 100);
const windowMs = num('window-s', 10) * 1000;
const rounds = Math.max(1, num('rounds', 3));
const idleSizes = list('idle-sizes', '3,5,7,9');
const idleMs = num('idle-seconds', 30) * 1000;
const idleRounds = Math.max(1, num('idle-rounds', 3));
const kvBin = flags['kv'] === undefined ? KV_BIN : resolve(String(flags['kv']));
const idleArgs = typeof flags['idle-args'] === 'string' ? flags['idle-args'].split(' ').filter((a) => a !== '') : [];
// A value that starts with "--" is only taken after "=" (lib/cli/args.ts).
if (flags['node-args'] === true) throw new Error('--node-args takes its flags after "=", e.g. --node-args="--leveldb-cache-bytes 33554432"');
const nodeArgs = typeof flags['node-args'] === 'string' ? flags['node-args'].split(' ').filter((a) => a !== '') : [];
/** The data nodes' configuration, for the memory bound: defaults plus --node-args. */
const nodeConfig = loadConfig({ flags: parseArgs(nodeArgs, new Set()).flags });
const doLoad = flags['no-load'] !== true;
const doIdle = flags['no-idle'] !== true;

/** Keys the warm-up window overwrites before the empty-store baseline. */
const WARM_KEYS = 1000;
/** After the cluster converged, idle windows start this much later (joins, first walks settling). */
const IDLE_SETTLE_MS = 10_000;
const HTTP_TIMEOUT_MS = 5000;
const HEALTH_POLL_MS = 25;
/** Goals of issue 14 (reported against, never asserted). */
const GOAL_THROUGHPUT_RATIO = 0.8;
const GOAL_RESTART_MS = 5000;
const GOAL_IDLE_CPU_PCT = 2;
const CLK_TCK = 100; // USER_HZ on Linux: the unit of utime/stime in /proc/PID/stat

const out = (s: string): void => { process.stdout.write(`${s}\n`); };
const load = (): string => `load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- a cluster of real nodes, with their pids -------------------------------------------

interface ClusterView { id: string; members: Array<{ id: string; state: string; liveness: string; lastHeardMs?: number | null }> }

interface Proc { id: string; port: number; addr: string; dataDir: string; child: ChildProcess; exited: Promise<void>; log: () => string }

class BenchCluster {
  readonly root = tempDir('kv-scale-');
  readonly procs = new Map<string, Proc>();

  constructor(private readonly nodeArgs: string[] = [], private readonly nodeFlags: string[] = []) {}

  /**
   * Starts n nodes one after another; returns the ms from the last one healthy to every
   * view all alive (and, with `heard`, every member heard from).
   */
  async start(n: number, heard = true): Promise<number> {
    for (let i = 1; i <= n; i++) {
      const id = `n${i}`;
      const port = await freePort();
      const role = i === 1 ? ['--bootstrap'] : ['--join', [...this.procs.values()].map((p) => p.addr).join(',')];
      await this.healthy(this.spawn(id, port, role), 60_000);
    }
    const t0 = performance.now();
    await this.converged(n, heard);
    return performance.now() - t0;
  }

  spawn(id: string, port: number, role: string[] = []): Proc {
    const addr = `127.0.0.1:${port}`;
    const dataDir = join(this.root, id);
    const child = spawn(process.execPath, [...this.nodeFlags, kvBin, 'node', '--id', id, '--listen', addr, '--data', dataDir, ...role, ...this.nodeArgs], {
      env: { ...process.env, KV_LOG_LEVEL: 'warn', KV_SECRET: 'bench-secret-0123456789' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    const keep = (b: Buffer): void => { text = (text + b.toString()).slice(-64 * 1024); };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    const p: Proc = { id, port, addr, dataDir, child, exited, log: () => text };
    this.procs.set(id, p);
    return p;
  }

  async healthy(p: Proc, timeoutMs: number): Promise<void> {
    await pollUntil(async () => {
      if (p.child.exitCode !== null) throw new Error(`${p.id} exited with ${p.child.exitCode}:\n${p.log().slice(-2000)}`);
      try {
        return (await fetch(`http://${p.addr}/health`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })).ok;
      } catch {
        return false;
      }
    }, { timeoutMs, intervalMs: HEALTH_POLL_MS, what: `${p.id} healthy` });
  }

  async view(id: string): Promise<ClusterView> {
    const res = await fetch(`http://${this.get(id).addr}/cluster`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`/cluster on ${id}: ${res.status}`);
    return (await res.json()) as ClusterView;
  }

  /** Every node lists n normal members, every other one alive (and heard from, with `heard`). */
  async converged(n: number, heard = true, timeoutMs = 120_000): Promise<void> {
    await pollUntil(async () => {
      const views = await Promise.all([...this.procs.keys()].map((id) => this.view(id)));
      return views.every((v) => v.members.filter((m) => m.state === 'normal').length === n &&
        v.members.every((m) => m.id === v.id || (m.liveness === 'alive' && (!heard || typeof m.lastHeardMs === 'number'))));
    }, { timeoutMs, intervalMs: 100, what: `${n} normal members, every one alive${heard ? ' and heard from' : ''} in every view` });
  }

  get(id: string): Proc {
    const p = this.procs.get(id);
    if (p === undefined) throw new Error(`no node ${id}`);
    return p;
  }

  addrs(): string[] {
    return [...this.procs.values()].map((p) => p.addr);
  }

  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.get(id);
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill(signal);
    await p.exited;
  }

  /**
   * SIGTERM so V8 writes a --cpu-prof file; SIGKILL after 15 s. One node at a time, the
   * last started first: a whole cluster stopped at once does not always finish stopping.
   */
  async stopCleanly(): Promise<string[]> {
    const lost: string[] = [];
    for (const id of [...this.procs.keys()].reverse()) {
      const t = setTimeout(() => {
        lost.push(id);
        this.get(id).child.kill('SIGKILL');
      }, 15_000);
      await this.kill(id, 'SIGTERM');
      clearTimeout(t);
    }
    return lost;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((id) => this.kill(id)));
    removeDir(this.root);
  }
}

const clusters = new Set<BenchCluster>();
// These processes are not spawnNode's, so its exit hook does not know them: however this
// process ends (an error, a closed stdout), no node may outlive it.
process.once('exit', () => {
  for (const c of clusters) for (const p of c.procs.values()) p.child.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { void Promise.all([...clusters].map((c) => c.stop())).finally(() => process.exit(130)); });
}

async function withCluster<T>(n: number, args: string[], nodeFlags: string[], fn: (c: BenchCluster) => Promise<T>): Promise<T> {
  const c = new BenchCluster(args, nodeFlags);
  clusters.add(c);
  try {
    return await fn(c);
  } finally {
    await c.stop();
    clusters.delete(c);
  }
}

// ---- /proc and /metrics ------------------------------------------------------------------

function cpuTicks(pid: number): number {
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) * 1024;
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    total += st.isDirectory() ? dirBytes(p) : st.size;
  }
  return total;
}

async function metricValues(addr: string, names: string[]): Promise<number[]> {
  const text = await (await fetch(`http://${addr}/metrics`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })).text();
  return names.map((n) => {
    const line = text.split('\n').find((l) => l.startsWith(`${n} `));
    return line === undefined ? NaN : Number(line.slice(n.length + 1));
  });
}

const mb = (b: number): string => (b / 1e6).toFixed(1);

// ---- client load -------------------------------------------------------------------------

interface Window { requests: number; errors: number; seconds: number; throughput: number; p99ms: number; statuses: Map<number, number> }

/**
 * --clients workers, each with its own keep-alive socket to one node (round-robin),
 * send the request `next(worker)` builds, one at a time, until it returns undefined or
 * `untilMs` passes. Returns the throughput and p99.
 */
async function drive(targets: string[], next: () => { method: string; path: string; body?: Buffer } | undefined, untilMs = Infinity): Promise<Window> {
  const latencies: number[] = [];
  let errors = 0;
  /** Failed requests by HTTP status (0: no answer). */
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  const worker = async (w: number): Promise<void> => {
    const target = targets[w % targets.length] as string;
    const i = target.lastIndexOf(':');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // The deadline before next(): a request built is a request sent (next() may count it as stored).
      while (performance.now() < untilMs) {
        const req = next();
        if (req === undefined) break;
        const s = performance.now();
        const status = await new Promise<number>((done) => {
          const q = http.request({ host: target.slice(0, i), port: Number(target.slice(i + 1)), method: req.method, path: req.path, agent,
            headers: req.body ? { 'content-length': String(req.body.length) } : {} }, (res) => {
            res.resume();
            res.on('end', () => done(res.statusCode ?? 0));
            res.on('error', () => done(0));
          });
          q.on('error', () => done(0));
          q.end(req.body);
        });
        latencies.push(performance.now() - s);
        if (status < 200 || status >= 300) {
          errors++;
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }
    } finally {
      agent.destroy();
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  const seconds = (performance.now() - t0) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return { requests: latencies.length, errors, seconds, throughput: latencies.length / seconds, p99ms: percentile(sorted, 0.99), statuses };
}

const fmtErrors = (w: Window): string => `${w.errors}/${w.requests}${w.errors > 0 ? ` (by status: ${[...w.statuses].map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}`;
const fmtWindow = (w: Window): string => `${w.throughput.toFixed(0).padStart(6)} req/s (p99 ${w.p99ms.toFixed(1)} ms, errors ${fmtErrors(w)})`;

// ---- the data stages ---------------------------------------------------------------------

interface StageResult {
  keys: number;
  bulk?: Window;
  put: number;
  get: number;
  putP99: number;
  getP99: number;
  rss: number[];
  heap: number[];
  /** V8 heap committed (used + free space V8 holds). */
  heapTotal: number[];
  external: number[];
  disk: number[];
  restartMs?: number;
  /** The memory bound (README "Performance", Scale) per node, from the empty store's RSS on (not for the empty store itself). */
  bound?: RssBound[];
}

interface RssBound { total: number; leveldb: number; heap: number }

/** Empty-store RSS + what the store may add for `disk` bytes on disk with the nodes' options and keys of `keyBytes`. */
function rssBound(emptyRss: number, disk: number, keyBytes: number): RssBound {
  const b = storeMemoryBound({
    leveldb: { ...DEFAULT_LEVEL_OPTIONS, ...levelOptions(nodeConfig) }, versionCacheKeys: nodeConfig.versionCacheKeys,
    keyBytes, partitions: nodeConfig.partitions,
  }, disk);
  return { total: emptyRss + b.totalBytes, leveldb: b.leveldbBytes, heap: b.heapBytes };
}

const withinBound = (r: StageResult): string => (r.rss.every((x, i) => x <= (r.bound?.[i]?.total ?? 0)) ? 'within' : 'ABOVE');

async function dataStages(): Promise<void> {
  await withCluster(3, nodeArgs, [], async (c) => {
    const value = Buffer.alloc(valueBytes, 'v');
    let stored = 0;
    const putNew = (limit: number) => () => (stored < limit ? { method: 'PUT', path: `/kv/key-${stored++}`, body: value } : undefined);
    let seed = 0x2545f491;
    const random = (n: number): number => {
      // xorshift32: the load generator's own, deterministic key choice.
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const getRandom = () => ({ method: 'GET', path: `/kv/key-${random(stored)}` });
    const measure = async (): Promise<StageResult> => {
      const puts: Window[] = [];
      const gets: Window[] = [];
      for (let r = 0; r < rounds; r++) puts.push(await drive(c.addrs(), putNew(Infinity), performance.now() + windowMs));
      const keys = stored;
      for (let r = 0; r < rounds; r++) gets.push(await drive(c.addrs(), getRandom, performance.now() + windowMs));
      for (const w of [...puts, ...gets]) if (w.errors > 0) out(`  warning: requests failed in a window: ${fmtErrors(w)}`);
      const ids = [...c.procs.keys()];
      const mem = await Promise.all(ids.map((id) => metricValues(c.get(id).addr, ['kv_nodejs_heap_size_used_bytes', 'kv_nodejs_external_memory_bytes', 'kv_nodejs_heap_size_total_bytes'])));
      return {
        keys,
        put: median(puts.map((w) => w.throughput)), get: median(gets.map((w) => w.throughput)),
        putP99: median(puts.map((w) => w.p99ms)), getP99: median(gets.map((w) => w.p99ms)),
        rss: ids.map((id) => rssBytes(c.get(id).child.pid as number)),
        heap: mem.map((m) => m[0] as number), external: mem.map((m) => m[1] as number), heapTotal: mem.map((m) => m[2] as number),
        disk: ids.map((id) => dirBytes(c.get(id).dataDir)),
      };
    };
    const report = (r: StageResult, what: string): void => {
      out(`  ${what}: ${r.keys} keys; PUT ${r.put.toFixed(0)} req/s (p99 ${r.putP99.toFixed(1)} ms), GET ${r.get.toFixed(0)} req/s (p99 ${r.getP99.toFixed(1)} ms), medians of ${rounds} x ${windowMs / 1000} s`);
      out(`    RSS per node ${r.rss.map(mb).join(' / ')} MB (V8 heap used ${r.heap.map(mb).join(' / ')} MB, external ${r.external.map(mb).join(' / ')} MB); disk per node ${r.disk.map(mb).join(' / ')} MB`);
      // What RSS holds besides V8's committed heap and its external memory: LevelDB, malloc arenas, code, stacks.
      out(`    V8 heap committed per node ${r.heapTotal.map(mb).join(' / ')} MB; RSS outside the heap and external memory ${r.rss.map((x, i) => mb(x - (r.heapTotal[i] as number) - (r.external[i] as number))).join(' / ')} MB`);
      if (r.bound !== undefined) {
        out(`    RSS bound per node ${r.bound.map((b) => mb(b.total)).join(' / ')} MB (empty-store RSS ${mb(Math.max(...empty.rss))}` +
          ` + LevelDB ${r.bound.map((b) => mb(b.leveldb)).join(' / ')} + heap ${mb(r.bound[0]?.heap ?? NaN)} MB): ${withinBound(r)}`);
      }
    };
    const results: StageResult[] = [];
    await c.start(3);
    out(`data: 3 nodes, ${clients} clients, ${valueBytes}-byte values; ${load()}`);
    // A fresh process is cold (JIT, connections, LevelDB's first files): one window of
    // overwrites of WARM_KEYS keys first, so the baseline measures the store, not the start.
    let warm = 0;
    const w = await drive(c.addrs(), () => ({ method: 'PUT', path: `/kv/warm-${warm++ % WARM_KEYS}`, body: value }), performance.now() + windowMs);
    out(`  warm-up (${WARM_KEYS} keys overwritten): ${fmtWindow(w)}`);
    const empty: StageResult = await measure();
    report(empty, 'empty store (baseline)');
    for (const target of stages) {
      if (stored < target) {
        const bulk = await drive(c.addrs(), putNew(target));
        out(`  loading to ${target} keys: ${fmtWindow(bulk)}; ${load()}`);
      }
      const r = await measure();
      r.bound = r.disk.map((d) => rssBound(Math.max(...empty.rss), d, `key-${r.keys}`.length));
      report(r, `at ${target}`);
      // Restart to healthy: the node with the most data of its own does not matter at N=3 (all hold all).
      const victim = 'n3';
      await c.kill(victim);
      const t0 = performance.now();
      const p = c.spawn(victim, c.get(victim).port);
      await c.healthy(p, 120_000);
      r.restartMs = performance.now() - t0;
      out(`    kill -9 ${victim}, restart: /health 200 after ${r.restartMs.toFixed(0)} ms`);
      await c.converged(3);
      results.push(r);
    }
    out(`\ndata summary (${load()})`);
    out(`node options: ${nodeArgs.length > 0 ? nodeArgs.join(' ') : 'defaults'}`);
    out('| keys stored | PUT req/s (p99) | GET req/s (p99) | RSS per node (MB) | V8 heap used (MB) | disk per node (MB) | restart → /health | RSS bound per node (MB) |');
    out('|---|---|---|---|---|---|---|---|');
    for (const r of [empty, ...results]) {
      out(`| ${r.keys} | ${r.put.toFixed(0)} (${r.putP99.toFixed(1)} ms) | ${r.get.toFixed(0)} (${r.getP99.toFixed(1)} ms) | ${r.rss.map(mb).join(' / ')} | ${r.heap.map(mb).join(' / ')} | ${r.disk.map(mb).join(' / ')} | ${r.restartMs === undefined ? '-' : `${r.restartMs.toFixed(0)} ms`} | ${r.bound === undefined ? '-' : r.bound.map((b) => mb(b.total)).join(' / ')} |`);
    }
    const last = results[results.length - 1];
    if (last !== undefined) {
      const ratio = (x: number, y: number): string => `${(x / y).toFixed(2)}x ${x / y >= GOAL_THROUGHPUT_RATIO ? 'met' : 'NOT met'}`;
      out(`goals at ${last.keys} keys: PUT ${ratio(last.put, empty.put)}, GET ${ratio(last.get, empty.get)} of the empty store (goal >= ${GOAL_THROUGHPUT_RATIO}x);` +
        ` restart to healthy ${last.restartMs?.toFixed(0)} ms (goal <= ${GOAL_RESTART_MS} ms: ${(last.restartMs ?? Infinity) <= GOAL_RESTART_MS ? 'met' : 'NOT met'});` +
        ` RSS ${mb(Math.min(...empty.rss))}-${mb(Math.max(...empty.rss))} MB empty, ${mb(Math.min(...last.rss))}-${mb(Math.max(...last.rss))} MB at ${last.keys} keys` +
        ` (bound ${mb(Math.max(...(last.bound ?? []).map((b) => b.total)))} MB: ${withinBound(last)})`);
    }
  });
}

// ---- idle cost ---------------------------------------------------------------------------

interface IdleResult { n: number; convergeMs: number; perNodePct: number[] }

interface IdleOptions { args?: string[]; nodeFlags?: string[]; profileDir?: string; heard?: boolean }

async function idle(n: number, o: IdleOptions = {}): Promise<IdleResult> {
  return withCluster(n, [...idleArgs, ...(o.args ?? [])], o.nodeFlags ?? [], async (c) => {
    const convergeMs = await c.start(n, o.heard ?? true);
    await sleep(IDLE_SETTLE_MS);
    const ids = [...c.procs.keys()];
    const pids = ids.map((id) => c.get(id).child.pid as number);
    const perRound: number[][] = [];
    const since = process.hrtime.bigint();
    for (let r = 0; r < idleRounds; r++) {
      const before = pids.map(cpuTicks);
      const start = performance.now();
      await sleep(idleMs);
      const seconds = (performance.now() - start) / 1000;
      perRound.push(pids.map((pid, i) => ((cpuTicks(pid) - (before[i] as number)) / CLK_TCK / seconds) * 100));
    }
    const until = process.hrtime.bigint();
    const perNodePct = ids.map((_, i) => median(perRound.map((row) => row[i] as number)));
    if (o.profileDir !== undefined) {
      const lost = await c.stopCleanly();
      if (lost.length > 0) out(`  no profile from ${lost.join(', ')}: not stopped within 15 s of SIGTERM`);
      const s = await summarise([o.profileDir], { sinceUs: Number(since / 1000n), untilUs: Number(until / 1000n) });
      out(formatSummary(s, 30));
    }
    return { n, convergeMs, perNodePct };
  });
}

function idleLine(r: IdleResult, what = ''): string {
  const sum = r.perNodePct.reduce((a, b) => a + b, 0);
  return `| ${r.n}${what} | ${median(r.perNodePct).toFixed(2)} % (max ${Math.max(...r.perNodePct).toFixed(2)} %) | ${sum.toFixed(1)} % | ${(r.convergeMs / 1000).toFixed(1)} s |`;
}

async function idleCosts(): Promise<void> {
  out(`\nidle: ${idleRounds} x ${idleMs / 1000} s per size, utime+stime from /proc; ${kvBin === KV_BIN ? 'this checkout' : kvBin}`);
  const rows: IdleResult[] = [];
  for (const n of idleSizes) {
    const r = await idle(n);
    rows.push(r);
    out(`  ${n} nodes: per node ${r.perNodePct.map((x) => x.toFixed(2)).join(' ')} % of a core; ${load()}`);
  }
  const largest = Math.max(...idleSizes);
  const breakdown: Array<[string, IdleResult]> = [];
  if (flags['idle-breakdown'] === true) {
    const noAe = ['--anti-entropy-interval-ms', String(24 * 3600 * 1000)];
    breakdown.push([', anti-entropy walks off', await idle(largest, { args: noAe })]);
    // Members are heard from only once a minute: wait for the views, not for that.
    breakdown.push([', walks off, gossip probes every 60 s', await idle(largest, {
      args: [...noAe, '--swim-probe-interval-ms', '60000', '--swim-probe-timeout-ms', '30000'], heard: false,
    })]);
  }
  if (typeof flags['idle-profile'] === 'string') {
    const dir = resolve(flags['idle-profile']);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    out(`\nCPU profile of ${largest} idle nodes (${dir}):`);
    await idle(largest, { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`], profileDir: dir });
  }
  out(`\nidle summary (${load()})`);
  out('| nodes | CPU per node, median over nodes (% of one core) | whole cluster | last node healthy → every view all alive |');
  out('|---|---|---|---|');
  for (const r of rows) out(idleLine(r));
  for (const [what, r] of breakdown) out(idleLine(r, what));
  const at = rows.find((r) => r.n === largest);
  if (at !== undefined) {
    const worst = Math.max(...at.perNodePct);
    out(`goal at ${largest} nodes: <= ${GOAL_IDLE_CPU_PCT} % per node: worst node ${worst.toFixed(2)} % ${worst <= GOAL_IDLE_CPU_PCT ? 'met' : 'NOT met'}`);
  }
}

try {
  if (doLoad && stages.length > 0) await dataStages();
  if (doIdle && idleSizes.length > 0) await idleCosts();
} finally {
  await Promise.all([...clusters].map((c) => c.stop()));
}
