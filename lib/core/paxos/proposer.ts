/**
 * The proposer of one CAS attempt (one ballot) on one key, as a pure state machine
 * (docs/paxos.md). Inputs: replica replies, transport outcomes (refused: certainly not
 * processed; lost: maybe processed) and the deadline. Outputs: requests to send and, once
 * known, a decision. No clock, no timer: the runtime passes the ballot (from its HLC), the
 * clock reading with each reply (for expiry) and calls onDeadline() when its timer fires.
 *
 * Round trips, uncontended: (1) prepare → promises carrying each replica's record;
 * evaluate the condition; (2) propose → accepts from a majority: decided. The commit
 * goes out with the decision and nobody waits for it. When the promises show an
 * accepted proposal above the newest commit (a previous round that did not finish),
 * it is finished first:
 * - a majority shows it accepted at one rank, or some replica shows it committed: it is
 *   chosen, so commit it at once and go on (no extra round trip);
 * - otherwise re-propose it under this ballot (one extra round trip), commit it, go on.
 * Replicas whose promise shows an older commit get the newest commit (with the newest
 * record seen) along the way.
 */
import { assert } from '../../errors.ts';
import type { Version } from '../hlc.ts';
import type { Rng } from '../rng.ts';
import { DEFAULT_BACKOFF, backoffMs, type BackoffOptions } from './backoff.ts';
import { conditionHolds, currentState, newerRecord } from './condition.ts';
import { compareRanks, maxBallot, rankOf } from './rank.ts';
import type {
  AcceptedProposal, AttemptDecision, Ballot, CasCondition, CasWrite, CurrentState, NackMsg, Outbound, PaxosRecord,
  PaxosReply, PaxosRequest, PromiseMsg, Rank,
} from './types.ts';

export interface CasAttemptOptions {
  readonly key: string;
  /** A fresh HLC version of the proposing node, above every ballot this operation saw refused. */
  readonly ballot: Ballot;
  /** The key's replicas (its acceptors), N of them; a majority decides. */
  readonly replicas: readonly string[];
  readonly condition: CasCondition;
  /** What to write when the condition holds; null = a serial read (propose nothing of its own). */
  readonly write: CasWrite | null;
  /**
   * Versions proposed by earlier attempts of the same operation whose outcome is unknown:
   * finding one chosen means the operation already took effect (decision ok, recovered).
   */
  readonly priorVersions?: readonly Version[];
  /** 1 for an operation's first attempt; scales the contention backoff. */
  readonly attempt: number;
  readonly rng: Rng;
  readonly backoff?: BackoffOptions;
}

export type AttemptPhase = 'prepare' | 'repair' | 'propose' | 'done';

/** What a call produced: requests to send now, and the decision if this call made it. */
export interface AttemptOutput {
  readonly send: Outbound[];
  readonly decision?: AttemptDecision;
}

/**
 * What one replica's answers in a phase prove about it: `ok` (promised / accepted), `no`
 * (certainly did not accept: a refusal, or a nack whose state rules out an earlier copy
 * having been accepted) or `maybe` (lost, or a nack that cannot rule that out). A
 * replica's answer only ever strengthens (maybe < no < ok): with duplicated requests one
 * copy can be nacked after another was accepted, and the acceptance is what counts.
 */
type Answer = 'maybe' | 'no' | 'ok';
const STRENGTH: Record<Answer, number> = { maybe: 1, no: 2, ok: 3 };

class PhaseTally {
  private readonly answers = new Map<string, Answer>();
  private readonly counts: Record<Answer, number> = { maybe: 0, no: 0, ok: 0 };
  /** Some replica refused for a higher ballot or commit: contention, not unavailability. */
  nacked = false;

  /** Records `a` for `id` unless it already said something as strong; true if it changed. */
  note(id: string, a: Answer): boolean {
    const prev = this.answers.get(id);
    if (prev !== undefined && STRENGTH[prev] >= STRENGTH[a]) return false;
    if (prev !== undefined) this.counts[prev]--;
    this.answers.set(id, a);
    this.counts[a]++;
    return true;
  }

  count(a: Answer): number { return this.counts[a]; }
  get answered(): number { return this.answers.size; }
}

export class CasAttempt {
  readonly key: string;
  readonly ballot: Ballot;
  private readonly replicas: readonly string[];
  private readonly quorum: number;
  private readonly condition: CasCondition;
  private readonly write: CasWrite | null;
  private readonly prior: ReadonlySet<Version>;
  private readonly attemptNo: number;
  private readonly rng: Rng;
  private readonly backoffOpts: BackoffOptions;

