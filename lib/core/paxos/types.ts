/**
 * Data shapes of the per-key Paxos core (docs/paxos.md). Everything is a plain object of
 * strings, numbers, null and byte arrays, so msgpackr packs it unchanged: the runtime can
 * send a message or persist an acceptor's state as is, and must run the matching validate
 * function (validate.ts) on whatever it reads back from a peer or a disk.
 */
import type { Version } from '../hlc.ts';

/**
 * A ballot is a Version (`<12 hex wall ms><4 hex logical>:<node id>`) taken from the
 * proposing node's HLC: unique per attempt, totally ordered by plain string order, the
 * node id breaking ties.
 */
export type Ballot = Version;

/**
 * The record a CAS writes, in the store's ordinary record shape (lib/storage/record.ts):
 * `value` null is a tombstone (a DELETE), `expiresAt` an optional wall-clock ms expiry.
 * Its `version` is the ballot of the attempt that first proposed it and never changes,
 * even when another proposer re-proposes it under a higher ballot.
 */
export interface PaxosRecord {
  readonly version: Version;
  readonly value: Uint8Array | null;
  readonly expiresAt?: number;
}

/**
 * A proposal's place in the total order Paxos decides by: (ballot, version), compared
 * ballot first. A proposer proposes at most two records per ballot: first, maybe, a
 * re-proposal of an older unfinished record (version < ballot), then its own (version =
 * ballot). The rank tells the two apart, so one rank names exactly one record.
 */
export interface Rank {
  readonly ballot: Ballot;
  readonly version: Version;
}

/** A record an acceptor accepted, at `ballot`; its rank is (ballot, record.version). */
export interface AcceptedProposal {
  readonly ballot: Ballot;
  readonly record: PaxosRecord;
}

/**
 * Ranks an acceptor remembers having accepted, so it can answer a late copy of a propose
 * truthfully: 4, because a copy that arrives after four later acceptances on the same key
 * means a network far more reordering than any real one; beyond that the replica says it
 * cannot tell, and the proposer counts the answer as "maybe accepted".
 */
export const ACCEPT_HISTORY = 4;

/**
 * What one replica keeps per key, persisted (before replying) on every change. Plain data.
 * Invariants (checked by validateAcceptorState): promised ≥ accepted.ballot,
 * promised ≥ committed.ballot, accepted's rank > committed and is the last of `recent`;
 * and, kept by the runtime writing the commit's record in the same batch, the replica's
 * record for the key has a version ≥ committed.version (until tombstone GC purges it).
 */
export interface AcceptorState {
  /** Highest ballot promised (prepare) or accepted; lower ballots are refused. */
  readonly promised: Ballot | null;
  /** The accepted proposal not yet known to be committed, if any. */
  readonly accepted: AcceptedProposal | null;
  /** Rank of the most recent commit this replica applied. */
  readonly committed: Rank | null;
  /**
   * The ranks of the last ACCEPT_HISTORY proposals accepted, ascending (all of them while
   * fewer). Accepted ranks only rise, so a rank above recent[0] that is not listed was
   * never accepted here.
   */
  readonly recent: readonly Rank[];
}

// ---------------------------------------------------------------------------- messages

/** Phase 1a: promise to refuse ballots below `ballot`, and tell what you hold. */
export interface PrepareMsg {
  readonly type: 'prepare';
  readonly key: string;
  readonly ballot: Ballot;
}

/**
 * Phase 1b. Carries the replica's current record (the read rides on the prepare), its
 * accepted-but-uncommitted proposal and its most recent commit.
 */
export interface PromiseMsg {
  readonly type: 'promise';
  readonly key: string;
  readonly ballot: Ballot;
  readonly accepted: AcceptedProposal | null;
  readonly committed: Rank | null;
  readonly record: PaxosRecord | null;
}

/** Phase 2a: accept `record` at rank (ballot, record.version); record.version ≤ ballot. */
export interface ProposeMsg {
  readonly type: 'propose';
  readonly key: string;
  readonly ballot: Ballot;
  readonly record: PaxosRecord;
}

/** Phase 2b: the rank (ballot, version) was accepted and persisted. */
export interface AcceptMsg {
  readonly type: 'accept';
  readonly key: string;
  readonly ballot: Ballot;
  readonly version: Version;
}

