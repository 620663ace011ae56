/**
 * Raft consensus for the membership/epoch log (DESIGN §6), as a pure state machine in
 * the shape of etcd-io/raft: inputs are tick(), step(msg), propose() and
 * proposeConfChange(); outputs are collected in a Ready (see types.ts for the order the
 * runtime must handle it in), acknowledged with advance(). No clock, no I/O: time is a
 * tick count and randomness comes from the injected Rng.
 *
 * Protocol choices (paper = Ongaro & Ousterhout 2014, thesis = Ongaro 2014):
 * - PreVote (thesis §9.6) so a node that was cut off cannot raise the term of a healthy
 *   cluster when it comes back, and CheckQuorum (§6.2) so a leader cut off from a
 *   quorum steps down; together they give followers a "leader lease" during which vote
 *   requests are ignored.
 * - A new leader appends a noop so entries of earlier terms get committed through it:
 *   the leader only commits entries of its own term by counting (paper §5.4.2, fig. 8).
 * - Single-server membership changes (thesis §4.1): a config takes effect as soon as
 *   its entry is appended; one change may be uncommitted at a time, and none until the
 *   leader has committed an entry of its term (thesis §4.1 erratum: otherwise two
 *   overlapping changes from different terms can yield two disjoint majorities).
 * - Fast back-off: a reject carries (hintIndex, hintTerm) so the leader skips a whole
 *   conflicting term per round trip (paper §5.3, etcd's findConflictByTerm).
 */
import { KvError, assert } from '../../errors.ts';
import type { Rng } from '../rng.ts';
import { Progress } from './progress.ts';
import { isNodeId, validateConfig } from './validate.ts';
import type {
  AppendMsg, AppendRespMsg, ConfChange, ConfEntryData, Entry, EntryKind, HardState,
  HeartbeatMsg, PeerProgress, PersistedState, RaftConfig, RaftMessage, Ready, Role,
  Snapshot, SnapshotMsg, VoteMsg, VoteRespMsg,
} from './types.ts';

export interface RaftNodeOptions {
  id: string;
  rng: Rng;
  /**
   * Ticks without hearing from a leader before a voter campaigns; the actual timeout
   * is drawn from [electionTicks, 2*electionTicks) so split votes resolve. Also the
   * CheckQuorum window and the leader lease. Default 10.
   */
  electionTicks?: number;
  /** Ticks between leader heartbeats; must be well below electionTicks. Default 1. */
  heartbeatTicks?: number;
  /** Entries per append message: bounds frame size and the work per message. Default 64. */
  maxEntriesPerAppend?: number;
  /**
   * Unacknowledged appends per follower in replicate state. Bounds what the leader
   * pushes to a slow follower before it waits. Default 16.
   */
  maxInflight?: number;
  /**
   * Proposals beyond the commit index the leader accepts; beyond it propose() fails
   * with KV_UNAVAILABLE. Without it a leader that lost its quorum (before CheckQuorum
   * notices) would buffer proposals without end. Default 1024.
   */
  maxUncommittedEntries?: number;
  /** Committed entries handed out per Ready, so one Ready stays bounded. Default 1024. */
  maxCommittedPerReady?: number;
}

type State = 'follower' | 'precandidate' | 'candidate' | 'leader';

const EMPTY_CONFIG: RaftConfig = { voters: [], learners: [] };

function isVoteRequest(m: RaftMessage): m is VoteMsg {
  return m.type === 'preVote' || m.type === 'vote';
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new KvError('KV_CONFIG', `raft ${name} must be a positive integer`);
  return v;
}

export class RaftNode {
  readonly id: string;
  private readonly rng: Rng;
  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly maxEntriesPerAppend: number;
  private readonly maxInflight: number;
  private readonly maxUncommitted: number;
  private readonly maxCommittedPerReady: number;

  private _term = 0;
  private vote: string | null = null;
  private commit = 0;
  /** Last index handed to the application (in a Ready). */
  private applied = 0;
  private state: State = 'follower';
  private lead: string | null = null;

  /** The log: snap covers 1..snap.index, log[i] holds index snap.index + 1 + i. */
  private snap: Snapshot = { index: 0, term: 0, config: EMPTY_CONFIG, data: null };
  private log: Entry[] = [];
  private cfg: RaftConfig = EMPTY_CONFIG;
  /** Index of the entry (or snapshot) that produced `cfg`. */
  private cfgIndex = 0;

