/**
 * The narrow key/value backend the stores are written against: LevelDB in production
 * (level-backend.ts), a Map in tests (memory-backend.ts). Both pass one compliance
 * suite (test/unit/storage-compliance.test.ts).
 *
 * Keys are strings; values are Buffers. Each logical store lives in its own sublevel.
 */
export const SUBLEVELS = {
  /** Records: `<partition as 4 hex digits><key>` → packed record. */
  data: 'd',
  /** Hinted-handoff records for down replicas. */
  hints: 'h',
  /** Raft hard state, log entries and snapshot. */
  raft: 'r',
  /** Per-partition Merkle leaves and key counts. */
  merkle: 'm',
  /** Node identity, cluster id and other small facts. */
  meta: 'x',
  /** Paxos acceptor state of conditional writes: `<partition as 4 hex digits><key>` → packed state (lib/node/paxos-replica.ts). */
  paxos: 'p',
} as const;

export type Sublevel = (typeof SUBLEVELS)[keyof typeof SUBLEVELS];

export interface BatchOp {
  type: 'put' | 'del';
  sub: Sublevel;
  key: string;
  value?: Buffer;
}

export interface RangeOptions {
  gte?: string;
  gt?: string;
  lt?: string;
  lte?: string;
  limit?: number;
  reverse?: boolean;
}

export interface Backend {
  readonly kind: 'level' | 'memory';
  open(): Promise<void>;
  close(): Promise<void>;
  get(sub: Sublevel, key: string): Promise<Buffer | undefined>;
  getMany(sub: Sublevel, keys: readonly string[]): Promise<(Buffer | undefined)[]>;
  /** Atomic: all ops or none. `sync` forces the write to disk before resolving. */
  batch(ops: readonly BatchOp[], sync: boolean): Promise<void>;
  /** Entries in key order within the range. */
  range(sub: Sublevel, opts: RangeOptions): AsyncIterable<[string, Buffer]>;
}
