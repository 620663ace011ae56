/**
 * Checkers for a recorded chaos history (see history.ts for the model) and the final
 * state read after healing. Each defends one guarantee of DESIGN §2 and returns the
 * same shape: ok, the violations it found, and counts for the report.
 *
 * How final readings are traced back to ops: values are unique per key, so a value
 * names the write that produced it; the version a node reports (or, failing that, the
 * version the write was acknowledged with) places it in version order. Where neither
 * is known (an unknown write whose version nobody reported), a check cannot decide
 * and counts the case as `unverifiable` instead of guessing.
 */
import { compareVersions, isVersion } from '../core/hlc.ts';
import type { Version } from '../core/hlc.ts';
import { History, byKey, describeOp, isConditional, mayHaveApplied, normalizeFinalState } from './history.ts';
import type { FinalState, NodeReading, NormalizedFinalState, Op } from './history.ts';
import { DEFAULT_MAX_STEPS_PER_KEY, checkRegisterHistory } from './linearizability.ts';
import type { KeyVerdict } from './linearizability.ts';

/** The checkers of a history and its final state (checkAll runs them). */
export type HistoryCheckerName =
  | 'wellFormed' | 'noLostWrites' | 'linearizable' | 'converged' | 'noResurrection' | 'honestOutcomes';

export const CHECKER_NAMES: readonly HistoryCheckerName[] =
  ['wellFormed', 'noLostWrites', 'linearizable', 'converged', 'noResurrection', 'honestOutcomes'];

/** ... and `noCrashes`, which a run adds from what its node processes did (§2.7). */
export type CheckerName = HistoryCheckerName | 'noCrashes';

export interface Violation {
  /** The key it is about; '' for one about a node rather than a key (noCrashes). */
  key: string;
  message: string;
  /** The ops the violation is about, first the one that was wronged. */
  opIds?: number[];
  /** Nodes whose final reading is at fault. */
  nodes?: string[];
}

export interface CheckResult {
  name: CheckerName;
  ok: boolean;
  violations: Violation[];
  stats: Record<string, number>;
}

export interface LinearizableResult extends CheckResult {
  name: 'linearizable';
  /** One verdict per key that has ops. */
  verdicts: KeyVerdict[];
}

export interface LinearizableOptions {
  /** Search steps per key before its verdict becomes 'unknown' (default 1e6). */
  maxStepsPerKey?: number;
  /** When given, each key's final state is checked as a last read, after every op. */
  finalState?: FinalState;
  /** Count a key the search gave up on as a failure (default false: reported, not failed). */
  failOnUnknown?: boolean;
}

// ---------------------------------------------------------------------------------
// Shared per-key index

interface KeyIndex {
  key: string;
  ops: Op[];
  /** The write that produced each value (values are unique per key). */
  writeByValue: Map<string, Op>;
  /** Acknowledged writes and deletes that carry a version. */
  acked: Op[];
  unknownDeletes: Op[];
  okReads: Op[];
  maxAckedDelete: Version | undefined;
}

function indexKey(key: string, ops: Op[]): KeyIndex {
  const idx: KeyIndex = { key, ops, writeByValue: new Map(), acked: [], unknownDeletes: [], okReads: [], maxAckedDelete: undefined };
  for (const op of ops) {
    if (op.kind === 'write' && op.value !== undefined && !idx.writeByValue.has(op.value)) idx.writeByValue.set(op.value, op);
    if (op.kind === 'read') {
      if (op.status === 'ok' && op.readValue !== undefined) idx.okReads.push(op);
    } else if (op.status === 'ok' && op.version !== undefined) {
      idx.acked.push(op);
      if (op.kind === 'delete') idx.maxAckedDelete = maxVersion(idx.maxAckedDelete, op.version);
    } else if (op.status === 'unknown' && op.kind === 'delete') {
      idx.unknownDeletes.push(op);
    }
  }
  return idx;
}

function indexAll(ops: readonly Op[]): Map<string, KeyIndex> {
  const out = new Map<string, KeyIndex>();
  for (const [key, list] of byKey(ops)) out.set(key, indexKey(key, list));
  return out;
}

