/**
 * The acceptor of per-key single-decree Paxos rounds (docs/paxos.md), as pure functions:
 * (state, request[, current record]) in → new state, reply, and for a commit the record
 * to write. No I/O: the runtime, holding the key's per-key lock,
 *   1. reads the key's acceptor state (validateAcceptorState) and, for a prepare, its
 *      current record;
 *   2. calls handleRequest;
 *   3. if `changed`, persists `state` durably, in the same batch as `write` if there is one
 *      (a commit's record, applied with the store's ordinary write-if-newer rule);
 *   4. only then sends `reply`: a promise or an accept is a vow about what is on disk.
 *
 * Rules, by rank = (ballot, record version), see rank.ts:
 * - prepare(b): promise iff b ≥ promised (equal = a duplicate, answered again). The promise
 *   carries the accepted proposal, the most recent commit and the current record.
 * - propose(b, rec): accept iff b ≥ promised, rank > committed and rank > every rank
 *   accepted before (a late copy of a lower-ranked proposal of the same ballot must not
 *   replace the higher one); a copy of a proposal accepted before is answered "accept"
 *   again. Accepting also promises b. A nack says whether the replica knows it never
 *   accepted the proposal (NackMsg.neverAccepted).
 * - commit(b, v, rec): committed = max(committed, (b, v)); promised = max(promised, b);
 *   the accepted proposal is dropped once a commit ranks at or above it, or when it is the
 *   very record being committed (then the commit counts at the accepted rank).
 */
import { compareRanks, maxBallot, rankOf } from './rank.ts';
import { ACCEPT_HISTORY } from './types.ts';
import type {
  AcceptMsg, AcceptorState, CommitMsg, CommittedMsg, NackMsg, PaxosRecord, PaxosReply, PaxosRequest, PrepareMsg,
  PromiseMsg, ProposeMsg, Rank,
} from './types.ts';

/** A key no CAS has touched yet. */
export const EMPTY_ACCEPTOR_STATE: AcceptorState = Object.freeze({ promised: null, accepted: null, committed: null, recent: Object.freeze([]) });

export interface AcceptorStep<R extends PaxosReply = PaxosReply> {
  readonly state: AcceptorState;
  /** `state` differs from the input: persist it before sending `reply`. */
  readonly changed: boolean;
  readonly reply: R;
  /** Commit only: the record to apply as an ordinary write-if-newer, in the same batch as `state`. */
  readonly write?: PaxosRecord;
}

function nack(s: AcceptorState, m: PrepareMsg | ProposeMsg, neverAccepted: boolean): NackMsg {
  return {
    type: 'nack', key: m.key, ballot: m.ballot, version: m.type === 'propose' ? m.record.version : null,
    promised: s.promised, committed: s.committed, neverAccepted,
  };
}

export function handlePrepare(s: AcceptorState, m: PrepareMsg, current: PaxosRecord | null): AcceptorStep<PromiseMsg | NackMsg> {
  if (s.promised !== null && m.ballot < s.promised) return { state: s, changed: false, reply: nack(s, m, true) };
  const changed = s.promised !== m.ballot;
  const state = changed ? { ...s, promised: m.ballot } : s;
  return {
    state, changed,
    reply: { type: 'promise', key: m.key, ballot: m.ballot, accepted: s.accepted, committed: s.committed, record: current },
  };
}

export function handlePropose(s: AcceptorState, m: ProposeMsg): AcceptorStep<AcceptMsg | NackMsg> {
  const rank: Rank = { ballot: m.ballot, version: m.record.version };
  const reply: AcceptMsg = { type: 'accept', key: m.key, ballot: m.ballot, version: m.record.version };
  // A copy of a request already accepted (the network may deliver one twice): say so again,
  // even if the replica moved on since. The acceptance happened; whether a proposal is
  // chosen is a matter of which replicas ever accepted it.
  if (s.recent.some((r) => compareRanks(r, rank) === 0)) return { state: s, changed: false, reply };
  const ok = (s.promised === null || m.ballot >= s.promised) &&
    compareRanks(rank, s.committed) > 0 &&
    compareRanks(rank, s.recent[s.recent.length - 1] ?? null) > 0;
  if (!ok) {
    // Accepted ranks only rise: not listed and above the oldest listed means never accepted.
    const oldest = s.recent[0];
    return { state: s, changed: false, reply: nack(s, m, s.recent.length < ACCEPT_HISTORY || oldest === undefined || compareRanks(rank, oldest) > 0) };
  }
  const recent = [...s.recent, rank].slice(-ACCEPT_HISTORY);
  return { state: { promised: maxBallot(s.promised, m.ballot), accepted: { ballot: m.ballot, record: m.record }, committed: s.committed, recent }, changed: true, reply };
}

export function handleCommit(s: AcceptorState, m: CommitMsg): AcceptorStep<CommittedMsg> & { readonly write: PaxosRecord } {
  const rank: Rank = { ballot: m.ballot, version: m.version };
  let committed = compareRanks(rank, s.committed) > 0 ? rank : s.committed;
  let accepted = s.accepted;
  if (accepted !== null && accepted.record.version === m.version) {
    // The accepted proposal is the record being committed (re-proposed above the rank it
    // was first chosen at): it is decided, so it counts as committed at its own rank.
    const own = rankOf(accepted);
    if (compareRanks(own, committed) > 0) committed = own;
  }
  if (accepted !== null && compareRanks(rankOf(accepted), committed) <= 0) accepted = null;
  const promised = maxBallot(s.promised, m.ballot);
  const changed = promised !== s.promised || accepted !== s.accepted || compareRanks(committed, s.committed) !== 0;
  return {
    state: changed ? { promised, accepted, committed, recent: s.recent } : s,
    changed,
    reply: { type: 'committed', key: m.key, ballot: m.ballot, version: m.version },
    write: m.record,
  };
}

/** Dispatch on the request type. `current` is the key's record, needed by prepare only. */
export function handleRequest(s: AcceptorState, m: PaxosRequest, current: PaxosRecord | null): AcceptorStep {
  switch (m.type) {
    case 'prepare': return handlePrepare(s, m, current);
    case 'propose': return handlePropose(s, m);
    case 'commit': return handleCommit(s, m);
  }
}
