/**
 * The cluster a chaos run starts for itself: `kv node` child processes, each with its
 * own data dir (and, with partitions, its own network namespace). n1 bootstraps, the
 * others join through it; a restart resumes from the data dir with the same flags.
 * During a run nodes can be added (a fresh `kv node --join`) and retired (stopped for
 * good once decommissioned), and a node can be put on a skewed clock (libfaketime),
 * which it keeps across later restarts, as a machine's clock outlives its processes.
 *
 * Every process is a direct child (`ip netns exec` execs the node in place, so the
 * pid is the node's), so SIGKILL, SIGSTOP and SIGCONT reach the node itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvError } from '../errors.ts';
import type { NetnsNetwork } from './netns.ts';
import type { SkewedClock } from './faketime.ts';

const KV_BIN = fileURLToPath(new URL('../../bin/kv.js', import.meta.url));
const SECOND = 1000;

export interface NodeSpec {
  id: string;
  /** HOST:PORT the node listens on and advertises. */
  addr: string;
  dataDir: string;
  /** Index into the netns network, when there is one. */
  index: number;
  /** Set once the node runs under libfaketime. */
  clock?: SkewedClock;
}

export type NodeState = 'up' | 'down' | 'paused';

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  /** Set when this side stops the process: any other exit is a crash. */
  stopping: boolean;
  /** The end of its stderr, where a crash leaves its reason. */
  stderrTail: string;
}

/** A node process that exited without being stopped: DESIGN §2.7 says a node never dies from input. */
export interface NodeCrash {
  id: string;
  /** Wall-clock time, to line up with the node logs. */
  at: string;
  code: number | null;
  signal: string | null;
  /** The error line of its stderr, if it left one. */
  reason: string;
}

/** Enough stderr to hold an uncaught error and the top of its stack. */
const STDERR_TAIL_BYTES = 4096;

export interface LocalClusterOptions {
  nodes: number;
  /** Addresses to listen on, one per node. */
  addrs: string[];
  root: string;
  secret: string;
  /** Extra node flags (fast failure detection etc.). */
  nodeArgs: string[];
  net?: NetnsNetwork;
}

export class LocalCluster {
  /** The nodes in play: started and not retired. */
  readonly specs: NodeSpec[] = [];
  /** Nodes stopped for good (decommissioned), kept for their logs. */
  readonly retired: NodeSpec[] = [];
  /** Every exit this side did not cause. */
  readonly crashes: NodeCrash[] = [];
  private readonly procs = new Map<string, Running>();
  private readonly states = new Map<string, NodeState>();
  private readonly logs = new Map<string, WriteStream>();

  /** Ids are never reused: a node that joins after a decommission gets a fresh one. */
  private nextIndex = 0;

  constructor(private readonly opts: LocalClusterOptions) {
    for (let i = 0; i < opts.nodes; i++) this.newSpec(opts.addrs[i] as string, i);
  }

  private newSpec(addr: string, index: number): NodeSpec {
    const id = `n${++this.nextIndex}`;
    const spec: NodeSpec = { id, addr, dataDir: join(this.opts.root, id), index };
    this.specs.push(spec);
    this.states.set(id, 'down');
    return spec;
  }

  addrs(): string[] {
    return this.specs.map((s) => s.addr);
  }

  spec(id: string): NodeSpec {
    const s = this.specs.find((x) => x.id === id);
    if (s === undefined) throw new KvError('KV_INVALID_ARGUMENT', `no node ${id}`);
    return s;
  }

  state(id: string): NodeState {
    return this.states.get(id) ?? 'down';
  }

  /** Start every node; resolves when each serves /health (joins are sequential). */
  async start(): Promise<void> {
    const seed = this.specs[0] as NodeSpec;
    for (const s of this.specs) {
      this.launch(s, s === seed ? ['--bootstrap'] : ['--join', seed.addr]);
      await this.waitHealthy(s.id, 60 * SECOND);
    }
  }

  /**
   * Start a fresh node that joins through the running members (`index`: its netns
   * index, when there is a network). Joining the membership and streaming its
   * partitions happen in the node, after this returns.
   */
  launchJoiner(addr: string, index: number): NodeSpec {
    const seeds = this.specs.filter((x) => this.state(x.id) === 'up').map((x) => x.addr);
    if (seeds.length === 0) throw new KvError('KV_UNAVAILABLE', 'no running node to join through');
    const s = this.newSpec(addr, index);
    this.launch(s, ['--join', seeds.join(',')]);
    return s;
  }

