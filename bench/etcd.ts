/**
 * A fresh 3-node kv cluster against a fresh 3-member etcd cluster, in the same run,
 * under the same closed-loop load generator and settings: quorum PUT and GET throughput
 * and p50/p99 over all coordinators (kv) / members (etcd).
 *
 *   npm run bench:etcd [-- --seconds 10 --concurrency 32 --rounds 3 --value-bytes 100 --keys 10000]
 *                      [--fsync] [--data-root DIR] [--profile DIR [--profile-op put|get]] [--kv-args="FLAGS"] [--kv-only] [--tls]
 *
 * kv: three `kv node` processes with the default quorums (N=3, W=2, R=2) and authentication
 * on (a tokens file; every request carries a bearer token of role write); the workers'
 * connections are spread round-robin over the three nodes, so every node coordinates.
 * etcd: Debian's etcd-server (bench/install-etcd.sh installs it when `etcd` is missing),
 * driven through its v3 HTTP/JSON gateway (POST /v3/kv/put, POST /v3/kv/range, keys and
 * values base64), with the connections spread over the three client URLs the same way.
 * Both hold keys key-0..key-(keys-1) with values of value-bytes before the first run.
 *
 * Durability differs by default and the header says so: kv acknowledges a write once W
 * replicas have it in their LevelDB log (not synced, `fsync: false`), etcd once a
 * majority synced its WAL. `--fsync` makes kv sync too; `--data-root /dev/shm` takes the
 * disk out of both. etcd's range is linearizable (a ReadIndex round to the leader); kv's
 * R=2 read is not linearizable. Everything (3+3 servers and the load generator) shares
 * the host's cores, so the figures are a capacity comparison on one machine: read the
 * "cpu" lines before drawing conclusions.
 *
 * Each round runs kv PUT, etcd PUT, kv GET, etcd GET; medians over rounds are printed,
 * then each round's throughputs and kv/etcd ratios (the spread within one run), then the
 * ratios of the medians on the last line.
 *
 * --tls runs both systems with TLS: kv nodes with --tls-cert/--tls-key/--tls-ca (HTTPS for
 * clients, mutual TLS between nodes), etcd members with HTTPS client URLs and mutual TLS
 * between peers, one CA and one certificate for 127.0.0.1 (made with openssl, as
 * `kv start --tls` does). The load generator verifies the servers against that CA.
 *
 * --kv-only skips etcd and the ratio line: kv's own figures, for comparing two builds or
 * settings of kv in a few minutes.
 *
 * --profile DIR skips etcd and the comparison: it starts the kv cluster with every node
 * under `--cpu-prof`, runs one workload (--profile-op, default put) for --seconds, stops
 * the nodes cleanly so V8 writes the profiles into DIR, and prints the top functions by
 * self time over the load window (bench/top-profile.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from '../lib/cli/args.ts';
import { newToken, tokenLine } from '../lib/api/tokens.ts';
import { makeCa, makeNodeCert } from '../lib/cli/local-credentials.ts';
import { TestCluster } from '../test/helpers/cluster.ts';
import { cleanupAll, freePort, kill, KV_BIN, waitHealthy, type NodeProc } from '../test/helpers/proc.ts';
import { cleanupOnSignals, startEtcdCluster, type EtcdCluster } from './etcd-cluster.ts';
import { cpuSeconds, formatResult, median, preload, requestOnce, runLoad, type LoadOptions, type LoadResult, type LoadTls } from './load.ts';
import { startBenchCluster } from './kv-cluster.ts';
import { formatSummary, summarise } from './top-profile.ts';

const flags = parseArgs(process.argv.slice(2), new Set(['fsync', 'kv-only', 'tls'])).flags;

function intFlag(name: string, dflt: number, min = 1): number {
  const raw = flags[name];
  const n = raw === undefined ? dflt : Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min} (got ${String(raw)})`);
  return n;
}

const seconds = Number(flags['seconds'] ?? 10);
if (!(seconds > 0)) throw new Error(`--seconds must be > 0 (got ${String(flags['seconds'])})`);
const concurrency = intFlag('concurrency', 32);
const rounds = intFlag('rounds', 3);
const valueBytes = intFlag('value-bytes', 100);
const KEYS = intFlag('keys', 10_000);
const fsync = flags['fsync'] === true || flags['fsync'] === 'true';
const kvOnly = flags['kv-only'] === true;
const useTls = flags['tls'] === true;
const profileDir = typeof flags['profile'] === 'string' ? resolve(flags['profile']) : undefined;
if (flags['profile'] === true) throw new Error('--profile needs a directory');
const profileOp = String(flags['profile-op'] ?? 'put');
if (profileOp !== 'put' && profileOp !== 'get') throw new Error(`--profile-op must be put or get (got ${profileOp})`);
if (typeof flags['data-root'] === 'string') {
  // Both clusters make their private dirs under os.tmpdir(), which follows TMPDIR.
  process.env['TMPDIR'] = resolve(flags['data-root']);
}

const durationMs = Math.round(seconds * 1000);
const value = Buffer.alloc(valueBytes, 'v');
const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const valueB64 = b64(value);
// Bodies and paths are built once so that per-request client work is the same small
// lookup for both systems.
const kvPaths = Array.from({ length: KEYS }, (_, k) => `/kv/key-${k}`);
// Authentication on, as a deployment runs it: every kv node reads a tokens file, every kv request carries the token.
const TOKEN = newToken();
const tokensDir = mkdtempSync(join(tmpdir(), 'kv-bench-tokens-'));
process.once('exit', () => rmSync(tokensDir, { recursive: true, force: true }));
const tokensFile = join(tokensDir, 'tokens');
writeFileSync(tokensFile, `${tokenLine(TOKEN, 'write', 'bench')}\n`, { mode: 0o600 });
const AUTH = { authorization: `Bearer ${TOKEN}` };
const etcdPut = Array.from({ length: KEYS }, (_, k) => Buffer.from(JSON.stringify({ key: b64(`key-${k}`), value: valueB64 })));
const etcdRange = Array.from({ length: KEYS }, (_, k) => Buffer.from(JSON.stringify({ key: b64(`key-${k}`) })));
const JSON_HEADERS = { 'content-type': 'application/json' };
const keyOf = (w: number, i: number): number => (w * 7919 + i) % KEYS;

type Workload = Pick<LoadOptions, 'request'>;
const kvPutLoad: Workload = { request: (w, i) => ({ method: 'PUT', path: kvPaths[keyOf(w, i)] as string, body: value, headers: AUTH }) };
const kvGetLoad: Workload = { request: (w, i) => ({ method: 'GET', path: kvPaths[keyOf(w, i)] as string, headers: AUTH }) };
const etcdPutLoad: Workload = { request: (w, i) => ({ method: 'POST', path: '/v3/kv/put', body: etcdPut[keyOf(w, i)] as Buffer, headers: JSON_HEADERS }) };
const etcdGetLoad: Workload = { request: (w, i) => ({ method: 'POST', path: '/v3/kv/range', body: etcdRange[keyOf(w, i)] as Buffer, headers: JSON_HEADERS }) };

interface Measured extends LoadResult {
  /** Cores the servers kept busy on average during the run. */
  serverCores: number | undefined;
  clientCores: number;
  /** Server CPU milliseconds per completed request. */
  serverCpuMsPerOp: number | undefined;
}

