/**
 * The process supervisor behind `kv start`: it runs one child process per node, reports
 * each exit as `[n3] exited (SIGKILL)` (the signal name, or the exit code), restarts the
 * node after a delay that backs off while it keeps dying, and stops every child within a
 * bound: SIGTERM to all, SIGKILL to any still running when the bound passes.
 *
 * Each child gets a pipe as stdin whose write end only the supervisor holds and never
 * writes to. When the supervisor dies, even by SIGKILL, the kernel closes that end and a
 * child started with KV_EXIT_ON_STDIN_EOF=1 sees end-of-file and shuts down
 * (lib/cli/parent-watch.ts), so no node outlives its supervisor holding its port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { KvError } from '../errors.ts';
import { EXIT_ON_STDIN_EOF_ENV } from './parent-watch.ts';

const SECOND = 1000;

/** What to run for one node: built fresh for every (re)start, since a node's role can change. */
export interface NodeLaunch {
  argv: string[];
  env: NodeJS.ProcessEnv;
}

export interface RestartPolicy {
  /** Delay before the first restart after an exit; null leaves exited nodes down (`--no-restart`). */
  baseDelayMs: number | null;
  /** Longest delay the backoff reaches. */
  capMs: number;
  /** A node that stayed up this long has recovered: its next exit restarts after the base delay again. */
  stableUptimeMs: number;
}

/**
 * Defaults of the restart policy. Backoff cap 60 s: a node that cannot stay up is retried
 * once a minute, often enough to recover by itself once the cause goes away (a port freed,
 * a disk emptied), rarely enough that its error lines do not flood the terminal. Stable
 * after 30 s up: far longer than a node's start (about a second), so a crash loop is never
 * taken for recovery, yet short enough that an unrelated later crash is not punished.
 */
export const RESTART_BACKOFF_CAP_MS = 60 * SECOND;
export const RESTART_STABLE_UPTIME_MS = 30 * SECOND;
/** A stop request this soon after the first is the same Ctrl-C delivered twice, not a second one. */
const REPEAT_STOP_MIN_GAP_MS = 500;
/** With `--restart-delay 0` the backoff still grows from this step, so a crash loop cannot spin. */
const MIN_BACKOFF_STEP_MS = 1 * SECOND;

/**
 * Delay before restarting a node whose last `quickExits` restarts each died within the
 * stable uptime: the base delay, doubled per quick exit, capped (the cap never undercuts
 * a larger base delay).
 */
export function restartDelayMs(policy: RestartPolicy & { baseDelayMs: number }, quickExits: number): number {
  if (quickExits <= 0) return policy.baseDelayMs;
  const step = Math.max(policy.baseDelayMs, MIN_BACKOFF_STEP_MS);
  return Math.min(Math.max(policy.capMs, policy.baseDelayMs), step * 2 ** Math.min(quickExits, 30));
}

export interface SupervisorOptions {
  restart: RestartPolicy;
  /** SIGTERM to SIGKILL on stop. */
  shutdownBoundMs: number;
  /** One line of output (without newline): node log lines, exits, restarts. */
  print(line: string): void;
  /** Formats one line a node printed. */
  formatNodeLine(id: string, line: string): string;
}

interface Slot {
  id: string;
  launch: () => NodeLaunch;
  child: ChildProcess | undefined;
  startedAtMs: number;
  /** Started by a restart (not by `kv start` itself): its quick exit counts toward the backoff. */
  restarted: boolean;
  quickExits: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** Exit of the current child, for waitHealthy. */
  exited: Promise<void>;
}

export class Supervisor {
  private readonly slots = new Map<string, Slot>();
  private stopRequested = false;
  private stopRequestedAtMs = 0;
  private cleanStop = true;
  private killTimer: NodeJS.Timeout | undefined;
  private resolveDone!: (code: number) => void;
  /** Resolves with the exit code of `kv start` once no node runs and none will be restarted. */
  readonly done = new Promise<number>((resolve) => { this.resolveDone = resolve; });

  constructor(private readonly opts: SupervisorOptions) {}

  /** stop() was called: nodes are being (or have been) stopped and none will be restarted. */
  get stopping(): boolean {
    return this.stopRequested;
  }

  /** Start supervising a node: spawn it now and whenever it must be restarted. */
  add(id: string, launch: () => NodeLaunch): void {
    if (this.slots.has(id)) throw new Error(`node ${id} is already supervised`);
    const slot: Slot = { id, launch, child: undefined, startedAtMs: 0, restarted: false, quickExits: 0, restartTimer: undefined, exited: Promise.resolve() };
    this.slots.set(id, slot);
    this.spawn(slot);
  }

  pid(id: string): number | undefined {
    return this.slots.get(id)?.child?.pid;
  }

