/**
 * Running the k6 scripts of this directory on a real k6 binary. This file runs in Node
 * (for `npm run k6` and the tests), not in k6.
 *
 * The k6 at hand is v0.48, which runs neither TypeScript (native support came in 0.52+)
 * nor object spread, so each script is first bundled by esbuild into one ES2017 module,
 * with the `k6` and `k6/*` modules left for k6 to provide.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { basename, delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const K6_DIR = join(PROJECT_ROOT, 'k6');
/** The k6 binary kept beside the project on the development machines (see README). */
const SHARED_K6 = resolve(PROJECT_ROOT, '..', 'shared', 'bin', 'k6');

/** The scripts `npm run k6 -- NAME` knows by name. */
export const K6_SCRIPTS = ['mixed', 'hot-keys', 'large-values'] as const;

export type K6Lookup = { found: string; from: string } | { missing: string };

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The k6 binary: the K6 environment variable, else `k6` on PATH, else ../shared/bin/k6 from the project root. */
export function findK6(env: NodeJS.ProcessEnv = process.env): K6Lookup {
  const fromEnv = env['K6'];
  if (fromEnv !== undefined && fromEnv !== '') {
    return executable(fromEnv) ? { found: resolve(fromEnv), from: 'K6' } : { missing: `K6=${fromEnv} is not an executable file` };
  }
  for (const dir of (env['PATH'] ?? '').split(delimiter)) {
    if (dir !== '' && executable(join(dir, 'k6'))) return { found: join(dir, 'k6'), from: 'PATH' };
  }
  if (executable(SHARED_K6)) return { found: SHARED_K6, from: '../shared/bin/k6' };
  return { missing: `no k6 binary: K6 is not set, no k6 on PATH, none at ${SHARED_K6}` };
}

/** A script by name (`mixed`) or by path (`k6/mixed.ts`, `./my-test.ts`). */
export function scriptPath(nameOrPath: string): string {
  if ((K6_SCRIPTS as readonly string[]).includes(nameOrPath)) return join(K6_DIR, `${nameOrPath}.ts`);
  const file = resolve(nameOrPath);
  if (/\.(ts|js)$/.test(file) && existsSync(file)) return file;
  throw new Error(`unknown k6 script "${nameOrPath}": give one of ${K6_SCRIPTS.join(', ')} or the path of a .ts/.js file`);
}

/** Bundles a script for k6 0.48 into `outDir`; returns the bundle's path. */
export async function bundleK6Script(script: string, outDir: string): Promise<string> {
  const outfile = join(outDir, basename(script).replace(/\.(ts|js)$/, '.js'));
  await build({
    entryPoints: [script],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2017',
    external: ['k6', 'k6/*'],
    logLevel: 'silent',
  });
  return outfile;
}

/**
 * k6 reports anonymous usage to Grafana at each run unless told not to; the machines this
 * runs on have no way out, and a load test should not phone home anyway. A K6_NO_USAGE_REPORT
 * already set is kept.
 */
export function k6Env(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { K6_NO_USAGE_REPORT: 'true', ...env };
}

export interface K6Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr together, the last MiB of it. */
  output: string;
}

/** Runs `k6 ARGS` to completion, capturing its output; kills it (SIGKILL) after `timeoutMs`. */
export function runK6(binary: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<K6Run> {
  const MAX_OUTPUT = 1 << 20;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(binary, args, { env: k6Env(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const add = (b: Buffer): void => { output = (output + b.toString()).slice(-MAX_OUTPUT); };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, output });
    });
  });
}