async function measure(name: string, targets: string[], pids: (number | undefined)[], w: Workload, tls?: LoadTls): Promise<Measured> {
  const sum = (xs: (number | undefined)[]): number | undefined => xs.some((x) => x === undefined) ? undefined : xs.reduce<number>((a, x) => a + (x as number), 0);
  const s0 = sum(pids.map(cpuSeconds));
  const c0 = process.cpuUsage();
  const r = await runLoad({ name, targets, concurrency, durationMs, ...w, ...(tls ? { tls } : {}) });
  const c = process.cpuUsage(c0);
  const s1 = sum(pids.map(cpuSeconds));
  const server = s0 === undefined || s1 === undefined ? undefined : s1 - s0;
  return { ...r, serverCores: server === undefined ? undefined : server / r.seconds, clientCores: (c.user + c.system) / 1e6 / r.seconds,
    serverCpuMsPerOp: server === undefined || r.requests === 0 ? undefined : (server * 1000) / r.requests };
}

function medianOf(name: string, rs: Measured[]): Measured {
  const m = (f: (r: Measured) => number | undefined): number | undefined => {
    const xs = rs.map(f);
    return xs.some((x) => x === undefined) ? undefined : median(xs as number[]);
  };
  return { name: `${name} (median of ${rs.length})`, requests: median(rs.map((r) => r.requests)), errors: rs.reduce((a, r) => a + r.errors, 0),
    seconds: median(rs.map((r) => r.seconds)), throughput: median(rs.map((r) => r.throughput)), p50ms: median(rs.map((r) => r.p50ms)),
    p99ms: median(rs.map((r) => r.p99ms)), serverCores: m((r) => r.serverCores), clientCores: m((r) => r.clientCores) as number,
    serverCpuMsPerOp: m((r) => r.serverCpuMsPerOp) };
}

