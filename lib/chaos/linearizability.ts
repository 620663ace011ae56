/**
 * Linearizability of one key's history against a register model.
 *
 * Model: the register starts absent (null); a write sets it to its value, a delete
 * sets it back to null, a read must return the current value (null = not found). It is
 * a compare-and-set register: a conditional write or delete (ops with `ifMatch` or
 * `ifNoneMatch`) takes effect only where its condition holds, and
 * - a successful one needs the register to hold, just before it, the value whose
 *   write carries the `ifMatch` version (or nothing, for `ifNoneMatch`), and sets its
 *   own value (or nothing, for a delete);
 * - a 412 (`status: 'precondition'`) is an observation: at some instant inside its
 *   interval the register held the value with the version the 412 reported (nothing,
 *   when it reported none), which is not what the op expected. It is checked as a
 *   read of that value. A 412 that names the very version its `ifMatch` expected, or
 *   answers `ifNoneMatch` without naming a live version, contradicts itself and is
 *   reported at once;
 * - a serial read is a read.
 * Versions name values through the history: an acked write's version, or the version
 * a read reported along with the value. A 412 whose version nothing ties to a value
 * can only name an unknown write nobody read; it is left out (counted as
 * `unresolved412s`), as is an `ifMatch` condition no op ties to a value (its op then
 * needs only some live value).
 *
 * Search: Wing & Gong's algorithm with Lowe's memoization, in register-search.ts
 * (lift, unlift, backtrack, a memo of explored (linearized set, state) pairs, and a
 * step limit past which a key's verdict is 'unknown' instead of a hung run). This file
 * prepares its input: which ops count, the reduction of unknown ops, the encoding,
 * and a precheck that names plainly stale reads without searching.
 *
 * Ops that do not count: failed ops (never applied) and reads that did not complete
 * ok (they observed nothing). Unknown writes/deletes have no return: they may be
 * linearized anywhere after their invocation, or never, which is exactly what "may or
 * may not have been applied, now or later" allows.
 *
 * Optional ops are what makes such searches explode (every subset of them is a
 * distinct memo entry), so unknown ops are first reduced, exactly:
 * - an unknown write whose value nothing observed can be dropped: in any valid
 *   linearization nothing observes it, so removing it leaves the order valid. What
 *   observes a value: a read (or 412) that returned it, and a required conditional op
 *   whose `ifMatch` names it;
 * - an unknown write whose value was observed must have been applied before the
 *   earliest observer returned, so it becomes a required op that returns then;
 * - an unknown delete is dropped if nothing that could follow it observed the key
 *   absent (a not-found read, a required `ifNoneMatch` write); the rest with the same
 *   condition are interchangeable once invoked, so one configuration tries at most one
 *   of them per condition that holds, and never while the register is already absent.
 *
 * Before any search, a read is plainly stale if another write began after its value's
 * write completed and completed before the read began (values are unique per key, so
 * nothing else could have put the value back); such reads are reported by name, with
 * no search at all. With the search's own prunings this keeps realistic histories
 * near-linear.
 * Measured on simulated correct histories: 48,000 ops on one key from 8 clients in
 * about 140,000 steps; 6,400 ops from 64 clients in about 330,000.
 */
import { assert } from '../errors.ts';
import { compareVersions, type Version } from '../core/hlc.ts';
import { describeOp } from './history.ts';
import type { Op, OpKind } from './history.ts';
import { ABSENT, ANY, DELETE, LIVE, READ, RegisterSearch, WRITE } from './register-search.ts';
import type { EncodedHistory, SearchOutcome } from './register-search.ts';

export type LinearizabilityVerdict = 'linearizable' | 'not-linearizable' | 'unknown';

export interface KeyVerdict {
  key: string;
  verdict: LinearizabilityVerdict;
  /** Search steps spent on this key. */
  steps: number;
  /** Ops the model had to account for (fail ops and non-ok reads excluded). */
  ops: number;
  /** 412 answers left out: no op ties the version they reported to a value. */
  unresolved412s?: number;
  /** Not linearizable: why, naming the op that could not be placed. */
  message?: string;
  /** Not linearizable: the op the deepest search branch could not place. */
  blockingOpId?: number;
  /** Not linearizable: reads that returned the value the blocking write had to overwrite. */
  staleReadIds?: number[];
}

