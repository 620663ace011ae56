/**
 * What a chaos run asks the cluster over HTTP, outside the workload: membership views
 * (`GET /cluster`), the partition table (`GET /cluster/ring`), a replica's own record of
 * a key (`GET /cluster/records/:key`), and bounded polling for a state to arrive.
 */
import { partitionOf } from '../core/partitioner.ts';

const SECOND = 1000;
/** Gap between polls: a cluster state takes gossip rounds (200 ms probes) to change. */
const POLL_INTERVAL_MS = 250;

export interface ClusterMember { id: string; addr: string; state: string; liveness: string }

export interface ClusterView {
  id: string;
  epoch: number;
  members: ClusterMember[];
}

export interface RingView {
  partitions: number;
  table: Array<{ partition: number; replicas: string[] }>;
}

export async function getJson<T>(addr: string, path: string, timeoutMs = 3 * SECOND): Promise<T> {
  const res = await fetch(`http://${addr}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${path} on ${addr}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** Runs fn over items with at most `limit` in flight. */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Polls fn until it returns a value; errors count as "not yet". Throws with the last error at the deadline. */
export async function pollUntil<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Every node serves and sees `size` normal, alive members at one epoch (`beforePoll` runs before each look). */
export async function waitAllAlive(addrs: readonly string[], size: number, timeoutMs: number, beforePoll?: () => void): Promise<ClusterView[]> {
  return pollUntil(`${size} normal, alive members in every node's view`, timeoutMs, async () => {
    beforePoll?.();
    const views = await Promise.all(addrs.map((a) => getJson<ClusterView>(a, '/cluster')));
    const epoch = views[0]?.epoch;
    const ok = views.every((v) => v.epoch === epoch && v.members.length === size &&
      v.members.every((m) => m.state === 'normal' && m.liveness === 'alive'));
    return ok ? views : undefined;
  });
}

/** The replicas of each key under one partition table, and where each member listens. */
export class ReplicaMap {
  constructor(private readonly ring: RingView, private readonly addrOf: ReadonlyMap<string, string>) {}

  static async fetch(addr: string, addrOf: ReadonlyMap<string, string>): Promise<ReplicaMap> {
    return new ReplicaMap(await getJson<RingView>(addr, '/cluster/ring', 10 * SECOND), addrOf);
  }

  replicasOf(key: string): string[] {
    return this.ring.table[partitionOf(key, this.ring.partitions)]?.replicas ?? [];
  }

  addr(id: string): string | undefined {
    return this.addrOf.get(id);
  }
}

/** What one replica holds for a key, as a comparable string: `absent`, `value @<v>`, `tombstone @<v>`, `error …`. */
export type RecordSig = string;

/** Each replica's own record of `key` (no quorum, no repair). */
export async function replicaRecordSigs(replicas: ReplicaMap, key: string): Promise<Map<string, RecordSig>> {
  const out = new Map<string, RecordSig>();
  await Promise.all(replicas.replicasOf(key).map(async (id) => {
    const res = await fetch(`http://${replicas.addr(id)}/cluster/records/${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(5 * SECOND) });
    if (res.status === 404) out.set(id, 'absent');
    else if (res.ok) {
      const r = (await res.json()) as { version: string; tombstone: boolean };
      out.set(id, `${r.tombstone ? 'tombstone' : 'value'} @${r.version}`);
    } else out.set(id, `error HTTP ${res.status}`);
  }));
  return out;
}
