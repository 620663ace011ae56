/**
 * The throughput cost of TLS: two 3-node clusters on this machine, one plain and one with
 * --tls-cert/--tls-key/--tls-ca (HTTPS for clients, mutual TLS between nodes), driven by the
 * same closed-loop generator (bench/load.ts) in the same run, workloads interleaved per round.
 *
 *   node --import tsx bench/tls.ts [--seconds 10 --concurrency 32 --rounds 3 --value-bytes 100]
 *
 * Reports median req/s and p50/p99 per workload, the servers' CPU per request (user+system
 * time of the three node processes from /proc, divided by the requests served: much less
 * sensitive than throughput to other load on the machine), and the TLS/plain ratios.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from '../lib/cli/args.ts';
import { makeCa, makeNodeCert } from '../lib/cli/local-credentials.ts';
import { cpuSeconds, formatResult, median, preload, runLoad, type LoadOptions, type LoadResult, type LoadTls } from './load.ts';
import { cleanupAll, tempDir, type NodeProc } from '../test/helpers/proc.ts';
import { startBenchCluster } from './kv-cluster.ts';

const args = parseArgs(process.argv.slice(2), new Set()).flags;
const seconds = Number(args['seconds'] ?? 10);
const concurrency = Number(args['concurrency'] ?? 32);
const rounds = Number(args['rounds'] ?? 3);
const valueBytes = Number(args['value-bytes'] ?? 100);
const KEYS = 10_000;

const dir = tempDir('kv-bench-tls-');
const pki = join(dir, 'pki');
const ca = makeCa(pki);
const cert = makeNodeCert(pki, ca, 'node', ['127.0.0.1']);
const caPem = readFileSync(ca.cert);

const cluster = (name: string, extra: string[], tls: LoadTls | undefined): Promise<NodeProc[]> =>
  startBenchCluster({ dir, name, args: extra, ...(tls ? { ca: tls.ca } : {}) });

try {
  const tls: LoadTls = { ca: caPem };
  const plain = await cluster('p', [], undefined);
  const secure = await cluster('t', ['--tls-cert', cert.cert, '--tls-key', cert.key, '--tls-ca', ca.cert], tls);
  const value = Buffer.alloc(valueBytes, 'v');
  const addrs = (ns: NodeProc[]): string[] => ns.map((p) => p.addr);
  await preload(addrs(plain)[0] as string, KEYS, value);
  await preload(addrs(secure)[0] as string, KEYS, value, undefined, tls);
  const results: Record<string, LoadResult[]> = { 'plain PUT': [], 'tls PUT': [], 'plain GET': [], 'tls GET': [] };
  const cpuMsPerRequest: Record<string, number[]> = { 'plain PUT': [], 'tls PUT': [], 'plain GET': [], 'tls GET': [] };
  const measure = async (nodes: NodeProc[], o: LoadOptions): Promise<void> => {
    const cpu = (): number => nodes.reduce((a, p) => a + (cpuSeconds(p.child.pid) ?? NaN), 0);
    const c0 = cpu();
    const r = await runLoad(o);
    results[o.name]!.push(r);
    cpuMsPerRequest[o.name]!.push(((cpu() - c0) * 1000) / Math.max(1, r.requests));
  };
  const ms = seconds * 1000;
  const put = (w: number, i: number): { method: string; path: string; body: Buffer } => ({ method: 'PUT', path: `/kv/key-${(w * 7919 + i) % KEYS}`, body: value });
  const get = (w: number, i: number): { method: string; path: string } => ({ method: 'GET', path: `/kv/key-${(w * 7919 + i) % KEYS}` });
  for (let round = 0; round < rounds; round++) {
    await measure(plain, { name: 'plain PUT', targets: addrs(plain), concurrency, durationMs: ms, request: put });
    await measure(secure, { name: 'tls PUT', targets: addrs(secure), concurrency, durationMs: ms, request: put, tls });
    await measure(plain, { name: 'plain GET', targets: addrs(plain), concurrency, durationMs: ms, request: get });
    await measure(secure, { name: 'tls GET', targets: addrs(secure), concurrency, durationMs: ms, request: get, tls });
  }
  const med = (name: string): LoadResult => {
    const rs = results[name] as LoadResult[];
    return { name: `${name} (median of ${rs.length})`, requests: median(rs.map((r) => r.requests)), errors: rs.reduce((a, r) => a + r.errors, 0),
      seconds: median(rs.map((r) => r.seconds)), throughput: median(rs.map((r) => r.throughput)), p50ms: median(rs.map((r) => r.p50ms)), p99ms: median(rs.map((r) => r.p99ms)) };
  };
  process.stdout.write(`3 nodes each, N=3 W=2 R=2, ${concurrency} keep-alive connections spread over the nodes, ${seconds} s per run, ${rounds} rounds, ${valueBytes}-byte values\n`);
  const cpuMs = (name: string): number => median(cpuMsPerRequest[name] as number[]);
  for (const name of Object.keys(results)) process.stdout.write(`${formatResult(med(name))}   servers' CPU ${cpuMs(name).toFixed(3)} ms/request\n`);
  const ratio = (op: string): string => (med(`tls ${op}`).throughput / med(`plain ${op}`).throughput).toFixed(2);
  const cpuRatio = (op: string): string => (cpuMs(`tls ${op}`) / cpuMs(`plain ${op}`)).toFixed(2);
  process.stdout.write(`tls/plain throughput: put ${ratio('PUT')}x, get ${ratio('GET')}x\n`);
  process.stdout.write(`tls/plain servers' CPU per request: put ${cpuRatio('PUT')}x, get ${cpuRatio('GET')}x\n`);
} finally {
  await cleanupAll();
}
