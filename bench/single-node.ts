/**
 * One node's PUT and GET throughput and p50/p99, measured in the same run as a bare
 * node:http server answering "ok" under the same load generator and settings.
 *
 *   npm run bench:single-node [-- --seconds 10 --concurrency 32 --rounds 3]
 *
 * Each round runs every workload once; the medians over rounds are reported, then
 * the ratio of our throughput to the bare server's.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from '../lib/cli/args.ts';
import { formatResult, median, preload, runLoad, type LoadResult } from './load.ts';
import { freePort, spawnNode, waitHealthy, kill } from '../test/helpers/proc.ts';
import { pollUntil } from '../test/helpers/poll.ts';

const args = parseArgs(process.argv.slice(2), new Set()).flags;
const seconds = Number(args['seconds'] ?? 10);
const concurrency = Number(args['concurrency'] ?? 32);
const rounds = Number(args['rounds'] ?? 3);
const valueBytes = Number(args['value-bytes'] ?? 100);
const KEYS = 10_000;

const dir = mkdtempSync(join(tmpdir(), 'kv-bench-'));
const kvPort = await freePort();
const node = spawnNode({ id: 'bench', port: kvPort, dataDir: join(dir, 'n'), args: ['--bootstrap'], env: { KV_LOG_LEVEL: 'warn' } });
const barePort = await freePort();
const bare = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./bare-http.ts', import.meta.url)), String(barePort)], { stdio: ['ignore', 'pipe', 'inherit'] });
try {
  await waitHealthy(node);
  await pollUntil(() => fetch(`http://127.0.0.1:${barePort}/`).then((r) => r.ok), { what: 'bare server' });
  const value = Buffer.alloc(valueBytes, 'v');
  const kv = `127.0.0.1:${kvPort}`;
  // Preload so GETs hit existing keys.
  await preload(kv, KEYS, value);
  const results: Record<string, LoadResult[]> = { 'kv PUT': [], 'kv GET': [], 'bare PUT (ok)': [], 'bare GET (ok)': [] };
  const ms = seconds * 1000;
  for (let round = 0; round < rounds; round++) {
    results['kv PUT']!.push(await runLoad({ name: 'kv PUT', targets: [kv], concurrency, durationMs: ms,
      request: (w, i) => ({ method: 'PUT', path: `/kv/key-${(w * 7919 + i) % KEYS}`, body: value }) }));
    results['bare PUT (ok)']!.push(await runLoad({ name: 'bare PUT (ok)', targets: [`127.0.0.1:${barePort}`], concurrency, durationMs: ms,
      request: (w, i) => ({ method: 'PUT', path: `/kv/key-${(w * 7919 + i) % KEYS}`, body: value }) }));
    results['kv GET']!.push(await runLoad({ name: 'kv GET', targets: [kv], concurrency, durationMs: ms,
      request: (w, i) => ({ method: 'GET', path: `/kv/key-${(w * 7919 + i) % KEYS}` }) }));
    results['bare GET (ok)']!.push(await runLoad({ name: 'bare GET (ok)', targets: [`127.0.0.1:${barePort}`], concurrency, durationMs: ms,
      request: (w, i) => ({ method: 'GET', path: `/kv/key-${(w * 7919 + i) % KEYS}` }) }));
  }
  const med = (name: string): LoadResult => {
    const rs = results[name] as LoadResult[];
    return { name: `${name} (median of ${rs.length})`, requests: median(rs.map((r) => r.requests)), errors: rs.reduce((a, r) => a + r.errors, 0),
      seconds: median(rs.map((r) => r.seconds)), throughput: median(rs.map((r) => r.throughput)), p50ms: median(rs.map((r) => r.p50ms)), p99ms: median(rs.map((r) => r.p99ms)) };
  };
  process.stdout.write(`single node, ${concurrency} connections, ${seconds} s per run, ${rounds} rounds, ${valueBytes}-byte values\n`);
  for (const name of Object.keys(results)) process.stdout.write(`${formatResult(med(name))}\n`);
  const put = med('kv PUT').throughput / med('bare PUT (ok)').throughput;
  const get = med('kv GET').throughput / med('bare GET (ok)').throughput;
  process.stdout.write(`vs bare node:http: put ${put.toFixed(2)}x, get ${get.toFixed(2)}x\n`);
} finally {
  bare.kill('SIGTERM');
  await kill(node, 'SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
