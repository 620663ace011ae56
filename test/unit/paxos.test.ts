/**
 * Transitions of the Paxos CAS core (lib/core/paxos): the acceptor's rules one request at
 * a time, the proposer of one attempt driven by hand, the retry rules of an operation,
 * conditions, backoff, and validation of everything that crosses a wire or a disk.
 */
import { expect } from 'chai';
import { Packr } from 'msgpackr';
import { makeVersion } from '../../lib/core/hlc.ts';
import { seededRng } from '../../lib/core/rng.ts';
import { EMPTY_ACCEPTOR_STATE, handleCommit, handlePrepare, handlePropose, handleRequest } from '../../lib/core/paxos/acceptor.ts';
import { DEFAULT_BACKOFF, backoffMs, validateBackoff } from '../../lib/core/paxos/backoff.ts';
import { CasOperation } from '../../lib/core/paxos/cas-operation.ts';
import { conditionHolds, currentState, isLive } from '../../lib/core/paxos/condition.ts';
import { CasAttempt, type AttemptOutput, type CasAttemptOptions } from '../../lib/core/paxos/proposer.ts';
import { ACCEPT_HISTORY } from '../../lib/core/paxos/types.ts';
import type {
  AcceptorState, CasCondition, NackMsg, Outbound, PaxosRecord, PaxosReply, PaxosRequest, PromiseMsg,
} from '../../lib/core/paxos/types.ts';
import {
  isPaxosReply, isPaxosRequest, utf8Bytes, validateAcceptorState, validatePaxosMessage, type PaxosLimits,
} from '../../lib/core/paxos/validate.ts';
import { isKvError } from '../../lib/errors.ts';

const LIMITS: PaxosLimits = { maxKeyBytes: 16, maxValueBytes: 8 };
const K = 'k';
/** Ballot/version at wall ms `t`, logical 0, of node `id`. */
const b = (t: number, id = 'p'): string => makeVersion({ wall: t, logical: 0 }, id);
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const rec = (version: string, value: string | null, expiresAt?: number): PaxosRecord =>
  expiresAt === undefined ? { version, value: value === null ? null : bytes(value) } : { version, value: value === null ? null : bytes(value), expiresAt };
const IDS = ['a1', 'a2', 'a3'];

function expectInvalid(fn: () => unknown, re: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(isKvError(err, 'KV_INVALID_ARGUMENT'), String(err)).to.equal(true);
    expect((err as Error).message).to.match(re);
    return;
  }
  expect.fail(`expected KV_INVALID_ARGUMENT matching ${re}`);
}

/** Replicas driven by hand: each keeps an acceptor state and a record, as a runtime would. */
class Replicas {
  readonly state = new Map<string, AcceptorState>();
  readonly record = new Map<string, PaxosRecord | null>();
  constructor(ids: string[] = IDS) {
    for (const id of ids) { this.state.set(id, EMPTY_ACCEPTOR_STATE); this.record.set(id, null); }
  }

  /** Handles one request at its replica and returns the reply. */
  handle(o: Outbound): PaxosReply {
    const step = handleRequest(this.state.get(o.to) as AcceptorState, o.msg, this.record.get(o.to) ?? null);
    this.state.set(o.to, step.state);
    const cur = this.record.get(o.to) ?? null;
    if (step.write !== undefined && (cur === null || step.write.version > cur.version)) this.record.set(o.to, step.write);
    return step.reply;
  }

  /** Delivers requests to `to` replicas only, feeding each reply back into the attempt; returns every output. */
  run(att: CasAttempt, out: AttemptOutput, to: string[] = IDS, nowMs = 0): AttemptOutput[] {
    const seen: AttemptOutput[] = [out];
    const queue = [...out.send];
    while (queue.length > 0) {
      const o = queue.shift() as Outbound;
      if (!to.includes(o.to)) continue;
      const next = att.onReply(o.to, this.handle(o), nowMs);
      seen.push(next);
      queue.push(...next.send);
    }
    return seen;
  }
}

function attempt(over: Partial<CasAttemptOptions> = {}): CasAttempt {
  return new CasAttempt({
    key: K, ballot: b(100), replicas: IDS, condition: { kind: 'always' }, write: { value: bytes('new') },
    attempt: 1, rng: seededRng(1), ...over,
  });
}

const decisionOf = (outs: AttemptOutput[]): AttemptOutput['decision'] => outs.find((o) => o.decision !== undefined)?.decision;
const sentTypes = (outs: AttemptOutput[]): string[] => outs.flatMap((o) => o.send.map((s) => `${s.msg.type}>${s.to}`));

