/**
 * Deterministic SWIM simulator: many nodes' Swim cores in one process on a virtual
 * clock, over a network that delays, reorders, drops, duplicates and partitions, with
 * nodes that crash, restart and stall (a blocked event loop: no ticks, no reads,
 * everything buffered until it resumes). One seed fixes every choice, so a failure
 * replays exactly. Safety invariants are checked after every event; scenarios add
 * their own checks (swim-scenarios.ts).
 *
 * It drives the cores the way lib/node/gossip.ts does: a node is ticked when its core
 * asks (nextTickAtMs), late by up to TICK_LATE_MAX_MS, never on a fixed cadence, so a
 * deadline the core forgets to ask for is a missed bound here; and a tick that falls
 * due while the node is stalled runs after the messages that piled up (the runtime
 * defers every tick with setImmediate, behind the reads of ready sockets).
 *
 * Connections are modelled as the transport reports them (linkDown / linkUp): a kill
 * closes the victim's connections at once; a silent crash, a partition or a stall
 * keeps them open until the transport's own ping gives up on them (PING_CLOSE_*); a
 * restart or a heal opens them again after a redial delay.
 */
import { compareRumours, type Rumour } from '../../lib/core/swim/state.ts';
import { seededRng, type Rng } from '../../lib/core/rng.ts';
import { Swim, type LivenessEvent, type SwimOutput } from '../../lib/core/swim/swim.ts';
import { validateSwimMessage, type SwimMessage } from '../../lib/core/swim/messages.ts';
import type { SwimConfig } from '../../lib/core/swim/config.ts';

export interface NetOptions {
  minDelayMs: number;
  maxDelayMs: number;
  dropRate: number;
  dupRate: number;
}

/** A tick runs up to this long after the time the core asked for (timer lateness). */
export const TICK_LATE_MAX_MS = 50;
/** Catching up from the Raft log takes up to this long after epochBehind. */
export const CATCH_UP_MAX_MS = 300;
/**
 * The transport pings every connection every 5 s and closes one that did not answer
 * the previous ping (lib/net/limits.ts pingIntervalMs), so a silent peer's connection
 * closes 5-10 s after it went quiet.
 */
export const PING_CLOSE_MIN_MS = 5000;
export const PING_CLOSE_MAX_MS = 10_000;
/** A closed connection is redialled within this (reconnectBaseMs with backoff, first attempts). */
export const REDIAL_MAX_MS = 300;

/** How a node goes down: killed (its kernel closes its sockets at once) or silently (power, cable). */
export type CrashKind = 'kill' | 'silent';

export const FAULT_FREE_NET: NetOptions = { minDelayMs: 1, maxDelayMs: 20, dropRate: 0, dupRate: 0 };

/** Thrown to stop a run at its first violation. */
export class Violation extends Error {
  readonly trace: string;
  constructor(message: string, trace: string) {
    super(message);
    this.trace = trace;
  }
}

interface SimNode {
  readonly id: string;
  swim: Swim;
  up: boolean;
  /** Bumped on crash and restart: ticks and messages of an older life are dropped. */
  life: number;
  stalled: boolean;
  stallId: number;
  stallStartMs: number;
  /** Deliveries held while stalled, run in arrival order on resume. */
  pending: Array<() => void>;
  /** A tick fell due while stalled: it runs on resume, after the pending deliveries. */
  tickPending: boolean;
  /** When the scheduled tick runs, and the time the core asked for; undefined if none. */
  tickAt: number | undefined;
  tickDue: number;
  /** Bumped whenever a tick is scheduled: an older scheduled tick is void. */
  tickToken: number;
  /** Time of the last tick that left nextTickAtMs() <= its own time (see #runTick). */
  lastImmediateTickMs: number;
  /** Raft epoch this node has committed (survives restarts). */
  epoch: number;
}

interface Timed {
  at: number;
  order: number;
  fn: () => void;
}