export interface LinearizabilityOptions {
  /** Search steps allowed per key before its verdict becomes 'unknown'. */
  maxStepsPerKey?: number;
  /**
   * Look for plainly stale reads before searching (default true): faster, and it names
   * the stale read exactly. Off only to exercise the search on its own.
   */
  staleReadPrecheck?: boolean;
}

/**
 * Enough for thousands of mostly sequential ops per key, and a fraction of a second
 * to give up on a pathological one (each step is a few array updates and one Map probe).
 */
export const DEFAULT_MAX_STEPS_PER_KEY = 1_000_000;

/** What a write or delete needs the register to hold just before it. */
type Precondition =
  | { readonly kind: 'none' }
  | { readonly kind: 'live' }
  | { readonly kind: 'absent' }
  | { readonly kind: 'value'; readonly value: string };

const NO_PRECONDITION: Precondition = { kind: 'none' };

/** An op as the register model sees it (a 412 is a read here); `op` is the record, for messages. */
interface ModelOp {
  readonly op: Op;
  readonly kind: OpKind;
  readonly status: 'ok' | 'unknown';
  readonly invokeMs: number;
  readonly completeMs?: number;
  /** Writes: the value written. */
  readonly value?: string;
  /** Reads: the value read, null for not found. */
  readonly readValue?: string | null;
  readonly version?: Version;
  readonly pre: Precondition;
}

/** Checks one key's ops (every op must be for `key`). */
export function checkRegisterHistory(key: string, ops: readonly Op[], opts: LinearizabilityOptions = {}): KeyVerdict {
  const maxSteps = opts.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY;
  assert(maxSteps > 0, 'maxStepsPerKey must be positive');
  for (const op of ops) assert(op.key === key, `op #${op.id} is for key ${JSON.stringify(op.key)}, not ${JSON.stringify(key)}`);
  const model = toModel(ops);
  if ('contradiction' in model) {
    const { op, why } = model.contradiction;
    return { key, verdict: 'not-linearizable', steps: 0, ops: ops.length, blockingOpId: op.id, message: `${describeOp(op)} ${why}` };
  }
  const rel = model.ops;
  const unresolved = model.unresolved412s > 0 ? { unresolved412s: model.unresolved412s } : {};
  const mustApplyBy = reduceUnknownOps(rel);
  // Numbering ops by invocation keeps the linearized set a dense prefix plus a short
  // window of set bits, which is all the search's memo has to store.
  rel.sort((a, b) => a.invokeMs - b.invokeMs);
  const n = rel.length;
  const encoded = encode(rel, mustApplyBy);
  if ('phantomRead' in encoded) {
    // No write in this history (that may have applied) could have produced it: no need to search.
    return {
      key, verdict: 'not-linearizable', steps: 0, ops: n, ...unresolved, blockingOpId: encoded.phantomRead.op.id,
      message: `${describeOp(encoded.phantomRead.op)} returned a value no write to this key (other than a failed one) produced`,
    };
  }
  if (!encoded.required.includes(1)) return { key, verdict: 'linearizable', steps: 0, ops: n, ...unresolved };
  const staleReads = opts.staleReadPrecheck === false ? [] : findStaleReads(rel, encoded);
  if (staleReads.length > 0) return { ...staleReadVerdict(key, n, staleReads), ...unresolved };
  const outcome = new RegisterSearch(encoded, maxSteps).run();
  if (outcome.verdict !== 'not-linearizable') return { key, verdict: outcome.verdict, steps: outcome.steps, ops: n, ...unresolved };
  return { ...explainNoLinearization(key, rel, encoded, outcome), ...unresolved };
}

type Model = { ops: ModelOp[]; unresolved412s: number } | { contradiction: { op: Op; why: string } };

/**
 * The ops that count, as the model sees them: failed ops and reads that observed
 * nothing left out, a 412 turned into a read of the value its version names, and each
 * condition turned into a precondition on a value.
 */
