/**
 * Membership: the topology state machine behind Raft, admin requests forwarded to the
 * leader, the joiner's side of a join, and the leader's voter policy (3 voters, 5 once
 * the cluster has ≥ 5 members; the rest learners; a removed or long-dead voter's seat
 * is refilled from caught-up, live learners).
 */
import { EventEmitter } from 'node:events';
import { KvError, isKvError } from '../errors.ts';
import { Topology, validateTopologyCommand, type TopologyCommand, type TopologySnapshot } from '../core/topology.ts';
import type { Transport } from '../net/transport.ts';
import { RaftRuntime, type RaftRuntimeOptions } from './raft-runtime.ts';
import type { PersistedState, RaftConfig } from '../core/raft/types.ts';
import type { Logger } from './log.ts';

export type AdminRequest =
  | { kind: 'cmd'; cmd: TopologyCommand }
  | { kind: 'join'; id: string; addr: string; replace?: boolean }
  | { kind: 'decommission'; id: string };

export interface JoinAnswer {
  clusterId: string;
  partitions: number;
  members: { id: string; addr: string; state: string }[];
  epoch: number;
}

/** How often the leader re-checks voters and learners. Default 1 s: seats refill within seconds. */
const POLICY_INTERVAL_MS = 1000;
/** A learner within this many entries of the leader's log counts as caught up for promotion. */
const CAUGHT_UP_SLACK = 5;
/** Forwarded admin requests are retried (leader changes) until this deadline. */
const ADMIN_DEADLINE_MS = 20_000;
/** A coordinator that learned of a newer epoch waits at most this long for Raft to deliver it. */
const CATCH_UP_MAX_MS = 2000;
/** How often an unbounded topology wait looks whether the node is stopping. */
const STOP_CHECK_MS = 100;

function validateAdmin(x: unknown): AdminRequest {
  const o = x as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null) throw new KvError('KV_INVALID_ARGUMENT', 'admin request must be an object');
  switch (o['kind']) {
    case 'cmd': return { kind: 'cmd', cmd: validateTopologyCommand(o['cmd']) };
    case 'join': {
      const c = validateTopologyCommand({ op: 'add', id: o['id'], addr: o['addr'] }) as { id: string; addr: string };
      return o['replace'] === true ? { kind: 'join', id: c.id, addr: c.addr, replace: true } : { kind: 'join', id: c.id, addr: c.addr };
    }
    case 'decommission': {
      const c = validateTopologyCommand({ op: 'remove', id: o['id'] }) as { id: string };
      return { kind: 'decommission', id: c.id };
    }
    default: throw new KvError('KV_INVALID_ARGUMENT', 'unknown admin request kind');
  }
}

/** What the voter policy needs from gossip. */
export interface MembershipLiveness {
  isAlive(id: string): boolean;
  /** Gossip has heard from this member itself (not only of it): a node that never connected has not. */
  heardFrom(id: string): boolean;
}

export interface MembershipOptions {
  selfId: string;
  transport: Transport;
  log: Logger;
  liveness: MembershipLiveness;
  /** A voter dead (per gossip) this long loses its seat to a live learner (config `deadVoterMs`). */
  deadVoterMs: number;
  /** The Raft log this topology lives in; Membership supplies its state-machine hooks. */
  raft: Omit<RaftRuntimeOptions, 'id' | 'transport' | 'apply' | 'restore' | 'snapshotData'>;
}

export class Membership extends EventEmitter<{ change: [Topology] }> {
  topology = new Topology();
  /** The Raft group that commits topology changes (owned here: its state machine is this topology). */
  readonly raft: RaftRuntime;
  readonly selfId: string;
  private readonly transport: Transport;
  private readonly log: Logger;
  private readonly liveness: MembershipLiveness;
  private readonly deadVoterMs: number;
  private policyTimer: NodeJS.Timeout | undefined;
  private policyBusy = false;
  private readonly deadSince = new Map<string, number>();
  /** Admin requests on the leader, one at a time: each one's busy check sees the change before it applied. */
  private adminQueue: Promise<unknown> = Promise.resolve();

