/** Compare-and-set by per-key Paxos: the pure core (docs/paxos.md). */
export * from './types.ts';
export { compareBallots, compareRanks, rankOf } from './rank.ts';
export { EMPTY_ACCEPTOR_STATE, handleCommit, handlePrepare, handlePropose, handleRequest } from './acceptor.ts';
export type { AcceptorStep } from './acceptor.ts';
export { CasAttempt } from './proposer.ts';
export type { AttemptOutput, AttemptPhase, CasAttemptOptions } from './proposer.ts';
export { CasOperation, DEFAULT_MAX_ATTEMPTS } from './cas-operation.ts';
export type { CasOperationOptions, CasOutcome, CasStep } from './cas-operation.ts';
export { DEFAULT_BACKOFF, backoffMs, validateBackoff } from './backoff.ts';
export type { BackoffOptions } from './backoff.ts';
export { conditionHolds, currentState, isLive } from './condition.ts';
export { isPaxosReply, isPaxosRequest, utf8Bytes, validateAcceptorState, validatePaxosMessage } from './validate.ts';
export type { PaxosLimits } from './validate.ts';