/** A promise as replica `state` would give it, without running the acceptor. */
function promiseFrom(ballot: string, s: Partial<Pick<PromiseMsg, 'accepted' | 'committed' | 'record'>>): PromiseMsg {
  return { type: 'promise', key: K, ballot, accepted: s.accepted ?? null, committed: s.committed ?? null, record: s.record ?? null };
}

function nackFor(req: PaxosRequest, over: Partial<NackMsg> = {}): NackMsg {
  return {
    type: 'nack', key: K, ballot: req.ballot, version: req.type === 'propose' ? req.record.version : null,
    promised: b(200, 'q'), committed: null, neverAccepted: true, ...over,
  };
}

describe('paxos acceptor', () => {
  it('promises a ballot at or above its promise, with what it holds and the current record', () => {
    const cur = rec(b(5), 'x');
    const p = handlePrepare(EMPTY_ACCEPTOR_STATE, { type: 'prepare', key: K, ballot: b(10) }, cur);
    expect(p.changed).to.equal(true);
    expect(p.state.promised).to.equal(b(10));
    expect(p.reply).to.deep.equal({ type: 'promise', key: K, ballot: b(10), accepted: null, committed: null, record: cur });
    // A copy of the same prepare is answered again, with nothing to persist.
    const again = handlePrepare(p.state, { type: 'prepare', key: K, ballot: b(10) }, cur);
    expect(again.changed).to.equal(false);
    expect(again.reply.type).to.equal('promise');
    const low = handlePrepare(p.state, { type: 'prepare', key: K, ballot: b(9) }, cur);
    expect(low.changed).to.equal(false);
    expect(low.reply).to.include({ type: 'nack', promised: b(10), version: null });
  });

  it('accepts at or above its promise and remembers the rank; refuses below it, saying it never accepted it', () => {
    const s1 = handlePrepare(EMPTY_ACCEPTOR_STATE, { type: 'prepare', key: K, ballot: b(10) }, null).state;
    const ok = handlePropose(s1, { type: 'propose', key: K, ballot: b(10), record: rec(b(10), 'v') });
    expect(ok.reply.type).to.equal('accept');
    expect(ok.state.accepted?.record.version).to.equal(b(10));
    expect(ok.state.recent).to.deep.equal([{ ballot: b(10), version: b(10) }]);
    const s2 = handlePrepare(ok.state, { type: 'prepare', key: K, ballot: b(20) }, null).state;
    const low = handlePropose(s2, { type: 'propose', key: K, ballot: b(15), record: rec(b(15), 'w') });
    expect(low.reply).to.include({ type: 'nack', promised: b(20), neverAccepted: true });
    expect(low.changed).to.equal(false);
  });

  it('answers a late copy of a proposal it accepted with accept, even after promising higher', () => {
    const s = handlePropose(EMPTY_ACCEPTOR_STATE, { type: 'propose', key: K, ballot: b(10), record: rec(b(10), 'v') }).state;
    const promisedHigher = handlePrepare(s, { type: 'prepare', key: K, ballot: b(30) }, null).state;
    const higher = handlePropose(promisedHigher, { type: 'propose', key: K, ballot: b(30), record: rec(b(30), 'w') }).state;
    const copy = handlePropose(higher, { type: 'propose', key: K, ballot: b(10), record: rec(b(10), 'v') });
    expect(copy.reply.type).to.equal('accept');
    expect(copy.changed).to.equal(false);
    expect(copy.state.accepted?.record.version).to.equal(b(30));
  });

  it('never lets a late lower-ranked copy of the same ballot replace a higher one', () => {
    // A proposer at ballot 30 re-proposed an old record, then its own; the copies arrive in reverse.
    const own = handlePropose(EMPTY_ACCEPTOR_STATE, { type: 'propose', key: K, ballot: b(30), record: rec(b(30), 'own') }).state;
    const late = handlePropose(own, { type: 'propose', key: K, ballot: b(30), record: rec(b(10), 'old') });
    expect(late.reply).to.include({ type: 'nack', neverAccepted: true });
    expect(late.state.accepted?.record.version).to.equal(b(30));
  });

  it('cannot vouch for a rank older than its remembered history', () => {
    let s: AcceptorState = EMPTY_ACCEPTOR_STATE;
    for (let i = 1; i <= ACCEPT_HISTORY + 1; i++) s = handlePropose(s, { type: 'propose', key: K, ballot: b(10 * i), record: rec(b(10 * i), `v${i}`) }).state;
    expect(s.recent).to.have.length(ACCEPT_HISTORY);
    const forgotten = handlePropose(s, { type: 'propose', key: K, ballot: b(5), record: rec(b(5), 'z') });
    expect(forgotten.reply).to.include({ type: 'nack', neverAccepted: false });
    const between = handlePropose(s, { type: 'propose', key: K, ballot: b(25), record: rec(b(25), 'z') });
    expect(between.reply).to.include({ type: 'nack', neverAccepted: true });
  });

  it('a commit raises the commit and the promise, drops what it covers and hands back the record to write', () => {
    const acc = handlePropose(EMPTY_ACCEPTOR_STATE, { type: 'propose', key: K, ballot: b(10), record: rec(b(10), 'v') }).state;
    const c = handleCommit(acc, { type: 'commit', key: K, ballot: b(20), version: b(20), record: rec(b(20), 'w') });
    expect(c.state).to.deep.include({ promised: b(20), accepted: null, committed: { ballot: b(20), version: b(20) } });
    expect(c.write.version).to.equal(b(20));
    expect(c.reply).to.deep.equal({ type: 'committed', key: K, ballot: b(20), version: b(20) });
    // An older commit arriving late changes nothing but is still written (write-if-newer keeps the newer).
    const old = handleCommit(c.state, { type: 'commit', key: K, ballot: b(10), version: b(10), record: rec(b(10), 'v') });
    expect(old.changed).to.equal(false);
    expect(old.state.committed?.version).to.equal(b(20));
    // After a commit, a proposal at or below it is refused.
    expect(handlePropose(c.state, { type: 'propose', key: K, ballot: b(20), record: rec(b(15), 'r') }).reply.type).to.equal('nack');
  });

  it('a commit of the accepted record counts at the rank it was accepted at', () => {
    // Re-proposed at ballot 30 after being chosen at 10: the commit from the first round arrives last.
    const acc = handlePropose(EMPTY_ACCEPTOR_STATE, { type: 'propose', key: K, ballot: b(30), record: rec(b(10), 'v') }).state;
    const c = handleCommit(acc, { type: 'commit', key: K, ballot: b(10), version: b(10), record: rec(b(10), 'v') });
    expect(c.state.accepted).to.equal(null);
    expect(c.state.committed).to.deep.equal({ ballot: b(30), version: b(10) });
    expect(() => validateAcceptorState(c.state, LIMITS)).to.not.throw();
  });
});