  constructor(o: MembershipOptions) {
    super();
    this.selfId = o.selfId;
    this.transport = o.transport;
    this.log = o.log;
    this.liveness = o.liveness;
    this.deadVoterMs = o.deadVoterMs;
    // Every waiter on a topology condition listens here: a cluster's worth, far below this bound.
    this.setMaxListeners(1000);
    this.raft = new RaftRuntime({
      ...o.raft, id: o.selfId, transport: o.transport,
      apply: (data) => this.applyEntry(data), restore: (data) => this.restoreSnapshot(data), snapshotData: () => this.topology.snapshot(),
    });
    o.transport.handle('admin', (_from, payload) => this.handleAdmin(validateAdmin(payload)));
  }

  private applyEntry(data: unknown): void {
    const cmd = validateTopologyCommand(data);
    if (this.topology.apply(cmd)) {
      this.log.info({ epoch: this.topology.epoch, cmd }, 'topology change');
      this.emit('change', this.topology);
    }
  }

  private restoreSnapshot(data: unknown): void {
    this.topology = Topology.fromSnapshot(data as TopologySnapshot);
    this.emit('change', this.topology);
  }

  /** Resume Raft from disk (or bootstrap a one-voter group) and run the voter policy. */
  async start(persisted: PersistedState, bootstrap: RaftConfig | undefined): Promise<void> {
    await this.raft.start(persisted, bootstrap);
    this.policyTimer = setInterval(() => void this.runPolicy(), POLICY_INTERVAL_MS);
  }

  stop(): void {
    if (this.policyTimer) clearInterval(this.policyTimer);
    this.raft.stop();
  }

  get epoch(): number {
    return this.topology.epoch;
  }

