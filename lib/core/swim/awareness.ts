/**
 * Lifeguard local health ("awareness"). Missed acks and nacks, being suspected and
 * event-loop lag are evidence that WE are slow; rather than accuse healthy peers we
 * stretch our own probe interval and timeout by (score + 1). Successful probes are
 * evidence we are healthy again and bring the score back down one step at a time.
 */
import { assert } from '../../errors.ts';

export class Awareness {
  readonly #max: number;
  #score = 0;

  /** The score stays within 0..max-1 (memberlist's awareness semantics). */
  constructor(max: number) {
    assert(Number.isInteger(max) && max >= 1, 'awareness max must be a positive integer');
    this.#max = max;
  }

  get score(): number {
    return this.#score;
  }

  applyDelta(delta: number): void {
    this.#score = Math.min(this.#max - 1, Math.max(0, this.#score + delta));
  }

  /** A timeout stretched by our health: (score + 1) · ms. */
  scale(ms: number): number {
    return ms * (this.#score + 1);
  }
}
