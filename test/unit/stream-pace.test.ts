/**
 * Streaming's adaptive pace (lib/core/stream-pace.ts): AIMD on the observed event-loop lag
 * against max(target, 2 x base lag), bounded by a floor and a ceiling. Scripted cases, then a
 * seeded simulation of a node whose lag grows with the partitions in flight (plus noise and
 * stalls): after every tick the window stays in [floor, ceiling], pauses happen only at the
 * floor, and the long-run lag settles near the threshold. A failure prints its seed; `SEED=<n>` replays one, `SIM_SEEDS=<n>` runs more.
 */
import { expect } from 'chai';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pollUntil } from '../helpers/poll.ts';
import { seededRng, type Rng } from '../../lib/core/rng.ts';
import { BASE_HISTORY_TICKS, lagBeyondInterval, peerLagInOwnTerms, StreamPace, STREAM_LAG_REPORT_MAX_MS, STREAM_PACE_DEFAULTS, validateStreamPaceLimits, type StreamPaceLimits } from '../../lib/core/stream-pace.ts';
import { loadConfig } from '../../lib/config.ts';
import { isKvError } from '../../lib/errors.ts';

const LIMITS: StreamPaceLimits = { minWindow: 2, maxWindow: 32, lagTargetMs: 20, maxPauseMs: 200 };
const SEEDS = Number(process.env['SIM_SEEDS'] ?? 300);
const ONLY = process.env['SEED'] === undefined ? undefined : Number(process.env['SEED']);

function forSeeds(run: (rng: Rng, seed: number) => void): void {
  const seeds = ONLY !== undefined ? [ONLY] : Array.from({ length: SEEDS }, (_, i) => i + 1);
  for (const seed of seeds) {
    try {
      run(seededRng(seed), seed);
    } catch (err) {
      (err as Error).message = `seed=${seed} (replay: SEED=${seed}): ${(err as Error).message}`;
      throw err;
    }
  }
}