/** A value as read (in the final state or by a client), traced back to its write. */
interface Resolved {
  found: boolean;
  value: string | null;
  /** Reported by the store, else the version the write was acknowledged with. */
  version: Version | undefined;
  writer: Op | undefined;
  /** Produced by a write that may have been applied (ok or unknown, not failed or 412), or not found. */
  legit: boolean;
}

function resolve(idx: KeyIndex | undefined, value: string | null, version: Version | null | undefined): Resolved {
  if (value === null) return { found: false, value, version: version ?? undefined, writer: undefined, legit: true };
  const writer = idx?.writeByValue.get(value);
  const legit = writer !== undefined && mayHaveApplied(writer);
  const ackedVersion = writer?.status === 'ok' ? writer.version : undefined;
  return { found: true, value, version: version ?? ackedVersion, writer, legit };
}

type Dominance = 'yes' | 'no' | 'unverifiable';

/** Whether a (legitimate) resolved value is at or above version v (above, if strict). */
function dominates(idx: KeyIndex, r: Resolved, v: Version, strict: boolean): Dominance {
  const above = (x: Version): boolean => {
    const c = compareVersions(x, v);
    return strict ? c > 0 : c >= 0;
  };
  if (r.version !== undefined) return above(r.version) ? 'yes' : 'no';
  // An unknown write nobody reported a version for: it may be higher or lower.
  if (r.found) return 'unverifiable';
  // Not found and no tombstone version reported: a delete must account for it.
  if (idx.maxAckedDelete !== undefined && above(idx.maxAckedDelete)) return 'yes';
  return idx.unknownDeletes.length > 0 ? 'unverifiable' : 'no';
}

function describeReading(r: Resolved): string {
  const version = r.version !== undefined ? ` @${r.version}` : '';
  if (!r.found) return `not found${version}`;
  const by = r.writer !== undefined ? ` (written by ${describeOp(r.writer)})` : ' (written by no op in the history)';
  return `${JSON.stringify(r.value)}${version}${by}`;
}

function goodReadings(nodes: ReadonlyMap<string, NodeReading> | undefined): Array<[string, NodeReading]> {
  return nodes === undefined ? [] : [...nodes].filter(([, r]) => r.error === undefined);
}

/**
 * The reading with the highest version across nodes, preferring values some write
 * could have produced: the most the cluster could offer. Losing a write means no node
 * has it or anything newer; disagreement and phantom values on some nodes are the
 * converged checker's business.
 */
function bestReading(idx: KeyIndex | undefined, readings: Array<[string, NodeReading]>): NodeReading | undefined {
  const higher = (r: NodeReading, than: NodeReading | undefined): boolean =>
    than === undefined || (r.version !== null && (than.version === null || compareVersions(r.version, than.version) > 0));
  let best: NodeReading | undefined;
  let bestLegit: NodeReading | undefined;
  for (const [, r] of readings) {
    if (higher(r, best)) best = r;
    if (resolve(idx, r.value, r.version).legit && higher(r, bestLegit)) bestLegit = r;
  }
  return bestLegit ?? best;
}

function maxVersion(a: Version | undefined, b: Version | undefined): Version | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return compareVersions(a, b) >= 0 ? a : b;
}

function result(name: CheckerName, violations: Violation[], stats: Record<string, number>): CheckResult {
  return { name, ok: violations.length === 0, violations, stats };
}

// ---------------------------------------------------------------------------------
// wellFormed: the history itself obeys the model the other checkers assume.

