/**
 * Randomized backoff between attempts of one CAS operation, so duelling proposers stop
 * pre-empting each other: exponential growth with "full jitter" (a uniform draw from
 * 0 to the current ceiling), from an injected seeded rng. Two proposers that collided
 * then retry at independent random times; one usually completes its two round trips
 * before the other prepares again.
 */
import { KvError } from '../../errors.ts';
import type { Rng } from '../rng.ts';

export interface BackoffOptions {
  /**
   * Ceiling of the first retry's delay. Default 4 ms: an uncontended CAS takes two round
   * trips, about 1–2 ms between nodes of one site under load, so a draw from 0–4 ms
   * separates two colliding proposers by about one whole CAS on average.
   */
  readonly baseMs: number;
  /**
   * Largest ceiling. Default 128 ms: reached after six collisions in a row, which means
   * many proposers on one key; beyond it, waiting longer only adds latency while the
   * request deadline (Config.requestTimeoutMs, 5 s) still allows dozens of retries.
   */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ baseMs: 4, maxMs: 128 });

export function validateBackoff(o: BackoffOptions): BackoffOptions {
  if (!Number.isSafeInteger(o.baseMs) || o.baseMs < 1) throw new KvError('KV_CONFIG', 'paxos backoff baseMs must be a positive integer');
  if (!Number.isSafeInteger(o.maxMs) || o.maxMs < o.baseMs) throw new KvError('KV_CONFIG', 'paxos backoff maxMs must be an integer ≥ baseMs');
  return o;
}

/** Delay before retry number `retry` (1 = the first retry): uniform in [0, min(maxMs, baseMs·2^(retry−1))]. */
export function backoffMs(retry: number, rng: Rng, o: BackoffOptions = DEFAULT_BACKOFF): number {
  const exp = Math.min(Math.max(retry, 1) - 1, 30);
  const ceiling = Math.min(o.maxMs, o.baseMs * 2 ** exp);
  return rng.int(ceiling + 1);
}
