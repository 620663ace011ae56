/**
 * SWIM failure detection with Lifeguard, as a pure state machine (etcd raft's
 * Step/Tick/Ready shape): the runtime feeds ticks, received messages, the clock
 * reading and measured event-loop lag; each call returns the messages to send and
 * the liveness changes seen. No timers, no I/O, randomness from the injected rng.
 *
 * Membership (who is in the ring) comes from the Raft log through setMembers; SWIM
 * only decides liveness of those members and never adds or removes one.
 *
 * Protocol, per period of probeIntervalMs · (score + 1):
 *  - ping one member, picked by shuffled round-robin over all other members (dead
 *    ones included: that is how a restarted or healed member is found again);
 *  - no ack within probeTimeoutMs · (score + 1): ping-req through indirectChecks
 *    alive members, which ping the target, relay its ack, or nack when it is late;
 *  - no ack by the end of the period: suspect the target. Missing nacks mean the
 *    relays could not reach US in time, so our health score rises instead.
 *  - a suspicion becomes dead after the Lifeguard timeout (suspicion.ts).
 * Every message carries the sender's own alive record, a notice to the recipient if
 * we think it suspect or dead (so it refutes at once, Lifeguard's "tell the suspect
 * first", and so a restarted node that forgot its incarnation learns what it must
 * beat), up to maxPiggyback gossip updates, and the sender's Raft epoch.
 *
 * Two accelerations on top (docs/liveness.md):
 *  - linkDown: the runtime's transport lost its connection to a member (a killed
 *    process's kernel closes its sockets at once). That is a strong hint, never a
 *    verdict (a restart closes them too): it starts an urgent probe through the
 *    relays right away, with the probe timeout as its whole period.
 *  - push: our own verdicts (a suspicion or confirmation from our probe, a death from
 *    our timer, a refutation of a rumour about us) go to every member at once in a
 *    `gossip` message, besides riding the piggyback, so confirmations, deaths and
 *    refutations land within a round trip instead of within a few periods.
 *
 * The runtime ticks the core when nextTickAtMs() says; a tick at any other moment is
 * harmless (it finds nothing due), so simulations may also tick on a fixed cadence.
 */
import { assert } from '../../errors.ts';
import { NODE_ID_RE } from '../hlc.ts';
import { shuffle, type Rng } from '../rng.ts';
import { Awareness } from './awareness.ts';
import { BroadcastQueue, retransmitLimit } from './broadcast.ts';
import { validateSwimConfig, type SwimConfig } from './config.ts';
import { MAX_INCARNATION, MAX_SEQ, type SwimMessage, type SwimUpdate } from './messages.ts';
import { overrides, type Liveness } from './state.ts';
import { Suspicion, confirmationsWanted, suspicionBoundsMs } from './suspicion.ts';

export interface Outbound {
  readonly to: string;
  readonly msg: SwimMessage;
}

export interface LivenessEvent {
  readonly type: Liveness;
  readonly id: string;
  readonly incarnation: number;
}

export interface SwimOutput {
  messages: Outbound[];
  /** Liveness changes of other members, in the order they happened. */
  events: LivenessEvent[];
  /** A peer holds a newer Raft epoch than ours: catch up from the Raft log. */
  epochBehind?: { epoch: number; from: string };
}

export interface MemberInfo {
  readonly id: string;
  readonly liveness: Liveness;
  readonly incarnation: number;
  /** When we last received any message from this member (our clock). */
  readonly lastHeardMs?: number;
}

/** The probe in flight, as probe() reports it (diagnostics and transcripts). */
export interface ProbeInfo {
  readonly target: string;
  readonly seq: number;
  /** Direct ping unanswered by then: ask the relays. */
  readonly timeoutAtMs: number;
  /** No ack by then: suspect the target. */
  readonly deadlineMs: number;
  /** Relays asked; null while only the direct ping is out. */
  readonly indirect: readonly string[] | null;
  readonly nacks: readonly string[];
}

/** A running suspicion, as suspicion() reports it. */
export interface SuspicionInfo {
  readonly accuser: string;
  readonly confirmations: number;
  readonly wanted: number;
  readonly deadlineMs: number;
}

