/**
 * Durable Raft state in the `raft` sublevel: hard state, snapshot and log entries.
 * `persist` writes one Ready's worth in one synced batch, in the order the core
 * requires (snapshot replaces everything, entries truncate-then-append, hard state).
 */
import { Packr } from 'msgpackr';
import { SUBLEVELS, type Backend, type BatchOp } from './backend.ts';
import type { Entry, HardState, PersistedState, Ready, Snapshot } from '../core/raft/types.ts';

const packr = new Packr({ useRecords: false });
const HS = 'hs';
const SNAP = 'snap';
const ENTRY = 'e';

function entryKey(index: number): string {
  return ENTRY + index.toString(16).padStart(12, '0');
}

export class RaftStore {
  /** Index range of the entries on disk: [first, last], empty when last < first. */
  private first = 1;
  private last = 0;

  constructor(private readonly backend: Backend) {}

  async load(): Promise<PersistedState> {
    const hs = await this.backend.get(SUBLEVELS.raft, HS);
    const snap = await this.backend.get(SUBLEVELS.raft, SNAP);
    const entries: Entry[] = [];
    for await (const [, v] of this.backend.range(SUBLEVELS.raft, { gte: ENTRY, lt: 'f' })) entries.push(packr.unpack(v) as Entry);
    const snapshot = snap ? (packr.unpack(snap) as Snapshot) : undefined;
    this.first = entries[0]?.index ?? (snapshot ? snapshot.index + 1 : 1);
    this.last = entries.at(-1)?.index ?? this.first - 1;
    const state: PersistedState = { entries };
    if (hs) state.hardState = packr.unpack(hs) as HardState;
    if (snapshot) state.snapshot = snapshot;
    return state;
  }

  /** Whether anything was ever persisted (a fresh node has no Raft state). */
  async isEmpty(): Promise<boolean> {
    return (await this.backend.get(SUBLEVELS.raft, HS)) === undefined && (await this.backend.get(SUBLEVELS.raft, SNAP)) === undefined;
  }

  async persist(ready: Pick<Ready, 'hardState' | 'snapshot' | 'entries'>): Promise<void> {
    const ops: BatchOp[] = [];
    if (ready.snapshot) {
      ops.push({ type: 'put', sub: SUBLEVELS.raft, key: SNAP, value: packr.pack(ready.snapshot) });
      for (let i = this.first; i <= this.last; i++) ops.push({ type: 'del', sub: SUBLEVELS.raft, key: entryKey(i) });
      this.first = ready.snapshot.index + 1;
      this.last = ready.snapshot.index;
    }
    const first = ready.entries[0];
    if (first) {
      for (let i = Math.max(first.index, this.first); i <= this.last; i++) ops.push({ type: 'del', sub: SUBLEVELS.raft, key: entryKey(i) });
      for (const e of ready.entries) ops.push({ type: 'put', sub: SUBLEVELS.raft, key: entryKey(e.index), value: packr.pack(e) });
      if (this.last < this.first) this.first = first.index;
      this.last = (ready.entries.at(-1) as Entry).index;
    }
    if (ready.hardState) ops.push({ type: 'put', sub: SUBLEVELS.raft, key: HS, value: packr.pack(ready.hardState) });
    if (ops.length > 0) await this.backend.batch(ops, true);
  }

  /** Log compaction: store the snapshot and drop the entries it covers, keeping later ones. */
  async compact(snapshot: Snapshot): Promise<void> {
    const ops: BatchOp[] = [{ type: 'put', sub: SUBLEVELS.raft, key: SNAP, value: packr.pack(snapshot) }];
    const upTo = Math.min(snapshot.index, this.last);
    for (let i = this.first; i <= upTo; i++) ops.push({ type: 'del', sub: SUBLEVELS.raft, key: entryKey(i) });
    this.first = Math.max(this.first, upTo + 1);
    await this.backend.batch(ops, true);
  }
}