/**
 * Refusal of a prepare (`version` null) or a propose (`version` = the proposal's):
 * `promised` is the higher ballot that blocks it (retry above it); `committed` the
 * replica's most recent commit (it proves the proposal chosen when its version matches).
 * `neverAccepted`, for a propose, is the replica's word that it never accepted that
 * proposal (from its `recent` ranks); false when it cannot tell, because an earlier copy of
 * the same request may have been accepted before the replica moved on.
 */
export interface NackMsg {
  readonly type: 'nack';
  readonly key: string;
  readonly ballot: Ballot;
  readonly version: Version | null;
  readonly promised: Ballot | null;
  readonly committed: Rank | null;
  readonly neverAccepted: boolean;
}

/**
 * The proposal of rank (ballot, version) is chosen: write `record` as an ordinary record.
 * `record.version` ≥ `version`: a proposer bringing a replica behind up to date may send
 * the newest record it saw, which can be a plain write above the commit.
 */
export interface CommitMsg {
  readonly type: 'commit';
  readonly key: string;
  readonly ballot: Ballot;
  readonly version: Version;
  readonly record: PaxosRecord;
}

/** The commit of rank (ballot, version) is persisted. */
export interface CommittedMsg {
  readonly type: 'committed';
  readonly key: string;
  readonly ballot: Ballot;
  readonly version: Version;
}

/** Proposer → acceptor. */
export type PaxosRequest = PrepareMsg | ProposeMsg | CommitMsg;
/** Acceptor → proposer. */
export type PaxosReply = PromiseMsg | AcceptMsg | NackMsg | CommittedMsg;
export type PaxosMessage = PaxosRequest | PaxosReply;

/** A request for the runtime to send to one replica. */
export interface Outbound {
  readonly to: string;
  readonly msg: PaxosRequest;
}

// ------------------------------------------------------------------ conditions, outcomes

/**
 * The condition of a conditional write:
 * - `if-match`: the current record is live and has exactly this version (HTTP If-Match);
 * - `if-none-match`: no live record: absent, a tombstone or expired (If-None-Match: *);
 * - `always`: no condition (a plain PUT/DELETE sent through Paxos to be ordered with CAS).
 */
export type CasCondition =
  | { readonly kind: 'if-match'; readonly version: Version }
  | { readonly kind: 'if-none-match' }
  | { readonly kind: 'always' };

/** What to write if the condition holds: a value (PUT) or null (DELETE, a tombstone). */
export interface CasWrite {
  readonly value: Uint8Array | null;
  /** Wall-clock ms at which the written record expires (PUT ?ttl=), computed by the runtime. */
  readonly expiresAt?: number;
}

/**
 * The state a condition was evaluated against: the newest record a prepare quorum showed
 * (after finishing any unfinished proposal). `live` is false for absent, tombstone and
 * expired records; `record` is null when no replica of the quorum holds anything.
 */
export interface CurrentState {
  readonly record: PaxosRecord | null;
  readonly live: boolean;
}

/** Why an attempt ended without deciding the write. */
export type FailReason = 'unavailable' | 'timeout';

/** The decision of one attempt (one ballot). */
export type AttemptDecision =
  /** Chosen by a majority; `version` is the committed record's version. `recovered`: the
   *  chosen proposal is the one of an earlier attempt of the same operation. */
  | { readonly kind: 'ok'; readonly version: Version; readonly recovered: boolean }
  /** The condition is false against `current`; nothing of this attempt was proposed. */
  | { readonly kind: 'precondition'; readonly current: CurrentState }
  /** A serial read (no write): the current state, linearizable with CAS. */
  | { readonly kind: 'read'; readonly current: CurrentState }
  /**
   * A higher ballot got in the way; nothing of this attempt was accepted anywhere, so a
   * retry is safe. Retry with a ballot above `highest` after `backoffMs`.
   */
  | { readonly kind: 'contended'; readonly highest: Ballot; readonly backoffMs: number }
  /** No replica can have accepted this attempt's proposal: certainly not applied. */
  | { readonly kind: 'failed'; readonly reason: FailReason }
  /**
   * The proposal may have been accepted by some replica without a majority being known:
   * it may be chosen later, by another proposer's repair. Not safe to report failed.
   */
  | { readonly kind: 'unknown'; readonly reason: 'quorum' | 'timeout' };
