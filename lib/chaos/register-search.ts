/**
 * The linearizability search for one key's register history: Wing & Gong's algorithm
 * with Lowe's memoization ("Testing for linearizability", 2017), the shape of
 * Knossos' "linear" checker and Porcupine.
 *
 * Calls and returns lie in time order in a doubly linked list (`CallList`). The search
 * repeatedly linearizes the earliest call it can: `lift` takes the op's call and return
 * out of the list and applies it to the register; when the scan meets the return of an
 * op not linearized yet, that branch cannot be completed and `backtrack` undoes lifts
 * (`unlift`, the exact inverse, in LIFO order) until a configuration with untried
 * candidates is found. A (linearized set, register state) pair explored once is never
 * explored again (`LinearizedMemo`): what remains to search depends on nothing else.
 * That bounds the search by 2^(max concurrency) × values, still exponential, hence the
 * step limit: past it the verdict is 'unknown' instead of a hung run.
 *
 * The register is a compare-and-set register: a write or delete may carry a
 * precondition (`pre`), the state the register must hold just before it (If-Match: the
 * state of the value with that version; If-None-Match: absent), and can be linearized
 * only where it holds. A read is a read; a 412 arrives here as a read of the state it
 * reported.
 *
 * Exact prunings (values are unique per key, which is what makes them sound):
 * - a read that can be linearized now is, with no alternative branch: everything
 *   that must precede it already has been, and moving a read earlier in any valid
 *   order keeps it valid (it sees the same state, changes nothing);
 * - a value is never overwritten while reads of it, or compare-and-sets that expect
 *   it, remain (it could not come back, so they could never be placed);
 * - writes and deletes whose versions are known are linearized in version order, the
 *   order in which a last-writer-wins store applies them (DESIGN §2.8: a write that
 *   began after another completed must carry the higher version), so with acked
 *   versions the writes of a key leave the search one candidate at a time;
 * - optional deletes (unknown deletes that survived the reduction) with the same
 *   precondition are interchangeable once invoked: each sets the register absent and
 *   none has a deadline, so a configuration tries at most one per precondition that
 *   holds (the earliest invoked still unused), and only once its ordinary candidates
 *   are exhausted (when the scan meets a return).
 *
 * The input is an `EncodedHistory` (see linearizability.ts for how ops become one).
 */
import { assert } from '../errors.ts';
import { seededRng } from '../core/rng.ts';

/** Op kinds in an encoded history. */
export const WRITE = 0;
export const DELETE = 1;
export const READ = 2;
/** Register state id of "absent": values get ids from 1. */
export const ABSENT = 0;
/** Preconditions besides a state id: none at all (a plain write or delete) ... */
export const ANY = -1;
/** ... and "some value" (If-Match on a version no op in the history ties to a value). */
export const LIVE = -2;

/** One key's ops, numbered by invocation, as the search sees them. */
export interface EncodedHistory {
  /** Ops in the history, 0..n-1 in invocation order. */
  readonly n: number;
  readonly invokeMs: Float64Array;
  /** WRITE, DELETE or READ. */
  readonly kind: Uint8Array;
  /** Writes: the state they set; deletes: ABSENT; reads: the state they must see. */
  readonly target: Int32Array;
  /** Writes and deletes: the state the register must hold just before (a state id, ANY or LIVE); reads: ANY. */
  readonly pre: Int32Array;
  /** 1 for ops every linearization must contain; 0 for optional ones (unknown deletes). */
  readonly required: Uint8Array;
  /** When a required op returned (an observed unknown write: when it had to be applied by). */
  readonly returnMs: Float64Array;
  /**
   * Writes and deletes: position in version order (0, 1, ...), or -1 where the version
   * is unknown (such an op may go anywhere its interval allows). Reads: -1.
   */
  readonly rank: Int32Array;
  /** Distinct values: state ids run 1..values. */
  readonly values: number;
}

