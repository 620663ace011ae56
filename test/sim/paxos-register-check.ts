/**
 * Linearizability of one key's history against a compare-and-set register, for the Paxos
 * simulation. The register holds (version, live) or nothing; every write has a unique
 * version, so a state is named by its version.
 *
 * Each op says what it may do to a state: a list of possible next states, empty when it
 * cannot take effect there. Completed ops must be placed between their invocation and
 * their response; ops whose outcome is unknown (no response, or "unknown") may be placed
 * anywhere after their invocation, or nowhere.
 *
 * Search: Wing & Gong's, with memoization on (ops placed, state) as in Lowe's version:
 * the ops that may come next are those invoked before the earliest response among the
 * completed ops not yet placed. Exponential in the worst case, hence the step budget;
 * running out of it is reported as such, never as a pass.
 */

export interface RegisterState {
  readonly version: string | null;
  readonly live: boolean;
}

export const EMPTY_REGISTER: RegisterState = { version: null, live: false };

export interface CheckedOp {
  readonly id: number;
  /** Sequence number of the invocation (a global event counter). */
  readonly invoke: number;
  /** Sequence number of the response; null = never took effect for sure (optional). */
  readonly respond: number | null;
  /** Possible states after this op at `s` (empty: it cannot be placed at `s`). */
  readonly step: (s: RegisterState) => RegisterState[];
  readonly describe: string;
}

export type RegisterVerdict =
  | { readonly ok: true; readonly steps: number }
  | { readonly ok: false; readonly steps: number; readonly reason: string };

export const DEFAULT_CHECK_STEPS = 2_000_000;

export function checkRegister(ops: readonly CheckedOp[], maxSteps = DEFAULT_CHECK_STEPS): RegisterVerdict {
  const sorted = [...ops].sort((a, b) => a.invoke - b.invoke);
  const n = sorted.length;
  const placed = new Uint8Array(n);
  const required = sorted.filter((o) => o.respond !== null).length;
  const seen = new Set<string>();
  let steps = 0;
  let deepest = 0;
  let blockedAt: string | null = null;

  // The memo key: the placed set as 32-bit words, then the state.
  const words = new Uint32Array(Math.ceil(n / 32));
  const flip = (i: number): void => { words[i >> 5] = (words[i >> 5] as number) ^ (1 << (i & 31)); };
  const key = (s: RegisterState): string => `${words.join(',')}|${s.version ?? '-'}|${s.live ? 1 : 0}`;

  const search = (s: RegisterState, done: number): boolean => {
    if (done === required) return true;
    if (++steps > maxSteps) throw new BudgetExceeded();
    const k = key(s);
    if (seen.has(k)) return false;
    seen.add(k);
    let minResp = Infinity;
    for (let i = 0; i < n; i++) {
      const o = sorted[i] as CheckedOp;
      if (placed[i] === 0 && o.respond !== null && o.respond < minResp) minResp = o.respond;
    }
    for (let i = 0; i < n; i++) {
      const o = sorted[i] as CheckedOp;
      if (o.invoke >= minResp) break;
      if (placed[i] === 1) continue;
      for (const next of o.step(s)) {
        placed[i] = 1;
        flip(i);
        const ok = search(next, done + (o.respond !== null ? 1 : 0));
        placed[i] = 0;
        flip(i);
        if (ok) return true;
      }
    }
    if (done >= deepest) {
      deepest = done;
      const blocking = sorted.find((o, i) => placed[i] === 0 && o.respond === minResp);
      blockedAt = `${blocking?.describe ?? '?'} cannot be placed at state ${s.version ?? 'absent'}${s.live ? '' : ' (not live)'}`;
    }
    return false;
  };

  try {
    if (search(EMPTY_REGISTER, 0)) return { ok: true, steps };
    return { ok: false, steps, reason: `not linearizable after placing ${deepest} of ${required} completed ops: ${blockedAt ?? ''}` };
  } catch (err) {
    if (err instanceof BudgetExceeded) return { ok: false, steps, reason: `checker budget of ${maxSteps} steps exhausted on ${n} ops` };
    throw err;
  }
}

class BudgetExceeded extends Error {}