function toModel(ops: readonly Op[]): Model {
  // Versions name values: an acked write's own, or the one a read reported with the value.
  const valueOf = new Map<Version, string>();
  for (const op of ops) {
    if (op.version === undefined) continue;
    if (op.kind === 'write' && op.status === 'ok' && op.value !== undefined && !valueOf.has(op.version)) valueOf.set(op.version, op.value);
    if (op.kind === 'read' && op.status === 'ok' && typeof op.readValue === 'string' && !valueOf.has(op.version)) valueOf.set(op.version, op.readValue);
  }
  const out: ModelOp[] = [];
  let unresolved412s = 0;
  for (const op of ops) {
    const times = { op, invokeMs: op.invokeMs, ...(op.completeMs !== undefined ? { completeMs: op.completeMs } : {}) };
    if (op.status === 'fail') continue;
    if (op.kind === 'read') {
      if (op.status !== 'ok' || op.readValue === undefined) continue;
      out.push({ ...times, kind: 'read', status: 'ok', readValue: op.readValue, ...(op.version !== undefined ? { version: op.version } : {}), pre: NO_PRECONDITION });
      continue;
    }
    if (op.status === 'precondition') {
      if (op.ifNoneMatch === true && op.version === undefined) {
        return { contradiction: { op, why: 'was answered 412 to If-None-Match (the key holds a live value) without naming that value\'s version' } };
      }
      if (op.ifMatch !== undefined && op.version === op.ifMatch) {
        return { contradiction: { op, why: 'was answered 412, yet the current version it names is the one its If-Match expected' } };
      }
      const current = op.version === undefined ? null : valueOf.get(op.version);
      if (current === undefined) {
        unresolved412s++;
        continue;
      }
      out.push({ ...times, kind: 'read', status: 'ok', readValue: current, ...(op.version !== undefined ? { version: op.version } : {}), pre: NO_PRECONDITION });
      continue;
    }
    const pre: Precondition = op.ifNoneMatch === true ? { kind: 'absent' }
      : op.ifMatch === undefined ? NO_PRECONDITION
        : valueOf.has(op.ifMatch) ? { kind: 'value', value: valueOf.get(op.ifMatch) as string } : { kind: 'live' };
    out.push({
      ...times, kind: op.kind, status: op.status, pre,
      ...(op.value !== undefined ? { value: op.value } : {}), ...(op.version !== undefined ? { version: op.version } : {}),
    });
  }
  return { ops: out, unresolved412s };
}

interface StaleRead { read: ModelOp; writer: ModelOp; newer: ModelOp }

function staleReadVerdict(key: string, n: number, staleReads: readonly StaleRead[]): KeyVerdict {
  const [first] = staleReads;
  return {
    key, verdict: 'not-linearizable', steps: 0, ops: n, blockingOpId: first?.read.op.id,
    staleReadIds: staleReads.map((x) => x.read.op.id),
    message: staleReads.slice(0, 3).map((x) => `${describeOp(x.read.op)} is stale: ${describeOp(x.newer.op)} began after ` +
      `${describeOp(x.writer.op)} completed and completed before the read began`).join('; ') +
      (staleReads.length > 3 ? `; and ${staleReads.length - 3} more stale read(s)` : ''),
  };
}

/** The verdict for a failed search, naming the op the deepest branch could not place. */
function explainNoLinearization(
  key: string, rel: readonly ModelOp[], encoded: EncodedHistory, outcome: Extract<SearchOutcome, { verdict: 'not-linearizable' }>,
): KeyVerdict {
  const n = rel.length;
  const blocker = (rel[outcome.blocking] as ModelOp).op;
  // A write that could not be placed usually means reads saw the value it overwrites
  // after it completed: name them, they are what a human looks for (the stale reads).
  const stale: Op[] = [];
  if (encoded.kind[outcome.blocking] !== READ && outcome.blockingState !== ABSENT) {
    for (let j = 0; j < n && stale.length < 3; j++) {
      const r = (rel[j] as ModelOp).op;
      if (encoded.kind[j] === READ && encoded.target[j] === outcome.blockingState &&
        r.invokeMs > (encoded.returnMs[outcome.blocking] as number)) stale.push(r);
    }
  }
  // A compare-and-set that could not be placed: others that succeeded on the same
  // expected value are what it competes with (only one can follow that value).
  const rivals: Op[] = [];
  const pre = encoded.pre[outcome.blocking] as number;
  if (encoded.kind[outcome.blocking] !== READ && pre > ABSENT) {
    for (let j = 0; j < n && rivals.length < 3; j++) {
      if (j !== outcome.blocking && encoded.kind[j] !== READ && encoded.required[j] && encoded.pre[j] === pre) rivals.push((rel[j] as ModelOp).op);
    }
  }
  const why = (stale.length === 0 ? '' : `, as it would overwrite the value read later by ${stale.map(describeOp).join('; ')}`) +
    (rivals.length === 0 ? '' : `; it expects the same value as ${rivals.map(describeOp).join('; ')}`);
  return {
    key, verdict: 'not-linearizable', steps: outcome.steps, ops: n, blockingOpId: blocker.id, staleReadIds: stale.map((r) => r.id),
    message: `no linearization exists: the deepest search placed ${outcome.placed} of ${n} ops, then could not place ` +
      describeOp(blocker) + why,
  };
}