export type SearchOutcome =
  | { verdict: 'linearizable' | 'unknown'; steps: number }
  | {
    verdict: 'not-linearizable';
    steps: number;
    /** Ops placed by the deepest branch. */
    placed: number;
    /** The op that branch could not place, and the register state it met. */
    blocking: number;
    blockingState: number;
  };

const NIL = -1;
const HEAD = 0;

/**
 * Calls and returns of the required ops in time order, as a doubly linked list with
 * the head at entry 0 (dancing links: a removed entry keeps its own links, so putting
 * it back in LIFO order restores the list exactly).
 */
class CallList {
  readonly next: Int32Array;
  private readonly prev: Int32Array;
  /** The op of each entry. */
  readonly op: Int32Array;
  readonly isCall: Uint8Array;
  readonly atMs: Float64Array;
  /** A call entry's return entry. */
  private readonly match: Int32Array;

  constructor(h: EncodedHistory) {
    interface Event { t: number; call: boolean; op: number }
    const events: Event[] = [];
    for (let i = 0; i < h.n; i++) {
      if (!h.required[i]) continue;
      events.push({ t: h.invokeMs[i] as number, call: true, op: i });
      events.push({ t: h.returnMs[i] as number, call: false, op: i });
    }
    // Calls before returns at equal times: touching intervals count as concurrent.
    events.sort((a, b) => a.t - b.t || (a.call === b.call ? a.op - b.op : a.call ? -1 : 1));
    const size = events.length + 1;
    this.next = new Int32Array(size);
    this.prev = new Int32Array(size);
    this.op = new Int32Array(size).fill(-1);
    this.isCall = new Uint8Array(size);
    this.atMs = new Float64Array(size);
    this.match = new Int32Array(size).fill(NIL);
    const callEntryOf = new Int32Array(h.n);
    for (let e = 0; e < size; e++) {
      this.prev[e] = e - 1;
      this.next[e] = e + 1 < size ? e + 1 : NIL;
    }
    events.forEach((ev, idx) => {
      const e = idx + 1;
      this.op[e] = ev.op;
      this.atMs[e] = ev.t;
      if (ev.call) {
        this.isCall[e] = 1;
        callEntryOf[ev.op] = e;
      } else {
        this.match[callEntryOf[ev.op] as number] = e;
      }
    });
  }

  first(): number {
    return this.next[HEAD] as number;
  }

  /** Takes a call and its return out of the list. */
  remove(e: number): void {
    this.unlink(e);
    const m = this.match[e] as number;
    if (m !== NIL) this.unlink(m);
  }

  /** Exact inverse of `remove` when undone in LIFO order. */
  restore(e: number): void {
    const m = this.match[e] as number;
    if (m !== NIL) this.relink(m);
    this.relink(e);
  }

  private unlink(e: number): void {
    const p = this.prev[e] as number;
    const nx = this.next[e] as number;
    this.next[p] = nx;
    if (nx !== NIL) this.prev[nx] = p;
  }

  private relink(e: number): void {
    this.next[this.prev[e] as number] = e;
    const nx = this.next[e] as number;
    if (nx !== NIL) this.prev[nx] = e;
  }
}

/** A memo entry: the state and the words of the linearized set from `from` on. */
interface Explored { state: number; from: number; window: Uint32Array }

/**
 * The set of linearized ops as a bitset, and the memo of explored (set, state) pairs.
 * Zobrist hashes find the bucket; the stored bitsets make the comparison exact, so a
 * hash collision can never prune a branch and invent a violation.
 */
class LinearizedMemo {
  private readonly words: number;
  private readonly bits: Uint32Array;
  private readonly z1: Uint32Array;
  private readonly z2: Uint32Array;
  private h1 = 0;
  private h2 = 0;
  // Words below `full` are all ones: the memo stores only the words from there on, so
  // a long, mostly sequential key costs memory for its concurrency, not its length.
  private full = 0;
  /** No word above this has ever had a bit set. */
  private top = 0;
  private readonly seen = new Map<number, Explored[]>();

