/**
 * The restart backoff of `kv start` (lib/cli/supervisor.ts): the base delay first, doubled
 * for each further quick exit, capped, and never spinning with a zero base delay.
 */
import { expect } from 'chai';
import { RESTART_BACKOFF_CAP_MS, RESTART_STABLE_UPTIME_MS, restartDelayMs } from '../../lib/cli/supervisor.ts';

const policy = (baseDelayMs: number): { baseDelayMs: number; capMs: number; stableUptimeMs: number } =>
  ({ baseDelayMs, capMs: RESTART_BACKOFF_CAP_MS, stableUptimeMs: RESTART_STABLE_UPTIME_MS });

describe('kv start restart backoff', () => {
  it('restarts after the base delay, then doubles per quick exit up to the 60 s cap', () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 100].map((k) => restartDelayMs(policy(5000), k));
    expect(delays).to.deep.equal([5000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000, 60_000]);
  });

  it('grows from 1 s when the base delay is 0, so a crash loop cannot spin', () => {
    expect([0, 1, 2, 6].map((k) => restartDelayMs(policy(0), k))).to.deep.equal([0, 2000, 4000, 60_000]);
  });

  it('never cuts a base delay above the cap', () => {
    expect([0, 1, 5].map((k) => restartDelayMs(policy(90_000), k))).to.deep.equal([90_000, 90_000, 90_000]);
  });
});
