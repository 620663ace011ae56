/**
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
 *
 * A timestamp is (wall ms, logical counter). Versions append the stamping node's id
 * as a tie-break, so two writes never share a version. The encoding is fixed-width
 * lowercase hex followed by ':' and the node id, so plain string (and byte) order
 * equals version order:
 *
 *   018c3f2a1b2c0001:n1   = wall 0x018c3f2a1b2c ms, logical 1, stamped by node n1
 *
 * Pure: the physical clock reading is passed in by the caller.
 */
import { KvError } from '../errors.ts';

export interface Timestamp {
  /** Milliseconds since the epoch (48 bits are enough until the year 10889). */
  readonly wall: number;
  /** Counter that orders events within one wall millisecond (16 bits). */
  readonly logical: number;
}

export type Version = string;

const WALL_MAX = 2 ** 48 - 1;
const LOGICAL_MAX = 0xffff;
const TS_HEX = 16;
/** Node ids: what may follow the ':' in a version (also the cluster-wide id rule). */
export const NODE_ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;

export const ZERO_TS: Timestamp = { wall: 0, logical: 0 };

export function compareTs(a: Timestamp, b: Timestamp): number {
  return a.wall !== b.wall ? (a.wall < b.wall ? -1 : 1) : Math.sign(a.logical - b.logical);
}

export function encodeTs(ts: Timestamp): string {
  return ts.wall.toString(16).padStart(12, '0') + ts.logical.toString(16).padStart(4, '0');
}

const HEX16_RE = /^[0-9a-f]{16}$/;

export function decodeTs(s: string): Timestamp {
  if (typeof s !== 'string' || !HEX16_RE.test(s)) {
    throw new KvError('KV_INVALID_ARGUMENT', `invalid HLC timestamp: ${String(s).slice(0, 40)}`);
  }
  return { wall: parseInt(s.slice(0, 12), 16), logical: parseInt(s.slice(12), 16) };
}

export function makeVersion(ts: Timestamp, nodeId: string): Version {
  return `${encodeTs(ts)}:${nodeId}`;
}

export function isVersion(v: unknown): v is Version {
  return typeof v === 'string' && v.length > TS_HEX + 1 && v.length <= TS_HEX + 65 &&
    v.charCodeAt(TS_HEX) === 58 /* ':' */ && HEX16_RE.test(v.slice(0, TS_HEX)) &&
    NODE_ID_RE.test(v.slice(TS_HEX + 1));
}

export function parseVersion(v: string): { ts: Timestamp; nodeId: string } {
  if (!isVersion(v)) throw new KvError('KV_INVALID_ARGUMENT', `invalid version: ${String(v).slice(0, 100)}`);
  return { ts: decodeTs(v.slice(0, TS_HEX)), nodeId: v.slice(TS_HEX + 1) };
}

/**
 * Bound on a version that arrives from a peer, a hint or a client session: its physical
 * time may be at most `maxClockSkewMs` ahead of local physical time. A far-future version
 * would win every last-writer-wins comparison for as long as it is ahead, so it is refused
 * (KV_CLOCK_SKEW) rather than stored.
 */
export function checkVersionBound(v: Version, physicalMs: number, maxClockSkewMs: number): void {
  const ahead = parseInt(v.slice(0, 12), 16) - Math.floor(physicalMs);
  if (ahead > maxClockSkewMs) {
    throw new KvError('KV_CLOCK_SKEW', `version ${v.slice(0, 80)} is ${ahead} ms ahead of this node's clock (limit ${maxClockSkewMs} ms)`);
  }
}

/** Total order on versions: -1, 0 or 1. Plain string order is the version order. */
export function compareVersions(a: Version, b: Version): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface HlcOptions {
  /** Remote timestamps further than this ahead of local physical time are rejected. */
  maxClockSkewMs: number;
}

export class Hlc {
  private last: Timestamp = ZERO_TS;
  /** Remote timestamps rejected for being too far ahead (exported as a metric). */
  rejectedSkew = 0;

  constructor(private readonly opts: HlcOptions) {}

  /** The latest timestamp issued or observed. */
  peek(): Timestamp {
    return this.last;
  }

  /**
   * Never issue anything at or below `floor` (a persisted high-water mark, after a restart
   * whose wall clock may have gone back). Local and trusted: no skew check.
   */
  restore(floor: Timestamp): void {
    if (compareTs(floor, this.last) > 0) this.last = floor;
  }

  /** Send/local-event rule: a new timestamp strictly greater than every earlier one. */
  now(physicalMs: number): Timestamp {
    const pt = Math.floor(physicalMs);
    const next = pt > this.last.wall ? { wall: pt, logical: 0 } : this.bump(this.last);
    this.last = next;
    return next;
  }

  /**
   * Receive rule: merge a remote timestamp so later local events order after it.
   * Throws KV_CLOCK_SKEW (and counts it) when the remote clock is too far ahead.
   */
  update(remote: Timestamp, physicalMs: number): Timestamp {
    const pt = Math.floor(physicalMs);
    if (remote.wall - pt > this.opts.maxClockSkewMs) {
      this.rejectedSkew++;
      throw new KvError('KV_CLOCK_SKEW',
        `remote clock is ${remote.wall - pt} ms ahead (limit ${this.opts.maxClockSkewMs} ms)`);
    }
    const wall = Math.max(pt, this.last.wall, remote.wall);
    let logical: number;
    if (wall === this.last.wall && wall === remote.wall) logical = Math.max(this.last.logical, remote.logical) + 1;
    else if (wall === this.last.wall) logical = this.last.logical + 1;
    else if (wall === remote.wall) logical = remote.logical + 1;
    else logical = 0;
    this.last = logical > LOGICAL_MAX ? this.bump({ wall, logical: LOGICAL_MAX }) : { wall, logical };
    return this.last;
  }

  /** Logical overflow borrows the next millisecond: order stays strict, wall drifts ahead by at most 1 ms per 65,536 events. */
  private bump(ts: Timestamp): Timestamp {
    if (ts.logical < LOGICAL_MAX) return { wall: ts.wall, logical: ts.logical + 1 };
    if (ts.wall >= WALL_MAX) throw new Error('assertion failed: HLC wall clock overflow');
    return { wall: ts.wall + 1, logical: 0 };
  }
}
