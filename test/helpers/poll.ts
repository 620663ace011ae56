/** Thrown by a check to stop polling at once (the awaited state can no longer come). */
export class FatalPollError extends Error {}

/** Poll `check` until it returns a truthy value or the deadline passes (never a bare sleep). */
export async function pollUntil<T>(check: () => Promise<T> | T, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (err) {
      if (err instanceof FatalPollError) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${opts.what ?? 'condition'} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

/**
 * pollUntil for a synchronous, in-process condition (a flag, a counter, a connection
 * state): no I/O stands between two checks, so it polls every 5 ms, and a condition
 * that throws fails at once instead of being retried.
 */
export async function waitUntil(cond: () => boolean, what: string, opts: { timeoutMs?: number } = {}): Promise<void> {
  await pollUntil(() => {
    try {
      return cond();
    } catch (err) {
      throw new FatalPollError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }, { what, intervalMs: 5, ...opts });
}
