/**
 * The history a chaos run records, and the final state it reads after healing.
 *
 * A history is a list of operation records, one per client request. Each record holds
 * both halves of the request: the invocation (when the client sent it) and the
 * completion (when and how it was answered). Checkers read nothing else, so the model
 * is spelled out here precisely:
 *
 * - `status` follows DESIGN §2.2:
 *   - `'ok'`: acknowledged (2xx, or 404 for a read of an absent key);
 *   - `'fail'`: definitely applied nowhere (e.g. `KV_UNAVAILABLE` before sending);
 *   - `'unknown'`: may or may not have been applied, now or LATER (timeouts,
 *     `KV_QUORUM_NOT_MET` with outcome unknown, a client cut off mid-request). An
 *     unknown write may take effect at any time after its invocation, even after the
 *     client saw the timeout (a hint delivered an hour later is still that write), so
 *     checkers treat its completion as infinitely late and never use `completeMs`;
 *   - `'precondition'` (conditional writes and deletes only): answered 412
 *     `KV_PRECONDITION_FAILED`. Nothing was applied, and the answer is an observation:
 *     at some instant inside the op's interval the key's live value had `version` (no
 *     live value when `version` is absent), which is not the version the op expected.
 * - Conditional ops (compare-and-set, decided by Paxos) carry their condition:
 *   `ifMatch` (the version the live value must have) or `ifNoneMatch` (no live value).
 *   `serial` marks a serial read (`?serial=true`, linearizable with them).
 * - `value` (writes only) must be unique per key: it is how a value found by a read or
 *   in the final state is traced back to the one write that produced it.
 * - `version` is what the store reported: the version stamped on an acked write or
 *   delete, the version of the record a read returned (absent if the read found
 *   nothing or the store did not say), or for a 412 the current version it named.
 * - `readValue` (ok reads only): the value read, `null` for not found (absent key or
 *   tombstone alike).
 * - A read that failed or timed out constrains nothing and is ignored by every checker.
 * - Times are the recorder's clock in ms (monotonic within one run). Two ops whose
 *   intervals touch (one completes at the same ms the other is invoked) are treated as
 *   concurrent: a ms clock cannot tell their order, and claiming an order it cannot see
 *   would invent violations.
 *
 * The final state: after faults heal, the runner reads every key it touched with
 * `r=all` through every node: key → node id → {value, version} (value `null` = not
 * found). A node that could not answer records `error` instead.
 */
import { assert } from '../errors.ts';
import type { Version } from '../core/hlc.ts';

export type OpKind = 'write' | 'delete' | 'read';
export type OpStatus = 'ok' | 'fail' | 'unknown' | 'precondition';

export interface Op {
  /** Unique within the history; also orders records by invocation. */
  readonly id: number;
  /** The client (logical process) that issued the op; a client issues one op at a time. */
  readonly process: number;
  readonly kind: OpKind;
  readonly key: string;
  /** Writes: the value written, unique per key. */
  readonly value?: string;
  /** Conditional writes and deletes: applied only if the live value has this version (If-Match). */
  readonly ifMatch?: Version;
  /** Conditional writes: applied only if the key has no live value (If-None-Match: *). */
  readonly ifNoneMatch?: true;
  /** Reads: a serial read (through Paxos, linearizable with conditional writes). */
  readonly serial?: true;
  readonly invokeMs: number;
  /** Set for ok and fail ops; may be set for unknown ops but is never relied on. */
  readonly completeMs?: number;
  readonly status: OpStatus;
  /** Acked writes/deletes: the version stamped; ok reads: the version of what was read; 412s: the current version. */
  readonly version?: Version;
  /** Ok reads: the value read, `null` for not found. */
  readonly readValue?: string | null;
  /** The error code or message that made the op fail or unknown, for the report. */
  readonly error?: string;
  /**
   * Set only on the read a checker derives from the final state (after every client
   * op, see `finalStateRead`), never on a recorded op.
   */
  readonly finalState?: true;
}

/** One node's answer for one key in the final read. */
export interface NodeReading {
  value: string | null;
  version: Version | null;
  /** Set when the node could not answer; value and version are then meaningless. */
  error?: string;
}

/** key → node id → reading. A plain object (as parsed from JSON) or a Map. */
export type FinalState =
  | ReadonlyMap<string, ReadonlyMap<string, NodeReading>>
  | Readonly<Record<string, Readonly<Record<string, NodeReading>>>>;

export type NormalizedFinalState = ReadonlyMap<string, ReadonlyMap<string, NodeReading>>;

export function normalizeFinalState(state: FinalState): NormalizedFinalState {
  if (state instanceof Map) return state as NormalizedFinalState;
  const out = new Map<string, Map<string, NodeReading>>();
  // Object.entries sees own keys only, so a key named "constructor" is safe.
  for (const [key, nodes] of Object.entries(state as Record<string, Record<string, NodeReading>>)) {
    out.set(key, nodes instanceof Map ? (nodes as Map<string, NodeReading>) : new Map(Object.entries(nodes)));
  }
  return out;
}

export interface ReadResult {
  version?: Version;
  readValue?: string | null;
}

/** What an op is besides its kind and key: the value it writes, its condition, a serial read. */
export interface InvokeParams {
  value?: string;
  ifMatch?: Version;
  ifNoneMatch?: true;
  serial?: true;
}

