/**
 * The one allowed kind of skip: a test whose external binary (k6, libfaketime, Chromium,
 * network namespaces) cannot be had on this machine. It is reported by name with the
 * reason, shows as "pending" in mocha's summary, and `.ci/run` fails when anything was
 * skipped, so a missing binary can never pass silently.
 */
import type { Context } from 'mocha';

export const SKIP_MARK = 'SKIPPED-MISSING-BINARY';

export function skipMissingBinary(ctx: Context, binary: string, reason: string): never {
  const title = ctx.currentTest?.fullTitle() ?? ctx.test?.fullTitle() ?? '(unnamed test)';
  process.stdout.write(`${SKIP_MARK}: ${title}: ${binary}: ${reason}\n`);
  ctx.skip();
  throw new Error('unreachable: mocha skip');
}