  /** First log index not yet handed to storage in a Ready. */
  private unstableFrom = 1;
  private pendingSnapshot: Snapshot | null = null;
  private msgs: RaftMessage[] = [];
  private persistedHard: HardState = { term: 0, vote: null, commit: 0 };
  private readyOutstanding = false;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  /** Heartbeat rounds since learners last got one (tickLeader). */
  private learnerRounds = 0;
  private randomizedTimeout: number;
  private votes = new Map<string, boolean>();
  private prs = new Map<string, Progress>();
  /** Index of the newest conf entry; a new change waits until it is committed. */
  private pendingConfIndex = 0;

  constructor(opts: RaftNodeOptions) {
    if (!isNodeId(opts.id)) throw new KvError('KV_CONFIG', `raft id is not a valid node id: ${String(opts.id)}`);
    this.id = opts.id;
    this.rng = opts.rng;
    this.electionTicks = positiveInt('electionTicks', opts.electionTicks ?? 10);
    this.heartbeatTicks = positiveInt('heartbeatTicks', opts.heartbeatTicks ?? 1);
    if (this.heartbeatTicks >= this.electionTicks) {
      throw new KvError('KV_CONFIG', 'raft heartbeatTicks must be below electionTicks');
    }
    this.maxEntriesPerAppend = positiveInt('maxEntriesPerAppend', opts.maxEntriesPerAppend ?? 64);
    this.maxInflight = positiveInt('maxInflight', opts.maxInflight ?? 16);
    this.maxUncommitted = positiveInt('maxUncommittedEntries', opts.maxUncommittedEntries ?? 1024);
    this.maxCommittedPerReady = positiveInt('maxCommittedPerReady', opts.maxCommittedPerReady ?? 1024);
    this.randomizedTimeout = this.drawTimeout();
  }

  // ---------------------------------------------------------------- getters

  get term(): number { return this._term; }
  get leader(): string | null { return this.lead; }
  get commitIndex(): number { return this.commit; }
  get appliedIndex(): number { return this.applied; }
  get lastIndex(): number { return this.snap.index + this.log.length; }
  get lastTerm(): number { return this.termAt(this.lastIndex) ?? 0; }
  get snapshotIndex(): number { return this.snap.index; }
  get votedFor(): string | null { return this.vote; }
  get config(): RaftConfig { return { voters: [...this.cfg.voters], learners: [...this.cfg.learners] }; }
  get isVoter(): boolean { return this.cfg.voters.includes(this.id); }
  get role(): Role {
    if (this.state === 'follower' && this.cfg.learners.includes(this.id)) return 'learner';
    return this.state;
  }

  /**
   * The election timer: ticks since it was reset, and the randomized timeout a voter
   * campaigns at (on a leader, `elapsedTicks` counts the CheckQuorum window instead).
   */
  get electionTimer(): { elapsedTicks: number; timeoutTicks: number } {
    return { elapsedTicks: this.electionElapsed, timeoutTicks: this.randomizedTimeout };
  }

  /**
   * How many tick() calls from now until one of them does something besides counting: a
   * voter's campaign, a leader's heartbeats, its CheckQuorum check or a snapshot retry.
   * Fewer ticks only advance counters, so a runtime may sleep this many tick lengths and
   * then tick that many times at once, provided it also catches up on the ticks due before
   * it steps a message (the counters are read there: the leader lease). At least 1;
   * Infinity for a non-leader that never campaigns (a learner).
   */
  ticksUntilDue(): number {
    if (this.state !== 'leader') {
      return this.isVoter ? Math.max(1, this.randomizedTimeout - this.electionElapsed) : Infinity;
    }
    let due = Math.min(this.heartbeatTicks - this.heartbeatElapsed, this.electionTicks - this.electionElapsed);
    for (const pr of this.prs.values()) {
      if (pr.state === 'snapshot') due = Math.min(due, this.electionTicks - pr.snapshotTicks);
    }
    return Math.max(1, due);
  }

  /** Replication progress of every peer, as the leader sees it; empty on non-leaders. */
  progress(): PeerProgress[] {
    if (this.state !== 'leader') return [];
    return [...this.prs].map(([id, p]) => ({ id, match: p.match, next: p.next, state: p.state, recentActive: p.recentActive }));
  }

