/**
 * Conditional writes next to plain writes, in the same run on one fresh 3-node cluster
 * (N=3, W=2, R=2, default settings), closed loop, connections spread over the three nodes:
 *
 *   npm run bench:cas [-- --seconds 10 --concurrency 16 --rounds 3 --contended 8 --value-bytes 100]
 *
 *   plain PUT          each worker writes its own keys (quorum write, W=2)
 *   CAS uncontended    each worker owns one key and swaps it with If-Match, using the version
 *                      of its previous answer (no read): Paxos prepare + propose
 *   serial GET         each worker reads its own key with ?serial=true (one Paxos round)
 *   CAS contended      `--contended` workers increment ONE key: serial GET, then PUT If-Match;
 *                      throughput counts successful increments, latency is the whole
 *                      read + conditional write; 412s (another won the race), 409 (busy) and
 *                      504 (unknown) are tallied
 *
 * Round trips and attempts per operation come from the nodes' kv_cas_* counters (deltas
 * over each run, summed over the nodes). Each round runs every workload once; medians over
 * rounds are printed, with the load average before and after (the machine is shared).
 */
import http from 'node:http';
import { loadavg } from 'node:os';
import { intFlag as cliIntFlag, parseArgs } from '../lib/cli/args.ts';
import { TestCluster } from '../test/helpers/cluster.ts';
import { median, percentile } from './load.ts';

const args = parseArgs(process.argv.slice(2), new Set());
const flags = args.flags;
const intFlag = (name: string, dflt: number): number => cliIntFlag(args, name, dflt, 1, 1_000_000);
const seconds = Number(flags['seconds'] ?? 10);
if (!(seconds > 0)) throw new Error('--seconds must be > 0');
const concurrency = intFlag('concurrency', 16);
const contended = intFlag('contended', 8);
const rounds = intFlag('rounds', 3);
const value = Buffer.alloc(intFlag('value-bytes', 100), 'v');

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

function call(agent: http.Agent, target: string, method: string, path: string, body?: Buffer, headers: Record<string, string> = {}): Promise<Answer> {
  const i = target.lastIndexOf(':');
  return new Promise((resolve) => {
    const req = http.request({ host: target.slice(0, i), port: Number(target.slice(i + 1)), method, path, agent,
      headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', () => resolve({ status: 0, headers: {}, body: Buffer.alloc(0) }));
    });
    req.on('error', () => resolve({ status: 0, headers: {}, body: Buffer.alloc(0) }));
    req.end(body);
  });
}

interface Run { name: string; ops: number; okPerSec: number; p50ms: number; p99ms: number; statuses: Record<string, number>; tripsPerOp: number; attemptsPerOp: number }