  /** Waits until node `id` answers /health, failing if it exits first or the deadline passes. */
  /** Polls `healthy` (default: GET http://addr/health answers 200) until it holds, the node exits or the time is up. */
  async waitHealthy(id: string, addr: string, timeoutMs: number, healthy?: () => Promise<boolean>): Promise<void> {
    const slot = this.slots.get(id);
    if (!slot?.child) throw new KvError('KV_UNAVAILABLE', `node ${id} is not running`);
    const child = slot.child;
    let gone = false;
    void slot.exited.then(() => { gone = true; });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (gone || child.exitCode !== null || child.signalCode !== null) {
        throw new KvError('KV_UNAVAILABLE', `node ${id} exited (${child.signalCode ?? child.exitCode}) before it served`);
      }
      try {
        if (healthy ? await healthy() : (await fetch(`http://${addr}/health`, { signal: AbortSignal.timeout(2 * SECOND) })).ok) return;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new KvError('KV_TIMEOUT', `node ${id} (${addr}) did not become healthy within ${timeoutMs / SECOND} s`);
  }

  /**
   * Stop every node: SIGTERM now, SIGKILL to those still running after the shutdown
   * bound. A second call (a second Ctrl-C) kills the remaining nodes at once.
   */
  stop(): void {
    if (this.stopRequested) {
      // One Ctrl-C can arrive twice (the terminal signals the whole process group, and
      // `npm start` may pass it on): only a later one is a second request.
      if (Date.now() - this.stopRequestedAtMs >= REPEAT_STOP_MIN_GAP_MS) this.killRemaining('second stop request');
      return;
    }
    this.stopRequested = true;
    this.stopRequestedAtMs = Date.now();
    for (const slot of this.slots.values()) {
      clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
    }
    const running = this.running();
    this.opts.print(`stopping the cluster: SIGTERM to ${running.length} node(s), SIGKILL after ${this.opts.shutdownBoundMs / SECOND} s`);
    for (const slot of running) slot.child?.kill('SIGTERM');
    this.killTimer = setTimeout(() => this.killRemaining(`still running ${this.opts.shutdownBoundMs / SECOND} s after SIGTERM`), this.opts.shutdownBoundMs);
    this.settleIfIdle();
  }

  private killRemaining(why: string): void {
    for (const slot of this.running()) {
      this.opts.print(`[${slot.id}] ${why}: SIGKILL`);
      this.cleanStop = false;
      slot.child?.kill('SIGKILL');
    }
  }

  private running(): Slot[] {
    return [...this.slots.values()].filter((s) => s.child !== undefined);
  }

  private spawn(slot: Slot): void {
    const { argv, env } = slot.launch();
    const child = spawn(process.execPath, argv, {
      env: { ...env, [EXIT_ON_STDIN_EOF_ENV]: '1' },
      // stdin: the parent-death pipe (never written); stdout/stderr: log lines to prefix.
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // Writing is never done, but the pipe reports EPIPE once the child is gone.
    child.stdin?.on('error', () => undefined);
    slot.child = child;
    slot.startedAtMs = Date.now();
    for (const stream of [child.stdout, child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => this.opts.print(this.opts.formatNodeLine(slot.id, line)));
    }
    let exited!: () => void;
    slot.exited = new Promise<void>((resolve) => { exited = resolve; });
    child.on('error', (err) => {
      // Only a failed spawn matters here (the process never started, so no 'close' follows).
      if (child.pid !== undefined) return;
      this.onExit(slot, child, null, null, err.message);
      exited();
    });
    // 'close' comes after the child's stdout and stderr are drained, so its last log
    // lines are printed before the exit line.
    child.once('close', (code, signal) => {
      this.onExit(slot, child, code, signal);
      exited();
    });
    if (child.pid !== undefined) this.opts.print(`[${slot.id}] started (pid ${child.pid})`);
  }

  private onExit(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, error?: string): void {
    if (slot.child !== child) return;
    slot.child = undefined;
    child.stdin?.destroy();
    this.opts.print(`[${slot.id}] exited (${error ?? signal ?? code})`);
    if (this.stopRequested) {
      if (code !== 0) this.cleanStop = false;
      this.settleIfIdle();
      return;
    }
    const base = this.opts.restart.baseDelayMs;
    if (base === null) {
      this.opts.print(`[${slot.id}] not restarted (--no-restart)`);
      if (this.running().length === 0) {
        this.opts.print('no node left running');
        this.resolveDone(1);
      }
      return;
    }
    const uptimeMs = Date.now() - slot.startedAtMs;
    slot.quickExits = slot.restarted && uptimeMs < this.opts.restart.stableUptimeMs ? slot.quickExits + 1 : 0;
    const delayMs = restartDelayMs({ ...this.opts.restart, baseDelayMs: base }, slot.quickExits);
    const backoff = slot.quickExits > 0 ? ` (backoff: ${slot.quickExits} quick exit(s) in a row)` : '';
    this.opts.print(`[${slot.id}] restarting in ${delayMs / SECOND} s${backoff}`);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopRequested) return;
      slot.restarted = true;
      this.spawn(slot);
    }, delayMs);
  }

  private settleIfIdle(): void {
    if (!this.stopRequested || this.running().length > 0) return;
    clearTimeout(this.killTimer);
    this.resolveDone(this.cleanStop ? 0 : 1);
  }
}
