/**
 * Data shapes of the Raft core. Everything here is a plain object of strings, numbers,
 * booleans, null and arrays, so it packs with msgpack unchanged and can be persisted
 * or sent as is.
 */

/** Cluster membership as seen by Raft. Learners receive the log but never vote. */
export interface RaftConfig {
  voters: string[];
  learners: string[];
}

export type EntryKind = 'normal' | 'conf' | 'noop';

export interface Entry {
  term: number;
  index: number;
  kind: EntryKind;
  /** 'normal': the application's payload; 'conf': ConfEntryData; 'noop': null. */
  data: unknown;
}

/** One single-server membership change (Raft dissertation §4.1). */
export interface ConfChange {
  type: 'addVoter' | 'addLearner' | 'remove';
  id: string;
}

/**
 * Payload of a 'conf' entry. It carries the whole resulting configuration, not just
 * the change, so a node can find its configuration from the last conf entry alone
 * (after a truncation, a restart or a snapshot) without replaying history.
 * `change` is null for the bootstrap entry.
 */
export interface ConfEntryData {
  change: ConfChange | null;
  config: RaftConfig;
}

/** What must be durable before any message of the same Ready is sent. */
export interface HardState {
  term: number;
  /** Candidate voted for in `term`, or null. */
  vote: string | null;
  commit: number;
}

export interface Snapshot {
  /** Last log index the snapshot covers. */
  index: number;
  term: number;
  /** Configuration in force at `index`. */
  config: RaftConfig;
  /** The application (membership) state machine at `index`. */
  data: unknown;
}

interface MsgBase {
  from: string;
  to: string;
  term: number;
}

/** Vote request; for 'preVote' `term` is the term the sender would campaign at. */
export interface VoteMsg extends MsgBase {
  type: 'preVote' | 'vote';
  lastIndex: number;
  lastTerm: number;
}

export interface VoteRespMsg extends MsgBase {
  type: 'preVoteResp' | 'voteResp';
  reject: boolean;
}

export interface AppendMsg extends MsgBase {
  type: 'append';
  prevIndex: number;
  prevTerm: number;
  entries: Entry[];
  commit: number;
}

/**
 * Reply to 'append' and 'snapshot'. On success `index` is the follower's matched index.
 * On reject `index` is the rejected prevIndex and (hintIndex, hintTerm) is the
 * follower's last entry at or below it whose term is not above the leader's prevTerm,
 * so the leader can skip a whole conflicting term per round trip.
 */
export interface AppendRespMsg extends MsgBase {
  type: 'appendResp';
  reject: boolean;
  index: number;
  hintIndex: number;
  hintTerm: number;
}

/** `commit` is min(follower's match, leader's commit): never beyond what it holds. */
export interface HeartbeatMsg extends MsgBase {
  type: 'heartbeat';
  commit: number;
}

export interface HeartbeatRespMsg extends MsgBase {
  type: 'heartbeatResp';
}

export interface SnapshotMsg extends MsgBase {
  type: 'snapshot';
  snapshot: Snapshot;
}

export type RaftMessage =
  | VoteMsg
  | VoteRespMsg
  | AppendMsg
  | AppendRespMsg
  | HeartbeatMsg
  | HeartbeatRespMsg
  | SnapshotMsg;

export type RaftMessageType = RaftMessage['type'];

/**
 * Work for the runtime, handled in this order:
 *  1. persist `snapshot` (if set: replace the stored snapshot and delete ALL stored
 *     entries), then `entries` (delete every stored entry with index >=
 *     entries[0].index, then append them), then `hardState` (if set), durably (sync)
 *     and preferably in one batch;
 *  2. send `messages` (only now: they may promise what step 1 made durable);
 *  3. apply `snapshot` (if set) then `committed` in order to the state machine;
 *  4. call advance().
 */
export interface Ready {
  hardState?: HardState;
  snapshot?: Snapshot;
  entries: Entry[];
  messages: RaftMessage[];
  committed: Entry[];
}

/** What the runtime read back from its storage after a restart. */
export interface PersistedState {
  hardState?: HardState;
  snapshot?: Snapshot;
  entries: Entry[];
  /**
   * Index the application state already reflects (it must hold at least the snapshot).
   * Default: the snapshot index, so committed entries after it are delivered again.
   */
  applied?: number;
}

export type Role = 'leader' | 'follower' | 'candidate' | 'precandidate' | 'learner';

export interface PeerProgress {
  id: string;
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  /** Heard from within the current CheckQuorum window. */
  recentActive: boolean;
}
