/**
 * Merkle anti-entropy and data movement (DESIGN.md §9), the runtime around the pure
 * exchange in lib/core/merkle-exchange.ts:
 *
 * - exchange(p, peer): one initiator-driven exchange of partition p; the initiator
 *   moves every record both ways (push: ae.push, pull: ae.pull), the responder only
 *   answers. Newer-version-wins at the receiver keeps moves safe under concurrent writes.
 * - A scheduler walks this node's partitions (current or future owner) and exchanges
 *   with each other replica, one exchange at a time, spread over antiEntropyIntervalMs,
 *   slowing down while the event loop lags.
 * - Join / leave: the same exchange pulls a joining node's partitions from the current
 *   owners, and pushes a leaving node's partitions to their future owners.
 * - Hand-off: a partition this node no longer owns is dropped only after every current
 *   owner has confirmed holding it in an exchange at the new epoch (pushing what only this
 *   node had); a drop that fails is retried. Past half the tombstone grace a hand-off gives
 *   up pushing and drops (a copy that old could bring back deletes purged meanwhile), and
 *   tombstone GC waits that long after a partition changed owners.
 * - Tombstone GC (guarantee 5): the first replica of a partition lists tombstones past
 *   their grace period, exchanges with every other replica, and only if all of those
 *   exchanges succeeded asks every replica to purge exactly those (key, version) pairs.
 *   A record past its TTL counts as a tombstone of the same version, with the grace
 *   counted from its expiry: it reads as absent, the Merkle leaf (key, version) is the
 *   same on every replica, and it is purged the same way.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { Counter, Gauge, Histogram } from 'prom-client';
import { KvError } from '../errors.ts';
import { MerkleExchange, validateMerkleMessage, encodedSize, type MerkleEntry, type MerkleMessage } from '../core/merkle-exchange.ts';
import { parseVersion, type Version } from '../core/hlc.ts';
import { BASE_HISTORY_TICKS, lagBeyondInterval, peerLagInOwnTerms, StreamPace, STREAM_LAG_REPORT_MAX_MS, STREAM_PACE_DEFAULTS } from '../core/stream-pace.ts';
import { partitionOf, replicasOf } from '../core/partitioner.ts';
import type { Topology } from '../core/topology.ts';
import { recordToWire, type StoredRecord } from '../storage/record.ts';
import { dataKey, type RecordStore } from '../storage/record-store.ts';
import type { MerkleIndex } from '../storage/merkle-index.ts';
import { SUBLEVELS } from '../storage/backend.ts';
import type { Transport } from '../net/transport.ts';
import type { Metrics } from '../api/metrics.ts';
import { validateKey, validateWireRecord } from './replica.ts';
import type { Logger } from './log.ts';
import type { Operation } from './operations.ts';
import type { VersionGuard, VersionSource } from './peer-guard.ts';

/** Responder sessions open at once; an exchange holds one per partition pair. 256 bounds memory. */
const MAX_SESSIONS = 256;
/** A responder session idle this long is dropped (its initiator died or gave up). */
const SESSION_IDLE_MS = 30_000;
/** Keys per ae.pull request and records per ae.push/ae.pull batch at most. */
const MOVE_BATCH = 256;
/** Record bytes per ae.push / ae.pull answer at most (one record always goes, and a record
 *  is ≤ maxValueBytes + key): half the 2 MiB frame limit leaves room for the envelope. */
const MOVE_BATCH_BYTES = 1024 * 1024;
/** Deadline of one anti-entropy request. */
const REQUEST_TIMEOUT_MS = 10_000;
/**
 * p99 event-loop lag in ms of a histogram sampling every `intervalMs`: a sample is the whole
 * time between two wake-ups (an idle loop records about the interval), so the lag is what the
 * loop added to it.
 */
function lagMs(h: { count: number; percentile(p: number): number }, intervalMs: number): number {
  return h.count > 0 ? lagBeyondInterval(h.percentile(99) / 1e6, intervalMs) : 0;
}

/** Event-loop lag (p99) above which the scheduler halves its pace. */
const LAG_BACKOFF_MS = 100;
/** Records per `ae.scan` answer and `ae.load` request at most (and at most a page's bytes): one page stays one frame. */
const SCAN_BATCH_RECORDS = 4096;
/**
 * Streaming's adaptive window (lib/core/stream-pace.ts): the floor, 2, keeps a topology change
 * moving however busy the cluster is; it starts at 8 (the fixed figure before the window
 * adapted) and grows by one partition per quiet tick up to the configured ceiling.
 */
const STREAM_MIN_WINDOW = 2;
const STREAM_INITIAL_WINDOW = 8;
/** Longest pause between two pages, once the window is at its floor and the lag still above target. */
const STREAM_PAUSE_MAX_MS = 200;
/** One pace observation per tick: long enough for a p99 over a few hundred loop turns. */
const STREAM_TICK_MS = 250;
/** Lag sampling while streaming: 12 samples per pace tick, enough for its p99 (the max of them). */
const LAG_FAST_SAMPLE_MS = 20;
/** Lag sampling otherwise: every sample wakes an idle event loop (at 20 ms that alone was about
 *  0.5 % of a core per node); 250 ms still gives the walk's back-off and a new stream's base lag. */
const LAG_IDLE_SAMPLE_MS = 250;
/** Sampling stays fast this long after the last page served to a streaming peer. */
const LAG_FAST_HOLD_MS = 2000;
/** Ticks of this node's own lag a new stream's base lag is the lowest of (lib/core/stream-pace.ts): 10 s. */
const STREAM_SEED_TICKS = 40;
/** Bytes of records per streaming page (`ae.scan` answer, `ae.load` request) at most; one record
 *  always goes. Each partition in flight holds at most two pages (one applied, one on its way):
 *  512 KiB × 2 × 32 partitions = 32 MiB in flight at the default ceiling (streamMaxPartitions). */
const STREAM_PAGE_BYTES = 512 * 1024;
/** A repair walk is unpaced, but pauses this long after a partition while the event loop lags. */
const REPAIR_LAG_PAUSE_MS = 20;
/** `ae.sync` requests (exchanges run for a removenode orchestrator) served at once. */
const MAX_SYNC_SERVED = 4;
/** Tombstones purged per partition per GC round (bounds one purge request). */
const PURGE_BATCH = 1024;
/** A hand-off may push for this share of the tombstone grace after the change; GC of the
 *  partition waits the same time plus HANDOFF_GC_MARGIN_MS (clocks of nodes differ, walks take time). */
const HANDOFF_GRACE_SHARE = 0.5;
const HANDOFF_GC_MARGIN_MS = 60_000;
/** Meta-sublevel key of the persisted hand-offs. */
const HANDOFFS_KEY = 'handoffs';

export interface AntiEntropyOptions {
  selfId: string;
  store: RecordStore;
  index: MerkleIndex;
  transport: Transport;
  metrics: Metrics;
  log: Logger;
  topology: () => Topology;
  isAlive: (id: string) => boolean;
  /** Refuses peers whose epoch predates a change of the partition's owners (KV_STALE_EPOCH). */
  fence?: { checkPartition(partition: number, epoch: number): void; check(key: string, epoch: number): void; lastChangeMs(partition: number): number };
  intervalMs: number;
  tombstoneGraceMs: number;
  maxKeyBytes: number;
  maxValueBytes: number;
  /** Bounds every record version a peer pushes or answers (kv_versions_refused_total). */
  versions?: VersionGuard;
  /**
   * The default write quorum W. Streaming for a topology change exchanges each partition with
   * at least N - W + 1 of its owners, so every write acknowledged by W of them is among them.
   */
  writeQuorum?: number;
  /** Streaming's ceiling of partitions in flight (`streamMaxPartitions`; STREAM_PACE_DEFAULTS). */
  streamMaxPartitions?: number;
  /** Streaming's p99 event-loop lag target in ms (`streamLagTargetMs`; STREAM_PACE_DEFAULTS). */
  streamLagTargetMs?: number;
  now?: () => number;
}

