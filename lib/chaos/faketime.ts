/**
 * Clock skew for one node process, through libfaketime (Debian's `faketime` package,
 * installed by lib/chaos/install-faketime.sh).
 *
 * A skewed node runs with
 *   LD_PRELOAD=<dir>/libfaketime.so.1 FAKETIME_TIMESTAMP_FILE=<file>
 *   FAKETIME_CACHE_DURATION=1 FAKETIME_DONT_FAKE_MONOTONIC=1
 * and <file> holds its offset (`-3.250s`). What was found to work with Node 20 here:
 * - the wall clock (Date.now, what the HLC reads) follows the file, while the
 *   monotonic clock (timers, performance.now, libuv's loop) stays true, so timeouts and
 *   SWIM periods keep their length and only versions see the skew;
 * - rewriting the file moves a running process's clock (a jump forward or back):
 *   with FAKETIME_CACHE_DURATION=1 within a second. FAKETIME_NO_CACHE=1 makes it
 *   immediate but costs about 7.7 µs per Date.now() (0.13 µs cached), measured on
 *   this 2-core machine;
 * - fractional seconds work (`-2.345s`); `ms` does not mean milliseconds (it parses
 *   as minutes), so offsets are written in seconds with 3 decimals;
 * - a missing file means no offset.
 * Child processes inherit LD_PRELOAD, so a probe must drop it from their environment
 * to read the true clock (see `faketimeAvailable`).
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where Debian and the common distributions put the library (the install script looks in the same places). */
export const LIBFAKETIME_DIRS: readonly string[] = [
  '/usr/lib/x86_64-linux-gnu/faketime', '/usr/lib/aarch64-linux-gnu/faketime',
  '/usr/lib/faketime', '/usr/local/lib/faketime', '/usr/lib64/faketime',
];

export const INSTALL_HINT = 'sh lib/chaos/install-faketime.sh';

export function findLibfaketime(): string | undefined {
  for (const dir of LIBFAKETIME_DIRS) {
    const lib = `${dir}/libfaketime.so.1`;
    if (existsSync(lib)) return lib;
  }
  return undefined;
}

/** libfaketime's offset syntax: seconds with a sign and 3 decimals. */
export function faketimeOffset(offsetMs: number): string {
  return `${offsetMs < 0 ? '-' : '+'}${(Math.abs(offsetMs) / 1000).toFixed(3)}s`;
}

/** The environment that puts a process on the clock held in `file`. */
export function faketimeEnv(lib: string, file: string): Record<string, string> {
  return {
    LD_PRELOAD: lib,
    FAKETIME_TIMESTAMP_FILE: file,
    FAKETIME_CACHE_DURATION: '1',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
}

/** A probe's offset: far above any scheduling noise, far below anything that could overflow. */
const PROBE_OFFSET_MS = -1000 * 1000;
/** How far the probe's reading may stray from the offset (process start, a loaded machine). */
const PROBE_TOLERANCE_MS = 30 * 1000;

/**
 * Whether skew can be applied here: the library exists, and a Node process preloaded
 * with it reads a wall clock moved by the file's offset while its timers still run.
 */
export async function faketimeAvailable(probeFile: string): Promise<{ ok: true; lib: string } | { ok: false; why: string }> {
  const lib = findLibfaketime();
  if (lib === undefined) return { ok: false, why: `libfaketime.so.1 not found in ${LIBFAKETIME_DIRS.join(', ')}` };
  writeFileSync(probeFile, `${faketimeOffset(PROBE_OFFSET_MS)}\n`);
  try {
    const before = Date.now();
    const { stdout } = await run(process.execPath, ['-e', 'setTimeout(() => console.log(Date.now()), 20)'], {
      env: { ...process.env, ...faketimeEnv(lib, probeFile) }, timeout: 10_000,
    });
    const skew = Number(stdout.trim()) - before;
    if (!(Math.abs(skew - PROBE_OFFSET_MS) <= PROBE_TOLERANCE_MS)) {
      return { ok: false, why: `a node under ${lib} read a clock ${skew} ms off instead of ${PROBE_OFFSET_MS}` };
    }
    return { ok: true, lib };
  } catch (err) {
    return { ok: false, why: `node under ${lib} failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** One node's skewable clock: the file its libfaketime reads, and the offset in it. */
export class SkewedClock {
  private current = 0;

  constructor(readonly lib: string, readonly file: string) {
    this.set(0);
  }

  get offsetMs(): number {
    return this.current;
  }

  env(): Record<string, string> {
    return faketimeEnv(this.lib, this.file);
  }

  /** Moves the clock: a running process follows within FAKETIME_CACHE_DURATION (1 s). */
  set(offsetMs: number): void {
    writeFileSync(this.file, `${faketimeOffset(offsetMs)}\n`);
    this.current = offsetMs;
  }
}
