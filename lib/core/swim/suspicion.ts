/**
 * Lifeguard dynamic suspicion (memberlist suspicion.go). A suspicion timer starts
 * at a maximum and shrinks, on a logarithmic curve, as independent members confirm
 * it; at k confirmations it reaches the minimum. A lone (maybe itself sick) accuser
 * thus waits long, while a real crash, seen by many, is declared fast.
 */
import { assert } from '../../errors.ts';
import type { SwimConfig } from './config.ts';

/** Minimum and maximum suspicion timeouts for a cluster of n members. */
export function suspicionBoundsMs(
  config: Pick<SwimConfig, 'suspicionMult' | 'suspicionMaxTimeoutMult' | 'probeIntervalMs'>,
  n: number,
): { minMs: number; maxMs: number } {
  // memberlist floors the node scale at 1: below 10 members log10(n) < 1 would shrink
  // the timeout under suspicionMult periods, too short for a refutation to travel.
  const nodeScale = Math.max(1, Math.log10(Math.max(1, n)));
  const minMs = Math.floor(config.suspicionMult * nodeScale * config.probeIntervalMs);
  return { minMs, maxMs: config.suspicionMaxTimeoutMult * minMs };
}

/**
 * Independent confirmations that bring the timeout to its minimum. memberlist derives
 * k = suspicionMult - 2 and uses 0 when fewer than that many members could confirm
 * (n - 2 of them: not the suspect, not the accuser), which makes the timeout flat at
 * the minimum in small clusters: at n = 3 one accuser alone would declare a node dead
 * after the minimum. We take k from its own knob (config.ts says why) and cap it at
 * the n - 2 possible confirmers instead, so at n = 3 a lone accuser waits the maximum
 * and the third member's confirmation brings it to the minimum; only at n = 2, where
 * nobody can confirm, is the timeout flat.
 */
export function confirmationsWanted(config: Pick<SwimConfig, 'suspicionConfirmations'>, n: number): number {
  return Math.max(0, Math.min(config.suspicionConfirmations, n - 2));
}

/**
 * Timeout after c confirmations, wanting k:
 * max(min, max - (max - min) · log(c + 1) / log(k + 1)); with k < 1 the minimum.
 */
export function suspicionTimeoutMs(confirmations: number, k: number, minMs: number, maxMs: number): number {
  if (k < 1) return minMs;
  const frac = Math.log(confirmations + 1) / Math.log(k + 1);
  const raw = Math.floor(maxMs - frac * (maxMs - minMs));
  return Math.max(minMs, raw);
}

export class Suspicion {
  readonly startMs: number;
  readonly k: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Accusers seen, the first one included; at most k + 1 entries. */
  readonly #accusers = new Set<string>();
  /** Added to the Lifeguard timeout (see setGrace). */
  #graceMs: number;
  #deadlineMs: number;

  constructor(accuser: string, k: number, minMs: number, maxMs: number, startMs: number, graceMs = 0) {
    assert(minMs <= maxMs, 'suspicion min above max');
    assert(graceMs >= 0, 'suspicion grace must not be negative');
    this.startMs = startMs;
    this.k = k;
    this.minMs = minMs;
    this.maxMs = maxMs;
    this.#graceMs = graceMs;
    this.#accusers.add(accuser);
    this.#deadlineMs = this.#deadline();
  }

  /** Confirmations beyond the first accusation. */
  get confirmations(): number {
    return this.#accusers.size - 1;
  }

  get deadlineMs(): number {
    return this.#deadlineMs;
  }

  get graceMs(): number {
    return this.#graceMs;
  }

  /** Counts an independent accuser; true if it was new (and so worth re-gossiping). */
  confirm(accuser: string): boolean {
    if (this.confirmations >= this.k || this.#accusers.has(accuser)) return false;
    this.#accusers.add(accuser);
    this.#deadlineMs = this.#deadline();
    return true;
  }

  /**
   * Extra wait on top of the Lifeguard timeout, from the start of the suspicion: the
   * core gives one probe period while our connection to the suspect is still open (a
   * paused process keeps its sockets; a killed one's close), none once it closed.
   */
  setGrace(graceMs: number): void {
    assert(graceMs >= 0, 'suspicion grace must not be negative');
    this.#graceMs = graceMs;
    this.#deadlineMs = this.#deadline();
  }

  #deadline(): number {
    return this.startMs + suspicionTimeoutMs(this.confirmations, this.k, this.minMs, this.maxMs) + this.#graceMs;
  }
}