  constructor(n: number) {
    this.words = Math.ceil(n / 32);
    this.bits = new Uint32Array(this.words);
    const rng = seededRng(0x5eed);
    this.z1 = new Uint32Array(n);
    this.z2 = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      this.z1[i] = Math.floor(rng.next() * 2 ** 32);
      this.z2[i] = Math.floor(rng.next() * 2 ** 32);
    }
  }

  /** Adds op i to the set, or takes it out again. */
  flip(i: number): void {
    const w = i >>> 5;
    this.bits[w] = ((this.bits[w] as number) ^ (1 << (i & 31))) >>> 0;
    if (this.bits[w] !== 0xffffffff && w < this.full) this.full = w;
    if (w > this.top) this.top = w;
    this.h1 = (this.h1 ^ (this.z1[i] as number)) >>> 0;
    this.h2 = (this.h2 ^ (this.z2[i] as number)) >>> 0;
  }

  /** Records (current set, state); false if that pair was explored already. */
  remember(state: number): boolean {
    const bits = this.bits;
    while (this.full < this.words && bits[this.full] === 0xffffffff) this.full++;
    const full = this.full;
    let end = this.top + 1;
    while (end > full && bits[end - 1] === 0) end--;
    // A number key (52 bits of the two hashes mixed with the state) avoids building a
    // string per step; the exact comparison below is what decides.
    const k = this.h1 * 0x100000 + (((this.h2 ^ Math.imul(state, 0x9e3779b1)) >>> 0) & 0xfffff);
    const bucket = this.seen.get(k);
    const fresh = (): Explored => ({ state, from: full, window: bits.slice(full, Math.max(end, full)) });
    if (bucket === undefined) {
      this.seen.set(k, [fresh()]);
      return true;
    }
    for (const b of bucket) {
      if (b.state !== state || b.from !== full || b.window.length !== end - full) continue;
      let same = true;
      for (let w = 0; w < b.window.length && same; w++) same = b.window[w] === bits[full + w];
      if (same) return false;
    }
    bucket.push(fresh());
    return true;
  }
}

// How a step on the stack was taken, which decides how backtracking resumes.
/** A write or delete chosen among candidates: on backtrack, try the next candidate. */
const REGULAR = 0;
/** A read linearized with no alternative: on backtrack, keep undoing. */
const FORCED = 1;
/** An optional delete taken at a return: on backtrack, resume at that return. */
const OPTIONAL = 2;
type Step = typeof REGULAR | typeof FORCED | typeof OPTIONAL;

export class RegisterSearch {
  private readonly list: CallList;
  private readonly memo: LinearizedMemo;
  /**
   * Reads not yet linearized, per value they expect. Values are unique, so once a
   * value is overwritten it never comes back: overwriting it while reads still wait
   * for it is a dead end, cut at once instead of at those reads' returns.
   */
  private readonly waiting: Int32Array;
  /**
   * Optional ops (unknown deletes) grouped by precondition, each group in invocation
   * order; the used ones of a group are always a prefix of it.
   */
  private readonly optional = new Map<number, { ops: number[]; used: number }>();
  /** How many of its optional candidates (see optionalCandidates) this configuration tried. */
  private optionalTried = 0;
  /** Rank of the next write or delete in version order: all ranked ops below it are linearized. */
  private nextRank = 0;

  /** The stack of steps taken: the lifted call entry (or, for an optional delete, the return it was taken at). */
  private readonly stackEntry: number[] = [];
  private readonly stackState: number[] = [];
  private readonly stackStep: Step[] = [];
  /** Optional steps: the delete taken, and how many candidates its configuration had tried then. */
  private readonly stackOptional: number[] = [];
  private readonly stackTried: number[] = [];

  private state = ABSENT;
  /** Where the scan of the list stands. */
  private entry: number;
  private remaining = 0;
  private steps = 0;
  private deepest = -1;
  private blocking = -1;
  private blockingState = ABSENT;