function ensureEtcd(): string {
  const version = (): string | undefined => {
    const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
    return r.error || r.status !== 0 ? undefined : (/etcd Version: (\S+)/.exec(r.stdout)?.[1] ?? 'unknown');
  };
  const have = version();
  if (have) return have;
  process.stderr.write('etcd is not on PATH: running bench/install-etcd.sh\n');
  const script = fileURLToPath(new URL('./install-etcd.sh', import.meta.url));
  const r = spawnSync('sh', [script], { stdio: ['ignore', 2, 2] });
  const now = version();
  if (r.status !== 0 || !now) throw new Error(`bench/install-etcd.sh failed (exit ${r.status}); install Debian's etcd-server or put etcd 3.4+ on PATH`);
  return now;
}

/** SIGTERM lets a node stop cleanly (and V8 write its --cpu-prof file); SIGKILL if it hangs. */
async function stopCleanly(p: NodeProc, timeoutMs = 15_000): Promise<boolean> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return true;
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  await kill(p, 'SIGTERM');
  clearTimeout(timer);
  return p.child.signalCode !== 'SIGKILL';
}

async function checkKv(addrs: readonly string[], tls?: LoadTls): Promise<void> {
  for (const addr of addrs) {
    const res = await requestOnce(addr, { method: 'GET', path: kvPaths[0] as string, headers: AUTH }, tls);
    if (res.status !== 200 || !res.body.equals(value)) throw new Error(`kv GET ${kvPaths[0] as string} on ${addr}: ${res.status}, ${res.body.length} bytes`);
  }
}

async function checkEtcd(e: EtcdCluster, tls?: LoadTls): Promise<void> {
  for (const addr of e.clientAddrs) {
    const res = await requestOnce(addr, { method: 'POST', path: '/v3/kv/range', body: etcdRange[0] as Buffer, headers: JSON_HEADERS }, tls);
    const body = JSON.parse(res.body.toString()) as { kvs?: { value?: string }[] };
    if (res.status !== 200 || body.kvs?.[0]?.value !== valueB64) throw new Error(`etcd range key-0 on ${addr}: ${res.status} ${JSON.stringify(body).slice(0, 200)}`);
  }
}

// --kv-args="--read-repair false" (with "=": the value starts with --): extra node flags, for a before/after of one setting.
const extraKvArgs = typeof flags['kv-args'] === 'string' ? flags['kv-args'].split(/\s+/).filter((x) => x !== '') : [];
const kvArgs = ['--tokens-file', tokensFile, ...(fsync ? ['--fsync', 'true'] : []), ...extraKvArgs];
const out = (line: string): void => { process.stdout.write(`${line}\n`); };
const cpuLine = (r: Measured): string => `  cpu ${r.name.replace(/ \(median.*/, '').padEnd(9)} servers ${r.serverCores?.toFixed(2) ?? '?'} cores (${r.serverCpuMsPerOp?.toFixed(3) ?? '?'} ms/op), load generator ${r.clientCores.toFixed(2)} cores`;

