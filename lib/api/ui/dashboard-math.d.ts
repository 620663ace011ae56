// Types of dashboard-math.js (plain JS, served to the browser as is) for the TypeScript tests.
export interface Fold { boundsS: number[]; ops: Record<string, { count: number; errors: number; buckets: number[] | null }> }
export interface Delta { dtS: number; boundsS: number[]; ops: Record<string, { count: number; rate: number; errorRate: number; buckets: number[] | null }> }
export interface StatsLike {
  nowMs: number;
  startedAtMs: number;
  http: { boundsS: number[]; series: { route: string; method: string; count: number; serverErrors: number; buckets: number[] }[] };
}
export interface Digest {
  via: string; clusterId: string; epoch: number; leader: string | null; term: number;
  members: Map<string, { state: string; liveness: string }>; reach: Map<string, string | null>; started: Map<string, number>;
}
export interface FeedEvent { kind: string; text: string }
export const OPERATIONS: string[];
export function operationOf(route: string, method: string): string;
export function quantile(q: number, boundsS: number[], cum: number[]): number | null;
export function foldOperations(stats: StatsLike): Fold;
export function delta(older: { nowMs: number; startedAtMs: number; fold: Fold }, newer: { nowMs: number; startedAtMs: number; fold: Fold }): Delta | null;
export function mergeDeltas(list: (Delta | null)[]): Delta | null;
export function summarize(d: Delta | null, pick?: (op: string) => boolean): { rate: number | null; errorRate: number | null; p50: number | null; p99: number | null; count: number };
export class SampleHistory {
  constructor(keepMs: number);
  byNode: Map<string, unknown[]>;
  add(t: number, id: string, stats: StatsLike): void;
  forget(id: string): void;
  window(id: string, ms: number): Delta | null;
}
export function digest(answer: unknown): Digest;
export function diffEvents(prev: Digest | null, cur: Digest): FeedEvent[];