export function wellFormed(ops: readonly Op[]): CheckResult {
  const violations: Violation[] = [];
  const ids = new Set<number>();
  const values = new Map<string, Map<string, number>>();
  const bad = (op: Op, why: string): void => {
    violations.push({ key: op.key, message: `malformed record ${describeOp(op)}: ${why}`, opIds: [op.id] });
  };
  for (const op of ops) {
    if (ids.has(op.id)) bad(op, 'duplicate id');
    ids.add(op.id);
    if (!Number.isFinite(op.invokeMs)) bad(op, 'invokeMs is not a finite number');
    if (op.status !== 'unknown') {
      if (op.completeMs === undefined) bad(op, `an ${op.status} op needs completeMs`);
      else if (!(op.completeMs >= op.invokeMs)) bad(op, 'completes before it was invoked');
    }
    if (op.ifMatch !== undefined && !isVersion(op.ifMatch)) bad(op, 'If-Match needs a valid version');
    if (op.ifMatch !== undefined && op.ifNoneMatch !== undefined) bad(op, 'If-Match and If-None-Match exclude each other');
    if (op.kind === 'read' && isConditional(op)) bad(op, 'a read takes no condition');
    if (op.ifNoneMatch !== undefined && (op.ifNoneMatch !== true || op.kind !== 'write')) bad(op, 'If-None-Match is for writes');
    if (op.serial !== undefined && (op.serial !== true || op.kind !== 'read')) bad(op, 'only a read is serial');
    if (op.status === 'precondition' && !isConditional(op)) bad(op, 'only a conditional write or delete is answered 412');
    if (op.kind === 'write') {
      if (typeof op.value !== 'string') {
        bad(op, 'a write needs a value');
      } else {
        let perKey = values.get(op.key);
        if (perKey === undefined) values.set(op.key, (perKey = new Map()));
        const other = perKey.get(op.value);
        if (other !== undefined) bad(op, `value also written by #${other}; values must be unique per key`);
        else perKey.set(op.value, op.id);
      }
    } else if (op.value !== undefined) {
      bad(op, `a ${op.kind} takes no value`);
    }
    if (op.status === 'ok' && op.kind !== 'read' && !isVersion(op.version)) bad(op, 'an acked write/delete needs a valid version');
    if (op.kind === 'read' && op.status === 'ok' && op.readValue === undefined) bad(op, 'an ok read needs readValue (null = not found)');
    if (op.version !== undefined && !isVersion(op.version)) bad(op, 'invalid version');
  }
  return result('wellFormed', violations, { ops: ops.length });
}

// ---------------------------------------------------------------------------------
// noLostWrites (§2.1, §2.8): every acked write/delete is the final state, or was
// superseded by a write that had not completed before it was invoked.

/**
 * The op whose record is the final state: the write of its value, or for not found,
 * the acked delete stamped with the tombstone's version (undefined when unknown).
 */
function finalWriter(idx: KeyIndex, f: Resolved): Op | undefined {
  if (f.found) return f.writer;
  return f.version === undefined ? undefined : idx.acked.find((op) => op.kind === 'delete' && op.version === f.version);
}

/** Whether `earlier` had completed before `op` was invoked (unknown ops never complete). */
function completedBefore(earlier: Op, op: Op): boolean {
  return earlier.status === 'ok' && earlier.completeMs !== undefined && earlier.completeMs < op.invokeMs;
}

/** What became of one acked write or delete, judged by the final state `f` (written by `writer`). */
type Fate = 'final' | 'superseded' | 'unverifiable' | 'lost' | 'lostToEarlier';

function fateOf(idx: KeyIndex, f: Resolved, writer: Op | undefined, op: Op): Fate {
  if (op.kind === 'write' ? f.value === op.value : !f.found) return 'final';
  // Superseded only by a write that had not completed before this one was invoked:
  // a higher version from an earlier write means the later write lost to a clock
  // (the skewed-coordinator loss of DESIGN §2.8).
  if (writer !== undefined && completedBefore(writer, op)) return 'lostToEarlier';
  const d = f.legit ? dominates(idx, f, op.version as Version, true) : 'no';
  return d === 'yes' ? 'superseded' : d === 'unverifiable' ? 'unverifiable' : 'lost';
}

export function noLostWrites(ops: readonly Op[], finalState: FinalState): CheckResult {
  const final = normalizeFinalState(finalState);
  const violations: Violation[] = [];
  const stats = { acked: 0, final: 0, superseded: 0, unverifiable: 0, lost: 0, lostToEarlier: 0 };
  for (const idx of indexAll(ops).values()) {
    if (idx.acked.length === 0) continue;
    stats.acked += idx.acked.length;
    const best = bestReading(idx, goodReadings(final.get(idx.key)));
    if (best === undefined) {
      stats.lost += idx.acked.length;
      violations.push({
        key: idx.key, opIds: idx.acked.map((op) => op.id),
        message: `${idx.acked.length} acked op(s) but no node reported the key in the final state`,
      });
      continue;
    }
    const f = resolve(idx, best.value, best.version);
    const writer = finalWriter(idx, f);
    const lost: Op[] = [];
    for (const op of idx.acked) {
      const fate = fateOf(idx, f, writer, op);
      stats[fate]++;
      if (fate === 'lostToEarlier') stats.lost++; // `lost` counts both kinds
      if (fate === 'lost' || fate === 'lostToEarlier') lost.push(op);
    }
    if (lost.length > 0) violations.push(lostViolation(idx.key, f, writer, lost));
  }
  return result('noLostWrites', violations, stats);
}