  constructor(private readonly h: EncodedHistory, private readonly maxSteps: number) {
    assert(maxSteps > 0, 'maxSteps must be positive');
    this.list = new CallList(h);
    this.memo = new LinearizedMemo(h.n);
    this.waiting = new Int32Array(h.values + 1);
    for (let i = 0; i < h.n; i++) {
      if (!h.required[i]) {
        // An optional op in version order would hold back every op ranked after it.
        assert(h.rank[i] === -1, 'only required ops have a place in version order');
        assert(h.kind[i] === DELETE, 'only deletes are optional');
        const pre = h.pre[i] as number;
        let group = this.optional.get(pre);
        if (group === undefined) this.optional.set(pre, (group = { ops: [], used: 0 }));
        group.ops.push(i); // ops are numbered in invocation order already
        continue;
      }
      this.remaining++;
      assert(h.rank[i] === -1 || h.kind[i] !== READ, 'reads have no place in version order');
      const awaited = this.awaitedState(i);
      if (awaited !== NIL) this.waiting[awaited] = (this.waiting[awaited] as number) + 1;
    }
    this.entry = this.list.first();
  }

  run(): SearchOutcome {
    if (this.remaining === 0) return { verdict: 'linearizable', steps: 0 };
    for (;;) {
      if (++this.steps > this.maxSteps) return { verdict: 'unknown', steps: this.maxSteps };
      assert(this.entry !== NIL, 'linearizability search ran off the end with required ops left');
      const advanced = this.list.isCall[this.entry] ? this.atCall() : this.atReturn();
      if (this.remaining === 0) return { verdict: 'linearizable', steps: this.steps };
      if (!advanced) break;
    }
    return {
      verdict: 'not-linearizable', steps: this.steps, placed: this.deepest, blocking: this.blocking, blockingState: this.blockingState,
    };
  }

  /**
   * The value whose state required op i must see (a read's, a compare-and-set's
   * precondition), or NIL: such a value must not be overwritten while i waits for it.
   */
  private awaitedState(i: number): number {
    const s = this.h.kind[i] === READ ? (this.h.target[i] as number) : (this.h.pre[i] as number);
    return s > ABSENT ? s : NIL;
  }

  /** The scan meets a call: linearize its op if the register allows, else move on. False when the search is exhausted. */
  private atCall(): boolean {
    const e = this.entry;
    const i = this.list.op[e] as number;
    const isRead = this.h.kind[i] === READ;
    if (isRead ? this.state === this.h.target[i] : this.preHolds(this.h.pre[i] as number) && this.mayOverwrite(i) && this.isNextInVersionOrder(i)) {
      if (this.lift(e, isRead ? FORCED : REGULAR)) return true;
      // A read equivalent to a configuration already explored: that one failed.
      if (isRead) return this.backtrack();
    }
    this.entry = this.list.next[e] as number;
    return true;
  }

  /**
   * The scan meets the return of an op not yet linearized: unless an optional delete
   * helps, this branch cannot be completed. False when the search is exhausted.
   */
  private atReturn(): boolean {
    const e = this.entry;
    if (this.state !== ABSENT && this.mayOverwrite(NIL)) {
      const candidates = this.optionalCandidates();
      while (this.optionalTried < candidates.length) {
        const group = candidates[this.optionalTried++] as { ops: number[]; used: number };
        const d = group.ops[group.used];
        if (d !== undefined && (this.h.invokeMs[d] as number) <= (this.list.atMs[e] as number) && this.liftOptional(d, e)) return true;
      }
    }
    if (this.stackEntry.length >= this.deepest) {
      this.deepest = this.stackEntry.length;
      this.blocking = this.list.op[e] as number;
      this.blockingState = this.state;
    }
    return this.backtrack();
  }

