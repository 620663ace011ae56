/**
 * The node's hybrid logical clock made durable across restarts (CockroachDB's approach):
 * a high-water mark above every version this node has stamped is synced to disk ahead of
 * time, and a restarted node starts its HLC there. A wall clock that went back while the
 * node was down therefore cannot make it stamp versions below its earlier ones (DESIGN.md
 * §2 guarantee 8: "the HLC never goes back, across restarts too").
 *
 * The mark runs `leaseMs` ahead of the newest stamp and is renewed when a stamp comes within
 * half of that, so renewals cost one tiny synced write per half-lease of write traffic and
 * nothing while idle; a stamp waits only when it would pass a mark not yet on disk.
 */
import { SUBLEVELS, type Backend } from '../storage/backend.ts';
import type { Hlc, Timestamp } from '../core/hlc.ts';

const MARK_KEY = 'hlc';

/**
 * How far the persisted mark runs ahead of the newest stamp: min(2 s, maxClockSkewMs / 4).
 * After a restart the node stamps from the mark, so its first versions may be this far ahead
 * of real time; a quarter of the skew bound keeps them well inside what peers accept, and
 * 2 s keeps renewals to about one synced write a second under steady writes.
 */
export function markLeaseMs(maxClockSkewMs: number): number {
  return Math.max(1, Math.min(2000, Math.floor(maxClockSkewMs / 4)));
}

export interface DurableClockOptions {
  hlc: Hlc;
  backend: Backend;
  leaseMs: number;
  now?: () => number;
}

export class DurableClock {
  private mark = 0;
  private renewing: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(private readonly o: DurableClockOptions) {
    this.now = o.now ?? Date.now;
  }

  get hlc(): Hlc {
    return this.o.hlc;
  }

  /** Load the mark and move it ahead before the node stamps anything. */
  async open(): Promise<void> {
    const buf = await this.o.backend.get(SUBLEVELS.meta, MARK_KEY);
    if (buf !== undefined && buf.length === 8) {
      this.mark = Number(buf.readBigUInt64BE(0));
      this.o.hlc.restore({ wall: this.mark, logical: 0 });
    }
    await this.renew();
  }

  /** The persisted high-water mark (wall ms). */
  get persistedMark(): number {
    return this.mark;
  }

  /** A fresh timestamp for a new version; a promise only when the mark must move first. */
  stamp(): Timestamp | Promise<Timestamp> {
    const ts = this.o.hlc.now(this.now());
    if (ts.wall < this.mark) {
      if (ts.wall >= this.mark - this.o.leaseMs / 2) void this.renew().catch(() => undefined);
      return ts;
    }
    return this.coverUntil(ts);
  }

  /** A renewal already in flight may have aimed below `ts`: renew until the mark covers it. */
  private async coverUntil(ts: Timestamp): Promise<Timestamp> {
    while (ts.wall >= this.mark) await this.renew();
    return ts;
  }

  /** Persist a mark `leaseMs` above the newest timestamp (one renewal in flight at a time). */
  private renew(): Promise<void> {
    if (this.renewing) return this.renewing;
    const target = Math.max(this.now(), this.o.hlc.peek().wall) + this.o.leaseMs;
    const value = Buffer.allocUnsafe(8);
    value.writeBigUInt64BE(BigInt(target), 0);
    this.renewing = this.o.backend.batch([{ type: 'put', sub: SUBLEVELS.meta, key: MARK_KEY, value }], true).then(() => {
      this.mark = Math.max(this.mark, target);
    }).finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }
}