/**
 * One violation per key, newest lost op first: a broken final state can lose
 * thousands of ops at once, and the newest is the one that had to survive.
 */
function lostViolation(key: string, f: Resolved, writer: Op | undefined, lost: Op[]): Violation {
  lost.sort((a, b) => compareVersions(b.version as Version, a.version as Version));
  const newest = lost[0] as Op;
  const why = !f.legit ? 'which no acked or unknown write produced'
    : writer !== undefined && completedBefore(writer, newest) ? 'which completed before it was invoked and cannot supersede it'
      : 'which does not supersede it';
  const more = lost.length > 1 ? ` (and ${lost.length - 1} other acked op(s))` : '';
  return {
    key, opIds: lost.map((op) => op.id),
    message: `acked ${newest.kind} ${describeOp(newest)}${more} was lost: the final state is ${describeReading(f)}, ${why}`,
  };
}

// ---------------------------------------------------------------------------------
// linearizable (§2.3, §2.8): per-key register linearizability (Wing–Gong–Lowe search),
// on every key, one writer or many, with writes ordered by version.

/**
 * The final state as one more read, after every op: the reading with the highest
 * version (what an r=all read returns); none when no node could answer.
 */
function finalStateRead(idx: KeyIndex, nodes: ReadonlyMap<string, NodeReading> | undefined, afterMs: number): Op | undefined {
  const best = bestReading(idx, goodReadings(nodes));
  if (best === undefined) return undefined;
  return {
    id: -1, process: -1, kind: 'read', key: idx.key, invokeMs: afterMs + 1, completeMs: afterMs + 2, status: 'ok',
    readValue: best.value, ...(best.version !== null ? { version: best.version } : {}), finalState: true,
  };
}

/**
 * Keys written (or deleted) by one client at most, by several, and compare-and-set
 * keys: touched by conditional ops or serial reads and never by a plain write or
 * delete: on those the store promises linearizability with any number of writers
 * (docs/paxos.md, "Mixing plain writes and CAS on one key"). A key mixing both is
 * counted by its writers.
 */
export type KeyClass = 'singleWriter' | 'multiWriter' | 'cas';

export function keyClass(ops: readonly Op[]): KeyClass {
  const mutations = ops.filter((op) => op.kind !== 'read');
  if (mutations.every(isConditional) && (mutations.length > 0 || ops.some((op) => op.serial === true))) return 'cas';
  const writers = new Set(mutations.map((op) => op.process));
  return writers.size <= 1 ? 'singleWriter' : 'multiWriter';
}

export function linearizable(ops: readonly Op[], opts: LinearizableOptions = {}): LinearizableResult {
  const maxStepsPerKey = opts.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY;
  const final = opts.finalState === undefined ? undefined : normalizeFinalState(opts.finalState);
  // Ops complete before the final state is read; unknown ones may still land after it.
  const lastMs = ops.reduce((m, op) => Math.max(m, op.completeMs ?? op.invokeMs), 0);
  const verdicts: KeyVerdict[] = [];
  const violations: Violation[] = [];
  const stats = {
    keys: 0, linearizable: 0, notLinearizable: 0, unknown: 0, steps: 0,
    singleWriterKeys: 0, singleWriterLinearizable: 0, multiWriterKeys: 0, multiWriterLinearizable: 0,
    casKeys: 0, casLinearizable: 0, unresolved412: 0,
  };
  for (const [key, list] of byKey(ops)) {
    const last = final === undefined ? undefined : finalStateRead(indexKey(key, list), final.get(key), lastMs);
    const v = checkRegisterHistory(key, last === undefined ? list : [...list, last], { maxStepsPerKey });
    const cls = keyClass(list);
    verdicts.push(v);
    stats.keys++;
    stats[`${cls}Keys`]++;
    stats.steps += v.steps;
    stats.unresolved412 += v.unresolved412s ?? 0;
    if (v.verdict === 'linearizable') {
      stats.linearizable++;
      stats[`${cls}Linearizable`]++;
    } else if (v.verdict === 'not-linearizable') {
      stats.notLinearizable++;
      const opIds = [...(v.staleReadIds ?? []), ...(v.blockingOpId !== undefined ? [v.blockingOpId] : [])];
      violations.push({ key, message: v.message ?? 'not linearizable', opIds });
    } else {
      stats.unknown++;
      if (opts.failOnUnknown) {
        violations.push({ key, message: `linearizability undecided after ${v.steps} search steps (${v.ops} ops)` });
      }
    }
  }
  return { name: 'linearizable', ok: violations.length === 0, violations, stats, verdicts };
}

