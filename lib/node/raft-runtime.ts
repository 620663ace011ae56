/**
 * Drives the pure Raft core with real time, storage and transport:
 *   tick every `tickMs`; step validated peer messages; for each Ready: persist (synced)
 *   → send → apply → advance, strictly one Ready at a time.
 * Ticks are counted, not each woken for: the runtime sleeps until the tick at which the
 * core will act (RaftNode.ticksUntilDue: a campaign, a heartbeat, CheckQuorum) and ticks
 * the elapsed count at once, catching up before every message it steps. An idle follower
 * thus wakes for its leader's heartbeats only, instead of ten times a second.
 * Proposals resolve when their entry is applied locally (or reject if another entry
 * took its index, i.e. leadership was lost).
 */
import { performance } from 'node:perf_hooks';
import { KvError } from '../errors.ts';
import { seededRng } from '../core/rng.ts';
import { RaftNode } from '../core/raft/node.ts';
import { validateRaftMessage } from '../core/raft/validate.ts';
import type { ConfChange, Entry, PersistedState, RaftConfig, Ready, Snapshot } from '../core/raft/types.ts';
import type { RaftStore } from '../storage/raft-store.ts';
import type { Transport } from '../net/transport.ts';
import type { Logger } from './log.ts';

export interface RaftRuntimeOptions {
  id: string;
  transport: Transport;
  store: RaftStore;
  log: Logger;
  /** Tick length. Default 100 ms: with electionTicks 10 an election starts 1–2 s after the leader goes quiet. */
  tickMs?: number;
  electionTicks?: number;
  /**
   * Ticks between the leader's heartbeats. Default 3 (300 ms): at least three heartbeats
   * reach a follower inside the shortest election timeout (10 ticks), so one late or
   * dropped heartbeat never starts an election, while an idle cluster's leader sends a
   * third of the frames it would at every tick (each heartbeat is a frame out and a reply
   * in per member: at 9 members, 53 frames a second instead of 160). New entries and
   * commits are not held back by it: the leader sends them at once.
   */
  heartbeatTicks?: number;
  /** Applies one committed application entry (topology command). */
  apply: (data: unknown, index: number) => void;
  /** Installs a snapshot's application state. */
  restore: (data: unknown) => void;
  /** The application state to snapshot at the current applied index. */
  snapshotData: () => unknown;
  /** Entries kept after a snapshot before compacting again. Default 1000: the log stays tiny; a far-behind node gets a snapshot. */
  compactEvery?: number;
  /** Called after a persistence failure stopped Raft (the node should exit). */
  onFatal?: (err: unknown) => void;
  /** Deadline for a proposal to be applied. Default 10 s. */
  proposeTimeoutMs?: number;
  /**
   * Checks a peer snapshot's application data before the core may accept it (throws when it
   * is not a valid state): a snapshot the core took but the state machine could not install
   * would leave Raft's applied index ahead of the real state.
   */
  validateSnapshot?: (data: unknown) => void;
  /** A peer message refused here (sender mismatch, invalid snapshot): for the counter. */
  onRefused?: (reason: 'raft-from' | 'raft-snapshot', peer: string) => void;
}

/** See RaftRuntimeOptions.heartbeatTicks. */
const DEFAULT_HEARTBEAT_TICKS = 3;
/**
 * A wake-up (timer or message) this long after the planned one means the event loop was
 * blocked: one tick is counted, as a fixed-cadence timer would fire once after a stall,
 * rather than the whole time lost (the leader's heartbeats may sit unread behind it, and
 * a stalled leader's acks likewise). 500 ms, as SWIM's tickGapMaxMs.
 */
const STALL_MS = 500;
/** Timer slack: a wake-up within this of a tick boundary counts that tick (timers fire on whole ms). */
const TICK_SLACK_MS = 1;

