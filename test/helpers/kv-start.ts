/**
 * A real `kv start` supervisor for integration tests: a run of consecutive OS-chosen free
 * ports for --base-port, a private temp --data dir, its output captured, and the pid of
 * every node process it started read from its `[nX] started (pid N)` lines. `cleanup()`
 * kills the supervisor and every node pid ever seen and removes the dir (call it in an
 * after hook; it also runs on process exit as a last resort).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkListenable } from '../../lib/net/free-port.ts';
import { FatalPollError, pollUntil } from './poll.ts';
import { KV_BIN, removeDir, tempDir } from './proc.ts';

/** `kv start` refuses base ports above this (room for 64 nodes). */
const MAX_BASE_PORT = 65535 - 64;
const MAX_OUTPUT_CHARS = 1 << 20;

function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return checkListenable(host, port).then(() => true, () => false);
}

/** Where the OS picks outgoing connections' local ports (Linux; its default when unreadable). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo as number, hi as number];
  } catch { /* not Linux */ }
  return [32768, 60999];
}

/** Runs are drawn from here up to the ephemeral range (or above it when that leaves no room). */
const RUN_FLOOR = 10_000;

/**
 * The first of `count` consecutive loopback ports that are free right now, outside the
 * range the OS takes outgoing connections' ports from: a `kv start` node binds its port
 * only after the nodes before it have connected to each other, and an outgoing connection
 * must not get there first.
 */
export async function freePortRun(count: number): Promise<number> {
  const [lo, hi] = ephemeralRange();
  const [from, to] = lo - count > RUN_FLOOR ? [RUN_FLOOR, lo - count] : [hi + 1, MAX_BASE_PORT];
  for (let attempt = 0; attempt < 200; attempt++) {
    const first = from + Math.floor(Math.random() * (to - from));
    let ok = true;
    for (let p = first; p < first + count && ok; p++) ok = await portFree(p);
    if (ok) return first;
  }
  throw new Error(`no run of ${count} consecutive free ports found in ${from}-${to}`);
}

/** A process is gone once it is not in /proc or is a zombie (exited, not yet reaped by whoever adopted it). */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

const live = new Set<KvStartProc>();
process.once('exit', () => {
  for (const s of live) s.killAllNow();
});

export interface KvStartOptions {
  nodes?: number;
  /** Extra `kv start` flags (--restart-delay, --no-restart, node options). */
  args?: string[];
  /** --base-port; default a free run from freePortRun(). */
  basePort?: number;
  /** Wait until every node serves and sees all as normal members (default true); else only for the banner. */
  converge?: boolean;
}

export class KvStartProc {
  readonly dataDir = tempDir('kv-start-');
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = '';
  private readonly everyPid = new Set<number>();