// ---------------------------------------------------------------------------------
// converged (§2.4): all nodes agree, on the highest version anyone acked or saw.

export function converged(ops: readonly Op[], finalState: FinalState): CheckResult {
  const final: NormalizedFinalState = normalizeFinalState(finalState);
  const index = indexAll(ops);
  const violations: Violation[] = [];
  const stats = { keys: 0, converged: 0, divergent: 0, missing: 0, nodeErrors: 0, unverifiable: 0 };
  const keys = new Set<string>([...final.keys(), ...[...index.values()].filter((i) => i.acked.length > 0).map((i) => i.key)]);
  for (const key of keys) {
    stats.keys++;
    const idx = index.get(key) ?? indexKey(key, []);
    const nodes = final.get(key);
    if (nodes === undefined || nodes.size === 0) {
      stats.missing++;
      violations.push({ key, message: 'acked ops on this key but it is missing from the final state', opIds: idx.acked.map((o) => o.id) });
      continue;
    }
    const errors = [...nodes].filter(([, r]) => r.error !== undefined);
    if (errors.length > 0) {
      stats.nodeErrors += errors.length;
      violations.push({
        key, nodes: errors.map(([n]) => n),
        message: `node(s) could not read the key after healing: ${errors.map(([n, r]) => `${n}: ${r.error}`).join('; ')}`,
      });
    }
    const readings = goodReadings(nodes);
    if (readings.length === 0) continue;
    const distinct = new Map<string, string[]>();
    for (const [node, r] of readings) {
      const sig = `${r.value === null ? 'not found' : JSON.stringify(r.value)} @${r.version ?? '?'}`;
      const list = distinct.get(sig);
      if (list === undefined) distinct.set(sig, [node]);
      else list.push(node);
    }
    if (distinct.size > 1) {
      stats.divergent++;
      violations.push({
        key, nodes: readings.map(([n]) => n),
        message: `replicas diverge: ${[...distinct].map(([sig, ns]) => `${ns.join(',')} = ${sig}`).join(' | ')}`,
      });
    } else if (errors.length === 0) {
      stats.converged++;
    }
    for (const [sig, ns] of distinct) {
      const [node] = ns;
      const reading = nodes.get(node as string) as NodeReading;
      const r = resolve(idx, reading.value, reading.version);
      if (r.legit) {
        if (r.writer?.status === 'ok' && reading.version !== null && r.writer.version !== undefined && reading.version !== r.writer.version) {
          violations.push({
            key, nodes: ns, opIds: [r.writer.id],
            message: `${ns.join(',')} hold ${sig}, but its write was acked with version ${r.writer.version}`,
          });
        }
        continue;
      }
      const why = r.writer === undefined ? 'no op in the history wrote it' : `its write ${describeOp(r.writer)} was reported failed`;
      violations.push({
        key, nodes: ns, opIds: r.writer !== undefined ? [r.writer.id] : [],
        message: `${ns.join(',')} hold ${sig}, but ${why}`,
      });
    }
    const best = bestReading(idx, readings) as NodeReading;
    const f = resolve(idx, best.value, best.version);
    if (!f.legit) continue;
    // The highest version known to exist: acked, or observed by a read of a legit value.
    let top: Version | undefined;
    let topOp: Op | undefined;
    for (const op of idx.acked) {
      if (maxVersion(top, op.version) !== top) [top, topOp] = [op.version, op];
    }
    for (const r of idx.okReads) {
      if (r.version === undefined || !resolve(idx, r.readValue ?? null, r.version).legit) continue;
      if (maxVersion(top, r.version) !== top) [top, topOp] = [r.version, r];
    }
    if (top === undefined || topOp === undefined) continue;
    const d = dominates(idx, f, top, false);
    if (d === 'unverifiable') stats.unverifiable++;
    if (d === 'no') {
      violations.push({
        key, opIds: [topOp.id],
        message: `converged to ${describeReading(f)}, below version ${top}, which ${describeOp(topOp)} ` +
          (topOp.kind === 'read' ? 'observed' : 'acknowledged'),
      });
    }
  }
  return result('converged', violations, stats);
}

