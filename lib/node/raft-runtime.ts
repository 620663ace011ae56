/**
 * Drives the pure Raft core with real time, storage and transport:
 *   tick every `tickMs`; step validated peer messages; for each Ready: persist (synced)
 *   → send → apply → advance, strictly one Ready at a time.
 * Proposals resolve when their entry is applied locally (or reject if another entry
 * took its index, i.e. leadership was lost).
 */
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

interface Waiter {
  term: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

export class RaftRuntime {
  readonly core: RaftNode;
  private timer: NodeJS.Timeout | undefined;
  private processing = false;
  private scheduled = false;
  private stopped = false;
  private readonly waiters = new Map<number, Waiter>();
  private readonly tickMs: number;
  private readonly compactEvery: number;
  private readonly proposeTimeoutMs: number;

  constructor(private readonly o: RaftRuntimeOptions) {
    this.tickMs = o.tickMs ?? 100;
    this.compactEvery = o.compactEvery ?? 1000;
    this.proposeTimeoutMs = o.proposeTimeoutMs ?? 10_000;
    // The core is deterministic given its rng; a per-process seed spreads election timeouts.
    this.core = new RaftNode({ id: o.id, rng: seededRng((Math.random() * 2 ** 32) >>> 0), electionTicks: o.electionTicks ?? 10 });
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
      this.core.step(m);
      this.schedule();
    });
  }

  /** Resume from disk, or start a brand-new single-voter group when `bootstrap` is set. */
  async start(persisted: PersistedState, bootstrap: RaftConfig | undefined): Promise<void> {
    if (persisted.snapshot) this.o.restore(persisted.snapshot.data);
    const fresh = !persisted.hardState && !persisted.snapshot && persisted.entries.length === 0;
    if (!fresh) this.core.restore(persisted);
    else if (bootstrap) this.core.bootstrap(bootstrap);
    this.timer = setInterval(() => {
      this.core.tick();
      this.schedule();
    }, this.tickMs);
    this.schedule();
  }

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
    const term = this.core.term;
    const index = fn(); // throws KV_NOT_LEADER / KV_UNAVAILABLE synchronously
    this.schedule();
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
    if (this.timer) clearInterval(this.timer);
    for (const [, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new KvError('KV_CLOSED', 'raft stopped'));
    }
    this.waiters.clear();
  }
}
