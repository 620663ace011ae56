/**
 * `npm run k6 -- SCRIPT [k6 run options]`: bundles one k6 script (mixed, hot-keys,
 * large-values, or a path) and runs it on the real k6 binary (K6, else PATH, else
 * ../shared/bin/k6) against the nodes in KV_NODES, by default `npm start`'s
 * 127.0.0.1:7001-7003. Exits with k6's exit code (99: a threshold was crossed).
 *
 *   npm run k6 -- mixed --vus 16 --duration 30s
 *   npm run k6 -- hot-keys -e KV_TOKEN="$(cat data/client.token)"
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { K6_SCRIPTS, bundleK6Script, findK6, k6Env, scriptPath } from './k6.ts';

const USAGE = `usage: npm run k6 -- <${K6_SCRIPTS.join('|')}|FILE.ts> [k6 run options]
  e.g. npm run k6 -- mixed --vus 16 --duration 30s
  settings: -e KV_NODES=HOST:PORT,... (default 127.0.0.1:7001-7003), -e KV_TOKEN=..., see k6/README.md`;

async function main(argv: string[]): Promise<number> {
  const [name, ...k6Args] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stderr.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const script = scriptPath(name);
  const k6 = findK6();
  if ('missing' in k6) {
    process.stderr.write(`k6: ${k6.missing}\n`);
    return 2;
  }
  const outDir = mkdtempSync(join(tmpdir(), 'kv-k6-'));
  try {
    const bundle = await bundleK6Script(script, outDir);
    process.stderr.write(`k6: ${k6.found} (from ${k6.from}) run ${k6Args.join(' ')} ${bundle}\n`);
    const child = spawn(k6.found, ['run', ...k6Args, bundle], { env: k6Env(), stdio: 'inherit' });
    // Ctrl-C reaches k6 from the terminal (same process group) and k6 stops the test
    // gracefully; stay alive meanwhile to remove the bundle. SIGTERM is passed on.
    const ignore = (): void => undefined;
    const forward = (): void => { child.kill('SIGTERM'); };
    process.on('SIGINT', ignore);
    process.on('SIGTERM', forward);
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, signal) => resolve(c ?? (signal === 'SIGINT' ? 130 : 1)));
    });
    process.off('SIGINT', ignore);
    process.off('SIGTERM', forward);
    return code;
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`k6: ${(err as Error)?.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
