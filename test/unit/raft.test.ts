/**
 * The Raft core message by message. Section numbers refer to the Raft paper (Ongaro &
 * Ousterhout 2014) and the thesis (Ongaro 2014) where a test defends one of their rules.
 */
import { expect } from 'chai';
import { RaftNode, type RaftNodeOptions } from '../../lib/core/raft/node.ts';
import { validateRaftMessage } from '../../lib/core/raft/validate.ts';
import type { AppendMsg, Entry, RaftMessage, Ready } from '../../lib/core/raft/types.ts';
import { seededRng } from '../../lib/core/rng.ts';
import { isKvError } from '../../lib/errors.ts';

const CONF3 = { voters: ['a', 'b', 'c'], learners: [] };

function mk(id: string, opts: Partial<RaftNodeOptions> = {}): RaftNode {
  return new RaftNode({ id, rng: seededRng(id.charCodeAt(0)), electionTicks: 10, heartbeatTicks: 1, ...opts });
}

/** Takes the next Ready (or an empty one) and acknowledges it, as a runtime would. */
function drain(n: RaftNode): Ready {
  if (!n.hasReady()) return { entries: [], messages: [], committed: [] };
  const rd = n.ready();
  n.advance();
  return rd;
}

const confEntry: Entry = { term: 1, index: 1, kind: 'conf', data: { change: null, config: CONF3 } };
const e = (index: number, term: number, data: unknown = `x${index}`): Entry => ({ term, index, kind: 'normal', data });

/** A follower restored with the bootstrap entry plus `entries`. */
function follower(id: string, term: number, entries: Entry[], commit = 1): RaftNode {
  const n = mk(id);
  n.restore({ hardState: { term, vote: null, commit }, entries: [confEntry, ...entries] });
  return n;
}

function append(to: string, term: number, prevIndex: number, prevTerm: number, entries: Entry[], commit: number): AppendMsg {
  return { type: 'append', from: 'a', to, term, prevIndex, prevTerm, entries, commit };
}

/** Delivers every message among `nodes` until quiet; `drop` filters messages out. */
function settle(nodes: RaftNode[], drop: (m: RaftMessage) => boolean = () => false): void {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  for (let round = 0; round < 1000; round++) {
    const msgs = nodes.flatMap((n) => drain(n).messages);
    if (msgs.length === 0) return;
    for (const m of msgs) if (!drop(m)) byId.get(m.to)?.step(m);
  }
  throw new Error('no quiescence');
}

/** Makes `n` leader of `term`+1 by feeding it grants from `granters`. */
function elect(n: RaftNode, granters: string[]): void {
  while (n.role !== 'precandidate') n.tick();
  const t = n.term;
  for (const g of granters) n.step({ type: 'preVoteResp', from: g, to: n.id, term: t + 1, reject: false });
  expect(n.role).to.equal('candidate');
  for (const g of granters) n.step({ type: 'voteResp', from: g, to: n.id, term: t + 1, reject: false });
  expect(n.role).to.equal('leader');
}

/** Bootstraps a, b, c and elects a; with `cutOffC`, c hears nothing of it. */
function threeNodeCluster(cutOffC = false): RaftNode[] {
  const nodes = ['a', 'b', 'c'].map((id) => mk(id));
  for (const n of nodes) n.bootstrap(CONF3);
  const a = nodes[0] as RaftNode;
  while (a.role !== 'precandidate') a.tick();
  settle(nodes, (m) => cutOffC && (m.to === 'c' || m.from === 'c'));
  expect(a.role).to.equal('leader');
  return nodes;
}