  /**
   * Resolves once `cond` holds for the committed topology (checked now and at every change),
   * or at `deadlineMs` (resolving false), or rejects KV_CLOSED when `stopped` says so.
   */
  waitFor(cond: (t: Topology) => boolean, deadlineMs = Infinity, stopped: () => boolean = () => false): Promise<boolean> {
    if (cond(this.topology)) return Promise.resolve(true);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let stopCheck: NodeJS.Timeout | undefined;
      const done = (v: boolean | Error): void => {
        this.off('change', onChange);
        clearTimeout(timer);
        clearInterval(stopCheck);
        if (v instanceof Error) reject(v);
        else resolve(v);
      };
      const onChange = (t: Topology): void => { if (cond(t)) done(true); };
      this.on('change', onChange);
      if (Number.isFinite(deadlineMs)) timer = setTimeout(() => done(false), Math.max(0, deadlineMs - Date.now()));
      // Stopping is not a topology change: look for it now and then (a stopped node exits soon after).
      stopCheck = setInterval(() => { if (stopped()) done(new KvError('KV_CLOSED', 'stopped while waiting for the topology')); }, STOP_CHECK_MS);
    });
  }

  /** Waits (bounded) until the local topology reaches `epoch`: Raft delivers it. */
  async waitForEpoch(epoch: number, deadlineMs: number): Promise<void> {
    await this.waitFor((t) => t.epoch >= epoch, Math.min(Date.now() + CATCH_UP_MAX_MS, deadlineMs));
  }

  private get r(): RaftRuntime {
    return this.raft;
  }

  /**
   * Run an admin request on the leader: here if we lead, else forwarded, retrying
   * through leader changes until the deadline.
   */
  async admin(req: AdminRequest): Promise<unknown> {
    const deadline = Date.now() + ADMIN_DEADLINE_MS;
    let lastErr: unknown;
    while (Date.now() < deadline) {
      const st = this.r.status();
      try {
        if (st.role === 'leader') return await this.handleAdmin(req);
        if (st.leader) return await this.transport.request(st.leader, 'admin', req, { timeoutMs: Math.max(1000, deadline - Date.now()) });
      } catch (err) {
        lastErr = err;
        // Retry only what a leader change explains; a refused request stays refused.
        if (!isKvError(err) || !['KV_NOT_LEADER', 'KV_UNAVAILABLE', 'KV_TIMEOUT'].includes(err.code)) throw err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new KvError('KV_UNAVAILABLE', `no Raft leader could take the request: ${(lastErr as Error)?.message ?? 'no leader elected'}`, { cause: lastErr });
  }

  private handleAdmin(req: AdminRequest): Promise<unknown> {
    const run = this.adminQueue.then(() => this.admitOne(req));
    this.adminQueue = run.catch(() => undefined);
    return run;
  }

  /** A change that committed but did not apply (another one got in first) is refused as busy, never answered as admitted. */
  private ensureApplied(id: string, state: string): void {
    if (this.topology.member(id)?.state === state) return;
    const inProgress = this.topology.changesInProgress().map((m) => ({ id: m.id, state: m.state }));
    throw new KvError('KV_TOPOLOGY_BUSY', `another ownership change got in first (${inProgress.map((m) => `${m.id} ${m.state}`).join(', ')}); retry when it is done`,
      { details: { inProgress } });
  }

  private async admitOne(req: AdminRequest): Promise<unknown> {
    const st = this.r.status();
    if (st.role !== 'leader') throw new KvError('KV_NOT_LEADER', 'not the Raft leader', { details: { leader: st.leader } });
    const t = this.topology;
    const cmd: TopologyCommand | undefined = req.kind === 'cmd' ? req.cmd
      : req.kind === 'join' ? { op: req.replace ? 'replace' : 'add', id: req.id, addr: req.addr }
      : t.member(req.id)?.state === 'leaving' ? undefined : { op: 'leave', id: req.id };
    const busy = cmd === undefined ? undefined : t.busyWith(cmd);
    if (busy) {
      const inProgress = busy.map((m) => ({ id: m.id, state: m.state }));
      throw new KvError('KV_TOPOLOGY_BUSY', `another ownership change is in progress (${inProgress.map((m) => `${m.id} ${m.state}`).join(', ')}); retry when it is done`,
        { details: { inProgress } });
    }
    switch (req.kind) {
      case 'cmd': {
        const why = t.reject(req.cmd);
        if (why) throw new KvError('KV_INVALID_ARGUMENT', why);
        await this.r.propose(req.cmd);
        return { epoch: this.topology.epoch };
      }
      case 'join': {
        const m = t.member(req.id);
        if (req.replace) await this.admitReplacement(req.id, req.addr);
        else if (!m || m.state === 'removed') {
          await this.r.propose({ op: 'add', id: req.id, addr: req.addr });
          this.ensureApplied(req.id, 'joining');
        }
        // A retry of an admitted join is fine; a fresh process must not quietly take a member's seat.
        else if (m.state !== 'joining') throw new KvError('KV_INVALID_ARGUMENT', `${req.id} is already a ${m.state} member; to take over a dead member use kv node --replace ${req.id}`);
        else if (m.addr !== req.addr) await this.r.propose({ op: 'address', id: req.id, addr: req.addr });
        const answer: JoinAnswer = {
          clusterId: this.topology.clusterId,
          partitions: this.topology.partitions,
          members: this.topology.activeMembers().map((x) => ({ id: x.id, addr: x.addr, state: x.state })),
          epoch: this.topology.epoch,
        };
        void this.runPolicy();
        return answer;
      }
      case 'decommission': {
        const m = t.member(req.id);
        if (!m || m.state === 'removed') throw new KvError('KV_NOT_FOUND', `no member ${req.id}`);
        if (m.state === 'leaving') return { epoch: t.epoch, state: 'leaving' };
        const why = t.reject({ op: 'leave', id: req.id });
        if (why) throw new KvError('KV_INVALID_ARGUMENT', why);
        await this.r.propose({ op: 'leave', id: req.id });
        this.ensureApplied(req.id, 'leaving');
        return { epoch: this.topology.epoch, state: 'leaving' };
      }
    }
  }

  /**
   * A fresh process takes over dead member `id` (same id, so the same ring positions). Its
   * Raft log is gone, so its old seat is removed from the Raft configuration before the
   * topology changes; the voter policy adds it back as a learner that catches up like a new
   * node (a voter that forgot its vote could elect two leaders in one term).
   */
  private async admitReplacement(id: string, addr: string): Promise<void> {
    const m = this.topology.member(id);
    if (m?.state === 'replacing') return; // a retry of an admitted replacement
    if (!m || m.state !== 'normal') throw new KvError('KV_INVALID_ARGUMENT', `${id} is not a normal member; replace takes over a dead normal member`);
    if (this.liveness.isAlive(id)) throw new KvError('KV_INVALID_ARGUMENT', `${id} is alive (gossip): only a dead member can be replaced`);
    const st = this.r.status();
    if (st.voters.includes(id) || st.learners.includes(id)) await this.change({ type: 'remove', id });
    await this.r.propose({ op: 'replace', id, addr });
    this.ensureApplied(id, 'replacing');
  }

  /** Leader only: keep the Raft configuration in line with the topology. One change per round. */
  private async runPolicy(): Promise<void> {
    if (this.policyBusy || this.raft.status().role !== 'leader' || this.topology.epoch === 0) return;
    this.policyBusy = true;
    try {
      const st = this.raft.status();
      const active = new Set(this.topology.activeMembers().map((m) => m.id));
      const now = Date.now();
      for (const id of active) {
        if (this.liveness.isAlive(id) || id === this.selfId) this.deadSince.delete(id);
        else if (!this.deadSince.has(id)) this.deadSince.set(id, now);
      }
      const longDead = (id: string): boolean => now - (this.deadSince.get(id) ?? now) >= this.deadVoterMs;
      const inConfig = new Set([...st.voters, ...st.learners]);
      const stale = [...inConfig].find((id) => !active.has(id) && id !== this.selfId);
      if (stale) return await this.change({ type: 'remove', id: stale });
      const missing = [...active].find((id) => !inConfig.has(id));
      if (missing) return await this.change({ type: 'addLearner', id: missing });
      const desired = Math.min(active.size >= 5 ? 5 : 3, active.size);
      const progress = new Map(this.raft.progress().map((p) => [p.id, p]));
      const last = this.raft.lastIndex;
      // Promote only a learner that answers: gossip heard from it, and it acknowledged log entries
      // (match > 0) close to ours. A join signed for a node that never connects must not take a
      // voter seat: with it the group would count a member that can never vote.
      const caughtUp = (id: string): boolean => {
        const match = progress.get(id)?.match ?? 0;
        return match > 0 && match >= last - CAUGHT_UP_SLACK;
      };
      const promotable = st.learners.filter((id) => active.has(id) && this.liveness.isAlive(id) && this.liveness.heardFrom(id) && caughtUp(id)).sort();
      const deadVoter = st.voters.find((id) => id !== this.selfId && longDead(id));
      if (st.voters.length < desired && promotable[0]) return await this.change({ type: 'addVoter', id: promotable[0] });
      if (deadVoter && promotable[0]) return await this.change({ type: 'remove', id: deadVoter });
    } catch (err) {
      this.log.debug({ err }, 'voter policy round failed; retrying next round');
    } finally {
      this.policyBusy = false;
    }
  }

  private async change(c: { type: 'addVoter' | 'addLearner' | 'remove'; id: string }): Promise<void> {
    this.log.info({ change: c }, 'raft configuration change');
    await this.r.proposeConfChange(c);
  }
}