interface Session { ex: MerkleExchange; touched: number }

/** Outcomes after which both replicas are known to hold the same records. */
const GOOD_OUTCOMES: ReadonlySet<string> = new Set(['in-sync', 'converged', 'repaired']);

const handoffPackr = new Packr({ useRecords: false });

export interface ExchangeResult { outcome: string; pushed: number; pulled: number; bytes: number }

export class AntiEntropy {
  private readonly sessions = new Map<string, Session>();
  /** Exchange ids: a random prefix per process (a restart never reuses a responder's open
   *  session) and a counter; responders key sessions by sender and id. */
  private readonly sidPrefix = randomBytes(4).toString('hex');
  private sidSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private walking = false;
  /** Event-loop lag, sampled every LAG_FAST_SAMPLE_MS while streaming runs here or pages are served
   *  to a streaming peer, else every LAG_IDLE_SAMPLE_MS (each sample wakes the loop). */
  private lagSampler = monitorEventLoopDelay({ resolution: LAG_IDLE_SAMPLE_MS });
  private lagFast = false;
  /** The sampler's interval: a sample is the whole time between two wake-ups (lagMs). */
  private lagIntervalMs = LAG_IDLE_SAMPLE_MS;
  /** When this node last answered a streaming page (its lag travels with the answer). */
  private servedAtMs = -Infinity;
  /** Highest tick lag since the walk last looked (its back-off). */
  private walkLagMs = 0;
  private readonly now: () => number;
  private readonly exchanges: Counter<'outcome'>;
  private readonly moved: Counter<'direction'>;
  private readonly bytes: Counter;
  private readonly purged: Counter;
  private readonly walks: Counter;
  private readonly handoffsDone: Counter<'result'>;
  private readonly streamWindow: Gauge;
  private readonly streamLagSeen: Gauge;
  private readonly streamThreshold: Gauge;
  private readonly streamExchange: Histogram<'method'>;
  /** Partitions held here but no longer owned → local wall ms when this node lost them. Persisted. */
  private readonly handoffs = new Map<number, number>();
  private handoffsSaving: Promise<void> = Promise.resolve();
  private handoffRound: Promise<void> | undefined;
  /** Progress of the current walk, for /metrics and logs. */
  progress = { walk: 0, partitionsDone: 0, partitionsTotal: 0 };
  /** Wall-clock ms when the last walk over every partition completed (operators read its age). */
  lastWalkDoneMs: number | null = null;
  /** Streaming's adaptive window and pause, observed once per STREAM_TICK_MS while a stream runs;
   *  a new one (at STREAM_INITIAL_WINDOW) for a stream that starts while none runs. */
  private pace: StreamPace;
  private paceTimer: NodeJS.Timeout | undefined;
  /** p99 event-loop lag (ms) of the last completed tick; peers read it in page answers. */
  private lastLagMs = 0;
  /** This node's lag over the last BASE_HISTORY_TICKS ticks (oldest first): a new stream's base lag is the
   *  minimum of the last STREAM_SEED_TICKS; the minimum of all is the base lag reported to streaming peers. */
  private readonly recentLags: number[] = [];
  /** min(recentLags), sent with `lag` in page answers (`baseLag`) so peers measure this node's lag against it. */
  private baseLagMs = 0;
  /** Highest lag peers reported during the current tick. */
  private peerLagMs = 0;
  /** Partitions being streamed now, and the streams waiting for the window to admit one. */
  private streamActive = 0;
  private streamsRunning = 0;
  private readonly paceWaiters: Array<() => void> = [];

  constructor(private readonly o: AntiEntropyOptions) {
    this.now = o.now ?? Date.now;
    this.pace = this.freshPace();
    const r = o.metrics.registry;
    this.exchanges = new Counter({ name: 'kv_ae_exchanges_total', help: 'Anti-entropy exchanges started here, by outcome', labelNames: ['outcome'] as const, registers: [r] });
    this.moved = new Counter({ name: 'kv_ae_keys_repaired_total', help: 'Records moved by anti-entropy, by direction', labelNames: ['direction'] as const, registers: [r] });
    this.bytes = new Counter({ name: 'kv_ae_tree_bytes_total', help: 'Merkle exchange message bytes sent and received by initiated exchanges', registers: [r] });
    this.purged = new Counter({ name: 'kv_ae_tombstones_purged_total', help: 'Tombstones purged after every replica held them', registers: [r] });
    this.walks = new Counter({ name: 'kv_ae_walks_total', help: 'Completed walks over this node\'s partitions', registers: [r] });
    this.streamWindow = new Gauge({ name: 'kv_stream_window_partitions', help: 'Streaming\'s adaptive window: partitions it may move at once (0 while no stream runs here)', registers: [r] });
    this.streamLagSeen = new Gauge({ name: 'kv_stream_lag_seconds', help: 'The p99 event-loop lag streaming observed last (this node and its streaming peers)', registers: [r] });
    this.streamThreshold = new Gauge({ name: 'kv_stream_lag_threshold_seconds', help: 'Lag above which streaming\'s window halves: streamLagTargetMs, or twice the base lag if higher', registers: [r] });
    this.streamExchange = new Histogram({ name: 'kv_stream_exchange_seconds', help: 'One partition exchanged with one peer by a stream (join, leave, replace) that succeeded, by method: bulk (a page at a time into or from a replica holding nothing or under half of the other side\'s records) or merkle',
      labelNames: ['method'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10], registers: [r] });
    this.handoffsDone = new Counter({ name: 'kv_ae_handoffs_total', help: 'Partitions this node stopped owning and dropped: confirmed by every new owner, or expired', labelNames: ['result'] as const, registers: [r] });
    const t = o.transport;
    t.handle('ae.msg', (from, payload, env) => this.onMessage(from, payload, env.epoch));
    t.handle('ae.pull', (_from, payload, env) => this.onPull(payload, env.epoch));
    t.handle('ae.push', (_from, payload, env) => this.onPush(payload, env.epoch));
    t.handle('ae.purge', (from, payload, env) => this.onPurge(from, payload, env.epoch));
    t.handle('ae.sync', (_from, payload) => this.onSync(payload));
    t.handle('ae.scan', (_from, payload, env) => this.onScan(payload, env.epoch));
    t.handle('ae.load', (_from, payload, env) => this.onLoad(payload, env.epoch));
    t.handle('ae.count', (_from, payload) => this.onCount(payload));
  }

  /** Load the hand-offs a previous run left unfinished (before start). */
  async open(): Promise<void> {
    const buf = await this.o.store.backend.get(SUBLEVELS.meta, HANDOFFS_KEY);
    if (buf === undefined) return;
    const raw = handoffPackr.unpack(buf) as unknown;
    if (!Array.isArray(raw)) return;
    for (const e of raw) {
      if (Array.isArray(e) && Number.isInteger(e[0]) && e[0] >= 0 && e[0] < this.o.store.partitions && typeof e[1] === 'number') this.handoffs.set(e[0], e[1]);
    }
  }