// ---------------------------------------------------------------------------------
// noResurrection (§2.5): what an acked delete removed stays removed.

export function noResurrection(ops: readonly Op[], finalState: FinalState): CheckResult {
  const final = normalizeFinalState(finalState);
  const violations: Violation[] = [];
  const stats = { keysWithDeletes: 0, ackedDeletes: 0, readsChecked: 0, unverifiable: 0 };
  for (const idx of indexAll(ops).values()) {
    const deletes = idx.acked.filter((op) => op.kind === 'delete' && op.completeMs !== undefined);
    if (deletes.length === 0) continue;
    stats.keysWithDeletes++;
    stats.ackedDeletes += deletes.length;

    // Final state: LWW must keep anything older than the newest acked tombstone hidden.
    let newest = deletes[0] as Op;
    for (const d of deletes) if (compareVersions(d.version as Version, newest.version as Version) > 0) newest = d;
    const resurrectedOn = new Map<string, string[]>();
    for (const [node, reading] of goodReadings(final.get(idx.key))) {
      if (reading.value === null) continue;
      const f = resolve(idx, reading.value, reading.version);
      if (f.version === undefined) {
        stats.unverifiable++;
        continue;
      }
      if (compareVersions(f.version, newest.version as Version) < 0) {
        const sig = describeReading(f);
        const list = resurrectedOn.get(sig);
        if (list === undefined) resurrectedOn.set(sig, [node]);
        else list.push(node);
      }
    }
    for (const [sig, nodes] of resurrectedOn) {
      violations.push({
        key: idx.key, nodes, opIds: [newest.id],
        message: `resurrected in the final state on ${nodes.join(',')}: ${sig} is older than acked ${describeOp(newest)}`,
      });
    }

    // Reads: once a delete is acked (W replicas hold the tombstone), a quorum read
    // overlaps one of them, so it can return nothing older than the tombstone.
    // Deletes sorted by completion with a running max version answer "newest delete
    // acked before this read began" by binary search.
    const byCompletion = [...deletes].sort((a, b) => (a.completeMs as number) - (b.completeMs as number));
    const prefixMax: Op[] = [];
    for (const d of byCompletion) {
      const prevMax = prefixMax[prefixMax.length - 1];
      prefixMax.push(prevMax !== undefined && compareVersions(prevMax.version as Version, d.version as Version) >= 0 ? prevMax : d);
    }
    for (const r of idx.okReads) {
      if (r.readValue === null || r.readValue === undefined) continue;
      let lo = 0;
      let hi = byCompletion.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((byCompletion[mid]?.completeMs as number) < r.invokeMs) lo = mid + 1;
        else hi = mid;
      }
      if (lo === 0) continue;
      const d = prefixMax[lo - 1] as Op;
      stats.readsChecked++;
      const f = resolve(idx, r.readValue, r.version);
      if (f.version === undefined) {
        stats.unverifiable++;
        continue;
      }
      if (compareVersions(f.version, d.version as Version) < 0) {
        violations.push({
          key: idx.key, opIds: [r.id, d.id],
          message: `${describeOp(r)} returned ${describeReading(f)}, older than ${describeOp(d)}, acked before the read began`,
        });
      }
    }
  }
  return result('noResurrection', violations, stats);
}

// ---------------------------------------------------------------------------------
// honestOutcomes (§2.2): what reads observe agrees with what the store answered.