/**
 * spawnNode's twin that puts --cpu-prof on the node's own command line (Node 20 refuses
 * it in NODE_OPTIONS). The nodes are registered in a TestCluster so that its
 * waitConverged/addrs/stop apply; they are killed on exit like spawnNode's.
 */
async function startProfiledCluster(dir: string): Promise<TestCluster> {
  const c = new TestCluster(kvArgs);
  c.token = TOKEN;
  const procs: NodeProc[] = [];
  process.once('exit', () => { for (const p of procs) p.child.kill('SIGKILL'); });
  for (let i = 1; i <= 3; i++) {
    const id = `n${i}`;
    const port = await freePort();
    const addr = `127.0.0.1:${port}`;
    const role = i === 1 ? ['--bootstrap'] : ['--join', procs.map((p) => p.addr).join(',')];
    const dataDir = join(c.root, id);
    const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, KV_BIN, 'node', '--id', id, '--listen', addr, '--data', dataDir, ...role, ...kvArgs], {
      env: { ...process.env, KV_LOG_LEVEL: 'warn', KV_SECRET: 'bench-secret-0123456789' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    const onData = (b: Buffer): void => { log = (log + b.toString()).slice(-64 * 1024); };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    const p: NodeProc = { id, addr, dataDir, child, output: () => log, exited };
    procs.push(p);
    c.nodes.set(id, p);
    c.ports.set(id, port);
    await waitHealthy(p, 60_000);
  }
  await c.waitConverged(3);
  return c;
}

async function profileRun(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const c = await startProfiledCluster(dir);
  let window: { sinceUs: number; untilUs: number };
  try {
    await preload(c.addr('n1'), KEYS, value, (k) => ({ method: 'PUT', path: kvPaths[k] as string, body: value, headers: AUTH }));
    await checkKv(c.addrs());
    const since = process.hrtime.bigint();
    const r = await measure(`kv ${profileOp.toUpperCase()} (profiled)`, c.addrs(), [...c.nodes.values()].map((p) => p.child.pid),
      profileOp === 'put' ? kvPutLoad : kvGetLoad);
    window = { sinceUs: Number(since / 1000n), untilUs: Number(process.hrtime.bigint() / 1000n) };
    out(formatResult(r));
    out(cpuLine(r));
    const clean = await Promise.all([...c.nodes.values()].map((p) => stopCleanly(p)));
    if (!clean.every(Boolean)) out('warning: a node did not stop within 15 s; its profile is missing');
  } finally {
    await c.stop();
  }
  out(`profiles in ${dir}; load window ${window.sinceUs}..${window.untilUs} us (monotonic)`);
  let s = await summarise([dir], window);
  if (s.totalMs === 0) {
    out('no samples inside the load window (profiler clock differs?): summarising whole profiles');
    s = await summarise([dir]);
  }
  out(formatSummary(s, 25));
}

async function compare(): Promise<void> {
  const etcdVersion = kvOnly ? undefined : ensureEtcd();
  const pki = useTls ? benchPki() : undefined;
  const tls: LoadTls | undefined = pki ? { ca: readFileSync(pki.ca) } : undefined;
  const kvDir = mkdtempSync(join(tmpdir(), 'kv-bench-nodes-'));
  const kv = await startBenchCluster({ dir: kvDir, name: 'n', token: TOKEN, ...(tls ? { ca: tls.ca } : {}),
    args: [...kvArgs, ...(pki ? ['--tls-cert', pki.cert, '--tls-key', pki.key, '--tls-ca', pki.ca] : [])] });
  let etcd: EtcdCluster | undefined;
  try {
    if (!kvOnly) etcd = await startEtcdCluster(pki ? { tls: pki } : {});
    const kvTargets = kv.map((p) => p.addr);
    const kvPids = kv.map((p) => p.child.pid);
    await preload(kvTargets[0] as string, KEYS, value, (k) => ({ method: 'PUT', path: kvPaths[k] as string, body: value, headers: AUTH }), tls);
    if (etcd) await preload(etcd.clientAddrs[0] as string, KEYS, value, (k) => ({ method: 'POST', path: '/v3/kv/put', body: etcdPut[k] as Buffer, headers: JSON_HEADERS }), tls);
    await checkKv(kvTargets, tls);
    if (etcd) await checkEtcd(etcd, tls);

    const results: Record<string, Measured[]> = etcd ? { 'kv PUT': [], 'etcd PUT': [], 'kv GET': [], 'etcd GET': [] } : { 'kv PUT': [], 'kv GET': [] };
    for (let round = 0; round < rounds; round++) {
      results['kv PUT']!.push(await measure('kv PUT', kvTargets, kvPids, kvPutLoad, tls));
      if (etcd) results['etcd PUT']!.push(await measure('etcd PUT', etcd.clientAddrs, etcd.members.map((m) => m.child.pid), etcdPutLoad, tls));
      results['kv GET']!.push(await measure('kv GET', kvTargets, kvPids, kvGetLoad, tls));
      if (etcd) results['etcd GET']!.push(await measure('etcd GET', etcd.clientAddrs, etcd.members.map((m) => m.child.pid), etcdGetLoad, tls));
    }
    const med = Object.fromEntries(Object.entries(results).map(([name, rs]) => [name, medianOf(name, rs)])) as Record<string, Measured>;

    out(`3-node clusters on loopback, ${concurrency} connections spread over the 3 nodes of each, ${seconds} s per run, ${rounds} round(s), ${valueBytes}-byte values, ${KEYS} keys`);
    out(`kv: N=3 W=2 R=2, bearer-token auth, fsync ${fsync}${tls ? ', TLS' : ''}${extraKvArgs.length ? `, ${extraKvArgs.join(' ')}` : ''}${etcd ? ` | etcd ${etcdVersion}: v3 JSON gateway, WAL fsync on a majority, linearizable range${tls ? ', TLS' : ''}` : ''}`);
    for (const name of Object.keys(results)) out(formatResult(med[name] as Measured));
    for (const name of Object.keys(results)) out(cpuLine(med[name] as Measured));
    // The medians hide how far rounds of the same run differ: the spread is part of the figure.
    if (rounds > 1) for (const [name, rs] of Object.entries(results)) out(`  rounds ${name.padEnd(9)} ${rs.map((r) => r.throughput.toFixed(0)).join(', ')} req/s`);
    if (!etcd) return;
    if (rounds > 1) {
      const perRound = (op: 'PUT' | 'GET'): string => (results[`kv ${op}`] as Measured[]).map((r, i) => `${(r.throughput / (results[`etcd ${op}`] as Measured[])[i]!.throughput).toFixed(2)}x`).join(', ');
      out(`ratio per round (kv / etcd, same round): put ${perRound('PUT')}; get ${perRound('GET')}`);
    }
    const ratio = (op: 'PUT' | 'GET'): number => (med[`kv ${op}`] as Measured).throughput / (med[`etcd ${op}`] as Measured).throughput;
    const goal = (op: 'PUT' | 'GET'): string => {
      const ok = ratio(op) >= 2 && (med[`kv ${op}`] as Measured).p99ms <= (med[`etcd ${op}`] as Measured).p99ms;
      return `${op.toLowerCase()} ${ok ? 'met' : 'not met'}`;
    };
    out(`goal (>= 2x etcd's throughput at p99 no worse): ${goal('PUT')}, ${goal('GET')}`);
    out(`vs etcd: put ${ratio('PUT').toFixed(2)}x, get ${ratio('GET').toFixed(2)}x`);
  } finally {
    await etcd?.stop();
    await cleanupAll();
    rmSync(kvDir, { recursive: true, force: true });
  }
}

/** A CA and one certificate for 127.0.0.1 that both systems serve with (`--tls`). */
function benchPki(): { cert: string; key: string; ca: string } {
  const dir = mkdtempSync(join(tmpdir(), 'kv-bench-pki-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(dir);
  const cert = makeNodeCert(dir, ca, 'server', ['127.0.0.1']);
  return { cert: cert.cert, key: cert.key, ca: ca.cert };
}

cleanupOnSignals();
if (profileDir) await profileRun(profileDir);
else await compare();