  /** The optional groups whose precondition holds now, in a fixed order (the register is not absent). */
  private optionalCandidates(): Array<{ ops: number[]; used: number }> {
    const out: Array<{ ops: number[]; used: number }> = [];
    for (const pre of [this.state, LIVE, ANY]) {
      const group = this.optional.get(pre);
      if (group !== undefined) out.push(group);
    }
    return out;
  }

  private preHolds(pre: number): boolean {
    return pre === ANY || (pre === LIVE ? this.state !== ABSENT : pre === this.state);
  }

  /** Whether op i (NIL: an optional delete) may overwrite the current state: nothing else still waits for it. */
  private mayOverwrite(i: number): boolean {
    if (this.state === ABSENT) return true;
    const self = i !== NIL && this.awaitedState(i) === this.state ? 1 : 0;
    return this.waiting[this.state] === self;
  }

  private isNextInVersionOrder(i: number): boolean {
    const rank = this.h.rank[i] as number;
    return rank < 0 || rank === this.nextRank;
  }

  /** Linearizes the op of call entry e, unless (set, state) after it was explored already. */
  private lift(e: number, step: Step): boolean {
    const i = this.list.op[e] as number;
    const isRead = this.h.kind[i] === READ;
    const newState = isRead ? this.state : (this.h.target[i] as number);
    this.memo.flip(i);
    if (!this.memo.remember(newState)) {
      this.memo.flip(i);
      return false;
    }
    this.list.remove(e);
    const awaited = this.awaitedState(i);
    if (awaited !== NIL) this.waiting[awaited] = (this.waiting[awaited] as number) - 1;
    if ((this.h.rank[i] as number) >= 0) this.nextRank++;
    this.remaining--;
    this.push(e, step, newState);
    return true;
  }

  /** Linearizes optional delete d at the return entry e where its use was the last resort. */
  private liftOptional(d: number, e: number): boolean {
    this.memo.flip(d);
    if (!this.memo.remember(ABSENT)) {
      this.memo.flip(d);
      return false;
    }
    (this.optional.get(this.h.pre[d] as number) as { used: number }).used++;
    this.stackOptional.push(d);
    this.stackTried.push(this.optionalTried);
    this.push(e, OPTIONAL, ABSENT);
    return true;
  }

  private push(e: number, step: Step, newState: number): void {
    this.stackEntry.push(e);
    this.stackState.push(this.state);
    this.stackStep.push(step);
    this.state = newState;
    this.entry = this.list.first();
    this.optionalTried = 0;
  }

  /** Undoes the newest step; returns how it was taken, its entry, and for an optional step the candidates tried before it. */
  private unlift(): { step: Step; e: number; tried: number } | undefined {
    const e = this.stackEntry.pop();
    if (e === undefined) return undefined;
    this.state = this.stackState.pop() as number;
    const step = this.stackStep.pop() as Step;
    if (step === OPTIONAL) {
      const d = this.stackOptional.pop() as number;
      (this.optional.get(this.h.pre[d] as number) as { used: number }).used--;
      this.memo.flip(d);
      return { step, e, tried: this.stackTried.pop() as number };
    }
    const j = this.list.op[e] as number;
    this.memo.flip(j);
    this.list.restore(e);
    if ((this.h.rank[j] as number) >= 0) this.nextRank--;
    this.remaining++;
    const awaited = this.awaitedState(j);
    if (awaited !== NIL) this.waiting[awaited] = (this.waiting[awaited] as number) + 1;
    return { step, e, tried: 0 };
  }

  /** Undoes steps until a configuration with untried candidates is reached; false if none. */
  private backtrack(): boolean {
    for (;;) {
      const undone = this.unlift();
      if (undone === undefined) return false;
      if (undone.step === OPTIONAL) {
        this.entry = undone.e; // back to the return where the delete was a last resort: try the next one
        this.optionalTried = undone.tried;
        return true;
      }
      if (undone.step === REGULAR) {
        this.entry = this.list.next[undone.e] as number;
        this.optionalTried = 0;
        return true;
      }
    }
  }
}
