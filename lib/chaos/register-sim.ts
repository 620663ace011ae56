/**
 * A simulated, correct store: concurrent clients against one atomic register per key.
 * Every op takes effect at one instant inside its interval (unknown writes at any
 * instant after invocation, possibly after the client gave up, or never), so the
 * history is linearizable by construction and every version order matches effect
 * order. Time runs on real numbers and is recorded truncated to whole ms, as a real
 * recorder's clock would: ops that touch at one recorded ms may then have taken effect
 * in either order, which is why the checkers treat touching intervals as concurrent. The checkers must accept every history it produces; tests mutate them to
 * prove the checkers reject what they should. Pure: all randomness comes from `rng`.
 *
 * Compare-and-set keys (`c<k>`, with `casKeys`) get what the chaos workload sends
 * them: serial reads, and conditional writes and deletes built from what the client
 * saw last (`If-Match` its version, `If-None-Match` when it saw the key absent; after
 * a 412 or an unknown outcome it reads again first). The condition is evaluated when
 * the op takes effect: true, the op applies (ok: with its new version); false, nothing
 * applies and an ok op is answered 412 naming the current live version.
 */
import { makeVersion } from '../core/hlc.ts';
import type { Version } from '../core/hlc.ts';
import type { Rng } from '../core/rng.ts';
import type { NodeReading, Op, OpKind, OpStatus } from './history.ts';