describe('paxos conditions', () => {
  it('treats tombstones and expired records as no live record', () => {
    expect(isLive(null, 0)).to.equal(false);
    expect(isLive(rec(b(1), null), 0)).to.equal(false);
    expect(isLive(rec(b(1), 'x', 1000), 999)).to.equal(true);
    expect(isLive(rec(b(1), 'x', 1000), 1000)).to.equal(false);
    const expired = currentState(rec(b(1), 'x', 1000), 2000);
    expect(conditionHolds({ kind: 'if-none-match' }, expired)).to.equal(true);
    expect(conditionHolds({ kind: 'if-match', version: b(1) }, expired)).to.equal(false);
    const live = currentState(rec(b(1), 'x'), 0);
    expect(conditionHolds({ kind: 'if-match', version: b(1) }, live)).to.equal(true);
    expect(conditionHolds({ kind: 'if-match', version: b(2) }, live)).to.equal(false);
    expect(conditionHolds({ kind: 'if-none-match' }, live)).to.equal(false);
    expect(conditionHolds({ kind: 'always' }, live)).to.equal(true);
    expect(conditionHolds({ kind: 'if-match', version: b(1) }, currentState(rec(b(1), null), 0)), 'If-Match never matches a tombstone').to.equal(false);
  });
});

describe('paxos proposer (one attempt)', () => {
  it('uncontended: prepare, propose, then ok with the commit sent to every replica', () => {
    const r = new Replicas();
    const att = attempt();
    const outs = r.run(att, att.start());
    expect(decisionOf(outs)).to.deep.equal({ kind: 'ok', version: b(100), recovered: false });
    expect(att.roundTrips).to.equal(2);
    expect(sentTypes(outs).filter((t) => t.startsWith('commit'))).to.have.length(3);
    expect(att.messagesSent).to.equal(9);
    for (const id of IDS) expect(r.record.get(id)?.version).to.equal(b(100));
    expect(att.commitAckCount).to.equal(3);
  });

  it('reports a false condition with the current record and proposes nothing', () => {
    const r = new Replicas();
    for (const id of IDS) r.record.set(id, rec(b(50), 'cur'));
    const att = attempt({ condition: { kind: 'if-match', version: b(49) } });
    const outs = r.run(att, att.start());
    expect(decisionOf(outs)).to.deep.equal({ kind: 'precondition', current: { record: rec(b(50), 'cur'), live: true } });
    expect(sentTypes(outs).some((t) => t.startsWith('propose'))).to.equal(false);
    expect(att.roundTrips).to.equal(1);
  });

  it('evaluates against the newest record any promise carries, and judges expiry at the clock it is given', () => {
    const r = new Replicas();
    r.record.set('a1', rec(b(40), 'old'));
    r.record.set('a2', rec(b(50), 'new', 1000));
    const live = attempt({ condition: { kind: 'if-none-match' } });
    expect(decisionOf(r.run(live, live.start(), IDS, 999))?.kind).to.equal('precondition');
    const expired = attempt({ ballot: b(101), condition: { kind: 'if-none-match' } });
    expect(decisionOf(r.run(expired, expired.start(), IDS, 1000))?.kind).to.equal('ok');
  });

  it('re-proposes a proposal only a minority shows accepted, commits it, then proposes its own: three round trips', () => {
    const r = new Replicas();
    r.handle({ to: 'a1', msg: { type: 'propose', key: K, ballot: b(90, 'old'), record: rec(b(90, 'old'), 'unfinished') } });
    const att = attempt({ condition: { kind: 'if-match', version: b(90, 'old') } });
    const outs = r.run(att, att.start(), ['a1', 'a2']);
    expect(decisionOf(outs)).to.deep.equal({ kind: 'ok', version: b(100), recovered: false });
    expect(att.roundTrips).to.equal(3);
    expect(att.finished?.version).to.equal(b(90, 'old'));
    expect(att.evaluated?.record?.version, 'the condition saw the finished record').to.equal(b(90, 'old'));
    const types = sentTypes(outs);
    expect(types.indexOf('commit>a2')).to.be.below(types.lastIndexOf('propose>a2'));
  });

  it('commits at once a proposal a majority shows accepted at one rank, and proposes in the same step', () => {
    const r = new Replicas();
    for (const id of ['a1', 'a2']) r.handle({ to: id, msg: { type: 'propose', key: K, ballot: b(90, 'old'), record: rec(b(90, 'old'), 'chosen') } });
    const att = attempt({ condition: { kind: 'if-match', version: b(90, 'old') } });
    const outs = r.run(att, att.start(), ['a1', 'a2']);
    expect(decisionOf(outs)?.kind).to.equal('ok');
    expect(att.roundTrips).to.equal(2);
    const afterPromises = outs.find((o) => o.send.some((s) => s.msg.type === 'propose')) as AttemptOutput;
    expect(afterPromises.send.map((s) => s.msg.type)).to.deep.equal(['commit', 'commit', 'commit', 'propose', 'propose', 'propose']);
  });

  it('brings a replica behind on the most recent commit up to date', () => {
    const r = new Replicas();
    for (const id of ['a1', 'a2']) {
      r.handle({ to: id, msg: { type: 'commit', key: K, ballot: b(80), version: b(80), record: rec(b(80), 'c') } });
    }
    const att = attempt({ write: null });
    const outs = r.run(att, att.start(), ['a2', 'a3']);
    expect(decisionOf(outs)?.kind).to.equal('read');
    expect(sentTypes(outs)).to.include('commit>a3');
    expect(r.record.get('a3')?.version).to.equal(b(80));
  });

  it('retries above a plain record stamped at or above its ballot instead of proposing under it', () => {
    const r = new Replicas();
    r.record.set('a1', rec(b(500, 'w'), 'plain'));
    const att = attempt({ condition: { kind: 'always' } });
    const d = decisionOf(r.run(att, att.start()));
    expect(d).to.include({ kind: 'contended', highest: b(500, 'w') });
  });

  it('contended when a majority refuses the prepare; the backoff comes from its rng', () => {
    const att = attempt({ attempt: 3 });
    const prep = att.start().send[0] as Outbound;
    att.onReply('a1', nackFor(prep.msg, { promised: b(150, 'q') }), 0);
    const out = att.onReply('a2', nackFor(prep.msg, { promised: b(120, 'q') }), 0);
    expect(out.decision).to.include({ kind: 'contended', highest: b(150, 'q') });
    const d = out.decision as { backoffMs: number };
    expect(d.backoffMs).to.be.within(0, DEFAULT_BACKOFF.baseMs * 4);
    expect(att.maybeAccepted).to.equal(false);
  });

  /** An attempt in its propose phase after promises from a1 and a2 (all empty). */
  function proposing(over: Partial<CasAttemptOptions> = {}): { att: CasAttempt; propose: PaxosRequest } {
    const att = attempt(over);
    const prep = (att.start().send[0] as Outbound).msg;
    att.onReply('a1', promiseFrom(prep.ballot, {}), 0);
    const out = att.onReply('a2', promiseFrom(prep.ballot, {}), 0);
    expect(att.phase).to.equal('propose');
    return { att, propose: (out.send[0] as Outbound).msg };
  }

  it('propose phase: a minority accept is unknown, refusals that prove nothing was accepted are contended', () => {
    const one = proposing();
    one.att.onReply('a1', { type: 'accept', key: K, ballot: b(100), version: b(100) }, 0);
    one.att.onReply('a2', nackFor(one.propose), 0);
    expect(one.att.onReply('a3', nackFor(one.propose), 0).decision).to.deep.equal({ kind: 'unknown', reason: 'quorum' });

    const none = proposing();
    none.att.onReply('a1', nackFor(none.propose), 0);
    expect(none.att.onReply('a2', nackFor(none.propose), 0).decision, 'a3 may still accept').to.equal(undefined);
    expect(none.att.onReply('a3', nackFor(none.propose), 0).decision?.kind).to.equal('contended');
  });

  it('propose phase: a refusal that cannot prove the proposal was never accepted counts as maybe accepted', () => {
    const p = proposing();
    expect(p.att.onReply('a1', nackFor(p.propose, { neverAccepted: false }), 0).decision).to.equal(undefined);
    // No majority can accept now, and a1 may hold the proposal: unknown at once.
    expect(p.att.onReply('a2', nackFor(p.propose), 0).decision).to.deep.equal({ kind: 'unknown', reason: 'quorum' });
  });

  it('an accept after a nack from the same replica counts (one copy refused, another accepted)', () => {
    const p = proposing();
    p.att.onReply('a1', nackFor(p.propose), 0);
    p.att.onReply('a1', { type: 'accept', key: K, ballot: b(100), version: b(100) }, 0);
    expect(p.att.onReply('a2', { type: 'accept', key: K, ballot: b(100), version: b(100) }, 0).decision?.kind).to.equal('ok');
  });

  it('a nack showing its own version committed proves it chosen', () => {
    const p = proposing();
    const out = p.att.onReply('a3', nackFor(p.propose, { committed: { ballot: b(150, 'q'), version: b(100) } }), 0);
    expect(out.decision).to.deep.equal({ kind: 'ok', version: b(100), recovered: false });
  });

  it('lost answers, refusals and the deadline: failed only when nothing of its own can be accepted', () => {
    const lostPrepare = attempt();
    const prep = (lostPrepare.start().send[0] as Outbound).msg;
    lostPrepare.onLost('a1', prep);
    expect(lostPrepare.onLost('a2', prep).decision).to.deep.equal({ kind: 'failed', reason: 'unavailable' });

    const refused = proposing();
    for (const id of IDS.slice(0, 2)) refused.att.onRefused(id, refused.propose);
    expect(refused.att.onRefused('a3', refused.propose).decision).to.deep.equal({ kind: 'failed', reason: 'unavailable' });

    const lost = proposing();
    lost.att.onLost('a1', lost.propose);
    expect(lost.att.onRefused('a2', lost.propose).decision).to.deep.equal({ kind: 'unknown', reason: 'quorum' });

    expect(attempt().onDeadline().decision).to.deep.equal({ kind: 'failed', reason: 'timeout' });
    const late = proposing();
    expect(late.att.onDeadline().decision).to.deep.equal({ kind: 'unknown', reason: 'timeout' });
    expect(late.att.maybeAccepted).to.equal(true);
    // A transport outcome for another phase's request is not this phase's answer.
    const other = proposing();
    expect(other.att.onLost('a1', { type: 'prepare', key: K, ballot: b(100) })).to.deep.equal({ send: [] });
  });

  it('ignores replies for another ballot, key or replica, duplicates, and promises reporting its own ballot', () => {
    const att = attempt();
    const prep = (att.start().send[0] as Outbound).msg;
    expect(att.onReply('a1', promiseFrom(b(99), {}), 0).send).to.deep.equal([]);
    expect(att.onReply('a1', { ...promiseFrom(prep.ballot, {}), key: 'other' }, 0).send).to.deep.equal([]);
    expect(att.onReply('a9', promiseFrom(prep.ballot, {}), 0).send).to.deep.equal([]);
    const forged = promiseFrom(prep.ballot, { accepted: { ballot: b(100), record: rec(b(100), 'x') } });
    expect(att.onReply('a1', forged, 0).send).to.deep.equal([]);
    att.onReply('a1', promiseFrom(prep.ballot, {}), 0);
    expect(att.onReply('a1', promiseFrom(prep.ballot, {}), 0).send, 'one promise per replica').to.deep.equal([]);
    expect(att.phase).to.equal('prepare');
  });

  it('finds an earlier attempt of the same operation chosen: ok, recovered, nothing new proposed', () => {
    const r = new Replicas();
    for (const id of IDS) r.record.set(id, rec(b(60), 'mine'));
    const att = attempt({ condition: { kind: 'if-match', version: b(50) }, priorVersions: [b(60)] });
    const outs = r.run(att, att.start());
    expect(decisionOf(outs)).to.deep.equal({ kind: 'ok', version: b(60), recovered: true });
    expect(sentTypes(outs).some((t) => t.startsWith('propose'))).to.equal(false);

    // In progress on one replica only: it is finished first, and that is the operation's effect.
    const r2 = new Replicas();
    r2.handle({ to: 'a1', msg: { type: 'propose', key: K, ballot: b(60), record: rec(b(60), 'mine') } });
    const look = attempt({ write: null, priorVersions: [b(60)] });
    const d = decisionOf(r2.run(look, look.start(), ['a1', 'a2']));
    expect(d).to.deep.equal({ kind: 'ok', version: b(60), recovered: true });
    expect(r2.record.get('a2')?.version).to.equal(b(60));
  });

  it('a serial read finishes what is in progress before answering', () => {
    const r = new Replicas();
    r.handle({ to: 'a1', msg: { type: 'propose', key: K, ballot: b(90, 'old'), record: rec(b(90, 'old'), 'pending') } });
    const att = attempt({ write: null });
    const d = decisionOf(r.run(att, att.start(), ['a1', 'a2']));
    expect(d).to.deep.include({ kind: 'read' });
    expect((d as { current: { record: PaxosRecord } }).current.record.version).to.equal(b(90, 'old'));
    expect(att.roundTrips).to.equal(2);
  });
});