/**
 * The search's view of `rel` (sorted by invocation, reduced): register states interned
 * to small integers so they compare and hash cheaply. A read of a value no remaining
 * write produced ends the check at once (`phantomRead`).
 */
function encode(rel: readonly ModelOp[], mustApplyBy: ReadonlyMap<ModelOp, number>): EncodedHistory | { phantomRead: ModelOp } {
  const n = rel.length;
  const stateIds = new Map<string, number>();
  for (const op of rel) {
    if (op.kind === 'write' && op.value !== undefined && !stateIds.has(op.value)) stateIds.set(op.value, stateIds.size + 1);
  }
  const h = {
    n, values: stateIds.size,
    invokeMs: new Float64Array(n), kind: new Uint8Array(n), target: new Int32Array(n), pre: new Int32Array(n).fill(ANY),
    required: new Uint8Array(n), returnMs: new Float64Array(n), rank: versionRanks(rel),
  };
  for (let i = 0; i < n; i++) {
    const op = rel[i] as ModelOp;
    const mustReturnBy = mustApplyBy.get(op);
    // Ok ops must be linearized; unknown ones may not be, unless something observed them.
    h.required[i] = op.status === 'ok' || mustReturnBy !== undefined ? 1 : 0;
    h.returnMs[i] = mustReturnBy ?? op.completeMs ?? Number.POSITIVE_INFINITY;
    h.invokeMs[i] = op.invokeMs;
    if (op.kind === 'read') {
      h.kind[i] = READ;
      const want = op.readValue === null || op.readValue === undefined ? ABSENT : stateIds.get(op.readValue);
      if (want === undefined) return { phantomRead: op };
      h.target[i] = want;
      continue;
    }
    h.kind[i] = op.kind === 'write' ? WRITE : DELETE;
    h.target[i] = op.kind === 'write' ? stateIds.get(op.value ?? '') ?? ABSENT : ABSENT;
    // A condition on a value no remaining write produced (a read of a failed write named
    // its version: that read is reported as phantom) asks for some live value only.
    h.pre[i] = op.pre.kind === 'none' ? ANY : op.pre.kind === 'live' ? LIVE : op.pre.kind === 'absent' ? ABSENT
      : stateIds.get(op.pre.value) ?? LIVE;
  }
  return h;
}

/**
 * Each write's and delete's position in version order (-1 where unknown): acked ops
 * carry the version they were stamped with, an unknown write a read observed carries
 * the version that read reported. Ties (two ops stamped alike, a lost write the
 * lost-write checker reports) keep invocation order.
 */
function versionRanks(rel: readonly ModelOp[]): Int32Array {
  const observed = new Map<string, Version>();
  for (const op of rel) {
    if (op.kind === 'read' && typeof op.readValue === 'string' && op.version !== undefined && !observed.has(op.readValue)) {
      observed.set(op.readValue, op.version);
    }
  }
  const versioned: Array<{ i: number; version: Version }> = [];
  rel.forEach((op, i) => {
    if (op.kind === 'read') return;
    const version = op.status === 'ok' ? op.version : op.kind === 'write' ? observed.get(op.value ?? '') : undefined;
    if (version !== undefined) versioned.push({ i, version });
  });
  versioned.sort((a, b) => compareVersions(a.version, b.version) || a.i - b.i);
  const rank = new Int32Array(rel.length).fill(-1);
  versioned.forEach(({ i }, r) => { rank[i] = r; });
  return rank;
}

/**
 * Applies the reductions described at the top of the file to `rel` in place, and
 * returns, for each unknown write that something observed, the time by which it must
 * have been applied.
 */