  private phaseNow: AttemptPhase = 'prepare';
  private tally = new PhaseTally();
  private readonly promises = new Map<string, PromiseMsg>();
  private highest: Ballot;
  private nowMs = 0;
  /** The unfinished proposal being re-proposed in the 'repair' phase. */
  private repairing: AcceptedProposal | null = null;
  /** The unfinished proposal this attempt finished (committed), if any. */
  private finishedRecord: PaxosRecord | null = null;
  private ownRecord: PaxosRecord | null = null;
  private evaluatedState: CurrentState | undefined;
  private decided: AttemptDecision | undefined;
  private readonly commitAcks = new Set<string>();
  private trips = 0;
  private sentCount = 0;

  constructor(o: CasAttemptOptions) {
    assert(o.replicas.length > 0 && new Set(o.replicas).size === o.replicas.length, 'replicas must be distinct and non-empty');
    this.key = o.key;
    this.ballot = o.ballot;
    this.replicas = o.replicas;
    this.quorum = Math.floor(o.replicas.length / 2) + 1;
    this.condition = o.condition;
    this.write = o.write;
    this.prior = new Set(o.priorVersions ?? []);
    this.attemptNo = o.attempt;
    this.rng = o.rng;
    this.backoffOpts = o.backoff ?? DEFAULT_BACKOFF;
    this.highest = o.ballot;
  }

  // ------------------------------------------------------------------ observers

  get phase(): AttemptPhase { return this.phaseNow; }
  get decision(): AttemptDecision | undefined { return this.decided; }
  /** The record of this attempt's own proposal, once sent (its version is the ballot). */
  get proposed(): PaxosRecord | null { return this.ownRecord; }
  /** Whether this attempt's own proposal may be accepted somewhere (sent, and not refused by all). */
  get maybeAccepted(): boolean {
    if (this.ownRecord === null) return false;
    const d = this.decided;
    return d === undefined || d.kind === 'ok' || d.kind === 'unknown';
  }
  /** The state the condition was evaluated against (after finishing any unfinished proposal). */
  get evaluated(): CurrentState | undefined { return this.evaluatedState; }
  /** The unfinished proposal this attempt committed on the way, if any. */
  get finished(): PaxosRecord | null { return this.finishedRecord; }
  /** Request/reply round trips waited for: prepare, repair, propose (commits are not waited for). */
  get roundTrips(): number { return this.trips; }
  /** Requests handed to the runtime so far, commits included. */
  get messagesSent(): number { return this.sentCount; }
  /** Replicas that acknowledged the commit of the decided record. */
  get commitAckCount(): number { return this.commitAcks.size; }

  // ------------------------------------------------------------------ inputs

  /** The prepares, to every replica. */
  start(): AttemptOutput {
    assert(this.trips === 0, 'start() called twice');
    this.trips = 1;
    return this.out(this.toAll({ type: 'prepare', key: this.key, ballot: this.ballot }));
  }

  /** A validated reply from replica `from`, at the runtime's clock reading `nowMs`. */
  onReply(from: string, msg: PaxosReply, nowMs: number): AttemptOutput {
    if (!this.replicas.includes(from) || msg.key !== this.key || msg.ballot !== this.ballot) return NOTHING;
    if (msg.type === 'committed') {
      if (this.decided?.kind === 'ok' && msg.version === this.decided.version) this.commitAcks.add(from);
      return NOTHING;
    }
    if (this.decided !== undefined) return NOTHING;
    if (msg.type === 'nack') this.noteNack(msg);
    switch (this.phaseNow) {
      case 'prepare':
        if (msg.type === 'promise') {
          // A promise for this ballot can only report proposals of lower ballots: one that
          // does not is not an honest answer to this prepare, so it does not count.
          if (msg.accepted !== null && msg.accepted.ballot >= this.ballot) return NOTHING;
          if (!this.tally.note(from, 'ok')) return NOTHING;
          this.promises.set(from, msg);
        } else if (msg.type === 'nack' && msg.version === null) {
          this.tally.nacked = true;
          if (!this.tally.note(from, 'no')) return NOTHING;
        } else {
          return NOTHING;
        }
        return this.afterPrepareAnswer(nowMs);
      case 'repair':
      case 'propose': {
        const rec = this.phaseNow === 'repair' ? (this.repairing as AcceptedProposal).record : (this.ownRecord as PaxosRecord);
        if ((msg.type !== 'accept' && msg.type !== 'nack') || msg.version !== rec.version) return NOTHING;
        if (msg.type === 'nack' && msg.committed !== null && msg.committed.version === rec.version) {
          // Committed at `from`: the record is chosen, whatever the other answers say.
          return this.phaseNow === 'repair' ? this.repaired(msg.committed) : this.decideOk(rec.version, false, this.commitTo(msg.committed, rec));
        }
        let a: Answer = 'ok';
        if (msg.type === 'nack') {
          this.tally.nacked = true;
          // Without the replica's word that it never accepted it, an earlier copy of this
          // request may have been accepted there before the replica moved on.
          a = msg.neverAccepted ? 'no' : 'maybe';
        }
        if (!this.tally.note(from, a)) return NOTHING;
        return this.afterProposeAnswer();
      }
      default:
        return NOTHING;
    }
  }

