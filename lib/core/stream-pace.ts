/**
 * Streaming's adaptive pace (DESIGN.md §9): how many partitions a topology change moves at
 * once, and how long it pauses between two pages, decided from the event-loop lag of the nodes
 * involved. Client requests queue on the same event loops as the pages, so that lag is what
 * clients feel on top of their own work.
 *
 * AIMD, as TCP's congestion window: one observation per tick (the highest p99 lag seen on this
 * node and in the peers' answers during the tick, each peer's measured against its own base lag:
 * peerLagInOwnTerms); at or below the threshold the window grows by
 * one partition, above it the window halves. The threshold is the configured target or twice the
 * base lag, whichever is higher: the base is the lowest lag observed over the last
 * BASE_HISTORY_TICKS (LEDBAT's base delay, RFC 6817), seeded with the node's own lag before the
 * stream began. On a quiet node the target decides; on a node whose lag is already high for
 * other reasons (a busy or shared machine) streaming may double it, no more, instead of
 * crawling at the floor for as long as the machine stays busy. It never leaves [minWindow, maxWindow]: the floor
 * keeps a topology change moving on a busy cluster, the ceiling bounds what is in flight (memory,
 * open scans on the sources). At the floor and still above the target, pages also pause
 * (min(lag, maxPauseMs)): the last lever, as before the window existed.
 *
 * Pure: the shell measures the lag, feeds `observe` and reads `window` and `pauseMs`.
 */
import { KvError } from '../errors.ts';

/** Observations whose minimum is the base lag: 240 ticks of 250 ms, one minute. Long enough that the
 *  window's own saw-tooth reaches a low point inside it; short enough to follow a node whose
 *  natural lag changes. */
export const BASE_HISTORY_TICKS = 240;

export interface StreamPaceLimits {
  /** Partitions in flight at least; ≥ 1. */
  readonly minWindow: number;
  /** Partitions in flight at most. */
  readonly maxWindow: number;
  /** p99 event-loop lag (ms) at or below which the window grows. */
  readonly lagTargetMs: number;
  /** Longest pause between two pages while the window is at its floor and the lag above target. */
  readonly maxPauseMs: number;
}

/**
 * Defaults of the two limits a node's configuration sets (`streamMaxPartitions`,
 * `streamLagTargetMs`; the floor and the pause cap are fixed in the shell, lib/node/anti-entropy.ts).
 */
export const STREAM_PACE_DEFAULTS = Object.freeze({
  /** Ceiling: partitions in flight at most. 32: enough to hide round trips for partitions of one
   *  record; with two pages of 512 KiB each, 32 MiB in flight. */
  maxPartitions: 32,
  /** The p99 event-loop lag (ms; this node and its streaming peers) above which the window halves, unless
   *  twice the base lag is higher. 20 ms of delay beyond the lag histogram's sampling interval (the shell
   *  measures what the loop adds to it; an idle loop shows about 0): clients feel more than that; below it
   *  streaming speeds up. */
  lagTargetMs: 20,
});

/** Wire sanity caps on a peer's reported lag: beyond this it is clamped (a stalled peer). */
export const STREAM_LAG_REPORT_MAX_MS = 60_000;

export function validateStreamPaceLimits(l: StreamPaceLimits): StreamPaceLimits {
  const int = (x: number, what: string, min: number, max: number): void => {
    if (!Number.isSafeInteger(x) || x < min || x > max) throw new KvError('KV_CONFIG', `${what} must be an integer in [${min}, ${max}], got ${x}`);
  };
  int(l.minWindow, 'stream minWindow', 1, 1024);
  int(l.maxWindow, 'stream maxWindow', l.minWindow, 1024);
  int(l.lagTargetMs, 'stream lagTargetMs', 1, 10_000);
  int(l.maxPauseMs, 'stream maxPauseMs', 0, 60_000);
  return l;
}

/**
 * The lag of one sample of node's `monitorEventLoopDelay` histogram: a sample is the whole time
 * between two wake-ups, so an idle loop records about the sampling interval; the lag is what the
 * loop added to it (never below 0).
 */
