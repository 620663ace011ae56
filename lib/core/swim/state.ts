/**
 * Liveness states and the precedence rule between rumours about one member.
 *
 * A rumour is (incarnation, state). Rumours are ordered lexicographically by
 * incarnation, then by state rank alive < suspect < dead; a rumour replaces what we
 * hold only if it is strictly greater. That yields the SWIM paper's rules
 * (Das et al. 2002, section 4.2):
 *   alive(i)   overrides suspect(j) and dead(j) only if i > j
 *   suspect(i) overrides alive(j) if i >= j, and dead(j) only if i > j
 *   dead(i)    overrides alive(j) and suspect(j) if i >= j
 * Because the order is total and every view only moves up it, all views that have
 * seen the same rumours agree whatever order the rumours arrived in.
 */
export type Liveness = 'alive' | 'suspect' | 'dead';

export const LIVENESS_RANK: Readonly<Record<Liveness, number>> = Object.freeze({ alive: 0, suspect: 1, dead: 2 });

export interface Rumour {
  readonly liveness: Liveness;
  readonly incarnation: number;
}

/** Negative, zero or positive as rumour a is older than, equal to or newer than b. */
export function compareRumours(a: Rumour, b: Rumour): number {
  if (a.incarnation !== b.incarnation) return a.incarnation < b.incarnation ? -1 : 1;
  return LIVENESS_RANK[a.liveness] - LIVENESS_RANK[b.liveness];
}

/** Whether `incoming` replaces `current` in a member's view. */
export function overrides(incoming: Rumour, current: Rumour): boolean {
  return compareRumours(incoming, current) > 0;
}