/**
 * A read that began before its write was acknowledged may see an earlier stamp of that write:
 * a write refused as older is re-stamped above the version held and sent again (DESIGN §8),
 * and its first copies stay until the new stamp replaces them. Such a read reports a version
 * below the acknowledged one from the same coordinator (the node id after `:`).
 */
function earlierStampOf(w: Op, r: Op): boolean {
  if (w.completeMs === undefined || r.invokeMs >= w.completeMs) return false;
  const rv = r.version as Version;
  const wv = w.version as Version;
  return isVersion(rv) && isVersion(wv) && compareVersions(rv, wv) < 0 && rv.slice(rv.indexOf(':')) === wv.slice(wv.indexOf(':'));
}

export function honestOutcomes(ops: readonly Op[]): CheckResult {
  const violations: Violation[] = [];
  const stats = { readsChecked: 0, failedObserved: 0, phantom: 0, versionMismatch: 0, earlierStampSeen: 0 };
  for (const idx of indexAll(ops).values()) {
    for (const r of idx.okReads) {
      if (r.readValue === null || r.readValue === undefined) continue;
      stats.readsChecked++;
      const w = idx.writeByValue.get(r.readValue);
      if (w === undefined) {
        stats.phantom++;
        violations.push({ key: idx.key, opIds: [r.id], message: `${describeOp(r)} returned a value never written to this key` });
      } else if (!mayHaveApplied(w)) {
        stats.failedObserved++;
        violations.push({
          key: idx.key, opIds: [w.id, r.id],
          message: `${describeOp(w)} was reported ${w.status === 'fail' ? 'failed' : 'not applied (412)'}, yet ${describeOp(r)} observed it`,
        });
      } else if (w.status === 'ok' && w.version !== undefined && r.version !== undefined && w.version !== r.version) {
        if (earlierStampOf(w, r)) { stats.earlierStampSeen++; continue; }
        stats.versionMismatch++;
        violations.push({
          key: idx.key, opIds: [w.id, r.id],
          message: `${describeOp(r)} reported version ${r.version} for a value acked as ${w.version}`,
        });
      }
    }
  }
  return result('honestOutcomes', violations, stats);
}

// ---------------------------------------------------------------------------------
// checkAll

export interface CheckAllOptions extends LinearizableOptions {
  /** Checkers not to run (e.g. 'linearizable' for a run that mixes r/w below quorum). */
  skip?: readonly HistoryCheckerName[];
}

export interface CheckSummary {
  ops: number;
  keys: number;
  okOps: number;
  failOps: number;
  unknownOps: number;
  /** Conditional ops answered 412. */
  preconditionOps: number;
  violations: number;
  failedCheckers: CheckerName[];
}

export interface CheckReport {
  ok: boolean;
  results: CheckResult[];
  summary: CheckSummary;
}

export function checkAll(history: readonly Op[] | History, finalState: FinalState, opts: CheckAllOptions = {}): CheckReport {
  const ops = history instanceof History ? history.ops() : history;
  const skip = new Set(opts.skip ?? []);
  const run: Record<HistoryCheckerName, () => CheckResult> = {
    wellFormed: () => wellFormed(ops),
    noLostWrites: () => noLostWrites(ops, finalState),
    linearizable: () => linearizable(ops, { ...opts, finalState }),
    converged: () => converged(ops, finalState),
    noResurrection: () => noResurrection(ops, finalState),
    honestOutcomes: () => honestOutcomes(ops),
  };
  const results = CHECKER_NAMES.filter((n) => !skip.has(n)).map((n) => run[n]());
  const failed = results.filter((r) => !r.ok);
  const summary: CheckSummary = {
    ops: ops.length,
    keys: new Set(ops.map((o) => o.key)).size,
    okOps: ops.filter((o) => o.status === 'ok').length,
    failOps: ops.filter((o) => o.status === 'fail').length,
    unknownOps: ops.filter((o) => o.status === 'unknown').length,
    preconditionOps: ops.filter((o) => o.status === 'precondition').length,
    violations: results.reduce((s, r) => s + r.violations.length, 0),
    failedCheckers: failed.map((r) => r.name),
  };
  return { ok: failed.length === 0, results, summary };
}