function reduceUnknownOps(rel: ModelOp[]): Map<ModelOp, number> {
  const unknownWriterOf = new Map<string, ModelOp>();
  for (const op of rel) if (op.status === 'unknown' && op.kind === 'write' && op.value !== undefined) unknownWriterOf.set(op.value, op);
  const mustApplyBy = new Map<ModelOp, number>();
  const done = (op: ModelOp): number => (op.status === 'ok' ? op.completeMs ?? Number.POSITIVE_INFINITY : mustApplyBy.get(op) ?? Number.POSITIVE_INFINITY);
  // Returns whether the deadline of the unknown write of `value` moved earlier.
  const observe = (value: string | null | undefined, byMs: number): boolean => {
    const w = typeof value === 'string' ? unknownWriterOf.get(value) : undefined;
    if (w === undefined || byMs >= (mustApplyBy.get(w) ?? Number.POSITIVE_INFINITY)) return false;
    mustApplyBy.set(w, byMs);
    return true;
  };
  const expected = (op: ModelOp): string | undefined => (op.pre.kind === 'value' ? op.pre.value : undefined);
  for (const op of rel) {
    if (op.kind === 'read') observe(op.readValue, done(op));
    else if (op.status === 'ok') observe(expected(op), done(op));
  }
  // An observed unknown write is required, so its own condition observes a value too:
  // repeat until no deadline moves (each pass only lowers deadlines, so this ends).
  for (let moved = true; moved;) {
    moved = false;
    for (const w of mustApplyBy.keys()) if (observe(expected(w), done(w))) moved = true;
  }
  // The key seen absent: not-found reads, and required writes that needed it absent.
  let lastAbsentMs = Number.NEGATIVE_INFINITY;
  for (const op of rel) {
    const sawAbsent = op.kind === 'read' ? op.readValue === null : op.pre.kind === 'absent' && (op.status === 'ok' || mustApplyBy.has(op));
    if (sawAbsent) lastAbsentMs = Math.max(lastAbsentMs, done(op));
  }
  let kept = 0;
  for (const op of rel) {
    let keep = true;
    if (op.status === 'unknown' && op.kind === 'write') keep = mustApplyBy.has(op);
    // Touching intervals are concurrent, hence >=.
    else if (op.status === 'unknown' && op.kind === 'delete') keep = lastAbsentMs >= op.invokeMs;
    if (keep) rel[kept++] = op;
  }
  rel.length = kept;
  return mustApplyBy;
}

/**
 * Reads that are stale beyond doubt, found without searching: the read returned the
 * value of write W, yet another write or delete began after W completed and completed
 * before the read began, so in every valid order it sits between W and the read.
 * (Values are unique, so nothing else could have put W's value back.) This is the
 * common violation, and naming it exactly beats the search's deepest-branch guess.
 */
function findStaleReads(rel: readonly ModelOp[], h: EncodedHistory): StaleRead[] {
  const { kind: kindCode, required, returnMs } = h;
  const writerOf = new Map<string, number>();
  const mutations: number[] = [];
  for (let i = 0; i < rel.length; i++) {
    if (kindCode[i] === READ || !required[i]) continue;
    mutations.push(i);
    const v = (rel[i] as ModelOp).value;
    if (kindCode[i] === WRITE && v !== undefined) writerOf.set(v, i);
  }
  mutations.sort((a, b) => (rel[a] as ModelOp).invokeMs - (rel[b] as ModelOp).invokeMs);
  // soonest[k]: the mutation completing first among mutations[k..] (by invocation).
  const soonest = new Int32Array(mutations.length + 1).fill(-1);
  for (let k = mutations.length - 1; k >= 0; k--) {
    const m = mutations[k] as number;
    const after = soonest[k + 1] as number;
    soonest[k] = after === -1 || (returnMs[m] as number) < (returnMs[after] as number) ? m : after;
  }
  const out: StaleRead[] = [];
  for (let i = 0; i < rel.length; i++) {
    const read = rel[i] as ModelOp;
    if (kindCode[i] !== READ || typeof read.readValue !== 'string') continue;
    const w = writerOf.get(read.readValue);
    if (w === undefined) continue;
    const wDone = returnMs[w] as number;
    // First mutation invoked strictly after the writer completed (touching = concurrent).
    let lo = 0;
    let hi = mutations.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((rel[mutations[mid] as number] as ModelOp).invokeMs > wDone) hi = mid;
      else lo = mid + 1;
    }
    const m = soonest[lo] as number;
    if (m !== -1 && (returnMs[m] as number) < read.invokeMs) out.push({ read, writer: rel[w] as ModelOp, newer: rel[m] as ModelOp });
  }
  return out;
}
