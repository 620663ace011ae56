/**
 * A simulated, correct store: concurrent clients against one atomic register per key.
 * Every op takes effect at one instant inside its interval (unknown writes at any
 * instant after invocation, possibly after the client gave up, or never), so the
 * history is linearizable by construction and every version order matches effect
 * order. Time runs on real numbers and is recorded truncated to whole ms, as a real
 * recorder's clock would: ops that touch at one recorded ms may then have taken effect
 * in either order, which is why the checkers treat touching intervals as concurrent. The checkers must accept every history it produces; tests mutate them to
 * prove the checkers reject what they should. Pure: all randomness comes from `rng`.
 */
import { makeVersion } from '../core/hlc.ts';
import type { Rng } from '../core/rng.ts';
import type { NodeReading, Op, OpKind, OpStatus } from './history.ts';

export interface RegisterSimOptions {
  keys?: number;
  processes?: number;
  opsPerProcess?: number;
  nodes?: readonly string[];
  /** Share of ops that are reads / deletes; the rest are writes. */
  readRatio?: number;
  deleteRatio?: number;
  /** Share of writes/deletes answered fail (never applied) / unknown. */
  failRatio?: number;
  unknownRatio?: number;
  /** Chance that an unknown write/delete was applied after all. */
  unknownLandsRatio?: number;
  /** Op durations are up to maxDurationMs; gaps between one client's ops up to maxGapMs. */
  maxDurationMs?: number;
  maxGapMs?: number;
}

export interface SimulatedRun {
  ops: Op[];
  finalState: Record<string, Record<string, NodeReading>>;
}

const BASE_WALL_MS = 1_700_000_000_000;

export function simulateRegisterHistory(rng: Rng, opts: RegisterSimOptions = {}): SimulatedRun {
  const keys = opts.keys ?? 2;
  const processes = opts.processes ?? 4;
  const opsPerProcess = opts.opsPerProcess ?? 10;
  const nodes = opts.nodes ?? ['n1', 'n2', 'n3'];
  const readRatio = opts.readRatio ?? 0.45;
  const deleteRatio = opts.deleteRatio ?? 0.1;
  const failRatio = opts.failRatio ?? 0.1;
  const unknownRatio = opts.unknownRatio ?? 0.15;
  const unknownLandsRatio = opts.unknownLandsRatio ?? 0.5;
  const maxDurationMs = opts.maxDurationMs ?? 8;
  const maxGapMs = opts.maxGapMs ?? 3;

  interface Draft {
    process: number; kind: OpKind; key: string; value?: string; invokeMs: number; completeMs: number;
    status: OpStatus; effectAt: number | undefined; version?: string; readValue?: string | null;
  }
  const drafts: Draft[] = [];
  for (let p = 0; p < processes; p++) {
    let t = rng.next() * maxGapMs;
    for (let j = 0; j < opsPerProcess; j++) {
      const key = `k${rng.int(keys)}`;
      const roll = rng.next();
      const kind: OpKind = roll < readRatio ? 'read' : roll < readRatio + deleteRatio ? 'delete' : 'write';
      const invokeMs = t;
      const completeMs = t + 0.05 + rng.next() * maxDurationMs;
      const inside = invokeMs + rng.next() * (completeMs - invokeMs);
      const d: Draft = { process: p, kind, key, invokeMs, completeMs, status: 'ok', effectAt: inside };
      if (kind === 'write') d.value = `${key}-p${p}-${j}`;
      if (kind !== 'read') {
        const s = rng.next();
        if (s < failRatio) {
          d.status = 'fail';
          d.effectAt = undefined;
        } else if (s < failRatio + unknownRatio) {
          d.status = 'unknown';
          // A late landing (a hint delivered long after the timeout) is the case that
          // tells "unknown" apart from "failed".
          d.effectAt = rng.next() < unknownLandsRatio ? invokeMs + rng.next() * 4 * (completeMs - invokeMs + maxGapMs) : undefined;
        }
      }
      drafts.push(d);
      t = completeMs + rng.next() * maxGapMs;
    }
  }

  const register = new Map<string, { value: string | null; version: string | null }>();
  const effects = drafts.filter((d) => d.effectAt !== undefined).sort((a, b) => (a.effectAt as number) - (b.effectAt as number));
  let seq = 0;
  for (const d of effects) {
    const cur = register.get(d.key) ?? { value: null, version: null };
    if (d.kind === 'read') {
      d.readValue = cur.value;
      if (cur.value !== null && cur.version !== null) d.version = cur.version;
      continue;
    }
    const version = makeVersion({ wall: BASE_WALL_MS + ++seq, logical: 0 }, nodes[rng.int(nodes.length)] ?? 'n1');
    register.set(d.key, { value: d.kind === 'write' ? (d.value as string) : null, version });
    if (d.status === 'ok') d.version = version;
  }

  drafts.sort((a, b) => a.invokeMs - b.invokeMs || a.process - b.process);
  const ops: Op[] = drafts.map((d, id) => {
    const op: { -readonly [K in keyof Op]: Op[K] } = {
      id, process: d.process, kind: d.kind, key: d.key,
      invokeMs: Math.floor(d.invokeMs), completeMs: Math.floor(d.completeMs), status: d.status,
    };
    if (d.value !== undefined) op.value = d.value;
    if (d.version !== undefined) op.version = d.version;
    if (d.readValue !== undefined) op.readValue = d.readValue;
    if (d.status === 'fail') op.error = 'KV_UNAVAILABLE';
    if (d.status === 'unknown') op.error = 'KV_TIMEOUT';
    return op;
  });

  const finalState: Record<string, Record<string, NodeReading>> = {};
  for (const key of new Set(drafts.map((d) => d.key))) {
    const cur = register.get(key) ?? { value: null, version: null };
    // Whether a 404 carries the tombstone's version varies; the checkers must cope with both.
    const version = cur.value === null && rng.next() < 0.5 ? null : cur.version;
    finalState[key] = Object.fromEntries(nodes.map((n) => [n, { value: cur.value, version }]));
  }
  return { ops, finalState };
}