describe('raft core', () => {
  describe('log replication (paper §5.3)', () => {
    it('does not truncate on a stale AppendEntries whose entries it already holds', () => {
      const f = follower('b', 2, []);
      f.step(append('b', 2, 1, 1, [e(2, 2), e(3, 2), e(4, 2)], 1));
      drain(f);
      f.step(append('b', 2, 1, 1, [e(2, 2)], 1)); // delayed duplicate of an older append
      const rd = drain(f);
      expect(f.lastIndex).to.equal(4);
      expect(rd.entries).to.deep.equal([]);
      expect(rd.messages[0]).to.include({ type: 'appendResp', reject: false, index: 2 });
    });

    it('truncates a conflicting suffix and hands storage the entries from the conflict on', () => {
      const f = follower('b', 2, [e(2, 2), e(3, 2), e(4, 2)]);
      f.step(append('b', 3, 2, 2, [e(3, 3, 'new')], 1));
      const rd = drain(f);
      expect(f.lastIndex).to.equal(3);
      expect(f.termAt(3)).to.equal(3);
      expect(rd.entries.map((x) => [x.index, x.term])).to.deep.equal([[3, 3]]);
    });

    it('answers an append reaching below its commit index with the commit index, changing nothing', () => {
      const f = follower('b', 2, [e(2, 2), e(3, 2)], 3);
      f.step(append('b', 2, 1, 1, [e(2, 2)], 1));
      const rd = drain(f);
      expect(f.lastIndex).to.equal(3);
      expect(f.commitIndex).to.equal(3);
      expect(rd.messages[0]).to.include({ type: 'appendResp', reject: false, index: 3 });
    });

    it('rejects a mismatched prevIndex with a hint that skips the whole conflicting term', () => {
      const f = follower('b', 2, Array.from({ length: 20 }, (_, i) => e(i + 2, 2)));
      f.step(append('b', 3, 21, 3, [], 1));
      const m = drain(f).messages[0];
      // Every term-2 entry is above the leader's prevTerm? No: 2 < 3, so the hint is 21.
      expect(m).to.include({ type: 'appendResp', reject: true, index: 21, hintIndex: 21, hintTerm: 2 });
      f.step(append('b', 3, 21, 1, [], 1));
      // The leader claims term 1 at 21: every term-2 entry goes, back to index 1 at once.
      expect(drain(f).messages[0]).to.include({ reject: true, hintIndex: 1, hintTerm: 1 });
    });

    it('a leader repairs a long divergent follower log in a few round trips', () => {
      const [a, b] = threeNodeCluster(true) as [RaftNode, RaftNode, RaftNode];
      // c missed the election and holds 40 entries of term 1 that nobody else has.
      const c = follower('c', 1, Array.from({ length: 40 }, (_, i) => e(i + 2, 1)));
      for (let i = 0; i < 30; i++) a.propose(`p${i}`);
      a.tick(); // a heartbeat un-pauses the probe that was lost on the way to c
      let rejects = 0;
      settle([a, b, c], (m) => {
        if (m.type === 'appendResp' && m.from === 'c' && m.reject) rejects++;
        return false;
      });
      expect(rejects).to.be.at.most(2);
      expect(c.lastIndex).to.equal(a.lastIndex);
      a.tick(); // the commit index reaches c with the next heartbeat
      settle([a, b, c]);
      expect(c.commitIndex).to.equal(a.commitIndex);
      expect(c.entries(2).map((x) => x.data)).to.deep.equal(a.entries(2).map((x) => x.data));
    });
  });

  describe('commit rule (paper §5.4.2, figure 8)', () => {
    it('does not commit an entry of an earlier term by counting replicas', () => {
      const a = follower('a', 3, [e(2, 2)]);
      elect(a, ['b']);
      expect(a.term).to.equal(4);
      expect(a.lastIndex).to.equal(3); // the noop of term 4
      drain(a);
      a.step({ type: 'appendResp', from: 'b', to: 'a', term: 4, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
      expect(a.commitIndex).to.equal(1); // index 2 is on a majority, but of term 2
      a.step({ type: 'appendResp', from: 'b', to: 'a', term: 4, reject: false, index: 3, hintIndex: 0, hintTerm: 0 });
      expect(a.commitIndex).to.equal(3); // the term-4 noop commits, and index 2 with it
      expect(drain(a).committed.map((x) => x.index)).to.deep.equal([2, 3]);
    });

    it('ignores replies from an older term', () => {
      const a = follower('a', 3, [e(2, 2)]);
      elect(a, ['b']);
      drain(a);
      a.step({ type: 'appendResp', from: 'b', to: 'a', term: 3, reject: false, index: 3, hintIndex: 0, hintTerm: 0 });
      expect(a.commitIndex).to.equal(1);
      expect(a.progress().find((p) => p.id === 'b')?.match).to.equal(0);
    });
  });

  describe('elections (paper §5.2, thesis §9.6 PreVote, §6.2 CheckQuorum)', () => {
    it('a follower hearing from its leader ignores a pre-vote and keeps its term', () => {
      const [a, b] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      const term = b.term;
      b.step({ type: 'preVote', from: 'c', to: 'b', term: term + 1, lastIndex: 99, lastTerm: term });
      expect(drain(b).messages.filter((m) => m.to === 'c')).to.deep.equal([]);
      expect(b.term).to.equal(term);
      expect(b.leader).to.equal(a.id);
    });

    it('rejects a pre-vote from a node with a shorter log, without changing terms', () => {
      const b = follower('b', 2, [e(2, 2)]);
      b.step({ type: 'preVote', from: 'c', to: 'b', term: 3, lastIndex: 1, lastTerm: 1 });
      const m = drain(b).messages[0];
      expect(m).to.include({ type: 'preVoteResp', reject: true, term: 2 });
      expect(b.term).to.equal(2);
      expect(b.votedFor).to.equal(null);
    });

    it('grants a pre-vote without raising its own term or recording a vote', () => {
      const b = follower('b', 2, []);
      b.step({ type: 'preVote', from: 'c', to: 'b', term: 3, lastIndex: 1, lastTerm: 1 });
      expect(drain(b).messages[0]).to.include({ type: 'preVoteResp', reject: false, term: 3 });
      expect(b.term).to.equal(2);
      expect(b.votedFor).to.equal(null);
    });

    it('a node whose pre-vote fails never raises its term', () => {
      const c = follower('c', 2, []);
      for (let i = 0; i < 200; i++) c.tick();
      for (const m of drain(c).messages) expect(m.type).to.equal('preVote');
      expect(c.term).to.equal(2);
      expect(c.role).to.equal('precandidate');
    });

    it('persists the vote in the same Ready as the vote reply', () => {
      const b = follower('b', 2, []);
      b.step({ type: 'vote', from: 'c', to: 'b', term: 3, lastIndex: 1, lastTerm: 1 });
      const rd = drain(b);
      expect(rd.hardState).to.deep.include({ term: 3, vote: 'c' });
      expect(rd.messages[0]).to.include({ type: 'voteResp', reject: false });
      b.step({ type: 'vote', from: 'a', to: 'b', term: 3, lastIndex: 1, lastTerm: 1 });
      expect(drain(b).messages[0]).to.include({ type: 'voteResp', reject: true });
    });

    it('a node that knows no configuration (a fresh joiner, a replacement under a dead member\'s id) grants no vote', () => {
      const fresh = mk('c');
      fresh.step({ type: 'vote', from: 'b', to: 'c', term: 5, lastIndex: 0, lastTerm: 0 });
      fresh.step({ type: 'preVote', from: 'a', to: 'c', term: 6, lastIndex: 0, lastTerm: 0 });
      const replies = drain(fresh).messages;
      expect(replies.map((m) => m.type)).to.deep.equal(['voteResp', 'preVoteResp']);
      for (const m of replies) expect(m).to.include({ reject: true });
    });

    it('CheckQuorum: a leader that hears from no quorum within an election timeout steps down', () => {
      const [a] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      for (let i = 0; i < 10; i++) a.tick(); // the first window counts peers as active
      expect(a.role).to.equal('leader');
      for (let i = 0; i < 10; i++) a.tick();
      expect(a.role).to.equal('follower');
      expect(a.leader).to.equal(null);
    });

    it('CheckQuorum: a leader that hears from one follower per window stays leader', () => {
      const [a] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      for (let i = 0; i < 50; i++) {
        a.tick();
        a.step({ type: 'heartbeatResp', from: 'b', to: 'a', term: a.term });
      }
      expect(a.role).to.equal('leader');
    });

    it('ticksUntilDue: fewer ticks than it says do nothing observable, that many act (a runtime may sleep until then)', () => {
      /** Ticks `n` k times; true when that produced messages or changed its role. */
      const acted = (n: RaftNode, k: number): boolean => {
        const role = n.role;
        for (let i = 0; i < k; i++) n.tick();
        return drain(n).messages.length > 0 || n.role !== role;
      };
      // A voter follower: nothing until its randomized election timeout, then a pre-vote.
      const f = follower('b', 2, []);
      const untilCampaign = f.ticksUntilDue();
      expect(untilCampaign).to.be.within(10, 19);
      expect(acted(f, untilCampaign - 1)).to.equal(false);
      expect(f.ticksUntilDue()).to.equal(1);
      expect(acted(f, 1)).to.equal(true);
      expect(f.role).to.equal('precandidate');
      // A leader with heartbeats every 3 ticks: due at each heartbeat, and at the CheckQuorum window.
      const nodes = ['a', 'b', 'c'].map((id) => mk(id, { heartbeatTicks: 3 }));
      for (const n of nodes) n.bootstrap(CONF3);
      const a = nodes[0] as RaftNode;
      while (a.role !== 'precandidate') a.tick();
      settle(nodes);
      expect(a.role).to.equal('leader');
      // (A due tick may also be only CheckQuorum's, which finds the quorum active and does nothing.)
      let beats = 0;
      for (let wake = 0; wake < 6; wake++) {
        const k = a.ticksUntilDue();
        expect(k).to.be.within(1, 3);
        expect(acted(a, k - 1)).to.equal(false);
        if (acted(a, 1)) beats++;
        for (const id of ['b', 'c']) a.step({ type: 'heartbeatResp', from: id, to: 'a', term: a.term });
      }
      expect(beats).to.be.at.least(5);
      // No follower answers: the leader steps down exactly when CheckQuorum's window closes, never between.
      const leading = (): boolean => a.role === 'leader';
      for (let i = 0; i < 40 && leading(); i++) {
        const k = a.ticksUntilDue();
        for (let j = 0; j < k - 1; j++) a.tick();
        expect(a.role).to.equal('leader');
        a.tick();
        drain(a);
      }
      expect(a.role).to.equal('follower');
      // A learner never campaigns: nothing is ever due.
      const l = mk('d');
      l.restore({ hardState: { term: 2, vote: null, commit: 1 }, entries: [{ ...confEntry, data: { change: null, config: { voters: ['a', 'b', 'c'], learners: ['d'] } } }] });
      expect(l.ticksUntilDue()).to.equal(Infinity);
    });

    it('a stale leader steps down when a follower answers with a newer term', () => {
      const [a] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      a.step({ type: 'appendResp', from: 'b', to: 'a', term: a.term + 5, reject: true, index: 0, hintIndex: 0, hintTerm: 0 });
      expect(a.role).to.equal('follower');
    });

    it('a voter answers an append from an older term with its own term', () => {
      const b = follower('b', 5, []);
      b.step(append('b', 4, 1, 1, [], 1));
      expect(drain(b).messages[0]).to.include({ type: 'appendResp', term: 5, reject: true });
    });
  });

  describe('learners and membership (thesis §4.1)', () => {
    it('a learner never campaigns', () => {
      const l = mk('d');
      l.restore({ hardState: { term: 2, vote: null, commit: 1 }, entries: [{ ...confEntry, data: { change: null, config: { voters: ['a', 'b', 'c'], learners: ['d'] } } }] });
      for (let i = 0; i < 100; i++) l.tick();
      expect(l.role).to.equal('learner');
      expect(drain(l).messages).to.deep.equal([]);
    });

    it('an idle leader heartbeats voters every round and learners about once per election timeout', () => {
      const conf = { voters: ['a', 'b', 'c'], learners: ['d', 'e'] };
      const a = mk('a', { heartbeatTicks: 3 });
      a.restore({ hardState: { term: 1, vote: null, commit: 1 }, entries: [{ ...confEntry, data: { change: null, config: conf } }] });
      while (a.role !== 'precandidate') a.tick();
      elect(a, ['b']);
      drain(a);
      const beats = new Map<string, number>();
      for (let t = 0; t < 90; t++) {
        a.tick();
        for (const m of drain(a).messages) if (m.type === 'heartbeat') beats.set(m.to, (beats.get(m.to) ?? 0) + 1);
        for (const id of ['b', 'c', 'd', 'e']) a.step({ type: 'heartbeatResp', from: id, to: 'a', term: a.term });
      }
      expect(a.role).to.equal('leader');
      // 90 ticks: 30 rounds of 3 ticks; learners in every third round (floor(10 / 3)).
      expect([beats.get('b'), beats.get('c')]).to.deep.equal([30, 30]);
      expect([beats.get('d'), beats.get('e')]).to.deep.equal([10, 10]);
    });

    it('a learner\'s vote and replication do not count', () => {
      const conf = { voters: ['a', 'b', 'c'], learners: ['d'] };
      const a = mk('a');
      a.restore({ hardState: { term: 1, vote: null, commit: 1 }, entries: [{ ...confEntry, data: { change: null, config: conf } }] });
      while (a.role !== 'precandidate') a.tick();
      a.step({ type: 'preVoteResp', from: 'd', to: 'a', term: 2, reject: false });
      expect(a.role).to.equal('precandidate');
      elect(a, ['b']);
      const idx = a.propose('v');
      a.step({ type: 'appendResp', from: 'd', to: 'a', term: a.term, reject: false, index: idx, hintIndex: 0, hintTerm: 0 });
      expect(a.commitIndex).to.be.lessThan(idx);
      a.step({ type: 'appendResp', from: 'b', to: 'a', term: a.term, reject: false, index: idx, hintIndex: 0, hintTerm: 0 });
      expect(a.commitIndex).to.equal(idx);
    });

    it('allows one uncommitted configuration change at a time', () => {
      const [a, b, c] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      settle([a, b, c]);
      a.proposeConfChange({ type: 'addLearner', id: 'd' });
      expect(a.config.learners).to.deep.equal(['d']); // in force once appended
      expect(() => a.proposeConfChange({ type: 'addLearner', id: 'e' })).to.throw().that.satisfies((err: unknown) => isKvError(err, 'KV_UNAVAILABLE'));
      settle([a, b, c]);
      expect(b.config.learners).to.deep.equal(['d']);
      a.proposeConfChange({ type: 'addVoter', id: 'd' });
      expect(a.config.voters).to.deep.equal(['a', 'b', 'c', 'd']);
    });

    it('rejects invalid changes with KV_INVALID_ARGUMENT', () => {
      const [a, b, c] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      settle([a, b, c]);
      const code = (fn: () => void): string | undefined => {
        try { fn(); } catch (err) { return isKvError(err) ? err.code : 'other'; }
        return undefined;
      };
      expect(code(() => a.proposeConfChange({ type: 'addVoter', id: 'b' }))).to.equal('KV_INVALID_ARGUMENT');
      expect(code(() => a.proposeConfChange({ type: 'remove', id: 'zz' }))).to.equal('KV_INVALID_ARGUMENT');
      expect(code(() => a.proposeConfChange({ type: 'addLearner', id: 'bad id!' }))).to.equal('KV_INVALID_ARGUMENT');
      expect(code(() => b.proposeConfChange({ type: 'addLearner', id: 'd' }))).to.equal('KV_NOT_LEADER');
    });

    it('a leader that removes itself leads until the change commits, then steps down', () => {
      const [a, b, c] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      settle([a, b, c]);
      const idx = a.proposeConfChange({ type: 'remove', id: 'a' });
      expect(a.role).to.equal('leader');
      expect(a.commitIndex).to.be.lessThan(idx);
      settle([a, b, c]);
      expect(b.commitIndex).to.be.at.least(idx);
      expect(a.role).to.equal('follower');
      expect(b.config.voters).to.deep.equal(['b', 'c']);
      for (let i = 0; i < 100; i++) a.tick();
      expect(a.role).to.equal('follower'); // no longer a voter: never campaigns
    });
  });

  describe('proposals, Ready and restarts', () => {
    it('a follower refuses proposals with KV_NOT_LEADER naming the leader', () => {
      const [a, b] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      try {
        b.propose('x');
        expect.fail('propose on a follower succeeded');
      } catch (err) {
        expect(isKvError(err, 'KV_NOT_LEADER')).to.equal(true);
        expect((err as { details?: unknown }).details).to.deep.equal({ leader: a.id });
      }
    });

    it('a single bootstrapped node elects itself and commits a proposal in one Ready', () => {
      const n = mk('a');
      n.bootstrap({ voters: ['a'], learners: [] });
      const first = drain(n);
      expect(first.entries.map((x) => x.kind)).to.deep.equal(['conf']);
      expect(first.hardState).to.deep.equal({ term: 1, vote: null, commit: 1 });
      expect(first.committed.map((x) => x.index)).to.deep.equal([1]);
      for (let i = 0; i < 20 && n.role !== 'leader'; i++) n.tick();
      expect(n.role).to.equal('leader');
      const idx = n.propose('hello');
      const rd = drain(n);
      expect(rd.entries.map((x) => x.index)).to.include(idx);
      expect(rd.committed.map((x) => x.data)).to.include('hello');
    });

    it('restores term, vote and log after a restart and re-delivers entries after the snapshot', () => {
      const n = mk('b');
      n.restore({
        hardState: { term: 7, vote: 'c', commit: 3 },
        snapshot: { index: 1, term: 1, config: CONF3, data: { s: 1 } },
        entries: [e(2, 5), e(3, 6), e(4, 7)],
      });
      expect([n.term, n.votedFor, n.commitIndex, n.lastIndex, n.snapshotIndex]).to.deep.equal([7, 'c', 3, 4, 1]);
      const rd = drain(n);
      expect(rd.hardState).to.equal(undefined);
      expect(rd.entries).to.deep.equal([]);
      expect(rd.committed.map((x) => x.index)).to.deep.equal([2, 3]);
      expect(n.config).to.deep.equal(CONF3);
    });

    it('sends a snapshot to a follower behind the compacted log, which installs it', () => {
      const [a, b, c] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      for (let i = 0; i < 10; i++) a.propose(`p${i}`);
      settle([a, b], (m) => m.to === 'c' || m.from === 'c');
      a.compact(a.appliedIndex, { state: 'S' });
      expect(a.snapshotIndex).to.equal(a.commitIndex);
      a.tick(); // heartbeat reaches c, c answers, the leader finds it behind
      const seen: string[] = [];
      settle([a, b, c], (m) => { seen.push(m.type); return false; });
      expect(seen).to.include('snapshot');
      expect(c.snapshotIndex).to.equal(a.snapshotIndex);
      expect(c.commitIndex).to.equal(a.commitIndex);
      const d = a.propose('after');
      settle([a, b, c]);
      expect(c.termAt(d)).to.equal(a.term);
    });

    it('hands the snapshot to the runtime in a Ready, committed entries following it', () => {
      const f = follower('b', 2, [e(2, 2)]);
      f.step({ type: 'snapshot', from: 'a', to: 'b', term: 3, snapshot: { index: 10, term: 3, config: CONF3, data: 'S' } });
      const rd = drain(f);
      expect(rd.snapshot).to.deep.include({ index: 10, term: 3, data: 'S' });
      expect(rd.entries).to.deep.equal([]);
      expect(rd.committed).to.deep.equal([]);
      expect(rd.messages[0]).to.include({ type: 'appendResp', reject: false, index: 10 });
      expect(f.lastIndex).to.equal(10);
    });

    it('a leader ignores an acknowledgement for entries it never had', () => {
      const [a] = threeNodeCluster() as [RaftNode, RaftNode, RaftNode];
      const before = a.commitIndex;
      a.step({ type: 'appendResp', from: 'b', to: 'a', term: a.term, reject: false, index: 1e9, hintIndex: 0, hintTerm: 0 });
      expect(a.commitIndex).to.equal(before);
      expect(a.role).to.equal('leader');
    });
  });

  describe('validateRaftMessage', () => {
    const good: RaftMessage = append('b', 2, 1, 1, [e(2, 2)], 1);

    it('accepts a well-formed message and drops unknown fields', () => {
      const v = validateRaftMessage({ ...good, extra: 'x' });
      expect(v).to.deep.equal(good);
    });

    const bad: [string, unknown][] = [
      ['null', null],
      ['an array', []],
      ['an unknown type', { ...good, type: 'explode' }],
      ['a missing sender', { ...good, from: undefined }],
      ['an invalid node id', { ...good, from: 'a b' }],
      ['a message to itself', { ...good, to: 'a' }],
      ['a negative term', { ...good, term: -1 }],
      ['a fractional index', { ...good, prevIndex: 1.5 }],
      ['entries that are not an array', { ...good, entries: 'x' }],
      ['non-contiguous entries', { ...good, entries: [e(3, 2)] }],
      ['an entry term above the message term', { ...good, entries: [e(2, 9)] }],
      ['an entry of unknown kind', { ...good, entries: [{ ...e(2, 2), kind: 'weird' }] }],
      ['a conf entry without a config', { ...good, entries: [{ term: 2, index: 2, kind: 'conf', data: {} }] }],
      ['a config listing a node twice', { ...good, entries: [{ term: 2, index: 2, kind: 'conf', data: { change: null, config: { voters: ['a', 'a'], learners: [] } } }] }],
      ['too many entries', { ...good, entries: Array.from({ length: 5000 }, (_, i) => e(i + 2, 2)) }],
      ['a vote reply without reject', { type: 'voteResp', from: 'a', to: 'b', term: 1 }],
      ['a snapshot without config', { type: 'snapshot', from: 'a', to: 'b', term: 2, snapshot: { index: 3, term: 2, data: 1 } }],
      ['a string term', { type: 'heartbeat', from: 'a', to: 'b', term: '2', commit: 0 }],
    ];
    for (const [what, x] of bad) {
      it(`rejects ${what} with KV_FRAME_INVALID`, () => {
        expect(() => validateRaftMessage(x)).to.throw().that.satisfies((err: unknown) => isKvError(err, 'KV_FRAME_INVALID'));
      });
    }
  });
});