  /** Term of the entry at `index`, or undefined when compacted away or beyond the log. */
  termAt(index: number): number | undefined {
    if (index === this.snap.index) return this.snap.term;
    if (index < this.snap.index || index > this.lastIndex) return undefined;
    return (this.log[index - this.snap.index - 1] as Entry).term;
  }

  /** Entries in [lo, hi] still in the log (lo > snapshot index). */
  entries(lo: number, hi: number = this.lastIndex): Entry[] {
    assert(lo > this.snap.index, 'entries below the snapshot are compacted');
    return this.log.slice(lo - this.snap.index - 1, Math.max(0, hi - this.snap.index));
  }

  // ---------------------------------------------------------------- lifecycle

  /** Loads what storage held after a restart. Only on a fresh node. */
  restore(state: PersistedState): void {
    assert(this.isFresh(), 'restore on a node that already has state');
    if (state.snapshot !== undefined) {
      const s = state.snapshot;
      this.snap = { index: s.index, term: s.term, config: validateConfig(s.config), data: s.data };
      this.cfg = this.snap.config;
      this.cfgIndex = s.index;
      this.commit = s.index;
      this.applied = s.index;
    }
    for (const e of state.entries) {
      if (e.index <= this.snap.index) continue; // storage may lag behind a compaction
      assert(e.index === this.lastIndex + 1, `restored log has a gap at ${e.index}`);
      assert(e.term >= this.lastTerm, `restored log terms decrease at ${e.index}`);
      this.log.push(e);
    }
    if (state.hardState !== undefined) {
      const hs = state.hardState;
      this._term = hs.term;
      this.vote = hs.vote;
      assert(hs.commit <= this.lastIndex, 'restored commit index beyond the restored log');
      this.commit = Math.max(this.commit, hs.commit);
    }
    assert(this._term >= this.lastTerm, 'restored term below the last log term');
    if (state.applied !== undefined) {
      assert(state.applied >= this.snap.index && state.applied <= this.commit, 'restored applied index out of range');
      this.applied = state.applied;
    }
    this.refreshConfig();
    this.unstableFrom = this.lastIndex + 1;
    this.persistedHard = this.hardState();
    this.state = 'follower';
    this.resetTimers();
  }

  /**
   * Starts a brand-new group: writes the initial configuration as entry 1 (term 1),
   * already committed. Every initial voter bootstraps with the same `conf`, so their
   * logs agree; a one-node cluster bootstraps alone and grows by conf changes. Nodes
   * that join later start empty and receive the log from the leader.
   */
  bootstrap(conf: RaftConfig): void {
    assert(this.isFresh(), 'bootstrap on a node that already has state');
    const config = validateConfig(conf);
    if (!config.voters.includes(this.id)) {
      throw new KvError('KV_INVALID_ARGUMENT', 'the bootstrapping node must be a voter of the initial configuration');
    }
    const data: ConfEntryData = { change: null, config };
    this.log.push({ term: 1, index: 1, kind: 'conf', data });
    this._term = 1;
    this.commit = 1;
    this.refreshConfig();
    this.resetTimers();
  }

