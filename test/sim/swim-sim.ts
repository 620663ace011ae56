/**
 * Deterministic SWIM simulator: many nodes' Swim cores in one process on a virtual
 * clock, over a network that delays, reorders, drops, duplicates and partitions, with
 * nodes that crash, restart and stall (a blocked event loop: no ticks, no reads,
 * everything buffered until it resumes). One seed fixes every choice, so a failure
 * replays exactly. Safety invariants are checked after every event; scenarios add
 * their own checks (swim-scenarios.ts).
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

/** The runtime ticks each node every 50-100 ms (jittered per tick). */
export const TICK_MIN_MS = 50;
export const TICK_MAX_MS = 100;
/** Catching up from the Raft log takes up to this long after epochBehind. */
export const CATCH_UP_MAX_MS = 300;

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
  /** Ticks and deliveries held while stalled, run in arrival order on resume. */
  pending: Array<() => void>;
  /** Raft epoch this node has committed (survives restarts). */
  epoch: number;
}

/** Pending entries that are ticks (see resume). */
const ticks = new WeakSet<() => void>();

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
        epoch: 0,
      };
      node.swim.setMembers(this.ids, 0);
      this.#nodes.set(id, node);
      this.#seen.set(id, new Map());
      this.#scheduleTick(node, this.rng.int(TICK_MAX_MS));
    }
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
    this.trace(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
  }

  heal(): void {
    this.#group = null;
    this.trace('heal');
  }

  #blocked(a: string, b: string): boolean {
    return this.#group !== null && this.#group.get(a) !== this.#group.get(b);
  }

  crash(id: string): void {
    const node = this.#node(id);
    node.up = false;
    node.life++;
    node.stalled = false;
    node.pending = [];
    this.trace(`crash ${id}`);
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
    this.#scheduleTick(node, this.now + this.rng.int(TICK_MAX_MS));
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
  }

  resume(id: string, stallId?: number): void {
    const node = this.#node(id);
    if (!node.stalled || (stallId !== undefined && stallId !== node.stallId)) return;
    node.stalled = false;
    this.trace(`resume ${id} after ${this.now - node.stallStartMs}ms`);
    // What a runtime's lag monitor would report once the loop runs again.
    node.swim.reportLag(this.now - node.stallStartMs);
    // Node's event loop runs due timers before it polls sockets, so the overdue tick
    // sees the clock jump before any of the messages that piled up are read.
    const pending = node.pending;
    node.pending = [];
    for (const fn of pending) if (ticks.has(fn)) fn();
    for (const fn of pending) if (!ticks.has(fn)) fn();
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

  // ---- driving the cores ----

  #scheduleTick(node: SimNode, at: number): void {
    const life = node.life;
    this.at(at, () => this.#runTick(node, life));
  }

  #runTick(node: SimNode, life: number): void {
    if (!node.up || node.life !== life) return;
    if (node.stalled) {
      const fn = (): void => this.#runTick(node, life);
      ticks.add(fn);
      node.pending.push(fn);
      return;
    }
    this.#handle(node, node.swim.tick(this.now));
    this.#scheduleTick(node, this.now + TICK_MIN_MS + this.rng.int(TICK_MAX_MS - TICK_MIN_MS + 1));
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
    if (this.#blocked(from, toId) || this.rng.next() < this.net.dropRate) return;
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
