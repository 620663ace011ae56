/**
 * One client CAS operation across its attempts (ballots), pure: the runtime asks for an
 * attempt with a fresh ballot, drives it (proposer.ts), hands its decision to settle(), and
 * either answers the client or retries after the returned delay. The rules that keep the
 * answer honest live here, so every runtime applies the same ones:
 *
 * - contended / failed attempts proposed nothing that can be chosen: retry freely;
 * - after an attempt whose outcome is unknown, the operation is unknown until proven
 *   otherwise, and a later attempt must never apply it a second time:
 *   · an If-Match retry is safe as is: if the unknown proposal was chosen, the record's
 *     version moved on for good (versions never repeat), so the condition is false; and
 *     if the retry's own proposal is chosen, the earlier one never can be (it ranks below
 *     a chosen proposal);
 *   · If-None-Match and unconditional writes are not (absent → created → deleted → absent
 *     again would let a retry create twice), so their retries only look: a serial read
 *     that finishes whatever is in progress and reports ok if it finds the earlier
 *     proposal chosen, unknown otherwise;
 *   · either way, finding an earlier attempt's version chosen (as a commit, a record or a
 *     finished proposal) turns the operation into ok (`recovered`).
 */
import { KvError, assert } from '../../errors.ts';
import type { Version } from '../hlc.ts';
import type { Rng } from '../rng.ts';
import { DEFAULT_BACKOFF, backoffMs, validateBackoff, type BackoffOptions } from './backoff.ts';
import { CasAttempt } from './proposer.ts';
import type { AttemptDecision, Ballot, CasCondition, CasWrite, CurrentState } from './types.ts';

/**
 * Attempts per operation. Default 10: with the default backoff that is at most about
 * 0.75 s of waiting between attempts; a key still contended after that many ballots is
 * better answered "busy" (nothing applied) than held until the request deadline.
 */
export const DEFAULT_MAX_ATTEMPTS = 10;

export type CasOutcome =
  | { readonly kind: 'ok'; readonly version: Version; readonly recovered: boolean }
  | { readonly kind: 'precondition'; readonly current: CurrentState }
  | { readonly kind: 'read'; readonly current: CurrentState }
  /** Certainly not applied, now or later. */
  | { readonly kind: 'failed'; readonly reason: 'unavailable' | 'timeout' | 'contended' }
  /** May have been applied, or may be later (by another proposer finishing it). */
  | { readonly kind: 'unknown'; readonly reason: 'quorum' | 'timeout' | 'contended' | 'unavailable' };

export type CasStep =
  | { readonly kind: 'done'; readonly outcome: CasOutcome }
  /** Start the next attempt after `afterMs`, with a ballot above `above` (merge it into the HLC first). */
  | { readonly kind: 'retry'; readonly afterMs: number; readonly above: Ballot };

export interface CasOperationOptions {
  readonly key: string;
  readonly condition: CasCondition;
  /** The write if the condition holds; null for a serial read. */
  readonly write: CasWrite | null;
  readonly rng: Rng;
  readonly backoff?: BackoffOptions;
  readonly maxAttempts?: number;
}

export class CasOperation {
  readonly key: string;
  private readonly condition: CasCondition;
  private readonly write: CasWrite | null;
  private readonly rng: Rng;
  private readonly backoffOpts: BackoffOptions;
  private readonly maxAttempts: number;
  private attemptsMade = 0;
  private current: CasAttempt | null = null;
  /** Versions of this operation's proposals whose outcome is unknown. */
  private readonly prior: Version[] = [];
  private unknownReason: 'quorum' | 'timeout' | null = null;
  private outcomeNow: CasOutcome | undefined;

