/**
 * The clock the skew fault stands on: a Node process preloaded with libfaketime reads
 * the offset in its file, follows a rewrite of that file while it runs (a jump forward,
 * then back), and keeps its timers running through both (the monotonic clock is not
 * faked). Real processes; skipped by name when libfaketime cannot be had.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SkewedClock, faketimeAvailable, faketimeOffset, findLibfaketime } from '../../lib/chaos/faketime.ts';
import { pollUntil } from '../helpers/poll.ts';
import { skipMissingBinary } from '../helpers/skip.ts';
import { ensureFaketime } from './ensure-faketime.ts';

/** How far a reading may stray from the offset: process start-up and pipe delay on a loaded machine. */
const TOLERANCE_MS = 1500;

describe('libfaketime under Node (the skew fault)', function () {
  this.timeout(120_000);
  let dir: string;
  let child: ChildProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kv-faketime-test-'));
  });

  afterEach(() => {
    child?.kill('SIGKILL');
    child = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes offsets as libfaketime reads them: signed seconds with 3 decimals', () => {
    expect(faketimeOffset(-3250)).to.equal('-3.250s');
    expect(faketimeOffset(1234)).to.equal('+1.234s');
    expect(faketimeOffset(0)).to.equal('+0.000s');
  });

  it('moves a running node process\'s wall clock with its file, forward and back, while its timers keep firing', async function () {
    const why = await ensureFaketime();
    if (why !== undefined) skipMissingBinary(this, 'libfaketime', why);
    const can = await faketimeAvailable(join(dir, 'probe.faketime'));
    expect(can, JSON.stringify(can)).to.deep.include({ ok: true, lib: findLibfaketime() });
    const clock = new SkewedClock(findLibfaketime() as string, join(dir, 'n1.faketime'));
    clock.set(-3000);
    // Prints its wall clock every 100 ms (a timer: it must keep firing across jumps).
    const p = spawn(process.execPath, ['-e', 'setInterval(() => console.log(Date.now()), 100)'], {
      env: { ...process.env, ...clock.env() }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    child = p;
    let skewMs = Number.NaN;
    let ticks = 0;
    p.stdout?.on('data', (b: Buffer) => {
      const last = b.toString().trim().split('\n').at(-1);
      skewMs = Number(last) - Date.now();
      ticks++;
    });
    const near = (target: number): boolean => Math.abs(skewMs - target) <= TOLERANCE_MS;
    await pollUntil(() => near(-3000), { timeoutMs: 20_000, what: 'the clock 3 s behind' });
    clock.set(2000);
    await pollUntil(() => near(2000), { timeoutMs: 20_000, what: 'a jump to 2 s ahead' });
    const before = ticks;
    clock.set(-1000);
    await pollUntil(() => near(-1000), { timeoutMs: 20_000, what: 'a jump back to 1 s behind' });
    await pollUntil(() => ticks >= before + 10, { timeoutMs: 20_000, what: 'timers firing after the backward jump' });
    expect(clock.offsetMs).to.equal(-1000);
  });
});
