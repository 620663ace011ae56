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
  await pollUntil(async () => {
    if (p.child.exitCode !== null) throw new FatalPollError(`node ${p.id} exited with ${p.child.exitCode}:\n${p.output().slice(-3000)}`);
    const res = await fetch(`http://${p.addr}/health`);
    return res.ok;
  }, { timeoutMs, what: `${p.id} healthy` });
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
