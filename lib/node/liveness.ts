/**
 * Liveness as the rest of a node sees it (SWIM gossip, lib/node/gossip.ts, provides it).
 * Liveness never changes ownership: it steers coordinators to live replicas, orders reads,
 * decides when hints are delivered and feeds the Raft voter policy.
 */
export interface MemberView {
  liveness: 'alive' | 'suspect' | 'dead';
  incarnation: number;
  /** Wall-clock ms when this node last heard from the member itself, or null (never). */
  lastHeardMs: number | null;
}

export interface Liveness {
  isAlive(id: string): boolean;
  view(id: string): MemberView;
  setMembers(ids: string[]): void;
  stop(): void;
}
