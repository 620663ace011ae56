/**
 * The order Paxos decides by. Ballots are Versions, so plain string order is ballot
 * order; a rank orders ballot first, then the record's version (see types.ts `Rank`).
 */
import type { AcceptedProposal, Ballot, Rank } from './types.ts';

export function compareBallots(a: Ballot, b: Ballot): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** -1, 0 or 1; null (nothing) ranks below everything. */
export function compareRanks(a: Rank | null, b: Rank | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  return a.ballot !== b.ballot ? compareBallots(a.ballot, b.ballot) : compareBallots(a.version, b.version);
}

export function rankOf(p: AcceptedProposal): Rank {
  return { ballot: p.ballot, version: p.record.version };
}

export function maxBallot(a: Ballot | null, b: Ballot | null): Ballot | null {
  if (a === null) return b;
  if (b === null) return a;
  return a >= b ? a : b;
}