interface Waiter {
  term: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

export class RaftRuntime {
  readonly core: RaftNode;
  private timer: NodeJS.Timeout | undefined;
  /** When the armed timer is due (performance.now() ms); Infinity when none is armed. */
  private timerAtMs = Infinity;
  /** The time the last counted tick stands for. */
  private lastTickMs = 0;
  private processing = false;
  private scheduled = false;
  private stopped = false;
  private readonly waiters = new Map<number, Waiter>();
  private readonly tickMs: number;
  private readonly electionTicks: number;
  private readonly compactEvery: number;
  private readonly proposeTimeoutMs: number;

  constructor(private readonly o: RaftRuntimeOptions) {
    this.tickMs = o.tickMs ?? 100;
    this.electionTicks = o.electionTicks ?? 10;
    this.compactEvery = o.compactEvery ?? 1000;
    this.proposeTimeoutMs = o.proposeTimeoutMs ?? 10_000;
    // The core is deterministic given its rng; a per-process seed spreads election timeouts.
    this.core = new RaftNode({ id: o.id, rng: seededRng((Math.random() * 2 ** 32) >>> 0), electionTicks: this.electionTicks,
      heartbeatTicks: o.heartbeatTicks ?? DEFAULT_HEARTBEAT_TICKS });
    o.transport.handle('raft', (from, payload) => {
      const m = validateRaftMessage(payload);
      // The envelope's sender is the authenticated peer; the message must speak for it alone,
      // or one member could step the core as any other (votes, a leader's term).
      if (m.from !== from || m.to !== o.id) {
        o.log.warn({ peer: from, claimed: m.from, to: m.to, type: m.type }, 'raft message refused: sender or recipient mismatch');
        o.onRefused?.('raft-from', from);
        return;
      }
      if (m.type === 'snapshot' && o.validateSnapshot) {
        try {
          o.validateSnapshot(m.snapshot.data);
        } catch (err) {
          o.log.error({ peer: from, index: m.snapshot.index, err: (err as Error).message }, 'raft snapshot refused: invalid data; keeping the current topology');
          o.onRefused?.('raft-snapshot', from);
          return;
        }
      }
      this.catchUp();
      this.core.step(m);
      this.schedule();
      this.arm();
    });
  }

  /** Resume from disk, or start a brand-new single-voter group when `bootstrap` is set. */
  async start(persisted: PersistedState, bootstrap: RaftConfig | undefined): Promise<void> {
    if (persisted.snapshot) this.o.restore(persisted.snapshot.data);
    const fresh = !persisted.hardState && !persisted.snapshot && persisted.entries.length === 0;
    if (!fresh) this.core.restore(persisted);
    else if (bootstrap) this.core.bootstrap(bootstrap);
    this.lastTickMs = performance.now();
    this.arm();
    this.schedule();
  }

  /** Counts the ticks elapsed since the last one counted (one only after a stall). */
  private catchUp(): void {
    const nowMs = performance.now();
    const due = Math.floor((nowMs - this.lastTickMs + TICK_SLACK_MS) / this.tickMs);
    if (due <= 0) return;
    if (nowMs - this.timerAtMs > STALL_MS) {
      this.core.tick();
      this.lastTickMs = nowMs;
      return;
    }
    // Bounded: the armed timer is at most electionTicks ahead of lastTickMs, and this is not a stall.
    for (let i = 0; i < due; i++) this.core.tick();
    this.lastTickMs += due * this.tickMs;
  }