/** Whether an op is a compare-and-set (a write or delete with a condition). */
export function isConditional(op: Pick<Op, 'ifMatch' | 'ifNoneMatch'>): boolean {
  return op.ifMatch !== undefined || op.ifNoneMatch === true;
}

/** Whether an op may have been applied: acknowledged, or with its outcome unknown. */
export function mayHaveApplied(op: Pick<Op, 'status'>): boolean {
  return op.status === 'ok' || op.status === 'unknown';
}

type MutableOp = { -readonly [K in keyof Op]: Op[K] };

/**
 * Records invoke/complete pairs as a run goes. The clock is injected so a recorder
 * driven by a virtual clock (tests, simulations) produces the same history every time.
 */
export class History {
  private readonly records: MutableOp[] = [];
  private readonly pending = new Map<number, MutableOp>();

  constructor(private readonly clockMs: () => number) {}

  /** Number of ops invoked so far. */
  get size(): number {
    return this.records.length;
  }

  invoke(process: number, kind: OpKind, key: string, p: InvokeParams = {}): number {
    const { value, ifMatch, ifNoneMatch, serial } = p;
    assert(kind === 'write' ? typeof value === 'string' : value === undefined,
      `a ${kind} ${kind === 'write' ? 'needs' : 'takes no'} value`);
    assert(ifMatch === undefined || ifNoneMatch === undefined, 'If-Match and If-None-Match exclude each other');
    assert(kind !== 'read' || (ifMatch === undefined && ifNoneMatch === undefined), 'a read takes no condition');
    assert(ifNoneMatch === undefined || kind === 'write', 'If-None-Match is for writes');
    assert(serial === undefined || kind === 'read', 'only a read is serial');
    const id = this.records.length;
    const op: MutableOp = { id, process, kind, key, invokeMs: this.clockMs(), status: 'unknown' };
    if (value !== undefined) op.value = value;
    if (ifMatch !== undefined) op.ifMatch = ifMatch;
    if (ifNoneMatch !== undefined) op.ifNoneMatch = ifNoneMatch;
    if (serial !== undefined) op.serial = serial;
    this.records.push(op);
    this.pending.set(id, op);
    return id;
  }

  /** Acknowledged. Writes/deletes pass the version the store returned; reads pass what they read. */
  ok(id: number, result: ReadResult = {}): void {
    const op = this.complete(id, 'ok');
    if (result.version !== undefined) op.version = result.version;
    if (op.kind === 'read') {
      assert(result.readValue !== undefined, 'an ok read needs readValue (null = not found)');
      op.readValue = result.readValue;
    }
  }

  /**
   * A conditional op answered 412: the condition was false, nothing applied; `current`
   * is the version the store reported (undefined: no live value).
   */
  precondition(id: number, current?: Version): void {
    const op = this.pending.get(id);
    assert(op !== undefined && isConditional(op), `op ${id} is not a pending conditional op`);
    this.complete(id, 'precondition');
    if (current !== undefined) op.version = current;
  }

  /** Definitely not applied anywhere. */
  fail(id: number, error?: string): void {
    const op = this.complete(id, 'fail');
    if (error !== undefined) op.error = error;
  }

  /** May have been applied, now or later. */
  unknown(id: number, error?: string): void {
    const op = this.complete(id, 'unknown');
    if (error !== undefined) op.error = error;
  }

  /** Ops invoked but never completed so far. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * A snapshot of every record in invocation order. Ops still pending are reported
   * as unknown: a request whose answer never came may still have been applied.
   */
  ops(): Op[] {
    return this.records.map((op) => ({ ...op }));
  }

  toJSON(): Op[] {
    return this.ops();
  }

  private complete(id: number, status: OpStatus): MutableOp {
    const op = this.pending.get(id);
    assert(op !== undefined, `op ${id} is not pending`);
    this.pending.delete(id);
    op.status = status;
    op.completeMs = this.clockMs();
    assert(op.completeMs >= op.invokeMs, 'the history clock went backwards');
    return op;
  }
}

/** One line describing an op, for violation messages. */
export function describeOp(op: Op): string {
  if (op.finalState) return `the final state ${JSON.stringify(op.readValue ?? null)}${op.version !== undefined ? ` @${op.version}` : ''}`;
  const condition = op.ifMatch !== undefined ? ` if-match ${op.ifMatch}` : op.ifNoneMatch === true ? ' if-none-match' : '';
  const what = op.kind === 'write' ? `write ${JSON.stringify(op.value)}${condition}`
    : op.kind === 'delete' ? `delete${condition}`
      : `${op.serial === true ? 'serial ' : ''}read → ${op.status === 'ok' ? JSON.stringify(op.readValue ?? null) : '?'}`;
  const end = op.status === 'unknown' || op.completeMs === undefined ? '∞' : String(op.completeMs);
  const version = op.version !== undefined ? ` @${op.version}`
    : op.status === 'precondition' ? ' (no live value)' : '';
  return `#${op.id} p${op.process} ${what} [${op.invokeMs},${end}] ${op.status}${version}`;
}

/** Splits a history by key, keeping each key's ops in input order. */
export function byKey(ops: readonly Op[]): Map<string, Op[]> {
  const out = new Map<string, Op[]>();
  for (const op of ops) {
    let list = out.get(op.key);
    if (list === undefined) out.set(op.key, (list = []));
    list.push(op);
  }
  return out;
}
