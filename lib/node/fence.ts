/**
 * Per-partition epoch fencing (DESIGN.md §6, REFERENCES "Topology safety"): a replica
 * remembers, for each partition, the epoch at which its owners (current or future)
 * last changed. A request stamped with an older epoch may have been routed to the
 * wrong owners, so it is refused with KV_STALE_EPOCH and the coordinator catches up
 * and retries. Partitions whose owners did not change are never fenced (ScyllaDB's
 * lesson: global fencing turns every epoch bump into client errors).
 */
import { KvError } from '../errors.ts';
import { partitionOf } from '../core/partitioner.ts';
import type { Topology } from '../core/topology.ts';
import type { Fence } from './replica.ts';

export class PartitionFence implements Fence {
  private changedAt = new Uint32Array(0);
  private prev: { current: readonly (readonly string[])[]; future: readonly (readonly string[])[] } | undefined;
  private q = 1;
  private epoch = 0;

  /** Call on every topology change. */
  update(t: Topology): void {
    if (t.epoch === 0) return;
    const current = t.table('current');
    const future = t.table('future');
    if (this.changedAt.length !== t.partitions) {
      this.changedAt = new Uint32Array(t.partitions);
      this.q = t.partitions;
    } else if (this.prev) {
      for (let p = 0; p < t.partitions; p++) {
        if (!sameOwners(this.prev.current[p], current.preference[p], t.n) || !sameOwners(this.prev.future[p], future.preference[p], t.n)) {
          this.changedAt[p] = t.epoch;
        }
      }
    }
    this.prev = { current: current.preference, future: future.preference };
    this.epoch = t.epoch;
  }

  check(key: string, epoch: number): void {
    if (epoch >= this.epoch) return;
    this.checkPartition(partitionOf(key, this.q), epoch);
  }

  checkPartition(p: number, epoch: number): void {
    if (epoch >= this.epoch) return;
    if (epoch < (this.changedAt[p] ?? 0)) {
      throw new KvError('KV_STALE_EPOCH', `partition ${p} changed owners at epoch ${this.changedAt[p]}; request was at epoch ${epoch}`,
        { details: { epoch: this.epoch } });
    }
  }
}

function sameOwners(a: readonly string[] | undefined, b: readonly string[] | undefined, n: number): boolean {
  if (!a || !b) return a === b;
  const x = a.slice(0, n);
  const y = b.slice(0, n);
  return x.length === y.length && x.every((id, i) => id === y[i]);
}