export function lagBeyondInterval(sampleMs: number, intervalMs: number): number {
  return Number.isFinite(sampleMs) ? Math.max(0, sampleMs - intervalMs) : STREAM_LAG_REPORT_MAX_MS;
}

/**
 * A peer's reported lag in this node's terms, for `observe`: each node may double its own base
 * lag (a coordinator under client load lags more than an idle streaming node without any
 * stream), so the peer's lag is scaled by this node's threshold over the peer's own (the
 * target, or twice the base lag the peer reported, whichever is higher). A peer that reported
 * no valid base (an older version) counts as reported.
 */
export function peerLagInOwnTerms(lagMs: number, peerBaseLagMs: unknown, ownThresholdMs: number, lagTargetMs: number): number {
  if (typeof peerBaseLagMs !== 'number' || !Number.isFinite(peerBaseLagMs) || peerBaseLagMs < 0) return lagMs;
  const peerThreshold = Math.max(lagTargetMs, 2 * Math.min(peerBaseLagMs, STREAM_LAG_REPORT_MAX_MS));
  return (lagMs * ownThresholdMs) / peerThreshold;
}

export class StreamPace {
  private w: number;
  private pause = 0;
  /** The last BASE_HISTORY_TICKS observations (a ring), for the base lag. */
  private readonly history: number[] = [];
  private next = 0;
  private readonly seedMs: number;
  /** Observations that shrank / grew the window (diagnostics, tests). */
  readonly stats = { decreases: 0, increases: 0, observations: 0 };

  /**
   * `baseLagMs`: the node's own lag before streaming (its lowest p99 over recent ticks); without
   * it the base comes from the observations alone.
   */
  constructor(private readonly limits: StreamPaceLimits, initialWindow?: number, baseLagMs?: number) {
    validateStreamPaceLimits(limits);
    this.w = Math.min(limits.maxWindow, Math.max(limits.minWindow, initialWindow ?? limits.minWindow));
    this.seedMs = baseLagMs !== undefined && Number.isFinite(baseLagMs) && baseLagMs >= 0 ? Math.min(baseLagMs, STREAM_LAG_REPORT_MAX_MS) : Infinity;
  }

  /** The lowest lag of the recent observations (or the seed): what the nodes show without this stream's load. */
  get baseLagMs(): number {
    let min = this.seedMs;
    for (const x of this.history) if (x < min) min = x;
    return Number.isFinite(min) ? min : 0;
  }

  /** The configured target (ms). */
  get lagTargetMs(): number {
    return this.limits.lagTargetMs;
  }

  /** Lag (ms) above which the window halves: the target, or twice the base lag if that is higher. */
  get thresholdMs(): number {
    return Math.max(this.limits.lagTargetMs, 2 * this.baseLagMs);
  }

  /** Partitions that may be in flight now. */
  get window(): number {
    return this.w;
  }

  /** Pause before the next page, ms (0 unless the window is at its floor and lag is above the threshold). */
  get pauseMs(): number {
    return this.pause;
  }

  /** One tick's highest p99 lag in ms (this node and the peers that answered during the tick). */
  observe(lagMs: number): void {
    const lag = Number.isFinite(lagMs) ? Math.min(Math.max(0, lagMs), STREAM_LAG_REPORT_MAX_MS) : STREAM_LAG_REPORT_MAX_MS;
    const { minWindow, maxWindow, lagTargetMs, maxPauseMs } = this.limits;
    this.stats.observations++;
    if (this.history.length < BASE_HISTORY_TICKS) this.history.push(lag);
    else this.history[this.next] = lag;
    this.next = (this.next + 1) % BASE_HISTORY_TICKS;
    if (lag > Math.max(lagTargetMs, 2 * this.baseLagMs)) {
      const atFloor = this.w === minWindow;
      this.w = Math.max(minWindow, Math.floor(this.w / 2));
      this.pause = atFloor ? Math.min(maxPauseMs, Math.ceil(lag)) : 0;
      this.stats.decreases++;
    } else {
      this.w = Math.min(maxWindow, this.w + 1);
      this.pause = 0;
      this.stats.increases++;
    }
  }
}