describe('paxos operation (attempts and retries)', () => {
  const write = { value: bytes('x') };

  function runAttempt(op: CasOperation, ballot: string, drive: (att: CasAttempt, first: Outbound) => AttemptOutput) {
    const att = op.attempt(ballot, IDS);
    const d = drive(att, att.start().send[0] as Outbound).decision;
    expect(d).to.not.equal(undefined);
    return { att, step: op.settle(d as NonNullable<typeof d>) };
  }

  const contend = (att: CasAttempt, first: Outbound): AttemptOutput => {
    att.onReply('a1', nackFor(first.msg), 0);
    return att.onReply('a2', nackFor(first.msg), 0);
  };

  /** Promises from a1, a2 (holding `record`); then a1 accepts and a2, a3 refuse: unknown. */
  const unknownWith = (record: PaxosRecord | null) => (att: CasAttempt, first: Outbound): AttemptOutput => {
    att.onReply('a1', promiseFrom(first.msg.ballot, { record }), 0);
    const prop = (att.onReply('a2', promiseFrom(first.msg.ballot, { record }), 0).send[0] as Outbound).msg;
    att.onReply('a1', { type: 'accept', key: K, ballot: prop.ballot, version: prop.ballot }, 0);
    att.onReply('a2', nackFor(prop), 0);
    return att.onReply('a3', nackFor(prop), 0);
  };
  const unknown = unknownWith(null);

  /** Promises from a2, a3 holding `record`. */
  const promisedWith = (record: PaxosRecord | null) => (att: CasAttempt, first: Outbound): AttemptOutput => {
    att.onReply('a2', promiseFrom(first.msg.ballot, { record }), 0);
    return att.onReply('a3', promiseFrom(first.msg.ballot, { record }), 0);
  };

  it('retries a contended attempt after its backoff, above the ballot that got in the way, then gives up as failed', () => {
    const op = new CasOperation({ key: K, condition: { kind: 'always' }, write, rng: seededRng(3), maxAttempts: 2 });
    const first = runAttempt(op, b(100), contend).step;
    expect(first).to.deep.include({ kind: 'retry', above: b(200, 'q') });
    const second = runAttempt(op, b(201), contend).step;
    expect(second).to.deep.equal({ kind: 'done', outcome: { kind: 'failed', reason: 'contended' } });
  });

  it('after an unknown attempt, If-None-Match only looks: not found stays unknown', () => {
    const op = new CasOperation({ key: K, condition: { kind: 'if-none-match' }, write, rng: seededRng(3) });
    const { att, step } = runAttempt(op, b(100), unknown);
    expect(step.kind).to.equal('retry');
    expect(op.unknownVersions).to.deep.equal([att.ballot]);
    const look = op.attempt(b(300), IDS);
    const out = promisedWith(null)(look, look.start().send[0] as Outbound);
    expect(out.send.some((s) => s.msg.type === 'propose'), 'a look-only attempt proposes nothing').to.equal(false);
    expect(op.settle(out.decision as NonNullable<typeof out.decision>)).to.deep.equal({ kind: 'done', outcome: { kind: 'unknown', reason: 'quorum' } });
  });

  it('after an unknown attempt, If-Match proposes again, and a failed condition stays unknown', () => {
    const base = rec(b(10), 'base');
    const op = new CasOperation({ key: K, condition: { kind: 'if-match', version: b(10) }, write, rng: seededRng(3) });
    expect(runAttempt(op, b(100), unknownWith(base)).step.kind).to.equal('retry');
    const again = op.attempt(b(300), IDS);
    const out = promisedWith(base)(again, again.start().send[0] as Outbound);
    expect(out.send.filter((s) => s.msg.type === 'propose'), 'safe: versions never repeat').to.have.length(3);

    const op2 = new CasOperation({ key: K, condition: { kind: 'if-match', version: b(10) }, write, rng: seededRng(3) });
    runAttempt(op2, b(100), unknownWith(base));
    // Another write won meanwhile: the condition fails, yet the first attempt may still be chosen.
    const step = runAttempt(op2, b(300), promisedWith(rec(b(250, 'z'), 'other'))).step;
    expect(step).to.deep.equal({ kind: 'done', outcome: { kind: 'unknown', reason: 'quorum' } });
  });

  it('abandoned at the deadline: unknown once a proposal is out, failed before', () => {
    const early = new CasOperation({ key: K, condition: { kind: 'always' }, write, rng: seededRng(3) });
    early.attempt(b(100), IDS).start();
    expect(early.abandon()).to.deep.equal({ kind: 'failed', reason: 'timeout' });
    const late = new CasOperation({ key: K, condition: { kind: 'always' }, write, rng: seededRng(3) });
    const att = late.attempt(b(100), IDS);
    const prep = (att.start().send[0] as Outbound).msg;
    att.onReply('a1', promiseFrom(prep.ballot, {}), 0);
    att.onReply('a2', promiseFrom(prep.ballot, {}), 0);
    expect(late.abandon()).to.deep.equal({ kind: 'unknown', reason: 'timeout' });
    expect(late.unknownVersions).to.deep.equal([b(100)]);
  });
});

