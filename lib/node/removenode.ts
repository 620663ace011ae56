/**
 * `kv removenode ID` (Cassandra's removenode): a member that died for good leaves the ring
 * without streaming anything itself. The node that received the request orchestrates:
 *
 *   1. refuse a target gossip does not consider dead (a live one is decommissioned instead);
 *   2. commit `leave` for it (one ownership change at a time: KV_TOPOLOGY_BUSY otherwise), so
 *      the future table places its partitions on new owners and writes reach them;
 *   3. every new owner exchanges each partition it gains with every SURVIVING current owner
 *      (`ae.sync`): an acknowledged write lives on W replicas, so it is on at least one of
 *      them, and the exchange with all of them collects it;
 *   4. only then commit `remove`.
 *
 * A run that fails (an owner down too long) leaves the target `leaving`; running removenode
 * again resumes from step 3. A dead member that never finished joining owns nothing yet and
 * is removed at once (a stuck joiner would otherwise block every other ownership change). If the target comes back meanwhile, it streams its own data as a
 * leaving node does; both paths converge on `remove`.
 */
import { KvError, isKvError } from '../errors.ts';
import { replicasOf } from '../core/partitioner.ts';
import type { Topology, TopologyCommand } from '../core/topology.ts';
import type { Transport } from '../net/transport.ts';
import type { Operation } from './operations.ts';
import type { Logger } from './log.ts';

/** Partition × new-owner units synced at once. */
const CONCURRENCY = 4;
/** One `ae.sync` exchange of one partition. */
const SYNC_TIMEOUT_MS = 60_000;
/** How long one unit keeps retrying (a surviving owner may be restarting). */
const UNIT_DEADLINE_MS = 10 * 60_000;
/** Wait for the local topology to show a committed change. */
const EPOCH_WAIT_MS = 30_000;

export interface RemoveNodeDeps {
  selfId: string;
  topology: () => Topology;
  isAlive: (id: string) => boolean;
  /** Commit a topology command through the Raft leader. */
  propose: (cmd: TopologyCommand) => Promise<unknown>;
  /** Exchange partition `p` with `peer` from this node; resolves with the records moved. */
  exchangeHere: (p: number, peer: string) => Promise<number>;
  transport: Transport;
  log: Logger;
}

/** Throws before anything changes when `id` cannot be removed this way. */
export function checkRemovable(d: RemoveNodeDeps, id: string): void {
  const m = d.topology().member(id);
  if (!m || m.state === 'removed') throw new KvError('KV_NOT_FOUND', `no member ${id}`);
  if (id === d.selfId) throw new KvError('KV_INVALID_ARGUMENT', 'a node cannot remove itself; run removenode through another node');
  if (d.isAlive(id)) {
    throw new KvError('KV_INVALID_ARGUMENT', `${id} is alive (gossip): removenode is for dead members; use kv decommission ${id}`);
  }
  if (m.state !== 'normal' && m.state !== 'leaving' && m.state !== 'joining') {
    throw new KvError('KV_INVALID_ARGUMENT', `${id} is ${m.state}, not a normal, leaving or joining member`);
  }
}

async function waitFor(d: RemoveNodeDeps, cond: (t: Topology) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + EPOCH_WAIT_MS;
  while (!cond(d.topology())) {
    if (Date.now() > deadline) throw new KvError('KV_TIMEOUT', `the committed change did not arrive here in time (${what})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Unit { p: number; owner: string; sources: string[] }

export async function removeDeadNode(d: RemoveNodeDeps, id: string, op: Operation): Promise<{ epoch: number }> {
  checkRemovable(d, id);
  if (d.topology().member(id)?.state === 'joining') {
    // A joiner that died (or never came) owns nothing yet, but it blocks every other ownership
    // change (one at a time): it goes at once, nothing to re-replicate.
    op.step(`committing remove of ${id} (it never finished joining)`);
    await d.propose({ op: 'remove', id });
    await waitFor(d, (x) => x.member(id)?.state === 'removed', `${id} removed`);
    return { epoch: d.topology().epoch };
  }
  if (d.topology().member(id)?.state === 'normal') {
    op.step(`committing leave of ${id}`);
    await d.propose({ op: 'leave', id });
    await waitFor(d, (t) => t.member(id)?.state === 'leaving', `${id} leaving`);
  }
  const t = d.topology();
  const cur = t.table('current');
  const fut = t.table('future');
  const units: Unit[] = [];
  for (let p = 0; p < t.partitions; p++) {
    const c = replicasOf(cur, p);
    const sources = c.filter((x) => x !== id);
    for (const owner of replicasOf(fut, p)) if (!c.includes(owner)) units.push({ p, owner, sources: sources.filter((x) => x !== owner) });
  }
  op.total(units.length);
  op.step(`re-replicating ${units.length} partition copies from the surviving replicas`);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < units.length) {
      const u = units[next++] as Unit;
      let moved = 0;
      for (const source of u.sources) moved += await syncUnit(d, u, source);
      op.add(1, moved);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  op.step(`committing remove of ${id}`);
  try {
    await d.propose({ op: 'remove', id });
  } catch (err) {
    // The target came back and finished its own leave first: it is removed all the same.
    if (!(isKvError(err, 'KV_INVALID_ARGUMENT') && d.topology().member(id)?.state === 'removed')) throw err;
  }
  await waitFor(d, (x) => x.member(id)?.state === 'removed', `${id} removed`);
  d.log.info({ id, units: units.length }, 'removenode done: the dead member\'s partitions are on their new owners');
  return { epoch: d.topology().epoch };
}

/** New owner `u.owner` pulls partition `u.p` from `source`, retrying while either is unreachable. */
async function syncUnit(d: RemoveNodeDeps, u: Unit, source: string): Promise<number> {
  const deadline = Date.now() + UNIT_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      if (u.owner === d.selfId) return await d.exchangeHere(u.p, source);
      const r = await d.transport.request<{ moved?: unknown }>(u.owner, 'ae.sync', { partition: u.p, peer: source }, { timeoutMs: SYNC_TIMEOUT_MS });
      return typeof r?.moved === 'number' ? r.moved : 0;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new KvError('KV_UNAVAILABLE', `partition ${u.p}: ${u.owner} could not copy it from ${source}: ${(err as Error).message}`, { cause: err });
      }
      d.log.debug({ err, p: u.p, owner: u.owner, source }, 'removenode: partition copy failed; retrying');
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** Math.min(attempt, 5))));
    }
  }
}
