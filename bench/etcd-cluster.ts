/**
 * A throwaway etcd cluster on loopback for bench/etcd.ts: `size` members with
 * OS-chosen client and peer ports and private temp data dirs. `stop()` kills every
 * member and removes the dirs; the same cleanup runs on process exit and on
 * SIGINT/SIGTERM/SIGHUP, so an interrupted benchmark leaves nothing behind. (A SIGKILL
 * of the benchmark itself cannot be caught: its etcd members then outlive it.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/proc.ts';
import { requestOnce } from './load.ts';
import { pollUntil } from '../test/helpers/poll.ts';

export interface EtcdMember {
  name: string;
  /** HOST:PORT of the client URL, which also serves the v3 HTTP/JSON gateway. */
  clientAddr: string;
  peerAddr: string;
  dataDir: string;
  child: ChildProcess;
  output: () => string;
}

export interface EtcdCluster {
  members: EtcdMember[];
  clientAddrs: string[];
  stop: () => Promise<void>;
}

export interface EtcdClusterOptions {
  size?: number;
  /** The etcd binary. Default: `etcd` on PATH. */
  bin?: string;
  /** Parent of the private data dirs. Default: os.tmpdir(). */
  dataRoot?: string;
  /** Extra etcd flags for every member. */
  args?: string[];
  /**
   * PEM files: clients reach the members over HTTPS (server certificate `cert`/`key`), and
   * members talk to each other over mutual TLS with certificates of the CA `ca`, as kv's
   * nodes do with --tls-*. Client certificates are not asked for.
   */
  tls?: { cert: string; key: string; ca: string };
  startTimeoutMs?: number;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let hooked = false;

function cleanupSync(): void {
  for (const c of live) c.kill('SIGKILL');
  live.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/**
 * Signals would otherwise end the process without running 'exit' handlers; exiting
 * through process.exit runs them, including test/helpers/proc.ts's cleanup of kv nodes.
 * Idempotent; startEtcdCluster calls it, and a caller with other children to clean up
 * calls it before starting them.
 */
export function cleanupOnSignals(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', cleanupSync);
  const codes: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
  for (const [sig, n] of Object.entries(codes) as [NodeJS.Signals, number][]) {
    process.once(sig, () => {
      cleanupSync();
      process.exit(128 + n);
    });
  }
}

/** etcd reads ETCD_* variables as flags; a stray one from the caller's shell would reshape the cluster. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
}

async function stopMembers(members: EtcdMember[], root: string): Promise<void> {
  await Promise.all(members.map(async (m) => {
    if (m.child.exitCode === null && m.child.signalCode === null) {
      const exited = new Promise<void>((resolve) => m.child.once('exit', () => resolve()));
      m.child.kill('SIGKILL');
      await exited;
    }
    live.delete(m.child);
  }));
  rmSync(root, { recursive: true, force: true });
  dirs.delete(root);
}

async function tryStart(o: Required<Omit<EtcdClusterOptions, 'dataRoot' | 'args' | 'tls'>> & EtcdClusterOptions): Promise<EtcdCluster> {
  const root = mkdtempSync(join(o.dataRoot ?? tmpdir(), 'kv-bench-etcd-'));
  dirs.add(root);
  const spec: { name: string; client: number; peer: number }[] = [];
  for (let i = 1; i <= o.size; i++) spec.push({ name: `e${i}`, client: await freePort(), peer: await freePort() });
  const scheme = o.tls ? 'https' : 'http';
  const tlsArgs = o.tls ? ['--cert-file', o.tls.cert, '--key-file', o.tls.key,
    '--peer-cert-file', o.tls.cert, '--peer-key-file', o.tls.key, '--peer-trusted-ca-file', o.tls.ca, '--peer-client-cert-auth'] : [];
  const loadTls = o.tls ? { ca: readFileSync(o.tls.ca) } : undefined;
  const initialCluster = spec.map((s) => `${s.name}=${scheme}://127.0.0.1:${s.peer}`).join(',');
  const token = `kv-bench-${process.pid}-${Date.now()}`;
  const members: EtcdMember[] = spec.map((s) => {
    const dataDir = join(root, s.name);
    const client = `${scheme}://127.0.0.1:${s.client}`;
    const peer = `${scheme}://127.0.0.1:${s.peer}`;
    const child = spawn(o.bin, [
      '--name', s.name, '--data-dir', dataDir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
      '--logger', 'zap', '--log-level', 'warn', '--log-outputs', 'stderr',
      ...tlsArgs, ...(o.args ?? []),
    ], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let out = '';
    const MAX_OUT = 64 * 1024; // the tail is what explains a failed start
    const onData = (b: Buffer): void => { out = (out + b.toString()).slice(-MAX_OUT); };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (err) => { out += `\nspawn error: ${err.message}`; });
    child.once('exit', () => live.delete(child));
    return { name: s.name, clientAddr: `127.0.0.1:${s.client}`, peerAddr: `127.0.0.1:${s.peer}`, dataDir, child, output: () => out };
  });
  try {
    // /health answers true only once the member sees a leader and can serve.
    await pollUntil(async () => {
      for (const m of members) {
        if (m.child.exitCode !== null || m.child.signalCode !== null) {
          throw new EtcdExited(`etcd ${m.name} exited (${m.child.exitCode ?? m.child.signalCode}):\n${m.output().slice(-3000)}`);
        }
      }
      const healthy = await Promise.all(members.map(async (m) => {
        const res = await requestOnce(m.clientAddr, { method: 'GET', path: '/health' }, loadTls);
        const body = JSON.parse(res.body.toString()) as { health?: string };
        return res.status === 200 && body.health === 'true';
      }));
      return healthy.every(Boolean);
    }, { timeoutMs: o.startTimeoutMs, intervalMs: 100, what: `${o.size} etcd members healthy` });
  } catch (err) {
    await stopMembers(members, root);
    throw err;
  }
  return { members, clientAddrs: members.map((m) => m.clientAddr), stop: () => stopMembers(members, root) };
}

class EtcdExited extends Error {}

export async function startEtcdCluster(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  cleanupOnSignals();
  const o = { size: 3, bin: 'etcd', startTimeoutMs: 30_000, ...opts };
  // freePort() closes the port before etcd binds it, so another process can take it in
  // between; a member dying at start (typically "address already in use") gets a fresh
  // set of ports, a bounded number of times.
  const ATTEMPTS = 3;
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryStart(o);
    } catch (err) {
      if (!(err instanceof EtcdExited) || attempt >= ATTEMPTS) throw err;
    }
  }
}