/** Binary min-heap on (at, order): equal times run in scheduling order. */
class EventHeap {
  readonly #a: Timed[] = [];
  get size(): number {
    return this.#a.length;
  }
  peekAt(): number | undefined {
    return this.#a[0]?.at;
  }
  #less(i: number, j: number): boolean {
    const x = this.#a[i] as Timed;
    const y = this.#a[j] as Timed;
    return x.at < y.at || (x.at === y.at && x.order < y.order);
  }
  #swap(i: number, j: number): void {
    const t = this.#a[i] as Timed;
    this.#a[i] = this.#a[j] as Timed;
    this.#a[j] = t;
  }
  push(e: Timed): void {
    this.#a.push(e);
    let i = this.#a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      this.#swap(i, p);
      i = p;
    }
  }
  pop(): Timed | undefined {
    const top = this.#a[0];
    const last = this.#a.pop();
    if (this.#a.length > 0 && last !== undefined) {
      this.#a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.#a.length && this.#less(l, m)) m = l;
        if (r < this.#a.length && this.#less(r, m)) m = r;
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

export interface SimOptions {
  seed: number;
  n: number;
  config: SwimConfig;
  net: NetOptions;
}

export class SwimSim {
  readonly rng: Rng;
  readonly ids: string[];
  readonly config: SwimConfig;
  net: NetOptions;
  now = 0;
  /** Runs after every event; return a message to fail the run. */
  readonly checks: Array<() => string | undefined> = [];
  /** Called for every liveness event any node outputs. */
  onEvent: ((observer: string, ev: LivenessEvent) => void) | undefined;
  readonly #nodes = new Map<string, SimNode>();
  readonly #heap = new EventHeap();
  #order = 0;
  #group: Map<string, number> | null = null;
  /** Bumped on every partition and heal: a pending ping-close check of an older one is void. */
  #groupEpoch = 0;
  /** Node pairs ("a|b", a < b) whose connection is closed. */
  readonly #linksDown = new Set<string>();
  /** Highest rumour each observer has held about each member, per life. */
  readonly #seen = new Map<string, Map<string, Rumour>>();
  readonly #trace: string[] = [];
  #seedCounter = 0;
  readonly #seed: number;

  constructor(opts: SimOptions) {
    this.#seed = opts.seed;
    this.rng = seededRng(opts.seed);
    this.config = opts.config;
    this.net = opts.net;
    this.ids = Array.from({ length: opts.n }, (_, i) => `n${i + 1}`);
    for (const id of this.ids) {
      const node: SimNode = {
        id,
        swim: this.#newSwim(id),
        up: true,
        life: 0,
        stalled: false,
        stallId: 0,
        stallStartMs: 0,
        pending: [],
        tickPending: false,
        tickAt: undefined,
        tickDue: 0,
        tickToken: 0,
        lastImmediateTickMs: -1,
        epoch: 0,
      };
      node.swim.setMembers(this.ids, 0);
      this.#nodes.set(id, node);
      this.#seen.set(id, new Map());
    }
    // Processes start at slightly different moments.
    for (const node of this.#nodes.values()) this.#scheduleTickAt(node, this.rng.int(100), 0);
  }

  #newSwim(id: string): Swim {
    // Every core gets its own stream, derived from the run's seed.
    return new Swim(this.config, id, seededRng((this.#seed * 7919 + ++this.#seedCounter * 104729) >>> 0));
  }

  swim(id: string): Swim {
    return this.#node(id).swim;
  }

  isUp(id: string): boolean {
    return this.#node(id).up;
  }

  upIds(): string[] {
    return this.ids.filter((id) => this.#node(id).up);
  }

  nodeEpoch(id: string): number {
    return this.#node(id).epoch;
  }

  trace(note: string): void {
    this.#trace.push(`${this.now}ms ${note}`);
    if (this.#trace.length > 60) this.#trace.shift();
  }

  traceTail(): string {
    return this.#trace.join('\n');
  }

  #node(id: string): SimNode {
    const n = this.#nodes.get(id);
    if (n === undefined) throw new Error(`no sim node ${id}`);
    return n;
  }

  at(timeMs: number, fn: () => void): void {
    this.#heap.push({ at: Math.max(timeMs, this.now), order: this.#order++, fn });
  }

  /** Runs events up to and including timeMs; throws Violation at the first broken invariant. */
  runUntil(timeMs: number): void {
    for (;;) {
      const next = this.#heap.peekAt();
      if (next === undefined || next > timeMs) break;
      const e = this.#heap.pop() as Timed;
      this.now = e.at;
      e.fn();
      for (const check of this.checks) {
        const bad = check();
        if (bad !== undefined) this.fail(bad);
      }
    }
    this.now = Math.max(this.now, timeMs);
  }

  fail(message: string): never {
    throw new Violation(`at ${this.now}ms: ${message}`, this.traceTail());
  }

  // ---- faults ----

  partition(groups: string[][]): void {
    this.#group = new Map();
    groups.forEach((g, i) => g.forEach((id) => this.#group?.set(id, i)));
    const epoch = ++this.#groupEpoch;
    this.trace(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
    // Cut-off connections stay open until the transport's ping gives up on them.
    for (const a of this.ids) {
      for (const b of this.ids) {
        if (a < b && this.#blocked(a, b)) {
          this.at(this.now + PING_CLOSE_MIN_MS + this.rng.int(PING_CLOSE_MAX_MS - PING_CLOSE_MIN_MS + 1), () => {
            if (this.#groupEpoch === epoch) this.#dropLink(a, b);
          });
        }
      }
    }
  }

  heal(): void {
    this.#group = null;
    ++this.#groupEpoch;
    this.trace('heal');
    for (const key of [...this.#linksDown]) {
      const [a, b] = key.split('|') as [string, string];
      this.#redial(a, b);
    }
  }

  #blocked(a: string, b: string): boolean {
    return this.#group !== null && this.#group.get(a) !== this.#group.get(b);
  }

  crash(id: string, kind: CrashKind = 'silent'): void {
    const node = this.#node(id);
    node.up = false;
    node.life++;
    node.stalled = false;
    node.pending = [];
    node.tickPending = false;
    node.tickAt = undefined;
    this.trace(`crash ${id} (${kind})`);
    const life = node.life;
    for (const o of this.ids) {
      if (o === id) continue;
      if (kind === 'kill') this.#dropLink(id, o);
      // A silent peer's connection is given up on by the ping, if it is still down by then.
      else this.at(this.now + PING_CLOSE_MIN_MS + this.rng.int(PING_CLOSE_MAX_MS - PING_CLOSE_MIN_MS + 1), () => {
        if (!node.up && node.life === life) this.#dropLink(id, o);
      });
    }
  }

  /** A fresh process on the same data dir: SWIM state (incarnation included) is lost. */
  restart(id: string): void {
    const node = this.#node(id);
    node.up = true;
    node.life++;
    node.swim = this.#newSwim(id);
    node.swim.setMembers(this.ids, this.now);
    node.swim.setLocalEpoch(node.epoch);
    this.#seen.set(id, new Map());
    this.trace(`restart ${id}`);
    // It dials everyone as it starts. A connection its peer still holds open (it never
    // noticed the crash) is simply replaced by the new one: no event on either side.
    for (const o of this.ids) if (o !== id && this.#linksDown.has(linkKey(id, o))) this.#redial(id, o);
    this.#scheduleTickAt(node, this.now + this.rng.int(TICK_LATE_MAX_MS + 1), this.now);
  }

  /** Blocks id's event loop until resume (or for durationMs). */
  stall(id: string, durationMs?: number): void {
    const node = this.#node(id);
    if (!node.up || node.stalled) return;
    node.stalled = true;
    node.stallStartMs = this.now;
    const stallId = ++node.stallId;
    this.trace(`stall ${id}`);
    if (durationMs !== undefined) this.at(this.now + durationMs, () => this.resume(id, stallId));
    // A stall that outlasts the transport's ping gets the node's connections closed by its peers.
    const life = node.life;
    this.at(this.now + PING_CLOSE_MIN_MS + this.rng.int(PING_CLOSE_MAX_MS - PING_CLOSE_MIN_MS + 1), () => {
      if (node.up && node.life === life && node.stalled && node.stallId === stallId) {
        for (const o of this.ids) if (o !== id) this.#dropLink(id, o);
      }
    });
  }

  resume(id: string, stallId?: number): void {
    const node = this.#node(id);
    if (!node.stalled || (stallId !== undefined && stallId !== node.stallId)) return;
    node.stalled = false;
    this.trace(`resume ${id} after ${this.now - node.stallStartMs}ms`);
    // The runtime reads every ready socket before its deferred tick runs.
    const pending = node.pending;
    node.pending = [];
    for (const fn of pending) fn();
    if (node.tickPending && node.up) {
      node.tickPending = false;
      this.#runTick(node, node.life, node.tickToken);
    }
    // Connections the peers closed meanwhile are redialled now that it runs again.
    for (const o of this.ids) if (o !== id && this.#linksDown.has(linkKey(id, o))) this.#redial(id, o);
  }

  // ---- connections ----

  /** The connection between a and b closes: each side that runs hears linkDown. */
  #dropLink(a: string, b: string): void {
    const key = linkKey(a, b);
    if (this.#linksDown.has(key)) return;
    this.#linksDown.add(key);
    this.trace(`link ${a}-${b} closed`);
    this.#linkEvent(a, b, 'down');
    this.#linkEvent(b, a, 'down');
  }

  /** Either side redials within REDIAL_MAX_MS; the link opens if both run and can talk. */
  #redial(a: string, b: string): void {
    this.at(this.now + 1 + this.rng.int(REDIAL_MAX_MS), () => {
      const key = linkKey(a, b);
      const na = this.#node(a);
      const nb = this.#node(b);
      // Not now: the heal, restart or resume that makes it possible redials again.
      if (!this.#linksDown.has(key) || !na.up || !nb.up || na.stalled || nb.stalled || this.#blocked(a, b)) return;
      this.#linksDown.delete(key);
      this.trace(`link ${a}-${b} open`);
      this.#linkEvent(a, b, 'up');
      this.#linkEvent(b, a, 'up');
    });
  }

  #linkEvent(at: string, peer: string, kind: 'down' | 'up'): void {
    const node = this.#node(at);
    if (!node.up) return;
    const life = node.life;
    const run = (): void => {
      if (!node.up || node.life !== life) return;
      this.#handle(node, kind === 'down' ? node.swim.linkDown(peer, this.now) : node.swim.linkUp(peer, this.now));
    };
    // The close or open reaches the process like any other socket event.
    this.at(this.now + this.net.minDelayMs + this.rng.int(this.net.maxDelayMs - this.net.minDelayMs + 1), () => {
      if (node.stalled && node.life === life) node.pending.push(run);
      else run();
    });
  }

  isStalled(id: string): boolean {
    return this.#node(id).stalled;
  }

  /** The node commits a newer Raft epoch. */
  bumpEpoch(id: string): void {
    const node = this.#node(id);
    node.epoch++;
    node.swim.setLocalEpoch(node.epoch);
    this.trace(`epoch ${id} -> ${node.epoch}`);
  }

  isLinkDown(a: string, b: string): boolean {
    return this.#linksDown.has(linkKey(a, b));
  }

  // ---- driving the cores ----

  /** Schedules node's tick at `at` for the time `due` the core asked for, replacing a later one. */
  #scheduleTickAt(node: SimNode, at: number, due: number): void {
    if (node.tickAt !== undefined && node.tickAt <= at) return;
    node.tickAt = at;
    node.tickDue = due;
    const token = ++node.tickToken;
    const life = node.life;
    this.at(at, () => this.#runTick(node, life, token));
  }

  /** After every call into a core: a tick when it asks, late by up to TICK_LATE_MAX_MS. */
  #reschedule(node: SimNode): void {
    if (!node.up) return;
    const due = node.swim.nextTickAtMs();
    this.#scheduleTickAt(node, Math.max(this.now, due) + this.rng.int(TICK_LATE_MAX_MS + 1), due);
  }

  #runTick(node: SimNode, life: number, token: number): void {
    if (!node.up || node.life !== life || node.tickToken !== token) return;
    if (node.stalled) {
      node.tickPending = true;
      return;
    }
    node.tickAt = undefined;
    // What the runtime's lag measurement reports: how late this tick is.
    node.swim.reportLag(this.now - node.tickDue);
    this.#handle(node, node.swim.tick(this.now));
    // A core may ask for an immediate tick once (after a stall); asking again at the
    // same instant would have the runtime tick in a loop.
    if (node.swim.nextTickAtMs() <= this.now) {
      if (node.lastImmediateTickMs === this.now) this.fail(`${node.id} asks to be ticked again at ${this.now} after ticking at ${this.now}: a tick loop`);
      node.lastImmediateTickMs = this.now;
    }
  }

  #deliver(from: string, to: SimNode, msg: SwimMessage, life: number): void {
    if (!to.up || to.life !== life || this.#blocked(from, to.id)) return;
    if (to.stalled) {
      to.pending.push(() => this.#deliver(from, to, msg, life));
      return;
    }
    this.#handle(to, to.swim.receive(from, msg, this.now));
  }

  #send(from: string, toId: string, msg: SwimMessage): void {
    const to = this.#node(toId);
    // Only what survives the wire gate may travel: the validator also copies it,
    // so no two cores ever share an object.
    let wire: SwimMessage;
    try {
      wire = validateSwimMessage(JSON.parse(JSON.stringify(msg)));
    } catch (err) {
      this.fail(`${from} sent an invalid message ${JSON.stringify(msg)}: ${(err as Error).message}`);
    }
    // The transport drops what it cannot send: nothing leaves over a closed connection.
    if (this.#linksDown.has(linkKey(from, toId)) || this.#blocked(from, toId) || this.rng.next() < this.net.dropRate) return;
    const copies = this.rng.next() < this.net.dupRate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const delay = this.net.minDelayMs + this.rng.int(this.net.maxDelayMs - this.net.minDelayMs + 1);
      const life = to.life;
      this.at(this.now + delay, () => this.#deliver(from, to, wire, life));
    }
  }

  #handle(node: SimNode, out: SwimOutput): void {
    for (const { to, msg } of out.messages) this.#send(node.id, to, msg);
    const lastById = new Map<string, LivenessEvent>();
    for (const ev of out.events) {
      this.trace(`${node.id} sees ${ev.id} ${ev.type}@${ev.incarnation}`);
      lastById.set(ev.id, ev);
      this.onEvent?.(node.id, ev);
    }
    for (const ev of lastById.values()) {
      const view = node.swim.member(ev.id);
      if (view?.liveness !== ev.type || view.incarnation !== ev.incarnation) {
        this.fail(`${node.id}: event ${ev.id} ${ev.type}@${ev.incarnation} disagrees with its view ${JSON.stringify(view)}`);
      }
    }
    if (out.epochBehind !== undefined) {
      const { epoch } = out.epochBehind;
      const life = node.life;
      this.at(this.now + this.rng.int(CATCH_UP_MAX_MS + 1), () => {
        if (!node.up || node.life !== life || epoch <= node.epoch) return;
        node.epoch = epoch;
        node.swim.setLocalEpoch(epoch);
      });
    }
    this.#checkNode(node);
    this.#reschedule(node);
  }

  /** Safety invariants of one node, after each of its steps. */
  #checkNode(node: SimNode): void {
    const s = node.swim;
    const self = s.member(node.id);
    if (self?.liveness !== 'alive' || self.incarnation !== s.incarnation) {
      this.fail(`${node.id} does not see itself alive at its own incarnation: ${JSON.stringify(self)}`);
    }
    if (s.healthScore < 0 || s.healthScore > this.config.awarenessMax - 1) {
      this.fail(`${node.id} health score ${s.healthScore} out of range`);
    }
    if (s.epoch !== node.epoch) this.fail(`${node.id} epoch ${s.epoch} but committed ${node.epoch}`);
    const seen = this.#seen.get(node.id) as Map<string, Rumour>;
    for (const id of this.ids) {
      const view = s.member(id);
      if (view === undefined) this.fail(`${node.id} lost member ${id}`);
      const before = seen.get(id);
      // Views only move up the rumour order; in particular incarnations never decrease.
      if (before !== undefined && compareRumours(view, before) < 0) {
        this.fail(`${node.id}'s view of ${id} went back from ${before.liveness}@${before.incarnation} to ${view.liveness}@${view.incarnation}`);
      }
      seen.set(id, { liveness: view.liveness, incarnation: view.incarnation });
    }
  }

  /**
   * Every up node sees every up node alive. Incarnations may still differ: a node
   * that restarted at 0 while others hold alive@2 for it is in no conflict, and it
   * adopts or outbids 2 as soon as a rumour about it reaches it.
   */
  converged(): boolean {
    const up = this.upIds();
    for (const o of up) {
      const s = this.#node(o).swim;
      for (const m of up) if (s.member(m)?.liveness !== 'alive') return false;
    }
    return true;
  }
}

function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