  /** `req` to `from` was certainly not processed (refused before handling, e.g. a stale epoch). */
  onRefused(from: string, req: PaxosRequest): AttemptOutput {
    return this.transportOutcome(from, req, 'refused');
  }

  /** No usable answer to `req` from `from` (connection lost, error after sending): it may have been processed. */
  onLost(from: string, req: PaxosRequest): AttemptOutput {
    return this.transportOutcome(from, req, 'lost');
  }

  /** The runtime's deadline for this attempt passed. */
  onDeadline(): AttemptOutput {
    if (this.decided !== undefined) return NOTHING;
    if (this.phaseNow === 'propose') return this.decide({ kind: 'unknown', reason: 'timeout' });
    return this.decide({ kind: 'failed', reason: 'timeout' }); // nothing of ours was proposed
  }

  // ------------------------------------------------------------------ phase 1

  private afterPrepareAnswer(nowMs: number): AttemptOutput {
    const ok = this.tally.count('ok');
    if (ok >= this.quorum) return this.evaluate(nowMs);
    if (ok + this.pending() < this.quorum) return this.cannotProceed();
    return NOTHING;
  }

  private evaluate(nowMs: number): AttemptOutput {
    this.nowMs = nowMs;
    const promises = [...this.promises.values()];
    // An earlier attempt of this operation whose outcome was unknown is chosen: it took effect.
    for (const p of promises) {
      for (const v of [p.committed?.version, p.record?.version]) {
        if (v !== undefined && this.prior.has(v)) return this.decideOk(v, true, []);
      }
    }
    let maxCommit: Rank | null = null;
    let ip: AcceptedProposal | null = null;
    for (const p of promises) {
      if (compareRanks(p.committed, maxCommit) > 0) maxCommit = p.committed;
      if (p.accepted !== null && (ip === null || compareRanks(rankOf(p.accepted), rankOf(ip)) > 0)) ip = p.accepted;
    }
    if (ip === null || compareRanks(rankOf(ip), maxCommit) <= 0) return this.proceed(maxCommit, []);
    const ipRank = rankOf(ip);
    const v = ip.record.version;
    const sameRank = promises.filter((p) => p.accepted !== null && compareRanks(rankOf(p.accepted), ipRank) === 0).length;
    const chosen = sameRank >= this.quorum || promises.some((p) => p.committed?.version === v || p.record?.version === v);
    if (chosen) {
      this.finishedRecord = ip.record;
      return this.proceed(ipRank, this.commitTo(ipRank, ip.record));
    }
    // Not known to be chosen, but it may be: re-propose it under this ballot, so any later
    // quorum sees it ranked above anything older.
    this.repairing = ip;
    this.phaseNow = 'repair';
    this.tally = new PhaseTally();
    this.trips++;
    return this.out(this.toAll({ type: 'propose', key: this.key, ballot: this.ballot, record: ip.record }));
  }

  /** The re-proposed record is chosen (accepted by a majority, or seen committed at `rank`). */
  private repaired(rank: Rank): AttemptOutput {
    const rec = (this.repairing as AcceptedProposal).record;
    this.finishedRecord = rec;
    this.repairing = null;
    return this.proceed(rank, this.commitTo(rank, rec));
  }

  /**
   * Everything before this ballot is settled: `newest` is the most recent commit (the
   * finished proposal's, if one was finished), `pre` the commits already queued.
   * Evaluate the condition and propose, or decide.
   */
  private proceed(newest: Rank | null, pre: Outbound[]): AttemptOutput {
    let rec = this.finishedRecord;
    for (const p of this.promises.values()) rec = newerRecord(rec, p.record);
    if (this.finishedRecord !== null && this.prior.has(this.finishedRecord.version)) {
      return this.decideOk(this.finishedRecord.version, true, pre);
    }
    const cur = currentState(rec, this.nowMs);
    this.evaluatedState = cur;
    const send = this.finishedRecord === null ? [...pre, ...this.catchUp(newest, rec)] : pre;
    if (this.write === null) return this.decide({ kind: 'read', current: cur }, send);
    if (!conditionHolds(this.condition, cur)) return this.decide({ kind: 'precondition', current: cur }, send);
    if (rec !== null && rec.version >= this.ballot) {
      // Only a plain write stamped at or above this ballot can do this (CAS records are
      // all below it): a commit at this version would lose to it. Retry above it.
      this.highest = maxBallot(this.highest, rec.version) as Ballot;
      return this.contended(send);
    }
    const w = this.write;
    this.ownRecord = w.expiresAt === undefined ? { version: this.ballot, value: w.value } : { version: this.ballot, value: w.value, expiresAt: w.expiresAt };
    this.phaseNow = 'propose';
    this.tally = new PhaseTally();
    this.trips++;
    return this.out([...send, ...this.toAll({ type: 'propose', key: this.key, ballot: this.ballot, record: this.ownRecord })]);
  }