  private saveHandoffs(): Promise<void> {
    const value = handoffPackr.pack([...this.handoffs]);
    this.handoffsSaving = this.handoffsSaving.then(() => this.o.store.backend.batch([{ type: 'put', sub: SUBLEVELS.meta, key: HANDOFFS_KEY, value }], true))
      .catch((err: unknown) => this.o.log.warn({ err }, 'saving hand-offs failed; retried at the next change'));
    return this.handoffsSaving;
  }

  /** Partitions waiting for their new owners to confirm before this node drops them. */
  pendingHandoffs(): number[] {
    return [...this.handoffs.keys()].sort((a, b) => a - b);
  }

  start(): void {
    this.lagSampler.enable();
    this.timer = setTimeout(() => this.scheduleNext(), Math.min(1000, this.o.intervalMs));
    this.paceTimer = setInterval(() => this.paceTick(), STREAM_TICK_MS);
    this.paceTimer.unref();
  }

  /**
   * Every STREAM_TICK_MS: this node's lag over the tick becomes `lastLagMs` (sent to streaming
   * peers in page answers); while a stream runs here, the pace observes it and what the peers
   * reported, and streams waiting for the window try again.
   */
  private paceTick(): void {
    const sampled = this.lagSampler.count > 0;
    this.lastLagMs = lagMs(this.lagSampler, this.lagIntervalMs);
    this.lagSampler.reset();
    this.walkLagMs = Math.max(this.walkLagMs, this.lastLagMs);
    // A tick without a sample (idle sampling is slower than the tick) says nothing of the base lag.
    if (sampled) {
      if (this.recentLags.push(this.lastLagMs) > BASE_HISTORY_TICKS) this.recentLags.shift();
      this.baseLagMs = Math.round(Math.min(...this.recentLags));
    }
    this.sampleLag(this.streamsRunning > 0 || this.now() - this.servedAtMs < LAG_FAST_HOLD_MS);
    if (this.streamsRunning === 0) {
      this.streamWindow.set(0);
      return;
    }
    const lag = Math.max(this.lastLagMs, this.peerLagMs);
    this.pace.observe(lag);
    this.peerLagMs = 0;
    this.streamWindow.set(this.pace.window);
    this.streamLagSeen.set(lag / 1000);
    this.streamThreshold.set(this.pace.thresholdMs / 1000);
    for (const wake of this.paceWaiters.splice(0)) wake();
  }

  private freshPace(): StreamPace {
    return new StreamPace({
      minWindow: STREAM_MIN_WINDOW, maxWindow: this.o.streamMaxPartitions ?? STREAM_PACE_DEFAULTS.maxPartitions,
      lagTargetMs: this.o.streamLagTargetMs ?? STREAM_PACE_DEFAULTS.lagTargetMs, maxPauseMs: STREAM_PAUSE_MAX_MS,
    }, STREAM_INITIAL_WINDOW, this.recentLags.length > 0 ? Math.min(...this.recentLags.slice(-STREAM_SEED_TICKS)) : undefined);
  }

  /** Streaming starts or ends here (a stream, or a removenode's copy): the pace observes while any runs. */
  private streamStarted(): void {
    if (this.streamsRunning++ === 0) this.pace = this.freshPace();
    this.sampleLag(true);
  }

  /** Switches the lag sampling between its streaming and idle periods. */
  private sampleLag(fast: boolean): void {
    if (fast === this.lagFast || this.stopped) return;
    this.lagSampler.disable();
    this.lagIntervalMs = fast ? LAG_FAST_SAMPLE_MS : LAG_IDLE_SAMPLE_MS;
    this.lagSampler = monitorEventLoopDelay({ resolution: this.lagIntervalMs });
    this.lagSampler.enable();
    this.lagFast = fast;
  }

  /** This node's recent p99 event-loop lag in ms, as reported to streaming peers in page answers. */
  private recentLagMs(): number {
    this.servedAtMs = this.now();
    this.sampleLag(true);
    return Math.round(Math.max(this.lastLagMs, lagMs(this.lagSampler, this.lagIntervalMs)));
  }

  /** A peer's lag from a page answer: counts toward this tick's observation. */
  private notePeerLag(answer: unknown): void {
    const { lag, baseLag } = (typeof answer === 'object' && answer !== null ? answer : {}) as { lag?: unknown; baseLag?: unknown };
    if (typeof lag !== 'number' || !Number.isFinite(lag)) return;
    const own = peerLagInOwnTerms(Math.min(Math.max(0, lag), STREAM_LAG_REPORT_MAX_MS), baseLag, this.pace.thresholdMs, this.pace.lagTargetMs);
    this.peerLagMs = Math.max(this.peerLagMs, Math.min(own, STREAM_LAG_REPORT_MAX_MS));
  }

  /** Waits until the adaptive window admits one more partition. */
  private async admitPartition(): Promise<void> {
    while (this.streamActive >= this.pace.window && !this.stopped) await new Promise<void>((r) => this.paceWaiters.push(r));
    this.streamActive++;
  }

  private releasePartition(): void {
    this.streamActive--;
    for (const wake of this.paceWaiters.splice(0)) wake();
  }