  constructor(o: CasOperationOptions) {
    const max = o.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!Number.isSafeInteger(max) || max < 1) throw new KvError('KV_CONFIG', 'paxos maxAttempts must be a positive integer');
    this.key = o.key;
    this.condition = o.condition;
    this.write = o.write;
    this.rng = o.rng;
    this.backoffOpts = validateBackoff(o.backoff ?? DEFAULT_BACKOFF);
    this.maxAttempts = max;
  }

  get attempts(): number { return this.attemptsMade; }
  get outcome(): CasOutcome | undefined { return this.outcomeNow; }
  /** Versions this operation proposed whose outcome is still unknown. */
  get unknownVersions(): readonly Version[] { return this.prior; }

  /** The next attempt, under `ballot` (a fresh HLC version of this node). */
  attempt(ballot: Ballot, replicas: readonly string[]): CasAttempt {
    assert(this.outcomeNow === undefined, 'operation already decided');
    assert(this.current === null || this.current.decision !== undefined, 'previous attempt still running');
    this.attemptsMade++;
    // After an unknown outcome only an If-Match retry may propose again (see above).
    const lookOnly = this.prior.length > 0 && this.condition.kind !== 'if-match';
    this.current = new CasAttempt({
      key: this.key, ballot, replicas, condition: this.condition, write: lookOnly ? null : this.write,
      priorVersions: [...this.prior], attempt: this.attemptsMade, rng: this.rng, backoff: this.backoffOpts,
    });
    return this.current;
  }

  /** The decision of the current attempt: answer the client, or retry. */
  settle(d: AttemptDecision): CasStep {
    const a = this.current;
    assert(a !== null && a.decision === d, 'settle() takes the current attempt\'s decision');
    const maybe = this.prior.length > 0;
    switch (d.kind) {
      case 'ok':
        return this.done({ kind: 'ok', version: d.version, recovered: d.recovered });
      case 'read':
        // A look-only retry that did not find the earlier proposal: still unknown.
        return this.done(this.write !== null ? this.unknown() : { kind: 'read', current: d.current });
      case 'precondition':
        return this.done(maybe ? this.unknown() : { kind: 'precondition', current: d.current });
      case 'contended':
        if (this.attemptsMade < this.maxAttempts) return { kind: 'retry', afterMs: d.backoffMs, above: d.highest };
        return this.done(maybe ? this.unknown('contended') : { kind: 'failed', reason: 'contended' });
      case 'failed':
        if (this.attemptsMade < this.maxAttempts) return this.retry(a.ballot);
        return this.done(maybe ? this.unknown(d.reason) : { kind: 'failed', reason: d.reason });
      case 'unknown': {
        const own = a.proposed;
        assert(own !== null, 'only a proposal can make an attempt unknown');
        this.prior.push(own.version);
        this.unknownReason = d.reason;
        if (this.attemptsMade < this.maxAttempts) return this.retry(a.ballot);
        return this.done(this.unknown());
      }
    }
  }

  /**
   * The runtime's deadline for the whole operation passed (during an attempt or a
   * backoff): the answer the client gets.
   */
  abandon(): CasOutcome {
    if (this.outcomeNow !== undefined) return this.outcomeNow;
    const a = this.current;
    if (a !== null && a.decision === undefined && a.maybeAccepted) {
      const own = a.proposed;
      if (own !== null) this.prior.push(own.version);
      this.unknownReason = 'timeout';
    }
    this.outcomeNow = this.prior.length > 0 ? this.unknown() : { kind: 'failed', reason: 'timeout' };
    return this.outcomeNow;
  }

  private retry(above: Ballot): CasStep {
    return { kind: 'retry', afterMs: backoffMs(this.attemptsMade, this.rng, this.backoffOpts), above };
  }

  private unknown(reason?: 'contended' | 'unavailable' | 'timeout'): CasOutcome {
    return { kind: 'unknown', reason: this.unknownReason ?? reason ?? 'timeout' };
  }

  private done(o: CasOutcome): CasStep {
    this.outcomeNow = o;
    return { kind: 'done', outcome: o };
  }
}