  /** Commits of `newest` to the promisers that showed an older commit, with the newest record seen. */
  private catchUp(newest: Rank | null, rec: PaxosRecord | null): Outbound[] {
    if (newest === null || rec === null || rec.version < newest.version) return [];
    const out: Outbound[] = [];
    for (const [id, p] of this.promises) {
      if (compareRanks(p.committed, newest) < 0) {
        out.push({ to: id, msg: { type: 'commit', key: this.key, ballot: newest.ballot, version: newest.version, record: rec } });
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ phase 2

  private afterProposeAnswer(): AttemptOutput {
    const t = this.tally;
    const ok = t.count('ok');
    if (ok >= this.quorum) {
      if (this.phaseNow === 'repair') return this.repaired({ ballot: this.ballot, version: (this.repairing as AcceptedProposal).record.version });
      const rec = this.ownRecord as PaxosRecord;
      return this.decideOk(rec.version, false, this.commitTo({ ballot: this.ballot, version: rec.version }, rec));
    }
    if (ok + this.pending() >= this.quorum) return NOTHING;
    if (this.phaseNow === 'repair') return this.cannotProceed();
    // Our own proposal cannot reach a majority now. If any replica accepted it, or may have,
    // a later repair can still choose it: unknown. Otherwise wait for the rest to know.
    if (ok > 0 || t.count('maybe') > 0) return this.decide({ kind: 'unknown', reason: 'quorum' });
    if (this.pending() > 0) return NOTHING;
    return this.cannotProceed();
  }

  // ------------------------------------------------------------------ helpers

  private noteNack(m: NackMsg): void {
    this.highest = maxBallot(this.highest, maxBallot(m.promised, m.committed?.ballot ?? null)) as Ballot;
  }

  /** Whether `req` is the request of the phase now waiting for answers. */
  private awaits(req: PaxosRequest): boolean {
    if (req.key !== this.key || req.ballot !== this.ballot) return false;
    if (this.phaseNow === 'prepare') return req.type === 'prepare';
    const rec = this.phaseNow === 'repair' ? this.repairing?.record : this.phaseNow === 'propose' ? this.ownRecord : null;
    return req.type === 'propose' && rec !== null && rec !== undefined && req.record.version === rec.version;
  }

  private transportOutcome(from: string, req: PaxosRequest, kind: 'refused' | 'lost'): AttemptOutput {
    if (this.decided !== undefined || !this.replicas.includes(from) || !this.awaits(req)) return NOTHING;
    if (!this.tally.note(from, kind === 'refused' ? 'no' : 'maybe')) return NOTHING;
    return this.phaseNow === 'prepare' ? this.afterPrepareAnswer(this.nowMs) : this.afterProposeAnswer();
  }

  /** Nothing of ours is accepted anywhere and no majority can be reached. */
  private cannotProceed(): AttemptOutput {
    return this.tally.nacked ? this.contended([]) : this.decide({ kind: 'failed', reason: 'unavailable' });
  }

  private contended(send: Outbound[]): AttemptOutput {
    return this.decide({ kind: 'contended', highest: this.highest, backoffMs: backoffMs(this.attemptNo, this.rng, this.backoffOpts) }, send);
  }

  private decideOk(version: Version, recovered: boolean, send: Outbound[]): AttemptOutput {
    return this.decide({ kind: 'ok', version, recovered }, send);
  }

  private decide(d: AttemptDecision, send: Outbound[] = []): AttemptOutput {
    assert(this.decided === undefined, 'an attempt decides once');
    this.decided = d;
    this.phaseNow = 'done';
    return { send: this.count(send), decision: d };
  }

  private commitTo(rank: Rank, record: PaxosRecord): Outbound[] {
    return this.toAll({ type: 'commit', key: this.key, ballot: rank.ballot, version: rank.version, record });
  }

  private toAll(msg: Outbound['msg']): Outbound[] {
    return this.replicas.map((to) => ({ to, msg }));
  }

  private pending(): number {
    return this.replicas.length - this.tally.answered;
  }

  private out(send: Outbound[]): AttemptOutput {
    return { send: this.count(send) };
  }

  private count(send: Outbound[]): Outbound[] {
    this.sentCount += send.length;
    return send;
  }
}

const NOTHING: AttemptOutput = Object.freeze({ send: [] });
