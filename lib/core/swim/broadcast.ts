/**
 * Transmit-limited gossip queue (memberlist's TransmitLimitedQueue). Each update is
 * piggybacked on outgoing messages until it has been sent retransmitLimit times;
 * the least-sent updates go first, so a fresh rumour overtakes a stale one.
 *
 * Bound: one entry per member (a newer update about a member replaces the older
 * one), so the queue never holds more entries than the cluster has members.
 */
import type { SwimUpdate } from './messages.ts';

/** memberlist: retransmitMult · ceil(log10(n + 1)); reaches all n with high probability. */
export function retransmitLimit(retransmitMult: number, n: number): number {
  return retransmitMult * Math.ceil(Math.log10(n + 1));
}

interface Entry {
  update: SwimUpdate;
  transmits: number;
  /** Insertion order: among equally-sent updates the newest goes first. */
  order: number;
}

export class BroadcastQueue {
  readonly #entries = new Map<string, Entry>();
  #order = 0;

  get size(): number {
    return this.#entries.size;
  }

  /** Queues an update, replacing any older one about the same member. */
  enqueue(update: SwimUpdate): void {
    this.#entries.set(update.id, { update, transmits: 0, order: this.#order++ });
  }

  remove(id: string): void {
    this.#entries.delete(id);
  }

  /** Transmits left for the update about id (for tests and metrics). */
  transmits(id: string): number | undefined {
    return this.#entries.get(id)?.transmits;
  }

  /**
   * Takes up to `max` updates for one message, counting one transmit each and
   * dropping those that reached `limit`. `skip` leaves out updates already carried
   * by the message by other means.
   */
  take(max: number, limit: number, skip?: (u: SwimUpdate) => boolean): SwimUpdate[] {
    if (max <= 0 || this.#entries.size === 0) return [];
    const sorted = [...this.#entries.values()].sort((a, b) => a.transmits - b.transmits || b.order - a.order);
    const out: SwimUpdate[] = [];
    for (const e of sorted) {
      if (out.length >= max) break;
      if (e.transmits >= limit) {
        this.#entries.delete(e.update.id);
        continue;
      }
      if (skip?.(e.update)) continue;
      out.push(e.update);
      e.transmits++;
      if (e.transmits >= limit) this.#entries.delete(e.update.id);
    }
    return out;
  }
}