/** kv_cas_* counters summed over the nodes. */
async function casCounters(targets: string[]): Promise<{ ops: number; attempts: number; trips: number }> {
  const out = { ops: 0, attempts: 0, trips: 0 };
  for (const t of targets) {
    const text = await (await fetch(`http://${t}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^(kv_cas_operations_total|kv_cas_attempts_total|kv_cas_round_trips_total)(\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
      if (!m) continue;
      const v = Number(m[3]);
      if (m[1] === 'kv_cas_operations_total') out.ops += v;
      else if (m[1] === 'kv_cas_attempts_total') out.attempts += v;
      else out.trips += v;
    }
  }
  return out;
}

/**
 * `workers` closed loops for `seconds`; `step(w, agent, target)` does one operation and says
 * its status and whether it counts as a success.
 */
async function run(name: string, targets: string[], workers: number, init: (w: number, agent: http.Agent, target: string) => Promise<void>,
  step: (w: number, agent: http.Agent, target: string) => Promise<{ status: number; ok: boolean }>): Promise<Run> {
  const agents = Array.from({ length: workers }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  await Promise.all(agents.map((a, w) => init(w, a, targets[w % targets.length] as string)));
  const before = await casCounters(targets);
  const lat: number[] = [];
  const statuses: Record<string, number> = {};
  let ok = 0;
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const t0 = process.hrtime.bigint();
  await Promise.all(agents.map(async (agent, w) => {
    const target = targets[w % targets.length] as string;
    while (process.hrtime.bigint() < end) {
      const s = process.hrtime.bigint();
      const r = await step(w, agent, target);
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      if (r.ok) {
        ok++;
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  for (const a of agents) a.destroy();
  const after = await casCounters(targets);
  const sorted = Float64Array.from(lat).sort();
  const ops = after.ops - before.ops;
  return {
    name, ops: Object.values(statuses).reduce((x, y) => x + y, 0), okPerSec: ok / secs, p50ms: percentile(sorted, 0.5), p99ms: percentile(sorted, 0.99), statuses,
    tripsPerOp: ops > 0 ? (after.trips - before.trips) / ops : 0, attemptsPerOp: ops > 0 ? (after.attempts - before.attempts) / ops : 0,
  };
}

function versionOf(a: Answer): string {
  return String(a.headers['x-kv-version'] ?? '');
}

async function round(targets: string[], r: number): Promise<Run[]> {
  const own: string[] = [];
  const plain = await run('plain PUT', targets, concurrency, async () => undefined, async (w, agent, target) => {
    const a = await call(agent, target, 'PUT', `/kv/plain-${r}-${w}-${Math.floor(Math.random() * 1e9)}`, value);
    return { status: a.status, ok: a.status === 200 };
  });
  const uncontended = await run('CAS uncontended', targets, concurrency, async (w, agent, target) => {
    const a = await call(agent, target, 'PUT', `/kv/cas-${r}-${w}`, value, { 'if-none-match': '*' });
    if (a.status !== 200) throw new Error(`CAS create: ${a.status} ${a.body.toString()}`);
    own[w] = versionOf(a);
  }, async (w, agent, target) => {
    const a = await call(agent, target, 'PUT', `/kv/cas-${r}-${w}`, value, { 'if-match': own[w] as string });
    if (a.status === 200) own[w] = versionOf(a);
    else if (a.status === 412) own[w] = versionOf(a) || (own[w] as string);
    return { status: a.status, ok: a.status === 200 };
  });
  const serial = await run('serial GET', targets, concurrency, async () => undefined, async (w, agent, target) => {
    const a = await call(agent, target, 'GET', `/kv/cas-${r}-${w}?serial=true`);
    return { status: a.status, ok: a.status === 200 };
  });
  const key = `/kv/counter-${r}`;
  const first = await call(new http.Agent(), targets[0] as string, 'PUT', key, Buffer.from('0'), { 'if-none-match': '*' });
  if (first.status !== 200) throw new Error(`counter create: ${first.status}`);
  const hot = await run(`CAS contended (${contended} on 1 key)`, targets, contended, async () => undefined, async (_w, agent, target) => {
    const cur = await call(agent, target, 'GET', `${key}?serial=true`);
    if (cur.status !== 200) return { status: cur.status, ok: false };
    const n = Number(cur.body.toString());
    const a = await call(agent, target, 'PUT', key, Buffer.from(String(n + 1)), { 'if-match': versionOf(cur) });
    return { status: a.status, ok: a.status === 200 };
  });
  return [plain, uncontended, serial, hot];
}

function fmt(r: Run): string {
  const st = Object.entries(r.statuses).map(([s, n]) => `${s}:${n}`).join(' ');
  const trips = r.tripsPerOp > 0 ? `  round trips/op ${r.tripsPerOp.toFixed(2)}  attempts/op ${r.attemptsPerOp.toFixed(2)}` : '';
  return `${r.name.padEnd(30)} ${r.okPerSec.toFixed(0).padStart(7)} ok/s   p50 ${r.p50ms.toFixed(2).padStart(7)} ms   p99 ${r.p99ms.toFixed(2).padStart(7)} ms${trips}   [${st}]`;
}

function medianRun(rs: Run[]): Run {
  const m = (f: (r: Run) => number): number => median(rs.map(f));
  const statuses: Record<string, number> = {};
  for (const r of rs) for (const [s, n] of Object.entries(r.statuses)) statuses[s] = (statuses[s] ?? 0) + n;
  return { name: (rs[0] as Run).name, ops: m((r) => r.ops), okPerSec: m((r) => r.okPerSec), p50ms: m((r) => r.p50ms), p99ms: m((r) => r.p99ms),
    statuses, tripsPerOp: m((r) => r.tripsPerOp), attemptsPerOp: m((r) => r.attemptsPerOp) };
}

const out = (s: string): void => { process.stdout.write(`${s}\n`); };
const load0 = loadavg();
const c = await TestCluster.start(3);
try {
  const targets = c.addrs();
  const all: Run[][] = [];
  for (let r = 0; r < rounds; r++) all.push(await round(targets, r));
  const load1 = loadavg();
  out(`3 nodes on loopback (N=3 W=2 R=2, fsync off), ${concurrency} workers (${contended} on the hot key), ${seconds} s per run, ${rounds} round(s), medians; statuses summed over rounds`);
  out(`load average before ${load0.map((x) => x.toFixed(1)).join(' ')}, after ${load1.map((x) => x.toFixed(1)).join(' ')} (2 cores, shared)`);
  for (let i = 0; i < (all[0] as Run[]).length; i++) out(fmt(medianRun(all.map((rs) => rs[i] as Run))));
} finally {
  await c.stop();
}