describe('paxos backoff', () => {
  it('draws from 0 to an exponentially growing, capped ceiling, reproducibly', () => {
    const o = { baseMs: 4, maxMs: 32 };
    for (const [retry, ceiling] of [[1, 4], [2, 8], [3, 16], [4, 32], [9, 32]] as const) {
      const rng = seededRng(retry);
      const draws = Array.from({ length: 200 }, () => backoffMs(retry, rng, o));
      expect(Math.max(...draws)).to.be.at.most(ceiling);
      expect(Math.min(...draws)).to.be.at.least(0);
      expect(new Set(draws).size, 'randomized').to.be.greaterThan(1);
    }
    expect(backoffMs(3, seededRng(7), o)).to.equal(backoffMs(3, seededRng(7), o));
    expect(() => validateBackoff({ baseMs: 0, maxMs: 10 })).to.throw(/baseMs/);
    expect(() => validateBackoff({ baseMs: 10, maxMs: 5 })).to.throw(/maxMs/);
  });
});

describe('paxos validation', () => {
  const good: unknown[] = [
    { type: 'prepare', key: K, ballot: b(1) },
    { type: 'promise', key: K, ballot: b(2), accepted: { ballot: b(1), record: rec(b(1), 'v', 5) }, committed: { ballot: b(1), version: b(0, 'z') }, record: rec(b(0, 'z'), null) },
    { type: 'propose', key: K, ballot: b(2), record: rec(b(1), 'v') },
    { type: 'accept', key: K, ballot: b(2), version: b(1) },
    { type: 'nack', key: K, ballot: b(2), version: b(2), promised: b(3), committed: null, neverAccepted: false },
    { type: 'commit', key: K, ballot: b(2), version: b(1), record: rec(b(3, 'w'), 'newer') },
    { type: 'committed', key: K, ballot: b(2), version: b(2) },
  ];

  it('accepts every well-formed message, through msgpackr and back, and keeps only known fields', () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    for (const m of good) {
      const back = validatePaxosMessage(packr.unpack(packr.pack({ ...(m as object), extra: 'dropped' })), LIMITS);
      expect(back, JSON.stringify(m)).to.deep.equal(m);
      expect(back).to.not.have.property('extra');
      expect(isPaxosRequest(back)).to.equal(['prepare', 'propose', 'commit'].includes(back.type));
      expect(isPaxosReply(back)).to.equal(!isPaxosRequest(back));
    }
  });

  it('rejects malformed messages with KV_INVALID_ARGUMENT', () => {
    const base = { type: 'propose', key: K, ballot: b(2), record: rec(b(1), 'v') };
    const cases: Array<[unknown, RegExp]> = [
      [null, /not an object/],
      [[base], /not an object/],
      [{ ...base, type: 'steal' }, /unknown type/],
      [{ ...base, key: '' }, /key/],
      [{ ...base, key: 'x'.repeat(17) }, /key/],
      [{ ...base, key: 'é'.repeat(9) }, /key/],
      [{ ...base, ballot: 'not-a-ballot' }, /ballot/],
      [{ ...base, ballot: b(0xabc).toUpperCase() }, /ballot/],
      [{ ...base, record: rec(b(1), 'ninebytes') }, /over 8 bytes/],
      [{ ...base, record: { version: b(1), value: 'text' } }, /bytes or null/],
      [{ ...base, record: { ...rec(b(1), 'v'), expiresAt: -1 } }, /expiresAt/],
      [{ ...base, record: { ...rec(b(1), 'v'), expiresAt: 1.5 } }, /expiresAt/],
      [{ ...base, record: rec(b(3), 'v') }, /above the ballot/],
      [{ type: 'commit', key: K, ballot: b(2), version: b(2), record: rec(b(1), 'v') }, /older than the committed version/],
      [{ type: 'promise', key: K, ballot: b(2), accepted: { ballot: b(3), record: rec(b(1), 'v') }, committed: null, record: null }, /accepted ballot above/],
      [{ type: 'promise', key: K, ballot: b(2), accepted: null, committed: { ballot: b(3), version: b(3) }, record: null }, /commit above/],
      [{ type: 'nack', key: K, ballot: b(2), version: null, promised: b(3), committed: null, neverAccepted: 'yes' }, /neverAccepted/],
      [{ type: 'accept', key: K, ballot: b(2), version: b(3) }, /above the ballot/],
    ];
    for (const [m, re] of cases) expectInvalid(() => validatePaxosMessage(m, LIMITS), re);
  });

  it('reads acceptor state back from msgpackr and rejects a state that breaks its invariants', () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    let s: AcceptorState = EMPTY_ACCEPTOR_STATE;
    s = handlePrepare(s, { type: 'prepare', key: K, ballot: b(5) }, null).state;
    s = handlePropose(s, { type: 'propose', key: K, ballot: b(5), record: rec(b(5), 'v', 99) }).state;
    s = handleCommit(s, { type: 'commit', key: K, ballot: b(4), version: b(4), record: rec(b(4), 'u') }).state;
    expect(validateAcceptorState(packr.unpack(packr.pack(s)), LIMITS)).to.deep.equal(s);
    const r5 = { ballot: b(5), version: b(5) };
    const bad: Array<[unknown, RegExp]> = [
      [{ ...s, promised: b(4) }, /accepted ballot above the promise/],
      [{ ...s, accepted: null, committed: { ballot: b(6), version: b(6) } }, /committed ballot above the promise/],
      [{ ...s, committed: r5 }, /not above the commit/],
      [{ ...s, recent: [r5, { ballot: b(3), version: b(3) }] }, /ascending/],
      [{ ...s, recent: Array.from({ length: ACCEPT_HISTORY + 1 }, (_, i) => ({ ballot: b(i), version: b(i) })) }, /at most/],
      [{ ...s, recent: [{ ballot: b(3), version: b(3) }] }, /last recent rank/],
      [{ ...s, recent: 'none' }, /recent/],
      ['state', /not an object/],
    ];
    for (const [x, re] of bad) expectInvalid(() => validateAcceptorState(x, LIMITS), re);
  });

  it('counts UTF-8 bytes as Node does', () => {
    for (const str of ['', 'abc', 'é', '€', '😀', 'a😀b', '\ud800', '\udc00x', 'ü'.repeat(40)]) {
      expect(utf8Bytes(str), JSON.stringify(str)).to.equal(Buffer.byteLength(str, 'utf8'));
    }
  });
});
