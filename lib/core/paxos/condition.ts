/**
 * Conditions of a conditional write, evaluated against the newest record a prepare quorum
 * showed. A record is live when it holds a value and has not expired; an expired record
 * counts exactly as a tombstone of the same version (it reads as not found, and the TTL
 * design turns it into one): `If-None-Match: *` holds on it and `If-Match` never does.
 * Expiry is judged at the coordinator's clock reading, passed in by the runtime.
 */
import type { CasCondition, CurrentState, PaxosRecord } from './types.ts';

export function isLive(rec: PaxosRecord | null, nowMs: number): boolean {
  return rec !== null && rec.value !== null && (rec.expiresAt === undefined || rec.expiresAt > nowMs);
}

export function currentState(rec: PaxosRecord | null, nowMs: number): CurrentState {
  return { record: rec, live: isLive(rec, nowMs) };
}

export function conditionHolds(c: CasCondition, cur: CurrentState): boolean {
  switch (c.kind) {
    case 'always': return true;
    case 'if-none-match': return !cur.live;
    case 'if-match': return cur.live && cur.record !== null && cur.record.version === c.version;
  }
}

/** The newer of two records by version (null = nothing). */
export function newerRecord(a: PaxosRecord | null, b: PaxosRecord | null): PaxosRecord | null {
  if (a === null) return b;
  if (b === null) return a;
  return b.version > a.version ? b : a;
}