describe('stream pace (AIMD window of partitions in flight)', () => {
  it('grows by one partition per quiet tick up to the ceiling, and stays there', () => {
    const pace = new StreamPace(LIMITS, 8);
    for (let i = 0; i < 23; i++) pace.observe(5);
    expect(pace.window).to.equal(31);
    pace.observe(5);
    pace.observe(0);
    expect(pace.window).to.equal(32);
    expect(pace.pauseMs).to.equal(0);
  });

  it('halves on a lagging tick, down to the floor, and pauses only once it is at the floor', () => {
    const pace = new StreamPace(LIMITS, 32, 10);
    const seen: Array<[number, number]> = [];
    for (let i = 0; i < 6; i++) {
      pace.observe(150);
      seen.push([pace.window, pace.pauseMs]);
    }
    expect(seen).to.deep.equal([[16, 0], [8, 0], [4, 0], [2, 0], [2, 150], [2, 150]]);
    pace.observe(900);
    expect(pace.pauseMs, 'pause capped').to.equal(200);
    pace.observe(3);
    expect([pace.window, pace.pauseMs]).to.deep.equal([3, 0]);
  });

  it('treats a lag at the target as quiet and a non-finite or huge report as a stall', () => {
    const pace = new StreamPace(LIMITS, 4);
    pace.observe(20);
    expect(pace.window).to.equal(5);
    pace.observe(Number.NaN);
    expect(pace.window).to.equal(2);
    pace.observe(Number.POSITIVE_INFINITY);
    expect(pace.pauseMs).to.equal(200);
    pace.observe(-5);
    expect(pace.window, 'a negative report counts as no lag').to.equal(3);
  });

  it('lets the lag double on a node whose lag was already above the target before streaming (base lag), no more', () => {
    const pace = new StreamPace(LIMITS, 8, 60);
    expect(pace.thresholdMs).to.equal(120);
    for (let i = 0; i < 4; i++) pace.observe(110);
    expect(pace.window, 'under twice the base: grows').to.equal(12);
    pace.observe(130);
    expect(pace.window, 'over twice the base: halves').to.equal(6);
    // A lower lag seen later lowers the base, and with it the threshold (never below the target).
    pace.observe(8);
    expect([pace.baseLagMs, pace.thresholdMs]).to.deep.equal([8, 20]);
    pace.observe(25);
    expect(pace.window).to.equal(3);
  });

  it('forgets a low lag after BASE_HISTORY_TICKS observations (a node whose natural lag rose)', () => {
    const pace = new StreamPace(LIMITS, 8);
    pace.observe(5);
    for (let i = 0; i < BASE_HISTORY_TICKS - 1; i++) pace.observe(50);
    expect(pace.baseLagMs).to.equal(5);
    pace.observe(50);
    expect(pace.baseLagMs).to.equal(50);
    expect(pace.thresholdMs).to.equal(100);
  });

  it('measures a peer\'s lag against the peer\'s own base lag: a busy coordinator may double its lag, no more', () => {
    // This node: quiet, threshold 20 ms. The peer: 30 ms before streaming (client load), threshold 60 ms.
    expect(peerLagInOwnTerms(50, 30, 20, 20)).to.be.closeTo(50 / 3, 1e-9);
    expect(peerLagInOwnTerms(60, 30, 20, 20), 'at its own threshold: at ours').to.equal(20);
    expect(peerLagInOwnTerms(90, 30, 20, 20)).to.equal(30);
    // A quiet peer (base below half the target) counts against the target, as reported.
    expect(peerLagInOwnTerms(25, 3, 20, 20)).to.equal(25);
    // Here the threshold is 40 (this node's base is 20): a peer at its own threshold maps onto it.
    expect(peerLagInOwnTerms(20, 0, 40, 20)).to.equal(40);
    // No base reported (an older peer) or a malformed one: the lag as reported.
    for (const bad of [undefined, null, 'x', -1, Number.NaN, Number.POSITIVE_INFINITY]) expect(peerLagInOwnTerms(35, bad, 20, 20)).to.equal(35);
    // The window then halves on the peer only once the peer passed twice its own base.
    const pace = new StreamPace(LIMITS, 8, 1);
    pace.observe(peerLagInOwnTerms(55, 30, pace.thresholdMs, pace.lagTargetMs));
    expect(pace.window).to.equal(9);
    pace.observe(peerLagInOwnTerms(65, 30, pace.thresholdMs, pace.lagTargetMs));
    expect(pace.window).to.equal(4);
  });

  it('measures the lag as what the loop adds to the histogram\'s sampling interval (an idle loop: 0)', async () => {
    expect(lagBeyondInterval(20.4, 20)).to.be.closeTo(0.4, 1e-9);
    expect(lagBeyondInterval(19.5, 20), 'a timer a little early').to.equal(0);
    expect(lagBeyondInterval(65, 20)).to.equal(45);
    expect(lagBeyondInterval(Number.NaN, 20)).to.equal(STREAM_LAG_REPORT_MAX_MS);
    // Why: node's histogram records whole intervals, so even an idle loop shows the interval itself.
    const h = monitorEventLoopDelay({ resolution: 20 });
    h.enable();
    await pollUntil(async () => h.count >= 10, { timeoutMs: 5000, intervalMs: 50, what: '10 samples' });
    h.disable();
    expect(h.min / 1e6, 'a sample is the whole interval').to.be.at.least(19);
  });

  it('starts inside [floor, ceiling] whatever it is asked to start at', () => {
    expect(new StreamPace(LIMITS, 100).window).to.equal(32);
    expect(new StreamPace(LIMITS, 0).window).to.equal(2);
    expect(new StreamPace(LIMITS).window).to.equal(2);
  });

  it('refuses limits outside their ranges with KV_CONFIG', () => {
    const bad: StreamPaceLimits[] = [
      { ...LIMITS, minWindow: 0 }, { ...LIMITS, maxWindow: 1 }, { ...LIMITS, maxWindow: 2000 },
      { ...LIMITS, lagTargetMs: 0 }, { ...LIMITS, maxPauseMs: -1 }, { ...LIMITS, minWindow: 1.5 },
    ];
    for (const l of bad) expect(() => validateStreamPaceLimits(l), JSON.stringify(l)).to.throw().with.property('code', 'KV_CONFIG');
    expect(validateStreamPaceLimits({ ...LIMITS, minWindow: 32 })).to.deep.include({ minWindow: 32, maxWindow: 32 });
  });

  it('takes its ceiling and lag target from the node options streamMaxPartitions and streamLagTargetMs (bounded, KV_CONFIG)', () => {
    const c = loadConfig({ flags: { listen: '127.0.0.1:7001' } });
    expect([c.streamMaxPartitions, c.streamLagTargetMs]).to.deep.equal([STREAM_PACE_DEFAULTS.maxPartitions, STREAM_PACE_DEFAULTS.lagTargetMs]);
    const set = loadConfig({ flags: { 'stream-max-partitions': '64' }, env: { KV_STREAM_LAG_TARGET_MS: '50' } });
    expect([set.streamMaxPartitions, set.streamLagTargetMs]).to.deep.equal([64, 50]);
    const bad: Array<Record<string, string>> = [{ 'stream-max-partitions': '1' }, { 'stream-max-partitions': '5000' }, { 'stream-lag-target-ms': '0' }];
    for (const flags of bad) {
      expect(() => loadConfig({ flags }), JSON.stringify(flags)).to.throw().that.satisfies((e: unknown) => isKvError(e, 'KV_CONFIG'));
    }
    // Whatever the configuration admits, the core admits (floor 2 in the shell).
    validateStreamPaceLimits({ minWindow: 2, maxWindow: 2, lagTargetMs: 1, maxPauseMs: 200 });
    validateStreamPaceLimits({ minWindow: 2, maxWindow: 1024, lagTargetMs: 10_000, maxPauseMs: 200 });
  });

  it('simulation: bounded window, pauses only at the floor, lag near the threshold in the long run', () => {
    forSeeds((rng) => {
      const minWindow = 1 + rng.int(4);
      const limits: StreamPaceLimits = { minWindow, maxWindow: minWindow + rng.int(64), lagTargetMs: 5 + rng.int(50), maxPauseMs: rng.int(500) };
      // The node's lag: what it has anyway (seeded as the base, as the shell does) plus a cost per
      // partition in flight; the knee (where lag crosses the threshold) may lie below the floor,
      // inside, or above the ceiling.
      const baseMs = rng.next() * limits.lagTargetMs * 3;
      const perPartitionMs = 0.2 + rng.next() * 5;
      const pace = new StreamPace(limits, rng.int(100), baseMs);
      const threshold = Math.max(limits.lagTargetMs, 2 * baseMs);
      const knee = (threshold - baseMs) / perPartitionMs;
      let overThreshold = 0;
      let ticks = 0;
      for (let tick = 0; tick < 400; tick++) {
        // Stalls (a GC pause, a disk hiccup) now and then, none in the last 100 ticks.
        const stall = tick < 300 && rng.next() < 0.02 ? 500 * rng.next() : 0;
        const lag = baseMs + perPartitionMs * pace.window + (rng.next() - 0.5) * 2 + stall;
        pace.observe(lag);
        const { window, pauseMs } = pace;
        // Plain checks in the loop (chai per tick would dominate the run time).
        if (window < limits.minWindow || window > limits.maxWindow) expect.fail(`tick ${tick}: window ${window} outside [${limits.minWindow}, ${limits.maxWindow}]`);
        if (pauseMs > 0 && window !== limits.minWindow) expect.fail(`tick ${tick}: pause ${pauseMs} ms at window ${window}, above the floor`);
        if (pauseMs > limits.maxPauseMs) expect.fail(`tick ${tick}: pause ${pauseMs} ms over the cap`);
        if (pace.thresholdMs > threshold + 1e-9) expect.fail(`tick ${tick}: threshold ${pace.thresholdMs} above max(target, 2 x base) = ${threshold}`);
        if (tick >= 200) {
          ticks++;
          if (baseMs + perPartitionMs * window > pace.thresholdMs + 1) overThreshold++;
        }
      }
      if (knee >= limits.minWindow + 1 && knee <= limits.maxWindow) {
        // AIMD saws around the knee: one tick over per climb, so most ticks stay at or under the threshold.
        expect(overThreshold / ticks, `knee ${knee.toFixed(1)}`).to.be.below(0.35);
      }
      // The noise is ±1 ms: beyond that margin the lag is always under (over) the threshold.
      const end = pace.thresholdMs;
      if (baseMs + perPartitionMs * limits.maxWindow + 1 < end) expect(pace.window, 'no lag pressure: at the ceiling').to.equal(limits.maxWindow);
      if (baseMs + perPartitionMs * limits.minWindow - 1 > end) expect(pace.window, 'lag pressure at any window: at the floor').to.equal(limits.minWindow);
    });
  });
});