  /** Stop a node for good (it left the cluster): no restart, no faults, logs kept. */
  async retire(id: string): Promise<void> {
    const s = this.spec(id);
    await this.kill(id);
    this.specs.splice(this.specs.indexOf(s), 1);
    this.retired.push(s);
  }

  /** Kill a node and start it again at once on `clock` (and on it after any later restart). */
  async restartOnClock(id: string, clock: SkewedClock): Promise<void> {
    await this.kill(id);
    this.spec(id).clock = clock;
    this.restart(id);
  }

  private launch(s: NodeSpec, role: string[]): void {
    mkdirSync(s.dataDir, { recursive: true });
    const argv = [process.execPath, KV_BIN, 'node', '--id', s.id, '--listen', s.addr, '--data', s.dataDir, ...role, ...this.opts.nodeArgs];
    const cmd = this.opts.net ? [...this.opts.net.execPrefix(s.index), ...argv] : argv;
    const child = spawn(cmd[0] as string, cmd.slice(1), {
      // Chaos nodes listen on namespace addresses: no client tokens there, by explicit choice.
      env: { ...process.env, KV_SECRET: this.opts.secret, KV_AUTH: 'none', ...s.clock?.env() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = this.logs.get(s.id);
    if (log === undefined) this.logs.set(s.id, (log = createWriteStream(join(this.opts.root, `${s.id}.log`), { flags: 'a' })));
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const running: Running = { child, exited: Promise.resolve(), stopping: false, stderrTail: '' };
    child.stderr?.on('data', (b: Buffer) => { running.stderrTail = (running.stderrTail + b.toString()).slice(-STDERR_TAIL_BYTES); });
    running.exited = new Promise<void>((resolve) => child.once('exit', (code, signal) => {
      if (!running.stopping) {
        this.crashes.push({ id: s.id, at: new Date().toISOString(), code, signal, reason: crashReason(running.stderrTail) });
      }
      if (this.procs.get(s.id)?.child === child) {
        this.procs.delete(s.id);
        this.states.set(s.id, 'down');
      }
      resolve();
    }));
    child.once('error', () => undefined);
    this.procs.set(s.id, running);
    this.states.set(s.id, 'up');
  }

  async waitHealthy(id: string, timeoutMs: number): Promise<void> {
    const s = this.spec(id);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.procs.has(id)) throw new KvError('KV_UNAVAILABLE', `node ${id} exited while starting (see ${id}.log)`);
      try {
        const res = await fetch(`http://${s.addr}/health`, { signal: AbortSignal.timeout(2 * SECOND) });
        if (res.ok) return;
      } catch { /* not serving yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new KvError('KV_TIMEOUT', `node ${id} did not serve /health within ${timeoutMs} ms`);
  }

  async kill(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    p.stopping = true;
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** Resume a killed node from its data dir (a retired node stays stopped). */
  restart(id: string): void {
    if (this.procs.has(id) || !this.specs.some((s) => s.id === id)) return;
    this.launch(this.spec(id), []);
  }

  pause(id: string): boolean {
    const p = this.procs.get(id);
    if (p === undefined || this.states.get(id) !== 'up') return false;
    p.child.kill('SIGSTOP');
    this.states.set(id, 'paused');
    return true;
  }

  resume(id: string): void {
    const p = this.procs.get(id);
    if (p === undefined) return;
    p.child.kill('SIGCONT');
    this.states.set(id, 'up');
  }

  /** Kill every node (continuing paused ones first, so none is left stopped). */
  async stopAll(): Promise<void> {
    const all = [...this.procs.values()];
    for (const p of all) {
      p.stopping = true;
      p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    }
    await Promise.all(all.map((p) => p.exited));
    for (const log of this.logs.values()) log.end();
    this.logs.clear();
  }

  /** For exit handlers: no awaiting possible. */
  stopAllSync(): void {
    for (const p of this.procs.values()) {
      p.stopping = true;
      p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    }
  }
}

/** The first `Error: …` line of a crashed node's stderr, else its last line. */
function crashReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return (lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.at(-1) ?? '').slice(0, 300);
}