interface Member {
  readonly id: string;
  liveness: Liveness;
  incarnation: number;
  /** Set while suspect: the accuser gossiped with the rumour, and the timer. */
  accuser?: string;
  suspicion?: Suspicion;
  lastHeardMs?: number;
  /** Last unprompted ping to it: a notice that it is accused, or our refutation. */
  noticeAtMs?: number;
  /** The runtime reported our connection to it lost (linkDown) and not back yet. */
  linkDown?: boolean;
}

interface Probe {
  readonly target: string;
  readonly seq: number;
  readonly timeoutAtMs: number;
  readonly deadlineMs: number;
  /** Relays asked by ping-req; null until the direct ping timed out. */
  indirect: string[] | null;
  readonly nacks: Set<string>;
  /** The direct ping went out (not while the link to the target was down). */
  pinged: boolean;
}

interface Relay {
  readonly origin: string;
  readonly originSeq: number;
  readonly target: string;
  readonly nackAtMs: number;
  readonly expireAtMs: number;
  nacked: boolean;
}

export class Swim {
  readonly selfId: string;
  readonly #config: SwimConfig;
  readonly #rng: Rng;
  readonly #members = new Map<string, Member>();
  readonly #broadcasts = new BroadcastQueue();
  readonly #awareness: Awareness;
  /** Bounded by config.maxPendingRelays. */
  readonly #relays = new Map<number, Relay>();
  #incarnation = 0;
  #epoch = 0;
  #seq: number;
  #probe: Probe | null = null;
  /** Urgent probes started by linkDown, by target; at most one per member. */
  readonly #linkProbes = new Map<string, Probe>();
  #nextProbeAtMs: number | undefined;
  #round: string[] = [];
  #roundPos = 0;
  /** What nextTickAtMs() answered after the last call: a tick far past it is a stall. */
  #dueMs: number | undefined;
  #lastTickMs = -Infinity;
  #lastRefutePushMs = -Infinity;
  #lastNowMs = -Infinity;
  #out: SwimOutput = { messages: [], events: [] };

  constructor(config: SwimConfig, selfId: string, rng: Rng) {
    this.#config = validateSwimConfig({ ...config });
    assert(NODE_ID_RE.test(selfId), 'swim self id must be a node id');
    this.selfId = selfId;
    this.#rng = rng;
    this.#awareness = new Awareness(this.#config.awarenessMax);
    // A random start keeps a restarted node's sequence numbers apart from its
    // previous life's, so a late ack addressed to that life cannot match.
    this.#seq = rng.int(2 ** 31);
  }

  get incarnation(): number {
    return this.#incarnation;
  }

  get healthScore(): number {
    return this.#awareness.score;
  }

  get epoch(): number {
    return this.#epoch;
  }