  private scheduleNext(): void {
    if (this.stopped) return;
    void this.walk().finally(() => {
      if (!this.stopped) this.timer = setTimeout(() => this.scheduleNext(), Math.min(1000, this.o.intervalMs));
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.paceTimer) clearInterval(this.paceTimer);
    for (const wake of this.paceWaiters.splice(0)) wake();
    this.lagSampler.disable();
    this.sessions.clear();
  }

  private owned: Set<number> | undefined;

  /**
   * Call on every topology change. Partitions this node no longer owns (in neither the
   * current nor the future table) become hand-offs: dropped once every current owner has
   * confirmed holding them (see handOff). Partitions owned again stop being hand-offs.
   */
  onTopology(t: Topology): Promise<void> {
    if (t.epoch === 0) return this.handoffsSaving;
    const now = new Set(this.myPartitions(t));
    const before = this.owned;
    this.owned = now;
    let changed = false;
    for (const p of [...this.handoffs.keys()]) if (now.has(p)) { this.handoffs.delete(p); changed = true; }
    // The first view may be a Raft snapshot whose log tail is still being applied: copies held
    // from before a restart are found by the first walk instead (adoptOrphans).
    if (before !== undefined) {
      for (const p of before) if (!now.has(p) && !this.handoffs.has(p)) { this.handoffs.set(p, this.now()); changed = true; }
    }
    if (!changed) return this.handoffsSaving;
    const saved = this.saveHandoffs();
    if (before !== undefined) setImmediate(() => void this.handOffAll());
    return saved;
  }

  /** Remove every record of `p` except keys written since the drop began (a newer write is kept). */
  private async drop(p: number): Promise<number> {
    if ((await this.o.store.partitionKeyCount(p)) === 0) return 0;
    // Chunks of deletes in big commits, no read of stored versions (RecordStore.dropPartition).
    return this.o.store.dropPartition(p);
  }

  /**
   * One hand-off round: each partition this node lost is pushed to every current owner in an
   * exchange at the current epoch and dropped once all of them succeeded; past its share of
   * the tombstone grace it is dropped without pushing. Failures stay for the next round.
   */
  handOffAll(): Promise<void> {
    // One round at a time; a call during a round runs another one after it (it may have news).
    this.handoffRound = (this.handoffRound ?? Promise.resolve()).then(() => this.handOffRound());
    return this.handoffRound;
  }

  private async handOffRound(): Promise<void> {
    for (const p of this.pendingHandoffs()) {
      if (this.stopped) return;
      await this.handOff(p).catch((err: unknown) => this.o.log.debug({ err, p }, 'hand-off not done yet; retried at the next walk'));
    }
  }

  private async handOff(p: number): Promise<void> {
    const since = this.handoffs.get(p);
    if (since === undefined) return;
    const t = this.o.topology();
    if (new Set(this.myPartitions(t)).has(p)) {
      this.handoffs.delete(p);
      await this.saveHandoffs();
      return;
    }
    const expired = this.now() - since > HANDOFF_GRACE_SHARE * this.o.tombstoneGraceMs;
    if (!expired) {
      const owners = replicasOf(t.table('current'), p).filter((id) => id !== this.o.selfId);
      for (const peer of owners) {
        if (!this.o.isAlive(peer)) throw new KvError('KV_UNAVAILABLE', `partition ${p}: new owner ${peer} is down`);
        await this.exchange(p, peer, { pull: false });
      }
    }
    const records = await this.drop(p);
    this.handoffs.delete(p);
    await this.saveHandoffs();
    this.handoffsDone.labels({ result: expired ? 'expired' : 'confirmed' }).inc();
    if (expired) this.o.log.warn({ p, records }, 'hand-off expired: dropped a partition without every new owner confirming it');
    else if (records > 0) this.o.log.info({ p, records }, 'handed off a partition: every new owner confirmed it');
  }

  /** Partitions this node replicates now or will after pending changes. */
  private myPartitions(t: Topology): number[] {
    if (t.epoch === 0) return [];
    const cur = t.table('current');
    const fut = t.table('future');
    const out: number[] = [];
    for (let p = 0; p < t.partitions; p++) {
      if (replicasOf(cur, p).includes(this.o.selfId) || replicasOf(fut, p).includes(this.o.selfId)) out.push(p);
    }
    return out;
  }

  private orphansChecked = false;

  /**
   * Once, after start: partitions held from before a restart that this node does not own
   * become hand-offs. One without a saved start time is of unknown age, so it is dropped
   * without pushing (it may predate deletes purged meanwhile).
   */
  private async adoptOrphans(t: Topology): Promise<void> {
    this.orphansChecked = true;
    const owned = new Set(this.myPartitions(t));
    let changed = false;
    for (let p = 0; p < t.partitions; p++) {
      if (owned.has(p) || this.handoffs.has(p)) continue;
      if ((await this.o.store.partitionKeyCount(p)) === 0) continue;
      this.handoffs.set(p, 0);
      changed = true;
    }
    if (changed) await this.saveHandoffs();
  }

  /** One walk over every partition, paced to take about intervalMs (unpaced while a repair asked for it). */
  private async walk(): Promise<void> {
    if (this.walking) return;
    this.walking = true;
    try {
      const t = this.o.topology();
      if (!this.orphansChecked && t.epoch > 0) await this.adoptOrphans(t);
      await this.handOffAll();
      const parts = this.myPartitions(t);
      this.progress = { walk: this.progress.walk + 1, partitionsDone: 0, partitionsTotal: parts.length };
      const pace = parts.length === 0 ? this.o.intervalMs : this.o.intervalMs / parts.length;
      for (const p of parts) {
        if (this.stopped) return;
        const started = this.now();
        await this.syncPartition(p).catch((err: unknown) => this.o.log.debug({ err, p }, 'anti-entropy of partition failed'));
        this.progress.partitionsDone++;
        this.repairing?.progress(this.progress.partitionsDone);
        const lagged = Math.max(this.walkLagMs, lagMs(this.lagSampler, this.lagIntervalMs)) > LAG_BACKOFF_MS;
        this.walkLagMs = 0;
        const target = this.repairing ? (lagged ? REPAIR_LAG_PAUSE_MS : 0) : lagged ? 2 * pace : pace;
        const wait = Math.max(0, target - (this.now() - started));
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      this.walks.inc();
      this.lastWalkDoneMs = this.now();
      this.repairing?.finish();
      this.repairing = undefined;
    } finally {
      this.walking = false;
    }
  }

  private repairing: Operation | undefined;

  /**
   * `kv repair`: walk every partition now, unpaced (still yielding while the event loop
   * lags). A walk already running finishes unpaced under this operation; a new one
   * starts otherwise. Returns the walk's operation.
   */
  repairNow(op: Operation): Operation {
    if (this.repairing) return this.repairing;
    this.repairing = op;
    op.total(this.walking ? this.progress.partitionsTotal : this.myPartitions(this.o.topology()).length);
    op.progress(this.walking ? this.progress.partitionsDone : 0);
    if (!this.walking) {
      clearTimeout(this.timer);
      void this.walk().finally(() => {
        if (!this.stopped) this.timer = setTimeout(() => this.scheduleNext(), Math.min(1000, this.o.intervalMs));
      });
    }
    return op;
  }

  /** Exchange p with every other live replica (current and future); GC its tombstones if we lead it. */
  async syncPartition(p: number): Promise<void> {
    const t = this.o.topology();
    if (t.epoch === 0) return;
    const cur = replicasOf(t.table('current'), p);
    const fut = replicasOf(t.table('future'), p);
    // A walk lists its partitions when it starts, up to antiEntropyIntervalMs before: one this node
    // stopped owning meanwhile (and may have handed off already) must not be pulled back here.
    if (!cur.includes(this.o.selfId) && !fut.includes(this.o.selfId)) return;
    const peers = [...new Set([...cur, ...fut])].filter((id) => id !== this.o.selfId);
    // After an ownership change, former owners may still push copies older than the tombstones
    // that GC would purge: wait until their hand-offs have given up pushing.
    const settled = this.now() - (this.o.fence?.lastChangeMs(p) ?? 0) > HANDOFF_GRACE_SHARE * this.o.tombstoneGraceMs + HANDOFF_GC_MARGIN_MS;
    const gcLeader = cur[0] === this.o.selfId && this.o.tombstoneGraceMs >= 0 && settled;
    const candidates = gcLeader ? await this.tombstoneCandidates(p) : [];
    let allOk = peers.length > 0 || cur.length === 1;
    for (const peer of peers) {
      if (!this.o.isAlive(peer)) { allOk = false; continue; }
      try {
        await this.exchange(p, peer);
      } catch (err) {
        allOk = false;
        this.o.log.debug({ err, p, peer }, 'exchange failed');
      }
    }
    // Every replica that must hold the tombstones was just made to match us: purge everywhere.
    if (gcLeader && allOk && candidates.length > 0 && peers.every((id) => cur.includes(id))) {
      const results = await Promise.allSettled(peers.map((id) => this.o.transport.request(id, 'ae.purge', candidates, { timeoutMs: REQUEST_TIMEOUT_MS })));
      if (results.every((r) => r.status === 'fulfilled')) {
        const n = await this.purgeLocal(candidates);
        if (n > 0) this.o.log.debug({ p, purged: n }, 'tombstones purged');
      }
    }
  }

  private async tombstoneCandidates(p: number): Promise<MerkleEntry[]> {
    const out: MerkleEntry[] = [];
    const cutoff = this.now() - this.o.tombstoneGraceMs;
    for await (const [key, rec] of this.o.store.scanPartition(p)) {
      // An expired record is a tombstone of its version whose grace counts from the expiry.
      if ((rec.value === null && parseVersion(rec.version).ts.wall < cutoff) || (rec.expiresAt !== undefined && rec.expiresAt < cutoff)) {
        out.push([key, rec.version]);
        if (out.length >= PURGE_BATCH) break;
      }
    }
    return out;
  }

  private async purgeLocal(entries: readonly MerkleEntry[]): Promise<number> {
    let n = 0;
    for (const [key, version] of entries) if (await this.o.store.purge(key, version)) n++;
    this.purged.inc(n);
    return n;
  }

  /**
   * Exchange partition `p` with `peer`, moving records both ways. With `bulk: 'pull'` and
   * little of `p` here (nothing, or fewer than half the records the peer holds: a joining,
   * replacing or new owner, perhaps with client writes that reached it first), the key-by-key
   * exchange is skipped: the peer's records are read in key order, a range at a time
   * (`ae.scan`), and applied write-if-newer, so what this node holds newer stays. With
   * `bulk: 'push'` and little of `p` on the peer (a leaving owner's new replica), ours go the
   * same way. `onlyIntoEmpty`: bulk only into an empty replica (no count asked of the peer).
   */
  async exchange(p: number, peer: string, opts: { pull?: boolean; bulk?: 'pull' | 'push'; onlyIntoEmpty?: boolean } = {}): Promise<ExchangeResult> {
    if (opts.bulk === 'pull') {
      const mine = await this.o.store.partitionKeyCount(p);
      if (mine === 0 || (opts.onlyIntoEmpty !== true && 2 * mine < await this.peerCount(p, peer))) return this.bulkPull(p, peer);
    }
    if (opts.bulk === 'push') {
      const theirs = await this.peerCount(p, peer);
      if (theirs === 0 || (opts.onlyIntoEmpty !== true && 2 * theirs < await this.o.store.partitionKeyCount(p))) return this.bulkPush(p, peer);
    }
    return this.merkleExchange(p, peer, opts.pull !== false);
  }

  /** Records the peer holds for partition `p` (`ae.count`). */
  private async peerCount(p: number, peer: string): Promise<number> {
    const n = await this.o.transport.request<unknown>(peer, 'ae.count', { partition: p }, { timeoutMs: REQUEST_TIMEOUT_MS });
    if (!Number.isSafeInteger(n) || (n as number) < 0) throw new KvError('KV_FRAME_INVALID', 'ae.count answer must be a count');
    return n as number;
  }

  /**
   * A partition with little here (see exchange): the peer's records in key order, a page at a time
   * (`ae.scan`, at most STREAM_PAGE_BYTES and SCAN_BATCH_RECORDS each). The next page is asked
   * for while this one is written, so at most two pages of a partition are in flight.
   */
  private async bulkPull(p: number, peer: string): Promise<ExchangeResult> {
    const ask = (after: string | undefined): Promise<unknown> => {
      const req = this.o.transport.request<unknown>(peer, 'ae.scan', after === undefined ? { partition: p, maxBytes: STREAM_PAGE_BYTES } : { partition: p, after, maxBytes: STREAM_PAGE_BYTES },
        { timeoutMs: REQUEST_TIMEOUT_MS });
      req.catch(() => undefined); // awaited below; a page still on its way when an earlier one failed is dropped
      return req;
    };
    let after: string | undefined;
    let page = ask(undefined);
    let pulled = 0;
    let bytes = 0;
    for (;;) {
      const o = (await page) as { records?: unknown; next?: unknown; bytes?: unknown; lag?: unknown } | null;
      if (typeof o !== 'object' || o === null || (o.next !== null && typeof o.next !== 'string') || typeof o.bytes !== 'number') {
        throw new KvError('KV_FRAME_INVALID', 'ae.scan answer must be {records, next, bytes}');
      }
      // Pages go in the store's order, (segment, key), not in key order.
      if (o.next !== null && after !== undefined && this.storeOrder(o.next as string) <= this.storeOrder(after)) throw new KvError('KV_FRAME_INVALID', 'ae.scan did not advance');
      this.notePeerLag(o);
      if (o.next !== null) page = ask(o.next as string);
      pulled += await this.applyRecords(o.records, 'ae.pull', { max: SCAN_BATCH_RECORDS, partition: p, maxBytes: MOVE_BATCH_BYTES });
      bytes += o.bytes;
      this.moved.labels({ direction: 'pulled' }).inc(Array.isArray(o.records) ? o.records.length : 0);
      if (o.next === null) break;
      after = o.next as string;
      await this.yieldToClients();
    }
    this.exchanges.labels({ outcome: 'bulk' }).inc();
    return { outcome: 'bulk', pushed: 0, pulled, bytes };
  }

  /** A key's place in the store's order (partition, Merkle segment, key): the order of scans and pages. */
  private storeOrder(key: string): string {
    const { partition, segment } = this.o.store.locate(key);
    return dataKey(partition, segment, key);
  }

  /**
   * A partition the peer holds little of: ours in key order, a page at a time (`ae.load`,
   * bounded like an `ae.scan` answer). The next page is read while one is on its way, so at
   * most two pages of a partition are in flight.
   */
  private async bulkPush(p: number, peer: string): Promise<ExchangeResult> {
    let page: unknown[] = [];
    let size = 0;
    let pushed = 0;
    let bytes = 0;
    let sending: Promise<void> = Promise.resolve();
    const send = async (records: unknown[], n: number): Promise<void> => {
      try {
        const r = await this.o.transport.request<unknown>(peer, 'ae.load', { partition: p, records }, { timeoutMs: REQUEST_TIMEOUT_MS });
        this.notePeerLag(r);
      } catch (err) {
        // A peer of an older version (a rolling upgrade) has no ae.load: the same records as ae.push batches.
        if ((err as KvError).details?.['unknownType'] !== 'ae.load') throw err;
        for (let i = 0; i < records.length; i += MOVE_BATCH) await this.o.transport.request(peer, 'ae.push', records.slice(i, i + MOVE_BATCH), { timeoutMs: REQUEST_TIMEOUT_MS });
      }
      pushed += records.length;
      bytes += n;
    };
    const flush = async (): Promise<void> => {
      await sending;
      if (page.length === 0) return;
      sending = send(page, size);
      sending.catch(() => undefined); // awaited at the next flush
      page = [];
      size = 0;
      await this.yieldToClients();
    };
    for await (const [key, rec] of this.o.store.scanPartition(p)) {
      const n = key.length + (rec.value?.length ?? 0);
      if (page.length > 0 && (size + n > STREAM_PAGE_BYTES || page.length >= SCAN_BATCH_RECORDS)) await flush();
      page.push([key, recordToWire(rec)]);
      size += n;
    }
    await flush();
    await sending;
    if (pushed) this.moved.labels({ direction: 'pushed' }).inc(pushed);
    this.exchanges.labels({ outcome: 'bulk' }).inc();
    return { outcome: 'bulk', pushed, pulled: 0, bytes };
  }

  /**
   * Streaming's pause between pages: none unless the adaptive window is at its floor and the
   * event loops involved still lag (lib/core/stream-pace.ts), so client latency stays bounded.
   */
  private async yieldToClients(): Promise<void> {
    const ms = this.pace.pauseMs;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  private async onScan(payload: unknown, epoch: number): Promise<{ records: unknown[]; next: string | null; bytes: number; lag: number; baseLag: number }> {
    const o = payload as { partition?: unknown; after?: unknown; maxBytes?: unknown } | null;
    if (!this.isPartitionArg(o) ||
      (o.after !== undefined && validateKey(o.after, this.o.maxKeyBytes) === '') ||
      (o.maxBytes !== undefined && (!Number.isInteger(o.maxBytes) || (o.maxBytes as number) < 1))) {
      throw new KvError('KV_INVALID_ARGUMENT', 'ae.scan takes {partition, after?, maxBytes?}');
    }
    const p = o.partition as number;
    this.o.fence?.checkPartition(p, epoch);
    // An older peer asks without maxBytes: the 1 MiB pages it expects.
    const maxBytes = Math.min(MOVE_BATCH_BYTES, (o.maxBytes as number | undefined) ?? MOVE_BATCH_BYTES);
    const records: unknown[] = [];
    let bytes = 0;
    let next: string | null = null;
    for await (const [key, rec] of this.o.store.scanPartition(p, o.after === undefined ? {} : { after: o.after as string })) {
      const n = key.length + (rec.value?.length ?? 0);
      if (records.length >= SCAN_BATCH_RECORDS || (records.length > 0 && bytes + n > maxBytes)) {
        next = (records.at(-1) as [string, unknown])[0];
        break;
      }
      records.push([key, recordToWire(rec)]);
      bytes += n;
    }
    return { records, next, bytes, lag: this.recentLagMs(), baseLag: this.baseLagMs };
  }

  /** A page of a partition the sender streams here in bulk (`bulkPush`): {partition, records}. */
  /** A peer's `{partition, ...}` payload names one of this store's partitions. */
  private isPartitionArg<T extends { partition?: unknown }>(o: T | null): o is T & { partition: number } {
    return typeof o === 'object' && o !== null && Number.isInteger(o.partition) && (o.partition as number) >= 0 && (o.partition as number) < this.o.store.partitions;
  }

  private async onLoad(payload: unknown, epoch: number): Promise<{ applied: number; lag: number; baseLag: number }> {
    const o = payload as { partition?: unknown; records?: unknown } | null;
    if (!this.isPartitionArg(o)) {
      throw new KvError('KV_INVALID_ARGUMENT', 'ae.load takes {partition, records}');
    }
    const p = o.partition as number;
    this.o.fence?.checkPartition(p, epoch);
    const applied = await this.applyRecords(o.records, 'ae.push', { max: SCAN_BATCH_RECORDS, partition: p, maxBytes: MOVE_BATCH_BYTES });
    return { applied, lag: this.recentLagMs(), baseLag: this.baseLagMs };
  }

  private async onCount(payload: unknown): Promise<number> {
    const o = payload as { partition?: unknown } | null;
    if (!this.isPartitionArg(o)) {
      throw new KvError('KV_INVALID_ARGUMENT', 'ae.count takes {partition}');
    }
    return this.o.store.partitionKeyCount(o.partition as number);
  }

  /** The key-by-key Merkle exchange: records move both ways (or only ours, with `pull` false). */
  private async merkleExchange(p: number, peer: string, pull: boolean): Promise<ExchangeResult> {
    const tree = await this.o.index.tree(p);
    const sid = `${this.sidPrefix}${(++this.sidSeq).toString(36)}`;
    const { session, send } = MerkleExchange.initiate(tree, p);
    let msg: MerkleMessage | null = send;
    let bytes = 0;
    let pushed = 0;
    let pulled = 0;
    try {
      while (msg) {
        bytes += encodedSize(msg);
        const reply = await this.o.transport.request<unknown>(peer, 'ae.msg', { sid, msg }, { timeoutMs: REQUEST_TIMEOUT_MS });
        if (reply === null || reply === undefined) {
          if (session.done) break;
          // The responder lost our session (it restarted, or we stalled past its idle timeout).
          throw new KvError('KV_UNAVAILABLE', `partition ${p}: ${peer} dropped the exchange session`);
        }
        const m = validateMerkleMessage(reply);
        bytes += encodedSize(m);
        const step = session.receive(m, await this.segments(p, session.segmentsToRead(m)));
        pushed += await this.push(peer, step.push);
        if (pull) pulled += await this.pull(peer, step.pull);
        msg = step.done && step.send?.t !== 'mt-end' ? null : step.send;
        if (step.done && step.send) {
          // Tell the responder we are done so it frees its session now.
          await this.o.transport.request(peer, 'ae.msg', { sid, msg: step.send }, { timeoutMs: REQUEST_TIMEOUT_MS }).catch(() => undefined);
          msg = null;
        }
      }
    } catch (err) {
      this.exchanges.labels({ outcome: 'error' }).inc();
      throw err;
    }
    const outcome = session.outcome ?? 'incomplete';
    this.exchanges.labels({ outcome }).inc();
    if (!GOOD_OUTCOMES.has(outcome)) throw new KvError('KV_UNAVAILABLE', `partition ${p}: exchange with ${peer} ended ${outcome}`);
    this.bytes.inc(bytes);
    if (pushed) this.moved.labels({ direction: 'pushed' }).inc(pushed);
    if (pulled) this.moved.labels({ direction: 'pulled' }).inc(pulled);
    return { outcome, pushed, pulled, bytes };
  }

  /** Load the named segments' (key, version) entries for a synchronous SegmentSource. */
  private async segments(p: number, segs: readonly number[]): Promise<(s: number) => MerkleEntry[]> {
    const map = new Map<number, MerkleEntry[]>();
    for (const s of segs) {
      const entries: MerkleEntry[] = [];
      for await (const [key, rec] of this.o.store.scanSegment(p, s)) entries.push([key, rec.version]);
      map.set(s, entries);
    }
    return (s) => map.get(s) ?? [];
  }

  private async push(peer: string, entries: readonly MerkleEntry[]): Promise<number> {
    let n = 0;
    let batch: unknown[] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      await this.o.transport.request(peer, 'ae.push', batch, { timeoutMs: REQUEST_TIMEOUT_MS });
      n += batch.length;
      batch = [];
      bytes = 0;
    };
    for (const [key] of entries) {
      const rec = await this.o.store.get(key);
      if (!rec) continue;
      const size = key.length + (rec.value?.length ?? 0) + 64;
      if (batch.length > 0 && (bytes + size > MOVE_BATCH_BYTES || batch.length >= MOVE_BATCH)) await flush();
      batch.push([key, recordToWire(rec)]);
      bytes += size;
    }
    await flush();
    return n;
  }

  /** Fetch records from the peer; each answer covers a prefix of the asked keys (bounded in bytes). */
  private async pull(peer: string, entries: readonly MerkleEntry[]): Promise<number> {
    let n = 0;
    let i = 0;
    while (i < entries.length) {
      const keys = entries.slice(i, i + MOVE_BATCH).map(([k]) => k);
      const got = await this.o.transport.request<unknown>(peer, 'ae.pull', keys, { timeoutMs: REQUEST_TIMEOUT_MS });
      const o = got as { handled?: unknown; records?: unknown } | null;
      if (typeof o !== 'object' || o === null || typeof o.handled !== 'number' || !Number.isInteger(o.handled) || o.handled < 1 || o.handled > keys.length) {
        throw new KvError('KV_INVALID_ARGUMENT', 'ae.pull answer must be {handled, records}');
      }
      n += await this.applyRecords(o.records, 'ae.pull');
      i += o.handled;
    }
    return n;
  }

  /**
   * Applies records a peer pushed or answered. Records whose version is too far ahead of
   * local time are not applied (they would win every comparison); the others are, so one
   * bad record does not hold up the rest, and then the whole batch fails with KV_CLOCK_SKEW
   * so the exchange does not count as converged.
   */
  /**
   * Validate and apply moved records. With `partition`, every key must belong to it (a bulk
   * page); with `maxBytes`, the keys and values before the last record must fit in it (the
   * sender stops at the record that crosses it; KV_FRAME_TOO_LARGE otherwise).
   */
  private async applyRecords(payload: unknown, source: VersionSource, opts: { max?: number; partition?: number; maxBytes?: number } = {}): Promise<number> {
    const max = opts.max ?? MOVE_BATCH;
    if (!Array.isArray(payload) || payload.length > max) throw new KvError(opts.partition === undefined ? 'KV_INVALID_ARGUMENT' : 'KV_FRAME_INVALID', `expected at most ${max} [key, record] pairs`);
    let size = 0;
    const parsed = payload.map((x: unknown) => {
      if (!Array.isArray(x) || x.length !== 2) throw new KvError('KV_INVALID_ARGUMENT', 'expected [key, record]');
      const key = validateKey(x[0], this.o.maxKeyBytes);
      const rec = validateWireRecord(x[1], this.o.maxValueBytes);
      const n = key.length + (rec.value?.length ?? 0);
      if (opts.maxBytes !== undefined && size >= opts.maxBytes) throw new KvError('KV_FRAME_TOO_LARGE', `a page of more than ${opts.maxBytes} record bytes before its last record`);
      size += n;
      return [key, rec] as [string, StoredRecord];
    });
    let refused: unknown;
    const ok = parsed.filter(([, rec]) => {
      try {
        this.o.versions?.check(rec.version, source);
        return true;
      } catch (err) {
        refused ??= err;
        return false;
      }
    });
    // One call for the page: the store locates each key once (and refuses a key of another
    // partition with KV_FRAME_INVALID before applying any) and folds the page into big commits.
    const results = await this.o.store.applyMany(ok, opts.partition === undefined ? {} : { partition: opts.partition });
    if (refused !== undefined) {
      this.o.log.warn({ source, refused: parsed.length - ok.length, err: (refused as Error).message }, 'records refused: versions too far ahead');
      throw refused;
    }
    return results.filter((r) => r.applied).length;
  }

  private onMessage(from: string, payload: unknown, epoch: number): unknown {
    const o = payload as { sid?: unknown; msg?: unknown } | null;
    if (typeof o !== 'object' || o === null || typeof o.sid !== 'string' || o.sid.length > 32) throw new KvError('KV_INVALID_ARGUMENT', 'ae.msg takes {sid, msg}');
    const msg = validateMerkleMessage(o.msg);
    if (msg.partition >= this.o.store.partitions) throw new KvError('KV_INVALID_ARGUMENT', `partition ${msg.partition} out of range (Q=${this.o.store.partitions})`);
    // A peer that has not seen the latest owners of this partition must not move its records.
    this.o.fence?.checkPartition(msg.partition, epoch);
    const id = `${from}/${o.sid}`;
    return this.respond(id, msg);
  }

  private async respond(id: string, msg: MerkleMessage): Promise<unknown> {
    const now = this.now();
    for (const [k, s] of this.sessions) if (now - s.touched > SESSION_IDLE_MS) this.sessions.delete(k);
    let s = this.sessions.get(id);
    if (!s) {
      if (msg.t !== 'mt-root') return null; // a late message of a session we already closed
      if (this.sessions.size >= MAX_SESSIONS) throw new KvError('KV_TOO_MANY_REQUESTS', 'too many anti-entropy sessions');
      s = { ex: MerkleExchange.respond(await this.o.index.tree(msg.partition), msg.partition), touched: now };
      this.sessions.set(id, s);
    }
    s.touched = now;
    const step = s.ex.receive(msg, await this.segments(msg.partition, s.ex.segmentsToRead(msg)));
    if (step.done) this.sessions.delete(id);
    return step.send;
  }

  private async onPull(payload: unknown, epoch: number): Promise<unknown> {
    if (!Array.isArray(payload) || payload.length === 0 || payload.length > MOVE_BATCH) throw new KvError('KV_INVALID_ARGUMENT', `ae.pull takes 1..${MOVE_BATCH} keys`);
    for (const k of payload) this.o.fence?.check(validateKey(k, this.o.maxKeyBytes), epoch);
    const records: unknown[] = [];
    let bytes = 0;
    let handled = 0;
    for (const k of payload) {
      const rec = await this.o.store.get(validateKey(k, this.o.maxKeyBytes));
      const size = rec ? (k as string).length + (rec.value?.length ?? 0) + 64 : 0;
      if (handled > 0 && bytes + size > MOVE_BATCH_BYTES) break;
      if (rec) records.push([k, recordToWire(rec)]);
      bytes += size;
      handled++;
    }
    return { handled, records };
  }

  private onPush(payload: unknown, epoch: number): Promise<number> {
    if (Array.isArray(payload)) for (const x of payload) if (Array.isArray(x)) this.o.fence?.check(validateKey(x[0], this.o.maxKeyBytes), epoch);
    return this.applyRecords(payload, 'ae.push');
  }

  private syncServed = 0;

  /**
   * A removenode orchestrator asks this node (a new owner of `partition`) to exchange the
   * partition with `peer` (a surviving owner) now; answers once the exchange is done.
   */
  private async onSync(payload: unknown): Promise<{ outcome: string; moved: number }> {
    const o = payload as { partition?: unknown; peer?: unknown } | null;
    const t = this.o.topology();
    if (!this.isPartitionArg(o) ||
      typeof o.peer !== 'string' || o.peer === this.o.selfId || t.member(o.peer) === undefined) {
      throw new KvError('KV_INVALID_ARGUMENT', 'ae.sync takes {partition, peer} with a member other than this node');
    }
    if (this.syncServed >= MAX_SYNC_SERVED) throw new KvError('KV_TOO_MANY_REQUESTS', 'too many ae.sync exchanges at once');
    this.syncServed++;
    // Counts as streaming for the pace (its pages pause at the floor); the orchestrator bounds how many run.
    this.streamStarted();
    try {
      const r = await this.exchange(o.partition as number, o.peer, { bulk: 'pull' });
      return { outcome: r.outcome, moved: r.pushed + r.pulled };
    } finally {
      this.syncServed--;
      this.streamsRunning--;
    }
  }

  /**
   * A purge is a write that deletes, so it passes what every write passes (the epoch fence)
   * plus what only the GC leader may ask: this node must replicate the key now, the sender
   * must be the partition's first current replica (the only node that runs its GC), and each
   * tombstone must be past its grace period by this node's clock.
   */
  private async onPurge(from: string, payload: unknown, epoch: number): Promise<number> {
    if (!Array.isArray(payload) || payload.length > PURGE_BATCH) throw new KvError('KV_INVALID_ARGUMENT', `ae.purge takes at most ${PURGE_BATCH} entries`);
    const t = this.o.topology();
    if (t.epoch === 0) throw new KvError('KV_UNAVAILABLE', 'no topology yet');
    const table = t.table('current');
    const cutoff = this.now() - this.o.tombstoneGraceMs;
    const entries = payload.map((x: unknown) => {
      if (!Array.isArray(x) || x.length !== 2 || typeof x[1] !== 'string') throw new KvError('KV_INVALID_ARGUMENT', 'expected [key, version]');
      const { ts } = parseVersion(x[1]);
      const key = validateKey(x[0], this.o.maxKeyBytes);
      this.o.fence?.check(key, epoch);
      const replicas = replicasOf(table, partitionOf(key, t.partitions));
      if (replicas[0] !== from || !replicas.includes(this.o.selfId)) {
        throw new KvError('KV_FORBIDDEN', `ae.purge of a key whose tombstones ${from} does not collect here`);
      }
      if (ts.wall >= cutoff) throw new KvError('KV_INVALID_ARGUMENT', 'ae.purge of a tombstone inside its grace period');
      return [key, x[1] as Version] as const;
    });
    // Only tombstones (and records expired here, tombstones of their version) are ever purged:
    // a record that is a live value here is kept.
    const tombstones: MerkleEntry[] = [];
    const now = this.now();
    for (const [k, v] of entries) {
      const rec = await this.o.store.get(k);
      if (rec && rec.version === v && (rec.value === null || (rec.expiresAt !== undefined && rec.expiresAt <= now))) tombstones.push([k, v]);
    }
    return this.purgeLocal(tombstones);
  }

  /**
   * Data movement for a topology change: exchange every partition where `self` is a
   * future owner with every current owner (join), or every partition we hold now with
   * its future owners (leave). Retries each partition until it succeeded with all peers.
   */
  async stream(kind: 'join' | 'leave' | 'replace', shouldStop: () => boolean, op?: Operation): Promise<{ partitions: number; moved: number }> {
    const t = this.o.topology();
    const cur = t.table('current');
    const fut = t.table('future');
    const work: Array<{ p: number; peers: string[] }> = [];
    for (let p = 0; p < t.partitions; p++) {
      const c = replicasOf(cur, p);
      const f = replicasOf(fut, p);
      if (kind === 'join' && f.includes(this.o.selfId)) work.push({ p, peers: c.filter((id) => id !== this.o.selfId) });
      if (kind === 'leave' && c.includes(this.o.selfId)) work.push({ p, peers: f.filter((id) => id !== this.o.selfId) });
      // A replacement takes over the dead member's positions: it is a current owner with no data yet.
      if (kind === 'replace' && c.includes(this.o.selfId)) work.push({ p, peers: c.filter((id) => id !== this.o.selfId) });
    }
    let moved = 0;
    let next = 0;
    let done = 0;
    op?.total(work.length);
    // Each partition is exchanged with at least N - W + 1 of its peers: a write acknowledged by W
    // owners is on one of them (W of N owners and N - W + 1 of them always share one). Peers beyond
    // that may be skipped once they keep failing while unreachable (a down owner cannot give us
    // anything), and are skipped for the rest of this stream where a partition can do without them;
    // where it cannot, the stream waits for them to come back.
    const sources = (peers: number): number => Math.min(peers, t.n - Math.min(this.o.writeQuorum ?? 2, t.n) + 1);
    const skipped = new Set<string>();
    const failures = new Map<string, number>();
    // Up to the pace's ceiling of workers; each takes a partition only once the adaptive window
    // admits one more (admitPartition), so the window, not the worker count, bounds what moves.
    const worker = async (): Promise<void> => {
      while (next < work.length) {
        await this.admitPartition();
        try {
          const item = work[next++];
          if (item !== undefined) await streamOne(item);
        } finally {
          this.releasePartition();
        }
      }
    };
    // One partition: the first exchange of a join or a replace runs alone (with nothing here yet it
    // is the bulk copy, so the exchanges after it find the records and compare trees instead of
    // copying again); then the other peers' exchanges run at once, so a partition takes about as
    // long as its slowest exchange, not their sum. A leave's exchanges each go to a different future
    // owner: all at once from the start.
    const streamOne = async ({ p, peers }: { p: number; peers: string[] }): Promise<void> => {
      const need = sources(peers.length);
      const pending = new Set(peers);
      const tries = new Map<string, number>();
      let ok = 0;
      let waitLogged = false;
      const stopCheck = (): void => {
        if (shouldStop()) throw new KvError('KV_CLOSED', 'stopped while streaming');
      };
      // The first exchange of a join or a replace copies in bulk unless this node already holds
      // at least half of the peer's records; the ones after it, only into a partition still empty.
      const attempt = async (peer: string): Promise<boolean> => {
        try {
          const started = performance.now();
          const r = await this.exchange(p, peer, { bulk: kind === 'leave' ? 'push' : 'pull', onlyIntoEmpty: kind !== 'leave' && ok > 0 });
          this.streamExchange.labels({ method: r.outcome === 'bulk' ? 'bulk' : 'merkle' }).observe((performance.now() - started) / 1000);
          moved += r.pushed + r.pulled;
          ok++;
          pending.delete(peer);
          failures.delete(peer);
          skipped.delete(peer);
          return true;
        } catch {
          const n = (failures.get(peer) ?? 0) + 1;
          failures.set(peer, n);
          if (n >= 3 && (!this.o.isAlive(peer) || !this.o.transport.isConnected(peer)) && !skipped.has(peer)) {
            skipped.add(peer);
            this.o.log.warn({ peer, kind }, 'owner unreachable: streaming goes on without it where enough other owners answer');
          }
          if (ok < need && [...pending].every((x) => skipped.has(x)) && !waitLogged) {
            waitLogged = true;
            this.o.log.warn({ partition: p, need, answered: ok, kind }, 'streaming waits: too few owners of this partition answered');
          }
          return false;
        }
      };
      const backOff = async (peer: string): Promise<void> => {
        const k = tries.get(peer) ?? 0;
        tries.set(peer, k + 1);
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** Math.min(k, 5))));
      };
      if (kind !== 'leave') {
        for (let turn = 0; ok === 0 && pending.size > 0;) {
          stopCheck();
          // Reachable peers first; a skipped one (in turn) only while none of them is left.
          const left = [...pending];
          const peer = (left.find((x) => !skipped.has(x)) ?? left[turn++ % left.length]) as string;
          // Straight on to a reachable peer if there is one; otherwise back off.
          if (!(await attempt(peer)) && (!skipped.has(peer) || left.every((x) => skipped.has(x)))) await backOff(peer);
        }
      }
      // Each remaining peer until it answered, or until it is skipped as unreachable and enough others did.
      const rest = await Promise.allSettled([...pending].map(async (peer) => {
        for (;;) {
          stopCheck();
          if (skipped.has(peer) && ok >= need) return;
          if (await attempt(peer) || (skipped.has(peer) && ok >= need)) return;
          await backOff(peer);
        }
      }));
      const failed = rest.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      op?.progress(++done, moved);
    };
    this.streamStarted();
    try {
      await Promise.all(Array.from({ length: this.o.streamMaxPartitions ?? STREAM_PACE_DEFAULTS.maxPartitions }, worker));
    } finally {
      this.streamsRunning--;
    }
    this.o.log.debug({ kind, window: this.pace.window, pace: this.pace.stats }, 'streaming: adaptive window at the end');
    return { partitions: work.length, moved };
  }

  /** Scrub: rebuild every held partition's tree from its records (throttled by `pauseMs` between partitions). */
  async scrub(pauseMs: number, op?: Operation): Promise<{ partitions: number; repaired: number }> {
    let repaired = 0;
    const parts = this.myPartitions(this.o.topology());
    op?.total(parts.length);
    for (const p of parts) {
      if (this.stopped) break;
      await this.o.store.exclusive(p, async () => {
        const store = this.o.store;
        const entries = (async function* () {
          for await (const [k, rec] of store.scanPartition(p)) yield [k, rec.version] as [string, string];
        })();
        if (await this.o.index.rebuild(p, entries)) repaired++;
      });
      op?.add(1);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
    return { partitions: parts.length, repaired };
  }
}