export interface RegisterSimOptions {
  keys?: number;
  /** Compare-and-set keys besides the plain ones (default 0). */
  casKeys?: number;
  /** With casKeys: the share of ops on them (default 0.5). */
  casRatio?: number;
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

interface Draft {
  process: number; kind: OpKind; key: string; value?: string; invokeMs: number; completeMs: number;
  status: OpStatus; effectAt: number | undefined; version?: string; readValue?: string | null;
  /** Compare-and-set keys: what the op is gets decided at invocation, from what the client saw. */
  cas?: { statusRoll: number; landsAt: number | undefined; ifMatch?: Version; ifNoneMatch?: true; serial?: true };
}

/** An event of the simulation: an op's invocation (compare-and-set keys) or its effect. */
interface SimEvent { t: number; invoke: boolean; draft: Draft; seq: number }

export function simulateRegisterHistory(rng: Rng, opts: RegisterSimOptions = {}): SimulatedRun {
  const keys = opts.keys ?? 2;
  const casKeys = opts.casKeys ?? 0;
  const casRatio = opts.casRatio ?? 0.5;
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

  const drafts: Draft[] = [];
  for (let p = 0; p < processes; p++) {
    let t = rng.next() * maxGapMs;
    for (let j = 0; j < opsPerProcess; j++) {
      // Drawn only with CAS keys, so plain-only runs stay what they were for a seed.
      const onCas = casKeys > 0 && rng.next() < casRatio;
      const key = onCas ? `c${rng.int(casKeys)}` : `k${rng.int(keys)}`;
      const roll = rng.next();
      const kind: OpKind = roll < readRatio ? 'read' : roll < readRatio + deleteRatio ? 'delete' : 'write';
      const invokeMs = t;
      const completeMs = t + 0.05 + rng.next() * maxDurationMs;
      const inside = invokeMs + rng.next() * (completeMs - invokeMs);
      const d: Draft = { process: p, kind, key, invokeMs, completeMs, status: 'ok', effectAt: inside };
      // A late landing (a hint delivered long after the timeout) is the case that
      // tells "unknown" apart from "failed".
      const landing = (): number | undefined =>
        (rng.next() < unknownLandsRatio ? invokeMs + rng.next() * 4 * (completeMs - invokeMs + maxGapMs) : undefined);
      if (onCas) {
        d.value = `${key}-p${p}-${j}`;
        d.cas = { statusRoll: rng.next(), landsAt: landing() };
      } else {
        if (kind === 'write') d.value = `${key}-p${p}-${j}`;
        if (kind !== 'read') {
          const s = rng.next();
          if (s < failRatio) {
            d.status = 'fail';
            d.effectAt = undefined;
          } else if (s < failRatio + unknownRatio) {
            d.status = 'unknown';
            d.effectAt = landing();
          }
        }
      }
      drafts.push(d);
      t = completeMs + rng.next() * maxGapMs;
    }
  }

  const register = new Map<string, { value: string | null; version: string | null }>();
  // Per process and compare-and-set key: the version last seen (null: absent).
  const seen = new Map<string, Version | null>();
  const seenKey = (d: Draft): string => `${d.process} ${d.key}`;
  let seq = 0;
  const newVersion = (): Version => makeVersion({ wall: BASE_WALL_MS + ++seq, logical: 0 }, nodes[rng.int(nodes.length)] ?? 'n1');

  // Effects in time order; a compare-and-set op's invocation decides what it is, so it
  // is an event too (before any effect at the same instant: its own comes after it).
  const queue: SimEvent[] = [];
  let eventSeq = 0;
  const schedule = (t: number, invoke: boolean, draft: Draft): void => {
    const ev = { t, invoke, draft, seq: eventSeq++ };
    const before = (a: SimEvent, b: SimEvent): boolean => a.t < b.t || (a.t === b.t && (a.invoke !== b.invoke ? a.invoke : a.seq < b.seq));
    let i = queue.length;
    while (i > 0 && before(ev, queue[i - 1] as SimEvent)) i--;
    queue.splice(i, 0, ev);
  };
  for (const d of [...drafts].sort((a, b) => (a.effectAt ?? 0) - (b.effectAt ?? 0))) {
    if (d.cas !== undefined) schedule(d.invokeMs, true, d);
    else if (d.effectAt !== undefined) schedule(d.effectAt, false, d);
  }

  const invokeCas = (d: Draft): void => {
    const c = d.cas as NonNullable<Draft['cas']>;
    const known = seen.get(seenKey(d));
    // What the client knows decides the op: a serial read when it knows nothing.
    if (known === undefined || rng.next() < 0.3) {
      d.kind = 'read';
      delete d.value;
      c.serial = true;
      schedule(d.effectAt as number, false, d);
      return;
    }
    if (known === null) {
      d.kind = 'write';
      c.ifNoneMatch = true;
    } else {
      d.kind = rng.next() < 0.2 ? 'delete' : 'write';
      if (d.kind === 'delete') delete d.value;
      c.ifMatch = known;
    }
    if (c.statusRoll < failRatio) {
      d.status = 'fail';
      d.effectAt = undefined;
      return;
    }
    if (c.statusRoll < failRatio + unknownRatio) {
      d.status = 'unknown';
      d.effectAt = c.landsAt;
      seen.delete(seenKey(d));
    }
    if (d.effectAt !== undefined) schedule(d.effectAt, false, d);
  };

  const apply = (d: Draft): void => {
    const cur = register.get(d.key) ?? { value: null, version: null };
    if (d.kind === 'read') {
      d.readValue = cur.value;
      if (cur.value !== null && cur.version !== null) d.version = cur.version;
      if (d.cas !== undefined) seen.set(seenKey(d), cur.value === null ? null : cur.version);
      return;
    }
    const c = d.cas;
    const holds = c === undefined || (c.ifNoneMatch === true ? cur.value === null : cur.value !== null && cur.version === c.ifMatch);
    if (!holds) {
      if (d.status === 'ok') {
        d.status = 'precondition';
        if (cur.value !== null && cur.version !== null) d.version = cur.version;
        seen.delete(seenKey(d));
      }
      return;
    }
    const version = newVersion();
    register.set(d.key, { value: d.kind === 'write' ? (d.value as string) : null, version });
    if (d.status === 'ok') {
      d.version = version;
      if (c !== undefined) seen.set(seenKey(d), d.kind === 'write' ? version : null);
    }
  };

  while (queue.length > 0) {
    const ev = queue.shift() as SimEvent;
    if (ev.invoke) invokeCas(ev.draft);
    else apply(ev.draft);
  }

  drafts.sort((a, b) => a.invokeMs - b.invokeMs || a.process - b.process);
  const ops: Op[] = drafts.map((d, id) => {
    const op: { -readonly [K in keyof Op]: Op[K] } = {
      id, process: d.process, kind: d.kind, key: d.key,
      invokeMs: Math.floor(d.invokeMs), completeMs: Math.floor(d.completeMs), status: d.status,
    };
    if (d.value !== undefined) op.value = d.value;
    if (d.cas?.ifMatch !== undefined) op.ifMatch = d.cas.ifMatch;
    if (d.cas?.ifNoneMatch !== undefined) op.ifNoneMatch = d.cas.ifNoneMatch;
    if (d.cas?.serial !== undefined) op.serial = d.cas.serial;
    if (d.version !== undefined) op.version = d.version;
    if (d.readValue !== undefined) op.readValue = d.readValue;
    if (d.status === 'fail') op.error = 'KV_UNAVAILABLE';
    if (d.status === 'unknown') op.error = 'KV_TIMEOUT';
    if (d.status === 'precondition') op.error = 'KV_PRECONDITION_FAILED';
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