  /** All members, self included, in no particular order. */
  members(): MemberInfo[] {
    const out: MemberInfo[] = [{ id: this.selfId, liveness: 'alive', incarnation: this.#incarnation }];
    for (const m of this.#members.values()) {
      const info: { id: string; liveness: Liveness; incarnation: number; lastHeardMs?: number } = {
        id: m.id,
        liveness: m.liveness,
        incarnation: m.incarnation,
      };
      if (m.lastHeardMs !== undefined) info.lastHeardMs = m.lastHeardMs;
      out.push(info);
    }
    return out;
  }

  /** One member's view, cheaper than members() for per-event checks. */
  member(id: string): { liveness: Liveness; incarnation: number; lastHeardMs?: number } | undefined {
    if (id === this.selfId) return { liveness: 'alive', incarnation: this.#incarnation };
    const m = this.#members.get(id);
    if (m === undefined) return undefined;
    return m.lastHeardMs === undefined ? { liveness: m.liveness, incarnation: m.incarnation }
      : { liveness: m.liveness, incarnation: m.incarnation, lastHeardMs: m.lastHeardMs };
  }

  /** The probe in flight, or null between probes. */
  probe(): ProbeInfo | null {
    const p = this.#probe;
    if (p === null) return null;
    return {
      target: p.target, seq: p.seq, timeoutAtMs: p.timeoutAtMs, deadlineMs: p.deadlineMs,
      indirect: p.indirect === null ? null : [...p.indirect], nacks: [...p.nacks],
    };
  }

  /** When the next probe is due; undefined before the first tick. */
  get nextProbeAtMs(): number | undefined {
    return this.#nextProbeAtMs;
  }

  /** The urgent probes in flight (started by linkDown), by target. */
  linkProbes(): ProbeInfo[] {
    return [...this.#linkProbes.values()].map((p) => ({
      target: p.target, seq: p.seq, timeoutAtMs: p.timeoutAtMs, deadlineMs: p.deadlineMs,
      indirect: p.indirect === null ? null : [...p.indirect], nacks: [...p.nacks],
    }));
  }

  /**
   * The earliest time at which a tick has work to do: the next probe, the direct or
   * indirect timeout of one in flight, a relay's nack, a suspicion timer. Ticking
   * earlier finds nothing to do; ticking later only delays it. Before the first tick,
   * the time of the last call (tick now).
   */
  nextTickAtMs(): number {
    return this.#dueMs ?? (Number.isFinite(this.#lastNowMs) ? this.#lastNowMs : 0);
  }

  /** The running suspicion of a member, or undefined when it is not suspect. */
  suspicion(id: string): SuspicionInfo | undefined {
    const m = this.#members.get(id);
    if (m?.suspicion === undefined) return undefined;
    const s = m.suspicion;
    return { accuser: m.accuser ?? this.selfId, confirmations: s.confirmations, wanted: s.k, deadlineMs: s.deadlineMs };
  }

  /** The member list committed in the Raft log; new members start alive at incarnation 0. */
  setMembers(ids: readonly string[], nowMs: number): void {
    this.#advance(nowMs);
    const next = new Set(ids);
    next.delete(this.selfId);
    for (const id of next) assert(NODE_ID_RE.test(id), `swim member id is not a node id: ${id}`);
    for (const id of [...this.#members.keys()]) {
      if (next.has(id)) continue;
      this.#members.delete(id);
      this.#broadcasts.remove(id);
      this.#linkProbes.delete(id);
      if (this.#probe?.target === id) this.#probe = null;
    }
    for (const id of next) {
      if (!this.#members.has(id)) this.#members.set(id, { id, liveness: 'alive', incarnation: 0 });
    }
    this.#dueMs = this.#computeDue();
  }

  /** Our committed Raft epoch, carried on every message. */
  setLocalEpoch(epoch: number): void {
    assert(Number.isSafeInteger(epoch) && epoch >= 0, 'epoch must be a non-negative integer');
    if (epoch > this.#epoch) this.#epoch = epoch;
  }

  /** Event-loop lag measured by the runtime: lag is our slowness, so back off. */
  reportLag(lagMs: number): void {
    if (!(lagMs >= this.#config.lagThresholdMs)) return;
    // One step for being late at all, one more per probe period lost to the stall.
    this.#awareness.applyDelta(1 + Math.floor(lagMs / this.#config.probeIntervalMs));
  }

  tick(nowMs: number): SwimOutput {
    this.#advance(nowMs);
    this.#begin();
    // Lateness is measured from when a tick should have come: what the core asked for,
    // or the last tick if that is later (a tick that voided its work leaves its
    // deadlines in the past, and the next tick must judge them, not void again).
    const shouldHaveTickedMs = this.#dueMs === undefined ? undefined : Math.max(this.#dueMs, this.#lastTickMs);
    this.#lastTickMs = nowMs;
    if (shouldHaveTickedMs !== undefined && nowMs - shouldHaveTickedMs > this.#config.tickGapMaxMs) {
      // Our event loop stalled across a deadline: acks, nacks and refutations may
      // have sat unread, and the probe may not even have reached its indirect step,
      // so judging it now would blame others for our own pause. Void the probes and
      // judge nothing this tick; the next one (due at once) judges what is left.
      this.#probe = null;
      this.#nextProbeAtMs = nowMs;
      const urgent = [...this.#linkProbes.keys()];
      this.#linkProbes.clear();
      // A link that is still down keeps its urgent probe, with a fresh period.
      for (const id of urgent) {
        const m = this.#members.get(id);
        if (m?.linkDown === true) this.#startLinkProbe(m, nowMs);
      }
      return this.#finish();
    }
    if (this.#nextProbeAtMs === undefined) {
      // Random phase: nodes started together must not probe in lockstep.
      this.#nextProbeAtMs = nowMs + this.#rng.int(this.#config.probeIntervalMs);
    }
    this.#tickRelays(nowMs);
    this.#tickSuspicions(nowMs);
    this.#tickProbe(nowMs);
    this.#tickLinkProbes(nowMs);
    if (this.#probe === null && nowMs >= this.#nextProbeAtMs) this.#startProbe(nowMs);
    return this.#finish();
  }

  /**
   * The transport lost its connection to `id`. A killed process's sockets close at
   * once, so this is usually the first sign of a crash; but a restart or a network
   * blip closes them too, so it only starts an urgent probe: ping-req through the
   * relays now (the direct ping cannot leave), suspect if none of them reaches it
   * within the probe timeout.
   */
  linkDown(id: string, nowMs: number): SwimOutput {
    this.#advance(nowMs);
    this.#begin();
    const m = this.#members.get(id);
    if (m !== undefined) {
      m.linkDown = true;
      m.suspicion?.setGrace(0);
      if (m.liveness !== 'dead' && !this.#linkProbes.has(id)) {
        // The urgent probe supersedes a regular one of the same member; the period
        // schedule (nextProbeAtMs) stays as it was.
        if (this.#probe?.target === id) this.#probe = null;
        this.#startLinkProbe(m, nowMs);
      }
    }
    return this.#finish();
  }

  /**
   * The transport has a connection to `id` again. A probe of it in flight gets its
   * direct ping now (the first one could not leave), and a member we hold suspect or
   * dead gets the notice at once, so a restarted node refutes without waiting for
   * anyone's probe round to reach it.
   */
  linkUp(id: string, nowMs: number): SwimOutput {
    this.#advance(nowMs);
    this.#begin();
    const m = this.#members.get(id);
    if (m !== undefined) {
      delete m.linkDown;
      m.suspicion?.setGrace(this.#openLinkGraceMs(m));
      const probe = this.#linkProbes.get(id) ?? (this.#probe?.target === id ? this.#probe : undefined);
      if (probe !== undefined && !probe.pinged) {
        probe.pinged = true;
        this.#send(id, { type: 'ping', seq: probe.seq });
        if (m.liveness !== 'alive') m.noticeAtMs = nowMs;
      } else {
        this.#noticeIfAccused(m, nowMs);
      }
    }
    return this.#finish();
  }

  receive(from: string, msg: SwimMessage, nowMs: number): SwimOutput {
    this.#advance(nowMs);
    this.#begin();
    if (msg.epoch > this.#epoch) this.#out.epochBehind = { epoch: msg.epoch, from };
    const sender = this.#members.get(from);
    // Raft decides membership: a stranger (not committed yet, or removed) is not
    // ours to judge or to answer.
    if (sender === undefined) return this.#finish();
    sender.lastHeardMs = nowMs;
    // Messages arrive only over an open connection.
    if (sender.linkDown === true) {
      delete sender.linkDown;
      sender.suspicion?.setGrace(this.#openLinkGraceMs(sender));
    }
    const incarnationBefore = this.#incarnation;
    for (const u of msg.updates) this.#apply(u, nowMs);
    switch (msg.type) {
      case 'ping':
        this.#send(from, { type: 'ack', seq: msg.seq });
        break;
      case 'ping-req':
        this.#relay(from, msg.seq, msg.target, msg.timeoutMs, nowMs);
        break;
      case 'ack': {
        const probe = this.#probeBySeq(msg.seq);
        if (probe !== undefined && (from === probe.target || probe.indirect?.includes(from))) {
          if (probe === this.#probe) this.#probe = null;
          else this.#linkProbes.delete(probe.target);
          this.#awareness.applyDelta(-1);
          break;
        }
        const relay = this.#relays.get(msg.seq);
        if (relay !== undefined && from === relay.target) {
          this.#relays.delete(msg.seq);
          this.#send(relay.origin, { type: 'ack', seq: relay.originSeq });
        }
        break;
      }
      case 'nack': {
        const probe = this.#probeBySeq(msg.seq);
        if (probe?.indirect?.includes(from) === true) probe.nacks.add(from);
        break;
      }
      case 'gossip':
        // Only its updates matter, applied above.
        break;
    }
    if (this.#incarnation > incarnationBefore) this.#answerAccuser(sender, nowMs);
    this.#noticeIfAccused(sender, nowMs);
    return this.#finish();
  }

  /**
   * The sender told us we are suspect or dead and we just refuted. If nothing we
   * send now goes back to it (it told us in an ack or nack), its next contact with
   * us may be rounds away while its timer runs, so answer with a ping carrying the
   * refutation. Rate-limited like notices.
   */
  #answerAccuser(m: Member, nowMs: number): void {
    if (this.#out.messages.some((o) => o.to === m.id)) return;
    if (m.noticeAtMs !== undefined && nowMs - m.noticeAtMs < this.#config.probeIntervalMs) return;
    m.noticeAtMs = nowMs;
    this.#send(m.id, { type: 'ping', seq: this.#nextSeq() });
  }

  /**
   * A member we hold suspect or dead just spoke to us, so it is running and can
   * refute as soon as it knows. Its ack or nack gets no reply, and our own next
   * probe of it may be rounds away, so tell it now with a ping (Lifeguard's "tell
   * the suspect first", applied whenever it shows signs of life). At most one per
   * probe interval per member, so a chatty suspect cannot turn it into a flood.
   */
  #noticeIfAccused(m: Member, nowMs: number): void {
    if (m.liveness === 'alive' || !this.#members.has(m.id)) return;
    if (m.noticeAtMs !== undefined && nowMs - m.noticeAtMs < this.#config.probeIntervalMs) return;
    if (this.#out.messages.some((o) => o.to === m.id)) return;
    m.noticeAtMs = nowMs;
    this.#send(m.id, { type: 'ping', seq: this.#nextSeq() });
  }

  #advance(nowMs: number): void {
    assert(Number.isFinite(nowMs) && nowMs >= this.#lastNowMs, 'swim clock must not go backwards');
    this.#lastNowMs = nowMs;
  }

  #begin(): void {
    this.#out = { messages: [], events: [] };
  }

  #finish(): SwimOutput {
    const out = this.#out;
    this.#out = { messages: [], events: [] };
    this.#dueMs = this.#computeDue();
    return out;
  }

  #computeDue(): number | undefined {
    let due = this.#nextProbeAtMs;
    const earlier = (t: number): void => {
      if (due === undefined || t < due) due = t;
    };
    const p = this.#probe;
    // The indirect step is due at the direct timeout, unless it will never be taken
    // (a dead target is only waited out): a due time the tick would not act on would
    // have the runtime tick in a loop.
    if (p !== null) earlier(p.indirect === null && this.#members.get(p.target)?.liveness !== 'dead' ? p.timeoutAtMs : p.deadlineMs);
    for (const lp of this.#linkProbes.values()) earlier(lp.deadlineMs);
    // Relay entries are dropped lazily on a later tick; only their nacks are due.
    for (const r of this.#relays.values()) if (!r.nacked) earlier(r.nackAtMs);
    for (const m of this.#members.values()) if (m.suspicion !== undefined) earlier(m.suspicion.deadlineMs);
    return due;
  }

  #probeBySeq(seq: number): Probe | undefined {
    if (this.#probe?.seq === seq) return this.#probe;
    for (const p of this.#linkProbes.values()) if (p.seq === seq) return p;
    return undefined;
  }

  #nextSeq(): number {
    this.#seq = this.#seq >= MAX_SEQ ? 0 : this.#seq + 1;
    return this.#seq;
  }

  #n(): number {
    return this.#members.size + 1;
  }

  #send(
    to: string,
    body: { type: 'ping' | 'ack' | 'nack'; seq: number } | { type: 'ping-req'; seq: number; target: string; timeoutMs: number },
  ): void {
    const updates = this.#ownUpdates(to);
    const notice = updates.length > 1;
    const limit = retransmitLimit(this.#config.retransmitMult, this.#n());
    updates.push(...this.#broadcasts.take(this.#config.maxPiggyback, limit, (u) => notice && u.id === to));
    this.#out.messages.push({ to, msg: { ...body, epoch: this.#epoch, updates } });
  }

  /** Our own alive record, then the notice to `to` if we hold it suspect or dead. */
  #ownUpdates(to: string): SwimUpdate[] {
    const updates: SwimUpdate[] = [{ id: this.selfId, liveness: 'alive', incarnation: this.#incarnation }];
    const peer = this.#members.get(to);
    if (peer !== undefined && peer.liveness !== 'alive') {
      updates.push(
        peer.liveness === 'suspect'
          ? { id: to, liveness: 'suspect', incarnation: peer.incarnation, from: peer.accuser ?? this.selfId }
          : { id: to, liveness: 'dead', incarnation: peer.incarnation },
      );
    }
    return updates;
  }

  /**
   * Sends one of our own verdicts to every member we can reach at once (a `gossip`
   * message), the subject included: a suspect hears it is accused and can refute, and
   * the others' timers see our confirmation now rather than a few periods from now.
   * Members we hold dead are skipped unless the verdict is about them, and so are those
   * whose link is down (nothing would leave). The update also stays in the piggyback
   * queue, which repeats it for those the push missed. Cost: n - 1 small messages per
   * verdict, and verdicts are bounded by our own probes and timers (refutations are
   * rate-limited by the caller).
   */
  #push(update: SwimUpdate): void {
    for (const m of this.#members.values()) {
      if (m.linkDown === true || (m.liveness === 'dead' && m.id !== update.id)) continue;
      const updates = this.#ownUpdates(m.id);
      // The notice to m already says what we think of m, and the first record is ours.
      if (update.id !== this.selfId && !(update.id === m.id && updates.length > 1)) updates.push(update);
      this.#out.messages.push({ to: m.id, msg: { type: 'gossip', seq: 0, epoch: this.#epoch, updates } });
    }
  }

  #event(m: Member): void {
    this.#out.events.push({ type: m.liveness, id: m.id, incarnation: m.incarnation });
  }

  #apply(u: SwimUpdate, nowMs: number): void {
    if (u.id === this.selfId) {
      this.#applyAboutSelf(u, nowMs);
      return;
    }
    const m = this.#members.get(u.id);
    if (m === undefined) return;
    if (!overrides(u, m)) {
      // Same suspicion heard from another accuser: an independent confirmation.
      if (u.liveness === 'suspect' && m.liveness === 'suspect' && u.incarnation === m.incarnation && u.from !== undefined) {
        if (m.suspicion?.confirm(u.from) === true) this.#broadcasts.enqueue(u);
      }
      return;
    }
    this.#transition(m, u.liveness, u.incarnation, u.from ?? this.selfId, nowMs);
  }

  #applyAboutSelf(u: SwimUpdate, nowMs: number): void {
    if (u.liveness === 'alive') {
      // A record of ours from before a restart: adopt it so that our next
      // refutation beats everything the cluster has seen from us.
      if (u.incarnation > this.#incarnation) this.#incarnation = u.incarnation;
      return;
    }
    if (u.incarnation < this.#incarnation) return;
    // Refute: outbid the rumour. Every message we send carries the new record, and
    // the first peer to apply it gossips it on. Being suspected is also a sign that
    // we may be the slow one (Lifeguard), hence the health step.
    assert(u.incarnation < MAX_INCARNATION, 'incarnation exhausted');
    this.#incarnation = u.incarnation + 1;
    this.#awareness.applyDelta(1);
    // Tell everyone now: their suspicion timers are running. At most once per
    // period, so a peer repeating rumours about us cannot turn it into a flood; the
    // notices and the piggyback carry the later ones.
    if (nowMs - this.#lastRefutePushMs >= this.#config.probeIntervalMs) {
      this.#lastRefutePushMs = nowMs;
      this.#push({ id: this.selfId, liveness: 'alive', incarnation: this.#incarnation });
    }
  }

  /** Applies a rumour to m; returns the update it queued for gossip. */
  #transition(m: Member, liveness: Liveness, incarnation: number, accuser: string, nowMs: number): SwimUpdate {
    const before = m.liveness;
    m.liveness = liveness;
    m.incarnation = incarnation;
    let update: SwimUpdate;
    if (liveness === 'suspect') {
      const n = this.#n();
      const { minMs, maxMs } = suspicionBoundsMs(this.#config, n);
      m.accuser = accuser;
      m.suspicion = new Suspicion(accuser, confirmationsWanted(this.#config, n), minMs, maxMs, nowMs, this.#openLinkGraceMs(m));
      update = { id: m.id, liveness, incarnation, from: accuser };
    } else {
      delete m.accuser;
      delete m.suspicion;
      update = { id: m.id, liveness, incarnation };
    }
    this.#broadcasts.enqueue(update);
    if (before !== liveness) this.#event(m);
    return update;
  }

  /**
   * One probe period more for a suspect whose connection is still open. The kernel of
   * a killed process closes its sockets at once; a paused or overloaded process (an
   * event-loop stall, the usual false suspicion in Node) keeps them, and so does a
   * partitioned or powered-off host until the transport's ping gives up (5-10 s). So an
   * open connection is evidence for "slow, not gone": it buys the suspect one more
   * period to wake and refute, and a closed one takes it back.
   */
  #openLinkGraceMs(m: Member): number {
    return m.linkDown === true ? 0 : this.#config.probeIntervalMs;
  }

  /** Our own failed probe of target: a new suspicion, or a confirmation of one; pushed. */
  #suspect(target: Member, nowMs: number): void {
    if (target.liveness === 'alive') {
      this.#push(this.#transition(target, 'suspect', target.incarnation, this.selfId, nowMs));
    } else if (target.liveness === 'suspect' && target.suspicion?.confirm(this.selfId) === true) {
      const update: SwimUpdate = { id: target.id, liveness: 'suspect', incarnation: target.incarnation, from: this.selfId };
      this.#broadcasts.enqueue(update);
      this.#push(update);
    }
  }

  /** Our own timer ran out: our verdict, pushed. */
  #tickSuspicions(nowMs: number): void {
    for (const m of this.#members.values()) {
      if (m.suspicion !== undefined && nowMs >= m.suspicion.deadlineMs) this.#push(this.#transition(m, 'dead', m.incarnation, this.selfId, nowMs));
    }
  }

  #nextTarget(): string | undefined {
    for (let tries = 0; tries <= this.#members.size; tries++) {
      if (this.#roundPos >= this.#round.length) {
        this.#round = shuffle([...this.#members.keys()], this.#rng);
        this.#roundPos = 0;
        if (this.#round.length === 0) return undefined;
      }
      const id = this.#round[this.#roundPos++];
      // A member under an urgent probe is being probed already.
      if (id !== undefined && this.#members.has(id) && !this.#linkProbes.has(id)) return id;
    }
    return undefined;
  }

  #startProbe(nowMs: number): void {
    const intervalMs = this.#awareness.scale(this.#config.probeIntervalMs);
    this.#nextProbeAtMs = nowMs + intervalMs;
    const target = this.#nextTarget();
    if (target === undefined) return;
    const seq = this.#nextSeq();
    const linkDown = this.#members.get(target)?.linkDown === true;
    this.#probe = {
      target,
      seq,
      timeoutAtMs: nowMs + this.#awareness.scale(this.#config.probeTimeoutMs),
      deadlineMs: nowMs + intervalMs,
      indirect: null,
      nacks: new Set(),
      pinged: !linkDown,
    };
    // Over a closed link the ping could not leave; linkUp sends it if the link returns.
    if (!linkDown) this.#send(target, { type: 'ping', seq });
  }

  /** Alive members other than target that we can reach, shuffled, at most indirectChecks. */
  #pickRelays(target: string): string[] {
    const candidates: string[] = [];
    for (const m of this.#members.values()) {
      if (m.liveness === 'alive' && m.id !== target && m.linkDown !== true) candidates.push(m.id);
    }
    return shuffle(candidates, this.#rng).slice(0, this.#config.indirectChecks);
  }

  #askRelays(probe: Probe, nowMs: number): void {
    const relays = this.#pickRelays(probe.target);
    probe.indirect = relays;
    // Relays nack after half the time left, so the nack can still reach us (tick
    // granularity and a network hop included) before the period ends.
    const timeoutMs = Math.max(1, Math.floor((probe.deadlineMs - nowMs) / 2));
    for (const r of relays) this.#send(r, { type: 'ping-req', seq: probe.seq, target: probe.target, timeoutMs });
  }

  /** Urgent probe after linkDown: straight to the relays, the probe timeout as its period. */
  #startLinkProbe(m: Member, nowMs: number): void {
    const deadlineMs = nowMs + this.#awareness.scale(this.#config.probeTimeoutMs);
    const probe: Probe = { target: m.id, seq: this.#nextSeq(), timeoutAtMs: nowMs, deadlineMs, indirect: null, nacks: new Set(), pinged: false };
    this.#linkProbes.set(m.id, probe);
    this.#askRelays(probe, nowMs);
  }

  #tickLinkProbes(nowMs: number): void {
    for (const [id, probe] of this.#linkProbes) {
      const target = this.#members.get(id);
      if (target === undefined) {
        this.#linkProbes.delete(id);
        continue;
      }
      if (nowMs < probe.deadlineMs) continue;
      this.#linkProbes.delete(id);
      if (target.liveness === 'dead') continue;
      // Missing nacks still point at us; a closed link with nobody to cross-check
      // does not (it is evidence about the target, not about our own speed).
      const asked = probe.indirect?.length ?? 0;
      if (asked > 0) this.#awareness.applyDelta(asked - probe.nacks.size);
      this.#suspect(target, nowMs);
    }
  }

  #tickProbe(nowMs: number): void {
    const probe = this.#probe;
    if (probe === null) return;
    const target = this.#members.get(probe.target);
    if (target === undefined) {
      this.#probe = null;
      return;
    }
    if (nowMs >= probe.deadlineMs) {
      this.#probe = null;
      // A dead member not answering is no news, and says nothing about our health.
      if (target.liveness === 'dead') return;
      const asked = probe.indirect?.length ?? 0;
      // Lifeguard: relays that could not even nack in time point at our own
      // slowness; with nobody to cross-check, every failed probe counts.
      this.#awareness.applyDelta(asked > 0 ? asked - probe.nacks.size : 1);
      this.#suspect(target, nowMs);
      return;
    }
    if (probe.indirect === null && nowMs >= probe.timeoutAtMs && target.liveness !== 'dead') this.#askRelays(probe, nowMs);
  }

  #relay(origin: string, originSeq: number, target: string, timeoutMs: number, nowMs: number): void {
    if (target === this.selfId) {
      this.#send(origin, { type: 'ack', seq: originSeq });
      return;
    }
    if (!this.#members.has(target) || this.#relays.size >= this.#config.maxPendingRelays) return;
    const seq = this.#nextSeq();
    // The entry outlives the nack so that a late ack is still relayed: the prober
    // accepts it until its period ends.
    this.#relays.set(seq, { origin, originSeq, target, nackAtMs: nowMs + timeoutMs, expireAtMs: nowMs + 2 * timeoutMs, nacked: false });
    this.#send(target, { type: 'ping', seq });
  }

  #tickRelays(nowMs: number): void {
    for (const [seq, r] of this.#relays) {
      if (!r.nacked && nowMs >= r.nackAtMs) {
        r.nacked = true;
        if (this.#members.has(r.origin)) this.#send(r.origin, { type: 'nack', seq: r.originSeq });
      }
      if (nowMs >= r.expireAtMs) this.#relays.delete(seq);
    }
  }
}