  private isFresh(): boolean {
    return this.lastIndex === 0 && this._term === 0 && this.snap.index === 0;
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    if (this.state === 'leader') {
      this.tickLeader();
      return;
    }
    this.electionElapsed++;
    if (this.isVoter && this.electionElapsed >= this.randomizedTimeout) {
      this.campaign(true);
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    for (const pr of this.prs.values()) {
      // A lost snapshot message leaves no reply to move on from; retry after a while.
      if (pr.state === 'snapshot' && ++pr.snapshotTicks >= this.electionTicks) pr.becomeProbe();
    }
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (!this.quorumActive()) {
        this.becomeFollower(this._term, null);
        return;
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      // Voters get every round: each heartbeat holds their elections back. Learners never campaign,
      // and a commit reaches them at once (broadcastAppend); their heartbeat only retries appends
      // that may have been lost, so it goes about once per election timeout (fewer frames from an
      // idle leader: at 9 members, 4 of its 8 peers are learners).
      const withLearners = ++this.learnerRounds >= Math.max(1, Math.floor(this.electionTicks / this.heartbeatTicks));
      if (withLearners) this.learnerRounds = 0;
      for (const [id, pr] of this.prs) {
        if (!withLearners && !this.cfg.voters.includes(id)) continue;
        this.send({ type: 'heartbeat', from: this.id, to: id, term: this._term, commit: Math.min(pr.match, this.commit) });
      }
    }
  }

  /**
   * Appends `data` as a normal entry; returns its index. The entry is committed when a
   * later Ready lists it in `committed` (and may be lost if leadership changes first).
   */
  propose(data: unknown): number {
    this.checkCanPropose();
    return this.appendEntry('normal', data);
  }

  /** Appends a single-server membership change; returns its index. */
  proposeConfChange(change: ConfChange): number {
    this.checkCanPropose();
    if (this.pendingConfIndex > this.commit) {
      throw new KvError('KV_UNAVAILABLE', 'a membership change is already in progress', { details: { pendingIndex: this.pendingConfIndex } });
    }
    if (this.termAt(this.commit) !== this._term) {
      throw new KvError('KV_UNAVAILABLE', 'the new leader has not committed an entry of its term yet');
    }
    if (!isNodeId(change.id)) throw new KvError('KV_INVALID_ARGUMENT', 'conf change id is not a valid node id');
    const id = change.id;
    const voters = this.cfg.voters.filter((v) => v !== id);
    const learners = this.cfg.learners.filter((l) => l !== id);
    const isVoter = voters.length !== this.cfg.voters.length;
    const isLearner = learners.length !== this.cfg.learners.length;
    switch (change.type) {
      case 'addVoter':
        if (isVoter) throw new KvError('KV_INVALID_ARGUMENT', `${id} is already a voter`);
        voters.push(id);
        break;
      case 'addLearner':
        if (isLearner) throw new KvError('KV_INVALID_ARGUMENT', `${id} is already a learner`);
        learners.push(id);
        break;
      case 'remove':
        if (!isVoter && !isLearner) throw new KvError('KV_INVALID_ARGUMENT', `${id} is not a member`);
        break;
      default:
        throw new KvError('KV_INVALID_ARGUMENT', 'unknown conf change type');
    }
    if (voters.length === 0) throw new KvError('KV_INVALID_ARGUMENT', 'cannot remove the last voter');
    const data: ConfEntryData = { change: { type: change.type, id }, config: { voters, learners } };
    return this.appendEntry('conf', data);
  }

  private checkCanPropose(): void {
    if (this.state !== 'leader') {
      throw new KvError('KV_NOT_LEADER', 'not the raft leader', { details: { leader: this.lead } });
    }
    if (this.lastIndex - this.commit >= this.maxUncommitted) {
      throw new KvError('KV_UNAVAILABLE', 'too many uncommitted raft entries');
    }
  }

  /**
   * One message from a peer. The term rules every role shares come first (stepTerm),
   * then vote requests, which any role answers; the rest depends on the role, as in
   * etcd's stepLeader / stepCandidate / stepFollower.
   */
  step(m: RaftMessage): void {
    if (m.to !== this.id || m.from === this.id) return;
    if (!this.stepTerm(m)) return;
    if (isVoteRequest(m)) {
      this.handleVote(m);
      return;
    }
    switch (this.state) {
      case 'leader':
        this.stepLeader(m);
        return;
      case 'precandidate':
      case 'candidate':
        this.stepCandidate(m);
        return;
      case 'follower':
        this.stepFollower(m);
        return;
    }
  }

  /**
   * A higher term makes us a follower of it (paper §5.1), except for what PreVote and the
   * leader lease exempt; a lower term marks a stale message. False when the message ends here.
   */
  private stepTerm(m: RaftMessage): boolean {
    if (m.term > this._term) {
      if (isVoteRequest(m)) {
        // Leader lease: while we hear from a leader, a vote request is a disruption from
        // a node that lost contact (or was removed), not a sign the leader is gone.
        if (this.lead !== null && this.electionElapsed < this.electionTicks) return false;
      }
      if (m.type === 'preVote' || (m.type === 'preVoteResp' && !m.reject)) {
        // A pre-vote never changes terms: granting one carries the would-be term.
      } else {
        const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot';
        this.becomeFollower(m.term, fromLeader ? m.from : null);
      }
      return true;
    }
    if (m.term < this._term) {
      if (m.type === 'append' || m.type === 'heartbeat') {
        // A deposed leader that missed the election: tell it the new term so it steps
        // down (with CheckQuorum it may otherwise never hear a higher term).
        this.send({ type: 'appendResp', from: this.id, to: m.from, term: this._term, reject: true, index: 0, hintIndex: 0, hintTerm: 0 });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', from: this.id, to: m.from, term: this._term, reject: true });
      }
      return false; // everything else from an older term is stale
    }
    return true;
  }

  /** A leader acts on its followers' replies; nothing else of its own term concerns it. */
  private stepLeader(m: Exclude<RaftMessage, VoteMsg>): void {
    switch (m.type) {
      case 'appendResp':
      case 'heartbeatResp': {
        const pr = this.prs.get(m.from);
        if (pr === undefined) return; // not (or no longer) a member
        pr.recentActive = true;
        if (m.type === 'appendResp') this.handleAppendResp(m, pr);
        else this.handleHeartbeatResp(m.from, pr);
        return;
      }
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        return; // same term, two leaders: impossible (election safety); ignore
      case 'preVoteResp':
      case 'voteResp':
        return; // the election is over
    }
  }

  /** A (pre)candidate counts votes, and follows a leader of its term that won meanwhile. */
  private stepCandidate(m: Exclude<RaftMessage, VoteMsg>): void {
    switch (m.type) {
      case 'preVoteResp':
      case 'voteResp':
        this.handleVoteResp(m);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        this.becomeFollower(this._term, m.from);
        this.stepFollower(m);
        return;
      case 'appendResp':
      case 'heartbeatResp':
        return; // replies to a leadership we no longer hold
    }
  }

  /** A follower (or learner) takes the leader's log and commit index. */
  private stepFollower(m: Exclude<RaftMessage, VoteMsg>): void {
    switch (m.type) {
      case 'append':
      case 'heartbeat':
      case 'snapshot':
        this.lead = m.from;
        this.electionElapsed = 0;
        if (m.type === 'append') this.handleAppend(m);
        else if (m.type === 'heartbeat') this.handleHeartbeat(m);
        else this.handleSnapshot(m);
        return;
      case 'preVoteResp':
      case 'voteResp':
      case 'appendResp':
      case 'heartbeatResp':
        return; // answers to a campaign or a leadership of the past
    }
  }

  // ---------------------------------------------------------------- Ready

  hasReady(): boolean {
    if (this.readyOutstanding) return false;
    return this.msgs.length > 0 || this.pendingSnapshot !== null || this.unstableFrom <= this.lastIndex ||
      this.hardStateChanged() || this.commit > this.applied;
  }

  ready(): Ready {
    assert(!this.readyOutstanding, 'ready() called again before advance()');
    this.readyOutstanding = true;
    const rd: Ready = { entries: [], messages: this.msgs, committed: [] };
    this.msgs = [];
    if (this.pendingSnapshot !== null) {
      rd.snapshot = this.pendingSnapshot;
      this.applied = this.pendingSnapshot.index;
      this.pendingSnapshot = null;
    }
    if (this.unstableFrom <= this.lastIndex) {
      rd.entries = this.entries(this.unstableFrom);
      this.unstableFrom = this.lastIndex + 1;
    }
    if (this.hardStateChanged()) {
      rd.hardState = this.hardState();
      this.persistedHard = rd.hardState;
    }
    if (this.commit > this.applied) {
      const hi = Math.min(this.commit, this.applied + this.maxCommittedPerReady);
      rd.committed = this.entries(this.applied + 1, hi);
      this.applied = hi;
    }
    return rd;
  }

  /** The runtime finished the last Ready; the next one may be taken. */
  advance(): void {
    assert(this.readyOutstanding, 'advance() without ready()');
    this.readyOutstanding = false;
  }

  /**
   * Replaces the log up to `index` (at most the applied index) by a snapshot holding
   * the application state `data`. Returns it; the runtime stores it and deletes its
   * stored entries up to `index`. It is also what lagging followers are sent.
   */
  compact(index: number, data: unknown): Snapshot {
    assert(index <= this.applied && index <= this.commit, 'compact beyond the applied index');
    assert(index > this.snap.index, 'compact at or below the current snapshot');
    assert(!this.readyOutstanding || index < this.unstableFrom, 'compact of entries not yet persisted');
    const term = this.termAt(index) as number;
    const config = this.configAt(index);
    this.log = this.log.slice(index - this.snap.index);
    this.snap = { index, term, config, data };
    return this.snap;
  }

  // ---------------------------------------------------------------- roles

  private becomeFollower(term: number, lead: string | null): void {
    assert(term >= this._term, 'term went backwards');
    if (term > this._term) {
      this._term = term;
      this.vote = null;
    }
    this.state = 'follower';
    this.lead = lead;
    this.prs.clear();
    this.votes.clear();
    this.resetTimers();
  }

  private campaign(pre: boolean): void {
    this.votes.clear();
    this.lead = null;
    this.resetTimers();
    if (pre) {
      this.state = 'precandidate';
    } else {
      this.state = 'candidate';
      this._term++;
      this.vote = this.id;
    }
    this.votes.set(this.id, true);
    if (this.pollDone(pre)) return;
    const term = pre ? this._term + 1 : this._term;
    for (const v of this.cfg.voters) {
      if (v === this.id) continue;
      this.send({ type: pre ? 'preVote' : 'vote', from: this.id, to: v, term, lastIndex: this.lastIndex, lastTerm: this.lastTerm });
    }
  }

  /** Acts on the votes so far; true when the campaign is decided. */
  private pollDone(pre: boolean): boolean {
    let granted = 0;
    let rejected = 0;
    for (const v of this.cfg.voters) {
      const g = this.votes.get(v);
      if (g === true) granted++;
      else if (g === false) rejected++;
    }
    const q = this.quorum();
    if (granted >= q) {
      if (pre) this.campaign(false);
      else this.becomeLeader();
      return true;
    }
    if (rejected >= q) {
      this.becomeFollower(this._term, null);
      return true;
    }
    return false;
  }

  private becomeLeader(): void {
    assert(this.state === 'candidate', 'only a candidate becomes leader');
    this.state = 'leader';
    this.lead = this.id;
    this.votes.clear();
    this.resetTimers();
    this.prs.clear();
    this.syncProgress();
    // Earlier-term entries become committed only through an entry of this term (fig. 8).
    this.pendingConfIndex = 0;
    for (let i = this.commit + 1; i <= this.lastIndex; i++) {
      if ((this.log[i - this.snap.index - 1] as Entry).kind === 'conf') this.pendingConfIndex = i;
    }
    this.appendEntry('noop', null);
  }

  private resetTimers(): void {
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedTimeout = this.drawTimeout();
  }

  private drawTimeout(): number {
    return this.electionTicks + this.rng.int(this.electionTicks);
  }

  private quorum(): number {
    return Math.floor(this.cfg.voters.length / 2) + 1;
  }

  /** CheckQuorum: did a quorum of voters (counting this one) reply this window? */
  private quorumActive(): boolean {
    let active = 0;
    for (const v of this.cfg.voters) {
      if (v === this.id) active++;
      else if (this.prs.get(v)?.recentActive === true) active++;
    }
    for (const pr of this.prs.values()) pr.recentActive = false;
    return active >= this.quorum();
  }

  // ---------------------------------------------------------------- votes

  private handleVote(m: VoteMsg): void {
    // A node that knows no configuration has lost (or never had) its log: a fresh joiner, or a
    // process replacing a dead member under its id. Its vote could complete a majority for a
    // candidate whose log lacks committed entries, so it grants none until a leader feeds it.
    const knowsConfig = this.cfg.voters.length > 0;
    const canVote = knowsConfig && (this.vote === m.from || (this.vote === null && this.lead === null) ||
      (m.type === 'preVote' && m.term > this._term));
    const upToDate = m.lastTerm > this.lastTerm || (m.lastTerm === this.lastTerm && m.lastIndex >= this.lastIndex);
    const respType = m.type === 'preVote' ? 'preVoteResp' : 'voteResp';
    if (canVote && upToDate) {
      this.send({ type: respType, from: this.id, to: m.from, term: m.term, reject: false });
      if (m.type === 'vote') {
        this.vote = m.from;
        this.electionElapsed = 0;
      }
    } else {
      this.send({ type: respType, from: this.id, to: m.from, term: this._term, reject: true });
    }
  }

  private handleVoteResp(m: VoteRespMsg): void {
    const pre = m.type === 'preVoteResp';
    if ((pre && this.state !== 'precandidate') || (!pre && this.state !== 'candidate')) return;
    // Only voters of our configuration count; a learner's answer decides nothing.
    if (!this.cfg.voters.includes(m.from)) return;
    if (!this.votes.has(m.from)) this.votes.set(m.from, !m.reject);
    this.pollDone(pre);
  }

  // ---------------------------------------------------------------- follower side

  private handleAppend(m: AppendMsg): void {
    const reply = (reject: boolean, index: number, hintIndex = 0, hintTerm = 0): void => {
      this.send({ type: 'appendResp', from: this.id, to: m.from, term: this._term, reject, index, hintIndex, hintTerm });
    };
    if (m.prevIndex < this.commit) {
      // Everything up to commit is settled; an append reaching back there is a stale or
      // duplicated one and must not truncate anything.
      reply(false, this.commit);
      return;
    }
    if (this.termAt(m.prevIndex) !== m.prevTerm) {
      let hint = Math.min(m.prevIndex, this.lastIndex);
      while (hint > this.snap.index && (this.termAt(hint) as number) > m.prevTerm) hint--;
      reply(true, m.prevIndex, hint, this.termAt(hint) ?? 0);
      return;
    }
    const lastNew = m.prevIndex + m.entries.length;
    // Append only from the first conflict: entries we already hold stay (a delayed,
    // shorter append must not cut off newer entries behind it).
    let i = 0;
    while (i < m.entries.length) {
      const e = m.entries[i] as Entry;
      if (this.termAt(e.index) !== e.term) break;
      i++;
    }
    if (i < m.entries.length) {
      const first = (m.entries[i] as Entry).index;
      if (first <= this.lastIndex) this.truncateFrom(first);
      let conf = false;
      for (let j = i; j < m.entries.length; j++) {
        const e = m.entries[j] as Entry;
        this.log.push(e);
        if (e.kind === 'conf') conf = true;
      }
      if (conf) this.refreshConfig();
    }
    this.commitTo(Math.min(m.commit, lastNew));
    reply(false, lastNew);
  }

  private handleHeartbeat(m: HeartbeatMsg): void {
    // The leader sends min(our match, its commit), which we hold; the clamp only
    // guards against a misbehaving peer.
    this.commitTo(Math.min(m.commit, this.lastIndex));
    this.send({ type: 'heartbeatResp', from: this.id, to: m.from, term: this._term });
  }

  private handleSnapshot(m: SnapshotMsg): void {
    const s = m.snapshot;
    const reply = (index: number): void => {
      this.send({ type: 'appendResp', from: this.id, to: m.from, term: this._term, reject: false, index, hintIndex: 0, hintTerm: 0 });
    };
    if (s.index <= this.commit) {
      reply(this.commit);
      return;
    }
    if (this.termAt(s.index) === s.term) {
      // We already hold the snapshot's last entry, hence (log matching) all before it.
      this.commitTo(s.index);
      reply(this.commit);
      return;
    }
    this.snap = { index: s.index, term: s.term, config: s.config, data: s.data };
    this.log = [];
    this.commit = s.index;
    this.unstableFrom = s.index + 1;
    this.pendingSnapshot = this.snap;
    this.refreshConfig();
    reply(s.index);
  }

  private truncateFrom(index: number): void {
    assert(index > this.commit, `truncation of committed entry ${index} (commit ${this.commit})`);
    assert(this.state !== 'leader', 'a leader never truncates its log');
    this.log.length = index - this.snap.index - 1;
    this.unstableFrom = Math.min(this.unstableFrom, index);
    this.refreshConfig();
  }

  private commitTo(index: number): void {
    if (index <= this.commit) return;
    assert(index <= this.lastIndex, 'commit beyond the log');
    this.commit = index;
  }

  // ---------------------------------------------------------------- leader side

  private appendEntry(kind: EntryKind, data: unknown): number {
    const index = this.lastIndex + 1;
    this.log.push({ term: this._term, index, kind, data });
    if (kind === 'conf') {
      this.pendingConfIndex = index;
      this.refreshConfig();
    }
    if (!this.maybeCommit()) this.broadcastAppend();
    return index;
  }

  /** Advances commit to the highest current-term index a quorum of voters holds. */
  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const v of this.cfg.voters) {
      matches.push(v === this.id ? this.lastIndex : (this.prs.get(v)?.match ?? 0));
    }
    matches.sort((a, b) => b - a);
    const idx = matches[this.quorum() - 1] ?? 0;
    if (idx <= this.commit || this.termAt(idx) !== this._term) return false;
    this.commitTo(idx);
    this.broadcastAppend();
    // A leader that removed (or demoted) itself leads until that change commits, and
    // tells the others it committed before it steps down (thesis §4.2.2).
    if (!this.isVoter && this.commit >= this.cfgIndex) this.becomeFollower(this._term, null);
    return true;
  }

  private broadcastAppend(): void {
    if (this.state !== 'leader') return;
    for (const [id, pr] of this.prs) this.sendAppend(id, pr, true);
  }

  /** Sends the next batch to `to`; false if nothing was sent. */
  private sendAppend(to: string, pr: Progress, sendIfEmpty: boolean): boolean {
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.termAt(prevIndex);
    if (prevTerm === undefined) {
      // What the follower needs next is compacted away: send the snapshot instead.
      this.send({ type: 'snapshot', from: this.id, to, term: this._term, snapshot: this.snap });
      pr.becomeSnapshot(this.snap.index);
      return true;
    }
    const hi = Math.min(this.lastIndex, prevIndex + this.maxEntriesPerAppend);
    const entries = hi > prevIndex ? this.entries(prevIndex + 1, hi) : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.send({ type: 'append', from: this.id, to, term: this._term, prevIndex, prevTerm, entries, commit: this.commit });
    if (pr.state === 'replicate') {
      if (entries.length > 0) {
        pr.next = hi + 1;
        pr.inflight.push(hi);
      }
    } else {
      pr.probeSent = true;
    }
    return true;
  }

  private handleAppendResp(m: AppendRespMsg, pr: Progress): void {
    if (m.reject) {
      let probe = m.hintIndex;
      if (m.hintTerm > 0) {
        // Our last entry at or below the hint whose term is not above the hint's term:
        // everything past it differs from the follower's log or is unknown there.
        probe = Math.min(m.hintIndex, this.lastIndex);
        while (probe > this.snap.index && (this.termAt(probe) as number) > m.hintTerm) probe--;
      }
      if (pr.maybeDecrTo(m.index, probe)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from, pr, true);
      }
      return;
    }
    if (m.index > this.lastIndex) return; // claims entries we never had: a bad peer
    if (!pr.maybeUpdate(m.index)) {
      if (pr.state === 'replicate') pr.freeInflightTo(m.index);
      return;
    }
    if (pr.state === 'probe') pr.becomeReplicate();
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeReplicate();
    else if (pr.state === 'replicate') pr.freeInflightTo(m.index);
    if (!this.maybeCommit()) {
      while (this.state === 'leader' && pr.match < this.lastIndex && this.sendAppend(m.from, pr, false)) { /* stream */ }
    }
  }

  private handleHeartbeatResp(from: string, pr: Progress): void {
    pr.probeSent = false;
    // Appends may have been lost: free one slot so replication cannot stall for good.
    if (pr.state === 'replicate' && pr.inflight.length >= this.maxInflight) pr.inflight.shift();
    if (pr.match < this.lastIndex) this.sendAppend(from, pr, true);
  }

  /** Keeps one Progress per peer of the current configuration (leader only). */
  private syncProgress(): void {
    if (this.state !== 'leader') return;
    const members = new Set([...this.cfg.voters, ...this.cfg.learners]);
    members.delete(this.id);
    for (const id of [...this.prs.keys()]) if (!members.has(id)) this.prs.delete(id);
    for (const id of members) {
      if (!this.prs.has(id)) this.prs.set(id, new Progress(this.lastIndex + 1, this.maxInflight));
    }
  }

  // ---------------------------------------------------------------- config

  /** Recomputes the configuration from the newest conf entry (or the snapshot). */
  private refreshConfig(): void {
    let index = this.snap.index;
    let config = this.snap.config;
    for (let i = this.log.length - 1; i >= 0; i--) {
      const e = this.log[i] as Entry;
      if (e.kind === 'conf') {
        index = e.index;
        config = (e.data as ConfEntryData).config;
        break;
      }
    }
    this.cfg = config;
    this.cfgIndex = index;
    this.syncProgress();
  }

  private configAt(index: number): RaftConfig {
    for (let i = index - this.snap.index - 1; i >= 0; i--) {
      const e = this.log[i] as Entry;
      if (e.kind === 'conf') return (e.data as ConfEntryData).config;
    }
    return this.snap.config;
  }

  // ---------------------------------------------------------------- helpers

  private hardState(): HardState {
    return { term: this._term, vote: this.vote, commit: this.commit };
  }

  private hardStateChanged(): boolean {
    const p = this.persistedHard;
    return p.term !== this._term || p.vote !== this.vote || p.commit !== this.commit;
  }

  private send(m: RaftMessage): void {
    this.msgs.push(m);
  }
}
