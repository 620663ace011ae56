/**
 * Per-partition epoch fencing (DESIGN.md §6, REFERENCES "Topology safety"): a replica
 * remembers, for each partition, the epoch at which its owners (current or future)
 * last changed. A request stamped with an older epoch may have been routed to the
 * wrong owners, so it is refused with KV_STALE_EPOCH and the coordinator catches up
 * and retries. Partitions whose owners did not change are never fenced (ScyllaDB's
 * lesson: global fencing turns every epoch bump into client errors).
 *
 * The fence also keeps when (local wall time) each partition last changed owners, for
 * anti-entropy's tombstone GC, and survives restarts: its state is saved after every
 * change and restored before the node serves. A node that comes back to a topology
 * newer than its saved fence cannot know which partitions changed meanwhile, so it
 * fences all of them at the new epoch (a few extra catch-ups, never a wrong owner).
 */
import { Packr } from 'msgpackr';
import { KvError } from '../errors.ts';
import { partitionOf } from '../core/partitioner.ts';
import type { Topology } from '../core/topology.ts';
import type { Fence } from './replica.ts';

export interface FenceState {
  epoch: number;
  changedAt: Uint32Array;
  changedAtMs: Float64Array;
}

export interface FenceOptions {
  /** Saves the state after a change (called in order; a failure is the caller's to log). */
  save?: (state: FenceState) => Promise<void>;
  now?: () => number;
}

const packr = new Packr({ useRecords: false });

export function encodeFence(s: FenceState): Buffer {
  return packr.pack([s.epoch, Buffer.from(s.changedAt.buffer, s.changedAt.byteOffset, s.changedAt.byteLength),
    Buffer.from(s.changedAtMs.buffer, s.changedAtMs.byteOffset, s.changedAtMs.byteLength)]);
}

export function decodeFence(buf: Buffer): FenceState {
  const raw = packr.unpack(buf) as unknown;
  if (!Array.isArray(raw) || raw.length !== 3 || typeof raw[0] !== 'number' || !(raw[1] instanceof Uint8Array) || !(raw[2] instanceof Uint8Array) ||
    raw[1].byteLength % 4 !== 0 || raw[2].byteLength !== raw[1].byteLength * 2) {
    throw new KvError('KV_INTERNAL', 'corrupt fence record');
  }
  const a = Uint8Array.from(raw[1]);
  const b = Uint8Array.from(raw[2]);
  return { epoch: raw[0], changedAt: new Uint32Array(a.buffer), changedAtMs: new Float64Array(b.buffer) };
}

export class PartitionFence implements Fence {
  private changedAt = new Uint32Array(0);
  private changedAtMs = new Float64Array(0);
  private prev: { current: readonly (readonly string[])[]; future: readonly (readonly string[])[] } | undefined;
  private q = 1;
  private epoch = 0;
  /** The epoch the restored state had already accounted for. */
  private restoredEpoch = 0;
  private saving: Promise<void> = Promise.resolve();
  private readonly now: () => number;

  constructor(private readonly o: FenceOptions = {}) {
    this.now = o.now ?? Date.now;
  }

  /** Resume from a saved state (before the first update). */
  restore(s: FenceState): void {
    this.changedAt = Uint32Array.from(s.changedAt);
    this.changedAtMs = Float64Array.from(s.changedAtMs);
    this.q = s.changedAt.length || 1;
    this.epoch = s.epoch;
    this.restoredEpoch = s.epoch;
  }

  /** Call on every topology change. */
  update(t: Topology): void {
    if (t.epoch === 0) return;
    const current = t.table('current');
    const future = t.table('future');
    let changed = false;
    // `lost`: some node stopped owning p (it may hand off copies for a while, so GC of p waits);
    // a change that only adds owners moves the epoch fence but leaves nothing to hand off.
    const mark = (p: number, lost = true): void => {
      if (t.epoch > (this.changedAt[p] ?? 0)) this.changedAt[p] = t.epoch;
      // Replaying epochs the saved state already covers must not make old changes look recent.
      if (lost && t.epoch > this.restoredEpoch) this.changedAtMs[p] = this.now();
      changed = true;
    };
    if (this.changedAt.length !== t.partitions) {
      this.changedAt = new Uint32Array(t.partitions);
      this.changedAtMs = new Float64Array(t.partitions);
      this.q = t.partitions;
      changed = true;
    } else if (this.prev) {
      for (let p = 0; p < t.partitions; p++) {
        if (!sameOwners(this.prev.current[p], current.preference[p], t.n) || !sameOwners(this.prev.future[p], future.preference[p], t.n)) {
          mark(p, ownerLost([this.prev.current[p], this.prev.future[p]], [current.preference[p], future.preference[p]], t.n));
        }
      }
    } else if (t.epoch > this.restoredEpoch && this.restoredEpoch > 0) {
      // Changes happened while this node was down: which partitions they moved is unknown.
      for (let p = 0; p < t.partitions; p++) mark(p);
    }
    this.prev = { current: current.preference, future: future.preference };
    if (t.epoch > this.epoch) {
      this.epoch = t.epoch;
      changed = true;
    }
    if (changed && this.o.save) {
      const state: FenceState = { epoch: this.epoch, changedAt: this.changedAt.slice(), changedAtMs: this.changedAtMs.slice() };
      const save = this.o.save;
      this.saving = this.saving.then(() => save(state));
    }
  }

  /** Resolves when every state saved so far is on disk (rejects with the first failure). */
  flushed(): Promise<void> {
    return this.saving;
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

  /** Local wall time at which a node last stopped owning `p` (0: not since this cluster began). */
  lastChangeMs(p: number): number {
    return this.changedAtMs[p] ?? 0;
  }
}

/** Whether an owner of `before` (current or future, first n of each) is an owner of neither list of `after`. */
function ownerLost(before: Array<readonly string[] | undefined>, after: Array<readonly string[] | undefined>, n: number): boolean {
  const now = new Set(after.flatMap((l) => (l ?? []).slice(0, n)));
  return before.some((l) => (l ?? []).slice(0, n).some((id) => !now.has(id)));
}

function sameOwners(a: readonly string[] | undefined, b: readonly string[] | undefined, n: number): boolean {
  if (!a || !b) return a === b;
  const x = a.slice(0, n);
  const y = b.slice(0, n);
  return x.length === y.length && x.every((id, i) => id === y[i]);
}