  private constructor(readonly nodes: number, readonly basePort: number, args: string[]) {
    this.child = spawn(process.execPath, [KV_BIN, 'start', '--nodes', String(nodes), '--base-port', String(basePort), '--data', this.dataDir, ...args], {
      env: { ...process.env, KV_LOG_LEVEL: process.env['KV_TEST_LOG_LEVEL'] ?? 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this);
    const reader = (): ((b: Buffer) => void) => {
      let partial = '';
      return (b: Buffer): void => {
        const text = b.toString();
        this.out = (this.out + text).slice(-MAX_OUTPUT_CHARS);
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          const m = /^\[n\d+\] started \(pid (\d+)\)$/.exec(line);
          if (m) this.everyPid.add(Number(m[1]));
        }
      };
    };
    this.child.stdout?.on('data', reader());
    this.child.stderr?.on('data', reader());
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts `kv start` and waits until every node serves and sees all of them as normal members. */
  static async start(o: KvStartOptions = {}): Promise<KvStartProc> {
    const nodes = o.nodes ?? 3;
    const s = new KvStartProc(nodes, o.basePort ?? await freePortRun(nodes), o.args ?? []);
    try {
      await s.waitForLine(new RegExp(`^local cluster of ${nodes} node\\(s\\)`), 90_000);
      if (o.converge ?? true) await s.waitConverged(90_000);
    } catch (err) {
      await s.cleanup();
      throw err;
    }
    return s;
  }

  id(i: number): string {
    return `n${i}`;
  }

  addr(id: string): string {
    return `127.0.0.1:${this.basePort + Number(id.slice(1)) - 1}`;
  }

  output(): string {
    return this.out;
  }

  /** Authorization for a cluster that has tokens (`<data>/admin.token`, `<data>/client.token`); none otherwise. */
  headers(role: 'admin' | 'client' = 'admin'): Record<string, string> {
    const file = join(this.dataDir, `${role}.token`);
    return existsSync(file) ? { authorization: `Bearer ${readFileSync(file, 'utf8').trim()}` } : {};
  }

  /** The pid of the current process of each node, from the latest `[nX] started (pid N)` line. */
  pids(): Map<string, number> {
    const m = new Map<string, number>();
    for (const x of this.out.matchAll(/^\[(n\d+)\] started \(pid (\d+)\)$/gm)) m.set(x[1] as string, Number(x[2]));
    return m;
  }

  pid(id: string): number {
    const p = this.pids().get(id);
    if (p === undefined) throw new Error(`no pid seen for ${id}`);
    return p;
  }

  /** Every node pid this supervisor ever reported. */
  allPids(): number[] {
    return [...this.everyPid];
  }

  /** Polls the output for a line matching `re` (multiline), returning the match. */
  async waitForLine(re: RegExp, timeoutMs = 60_000, from = 0): Promise<RegExpMatchArray> {
    const flags = re.flags.includes('m') ? re.flags : `${re.flags}m`;
    const rx = new RegExp(re.source, flags);
    return pollUntil(() => {
      const m = this.out.slice(from).match(rx);
      if (m) return m;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new FatalPollError(`kv start exited (${this.child.signalCode ?? this.child.exitCode}) before printing ${re}:\n${this.out.slice(-4000)}`);
      }
      return undefined;
    }, { timeoutMs, intervalMs: 100, what: `kv start to print ${re} (output:\n${this.out.slice(-2000)})` });
  }

  async json<T>(id: string, path: string): Promise<{ status: number; body: T }> {
    const res = await fetch(`http://${this.addr(id)}${path}`, { headers: this.headers(), signal: AbortSignal.timeout(3000) });
    return { status: res.status, body: (await res.json()) as T };
  }

  /** Every node serves /health and lists all nodes as normal members at one epoch. */
  async waitConverged(timeoutMs = 90_000): Promise<void> {
    const ids = Array.from({ length: this.nodes }, (_, k) => this.id(k + 1));
    try {
      await pollUntil(async () => {
        const views = await Promise.all(ids.map(async (id) => {
          const { status, body } = await this.json<{ epoch: number; members: { state: string; liveness: string }[] }>(id, '/cluster');
          return status === 200 ? body : undefined;
        }));
        const epoch = views[0]?.epoch;
        return views.every((v) => v !== undefined && v.epoch === epoch &&
          v.members.filter((m) => m.state === 'normal' && m.liveness === 'alive').length === this.nodes);
      }, { timeoutMs, intervalMs: 250, what: `${this.nodes} normal, alive members on every node` });
    } catch (err) {
      throw new Error(`${(err as Error).message}\nkv start output (last 4,000 characters):\n${this.out.slice(-4000)}`);
    }
  }

  /** Waits until every listed pid is gone; returns the pids still there at the deadline (none on success). */
  async waitPidsGone(pids: number[], timeoutMs: number): Promise<number[]> {
    try {
      await pollUntil(() => pids.every(processGone), { timeoutMs, intervalMs: 100, what: 'node processes gone' });
      return [];
    } catch {
      return pids.filter((p) => !processGone(p));
    }
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  killAllNow(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    for (const pid of this.everyPid) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }

  /** Kill the supervisor and every node it ever started, wait for them, remove the data dir. */
  async cleanup(): Promise<void> {
    this.killAllNow();
    await this.exited;
    await this.waitPidsGone(this.allPids(), 10_000);
    removeDir(this.dataDir);
    live.delete(this);
  }
}
