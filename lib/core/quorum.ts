/**
 * Quorum arithmetic and request-parameter parsing (DESIGN.md §8).
 * Pure: used by the HTTP layer to validate `w`/`r` and by the coordinator to decide.
 */
import { KvError } from '../errors.ts';

export type QuorumSpec = number | 'one' | 'quorum' | 'all';

/** Parse a `w`/`r` query value: 1..N, one, quorum or all. Throws KV_INVALID_ARGUMENT. */
export function parseQuorum(name: string, raw: string, n: number): QuorumSpec {
  if (raw === 'one' || raw === 'quorum' || raw === 'all') return raw;
  if (!/^[0-9]{1,3}$/.test(raw)) {
    throw new KvError('KV_INVALID_ARGUMENT', `${name} must be 1..${n}, one, quorum or all; got "${raw.slice(0, 20)}"`);
  }
  const v = Number(raw);
  if (v < 1 || v > n) throw new KvError('KV_INVALID_ARGUMENT', `${name} must be between 1 and N=${n}; got ${v}`);
  return v;
}

/**
 * Required acknowledgements for a spec, given the replica count of the key's
 * preference list (min(N, members)). Named specs scale with the real replica count,
 * so a one-node development cluster serves `quorum` and `all`; explicit numbers do not,
 * so `w=3` on fewer than three replicas is refused as unavailable rather than weakened.
 */
export function required(spec: QuorumSpec, replicas: number): number {
  switch (spec) {
    case 'one': return 1;
    case 'quorum': return Math.floor(replicas / 2) + 1;
    case 'all': return replicas;
    default: return spec;
  }
}