  /**
   * Arms the timer for the tick the core will act at (at most electionTicks away), unless
   * one is armed for then or earlier: a timer that fires early only counts ticks and re-arms,
   * so a follower whose every heartbeat pushes its election back wakes about once per timeout.
   */
  private arm(): void {
    if (this.stopped) return;
    const ticks = Math.min(this.core.ticksUntilDue(), this.electionTicks);
    const atMs = this.lastTickMs + ticks * this.tickMs;
    if (this.timer !== undefined && this.timerAtMs <= atMs) return;
    clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, atMs - performance.now()));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.catchUp();
    this.timerAtMs = Infinity;
    this.schedule();
    this.arm();
  };

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.process();
    });
  }

  private async process(): Promise<void> {
    if (this.processing || this.stopped) return;
    this.processing = true;
    try {
      while (!this.stopped && this.core.hasReady()) {
        const rd = this.core.ready();
        await this.handleReady(rd);
        this.core.advance();
      }
    } catch (err) {
      // A failed sync write means we cannot promise anything we were about to send, and a
      // node with a frozen topology must not keep serving: stop Raft and let the process
      // exit so a supervisor restarts it from what is on disk (crash-only).
      this.o.log.fatal({ err }, 'raft persistence or snapshot install failed; stopping the node');
      this.stop();
      this.o.onFatal?.(err);
    } finally {
      this.processing = false;
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    await this.o.store.persist(rd);
    for (const m of rd.messages) this.o.transport.send(m.to, 'raft', m);
    if (rd.snapshot) {
      try {
        this.o.restore(rd.snapshot.data);
      } catch (err) {
        // The core's applied index has moved to the snapshot: going on with the old topology would
        // serve a state that no longer matches the log. Stop like a failed persist (crash-only):
        // a restart installs the snapshot from disk or fetches it again. (Peers' snapshots are
        // validated on arrival, so this is a bug or a local fault, not a hostile peer.)
        throw new KvError('KV_INTERNAL', `raft snapshot at index ${rd.snapshot.index} could not be installed`, { cause: err });
      }
    }
    for (const e of rd.committed) this.applyEntry(e);
    if (rd.committed.length > 0) await this.maybeCompact();
  }

  private applyEntry(e: Entry): void {
    if (e.kind === 'normal') {
      try {
        this.o.apply(e.data, e.index);
      } catch (err) {
        this.o.log.error({ err, index: e.index }, 'raft entry failed to apply; skipped on every node alike');
      }
    }
    const w = this.waiters.get(e.index);
    if (w) {
      this.waiters.delete(e.index);
      clearTimeout(w.timer);
      if (e.term === w.term) w.resolve();
      else w.reject(new KvError('KV_UNAVAILABLE', 'leadership changed before the proposal committed; retry', { outcome: 'failed' }));
    }
  }

  private async maybeCompact(): Promise<void> {
    const applied = this.core.appliedIndex;
    if (applied - this.core.snapshotIndex < this.compactEvery) return;
    const snap: Snapshot = this.core.compact(applied, this.o.snapshotData());
    await this.o.store.compact(snap);
  }

  /** Propose an application entry and wait until it is applied here. Leader only. */
  propose(data: unknown): Promise<void> {
    return this.wait(() => this.core.propose(data));
  }

  proposeConfChange(change: ConfChange): Promise<void> {
    return this.wait(() => this.core.proposeConfChange(change));
  }

  private wait(fn: () => number): Promise<void> {
    if (this.stopped) return Promise.reject(new KvError('KV_CLOSED', 'raft stopped'));
    this.catchUp();
    const term = this.core.term;
    const index = fn(); // throws KV_NOT_LEADER / KV_UNAVAILABLE synchronously
    this.schedule();
    this.arm();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(index);
        reject(new KvError('KV_TIMEOUT', `proposal ${index} not committed within ${this.proposeTimeoutMs} ms`, { outcome: 'unknown' }));
      }, this.proposeTimeoutMs);
      this.waiters.set(index, { term, resolve, reject, timer });
    });
  }

  /** Each peer's replication progress (the leader's view; the voter policy reads it). */
  progress(): { id: string; match: number }[] {
    return this.core.progress();
  }

  get lastIndex(): number {
    return this.core.lastIndex;
  }


  status(): { role: string; term: number; leader: string | null; commit: number; applied: number; voters: string[]; learners: string[] } {
    const c = this.core;
    const cfg = c.config;
    return { role: c.role, term: c.term, leader: c.leader, commit: c.commitIndex, applied: c.appliedIndex, voters: cfg.voters, learners: cfg.learners };
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const [, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new KvError('KV_CLOSED', 'raft stopped'));
    }
    this.waiters.clear();
  }
}
