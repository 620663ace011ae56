/**
 * Real `kv node` processes for integration tests: OS-chosen ports, private temp data
 * dirs, and cleanup of every process and dir (call `cleanup()` in an after hook; it
 * also runs on process exit as a last resort).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FatalPollError, pollUntil } from './poll.ts';

export const KV_BIN = fileURLToPath(new URL('../../bin/kv.js', import.meta.url));

export { freePort } from '../../lib/net/free-port.ts';

export interface KvRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr as they arrived. */
  all: string;
}

/**
 * Runs the `kv` CLI to its end (killed after `timeoutMs`); resolves with its exit code and
 * output, never rejects on a non-zero exit. $KV_TOKEN is cleared unless `env` sets it.
 */
export function runKv(args: readonly string[], o: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<KvRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KV_BIN, ...args], { cwd: o.cwd, env: { ...process.env, KV_TOKEN: '', ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const run: KvRun = { code: null, stdout: '', stderr: '', all: '' };
    child.stdout.on('data', (b: Buffer) => { run.stdout += b.toString(); run.all += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { run.stderr += b.toString(); run.all += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('exit', (code) => { clearTimeout(timer); run.code = code; resolve(run); });
  });
}

export interface NodeProc {
  id: string;
  addr: string;
  dataDir: string;
  child: ChildProcess;
  /** Everything the process printed (stdout and stderr). */
  output: () => string;
  exited: Promise<number | null>;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix = 'kv-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(d);
  return d;
}

export function removeDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
  dirs.delete(d);
}

export interface SpawnOptions {
  id: string;
  port: number;
  dataDir: string;
  args?: string[];
  env?: Record<string, string>;
}

export function spawnNode(o: SpawnOptions): NodeProc {
  const addr = `127.0.0.1:${o.port}`;
  const child = spawn(process.execPath, [KV_BIN, 'node', '--id', o.id, '--listen', addr, '--data', o.dataDir, ...(o.args ?? [])], {
    env: { ...process.env, KV_LOG_LEVEL: process.env['KV_TEST_LOG_LEVEL'] ?? 'warn', KV_SECRET: 'test-secret-0123456789', ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  const MAX_OUT = 1 << 20; // keep the last MiB: enough to debug, bounded for long runs
  const onData = (b: Buffer): void => { out = (out + b.toString()).slice(-MAX_OUT); };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { live.delete(child); resolve(code); }));
  return { id: o.id, addr, dataDir: o.dataDir, child, output: () => out, exited };
}

export async function waitHealthy(p: NodeProc, timeoutMs = 30_000): Promise<void> {
  try {
    await pollUntil(async () => {
      if (p.child.exitCode !== null) throw new FatalPollError(`node ${p.id} exited with ${p.child.exitCode}:\n${p.output().slice(-3000)}`);
      const res = await fetch(`http://${p.addr}/health`);
      return res.ok;
    }, { timeoutMs, what: `${p.id} healthy` });
  } catch (err) {
    if (err instanceof FatalPollError) throw err;
    throw new Error(`${(err as Error).message}; its last output:\n${p.output().slice(-3000)}`, { cause: err });
  }
}

export async function kill(p: NodeProc, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  await p.exited;
}

/** Kill every process these tests started and remove their dirs. */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...live].map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGKILL');
  })));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
