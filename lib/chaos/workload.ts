/**
 * The chaos workload: C logical clients, each issuing one request at a time (so each
 * is a sequential process in the history) through a KvClient spread over all nodes.
 *
 * Keys:
 * - `u-<client>-<n>`: a client's own keys. Only that client writes, overwrites,
 *   deletes and reads them, one op at a time: single-writer, sequential keys, where
 *   DESIGN §2.3 promises that a quorum read returns the last acked write or a later
 *   one. The linearizability checker runs on these.
 * - `s-<k>`: a few shared keys every client overwrites and reads concurrently with
 *   plain writes, ordered by their HLC versions (last writer wins); the
 *   linearizability checker holds them to version order (DESIGN §2.8).
 * - `c-<k>`: a few compare-and-set keys every client writes only with conditions
 *   (decided by Paxos) and reads only serially: `If-Match` the version the client last
 *   saw (by a serial read or its own successful write), `If-None-Match: *` when it saw
 *   the key absent, `DELETE` with `If-Match`. The store promises linearizability for a
 *   key written only with conditions, so these never get a plain write (or a plain
 *   read, which may lag a conditional write by a message delay).
 *
 * Values are `<client>.<seq>`, unique per key, so every value read traces back to the
 * one write that produced it.
 */
import { KvError } from '../errors.ts';
import type { Rng } from '../core/rng.ts';
import type { Version } from '../core/hlc.ts';
import { KvClient, KvClientError } from '../client/client.ts';
import type { History, InvokeParams, OpKind } from './history.ts';

export const SHARED_KEYS = 5;
/** Few, so that clients contend on them: 8 clients on 4 keys see many 412s. */
export const CAS_KEYS = 4;

export function isOwnKey(key: string): boolean {
  return key.startsWith('u-');
}

export function isCasKey(key: string): boolean {
  return key.startsWith('c-');
}

export interface WorkloadOptions {
  /** The nodes the clients start with; `setNodes` replaces them as membership changes. */
  nodes: string[];
  clients: number;
  history: History;
  rngFor: (client: number) => Rng;
  /** Client-side deadline per request: bounded, above the node's quorum deadline. */
  timeoutMs: number;
}

export interface WorkloadCounts {
  ok: number;
  fail: number;
  unknown: number;
  /** Conditional writes and deletes answered 412 (the condition was false). */
  precondition: number;
}

/**
 * How an error maps onto the history (DESIGN §2.2): fail only when nothing can have
 * been applied; anything the store or the socket left open is unknown.
 */
export function classify(err: unknown): 'fail' | 'unknown' {
  if (err instanceof KvClientError) {
    if (err.outcome === 'failed') return 'fail';
    if (err.outcome === 'unknown' || err.httpStatus === 504) return 'unknown';
    // Refused before any work: overload, bad request, unavailable (nothing written).
    if (err.httpStatus === 429 || err.httpStatus === 503 || (err.httpStatus >= 400 && err.httpStatus < 500)) return 'fail';
    return 'unknown';
  }
  // The client's own "no node reachable": every connection was refused before sending.
  if (err instanceof KvError && err.code === 'KV_UNAVAILABLE' && err.outcome === 'failed') return 'fail';
  return 'unknown';
}

function errorText(err: unknown): string {
  if (err instanceof KvError) return err.code;
  const code = (err as NodeJS.ErrnoException)?.code;
  return code ?? String((err as Error)?.message ?? err).slice(0, 80);
}

export class Workload {
  readonly counts: WorkloadCounts = { ok: 0, fail: 0, unknown: 0, precondition: 0 };
  private running = false;
  private loops: Promise<void>[] = [];
  private nodes: string[];
  /** Bumped by `setNodes`: each client picks up the new list before its next request. */
  private generation = 0;

  constructor(private readonly o: WorkloadOptions) {
    this.nodes = [...o.nodes];
  }

  start(): void {
    this.running = true;
    for (let c = 0; c < this.o.clients; c++) this.loops.push(this.clientLoop(c, this.o.rngFor(c)));
  }

  /** The nodes to use from now on (a node joined, or one left the cluster). */
  setNodes(addrs: readonly string[]): void {
    if (addrs.length === 0) return;
    this.nodes = [...addrs];
    this.generation++;
  }

  /** Stop issuing; waits for every client's current request to finish. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Client c's KvClient over the current nodes, starting at a different node per client so coordinators are spread. */
  private clientFor(c: number): KvClient {
    const at = c % this.nodes.length;
    const nodes = [...this.nodes.slice(at), ...this.nodes.slice(0, at)];
    return new KvClient({ nodes, timeoutMs: this.o.timeoutMs, maxSockets: 4 });
  }

  private async clientLoop(c: number, rng: Rng): Promise<void> {
    const state: ClientState = { own: [], nextKey: 0, seq: 0, casSeen: new Map(), followUp: undefined };
    let generation = this.generation;
    let client = this.clientFor(c);
    try {
      while (this.running) {
        if (generation !== this.generation) {
          client.close();
          generation = this.generation;
          client = this.clientFor(c);
        }
        await this.issue(c, client, nextRequest(c, state, rng), state);
      }
    } finally {
      client.close();
    }
  }

  /** Sends one request and records it in the history. */
  private async issue(c: number, client: KvClient, req: Request, state: ClientState): Promise<void> {
    const h = this.o.history;
    const { kind, key, ...params } = req;
    const { value, ifMatch, ifNoneMatch, serial } = params;
    const id = h.invoke(c, kind, key, params);
    const condition = ifMatch !== undefined ? { ifMatch } : ifNoneMatch === true ? { ifNoneMatch } : {};
    let seen: Version | null | undefined;
    try {
      if (kind === 'write') {
        const r = await client.put(key, value as string, condition);
        h.ok(id, { version: r.version });
        seen = r.version;
      } else if (kind === 'delete') {
        const r = await client.del(key, condition);
        h.ok(id, { version: r.version });
        seen = null;
      } else {
        const r = await client.get(key, serial === true ? { serial } : {});
        h.ok(id, r === undefined ? { readValue: null } : { readValue: r.value.toString(), version: r.version });
        seen = r === undefined ? null : r.version;
      }
      this.counts.ok++;
    } catch (err) {
      if (err instanceof KvClientError && err.code === 'KV_PRECONDITION_FAILED' && (ifMatch !== undefined || ifNoneMatch === true)) {
        h.precondition(id, err.currentVersion);
        this.counts.precondition++;
      } else {
        const outcome = classify(err);
        if (outcome === 'fail') h.fail(id, errorText(err));
        else h.unknown(id, errorText(err));
        this.counts[outcome]++;
        // A failed conditional op changed nothing, so what the client saw still holds.
        if (outcome === 'fail') seen = state.casSeen.get(key);
      }
    }
    if (isCasKey(key)) {
      // Forgotten after a 412 or an unknown outcome: the next op on the key reads it
      // serially first, so every If-Match names a version a read or an ack tied to a value.
      if (seen === undefined) state.casSeen.delete(key);
      else state.casSeen.set(key, seen);
    }
    // A new key is worth reading and overwriting even when its first write failed or
    // is unknown: the checkers hold every read to what may have happened.
    if (kind === 'write' && isOwnKey(key) && !state.own.includes(key)) state.own.push(key);
  }
}

/** What one client remembers between requests. */
interface ClientState {
  /** Own keys this client has written (some since deleted). */
  own: string[];
  nextKey: number;
  seq: number;
  /** Per compare-and-set key, the version this client last saw (null: absent); none when it does not know. */
  casSeen: Map<string, Version | null>;
  /** A compare-and-set key just read serially, which the next request writes (read-modify-write). */
  followUp: string | undefined;
}

interface Request extends InvokeParams { kind: OpKind; key: string }

/** The mix of docs/chaos.md, drawn from the client's own rng. */
function nextRequest(c: number, state: ClientState, rng: Rng): Request {
  if (state.followUp !== undefined) {
    const key = state.followUp;
    state.followUp = undefined;
    if (state.casSeen.has(key)) return casWrite(c, key, state, rng);
  }
  const roll = rng.next();
  const own = state.own;
  const write = (key: string): Request => ({ kind: 'write', key, value: `${c}.${state.seq++}` });
  if (roll < 0.22 || own.length === 0) return write(`u-${c}-${state.nextKey++}`);
  if (roll < 0.35) return write(own[rng.int(own.length)] as string);
  if (roll < 0.47) return write(`s-${rng.int(SHARED_KEYS)}`);
  // A deleted key stays in `own`: later reads of it must find nothing (or a later
  // overwrite), which is how reads catch a resurrected value.
  if (roll < 0.53) return { kind: 'delete', key: own[rng.int(own.length)] as string };
  if (roll < 0.75) return { kind: 'read', key: own[rng.int(own.length)] as string };
  if (roll < 0.84) return { kind: 'read', key: `s-${rng.int(SHARED_KEYS)}` };
  return casRequest(c, `c-${rng.int(CAS_KEYS)}`, state, rng);
}

/**
 * An op on a compare-and-set key: a serial read when the client does not know the
 * key's version (or, a quarter of the time, to refresh it; three quarters of those
 * reads are followed by a conditional write of the key), else a conditional write.
 */
function casRequest(c: number, key: string, state: ClientState, rng: Rng): Request {
  if (!state.casSeen.has(key) || rng.next() < 0.25) {
    if (rng.next() < 0.75) state.followUp = key;
    return { kind: 'read', key, serial: true };
  }
  return casWrite(c, key, state, rng);
}

/** If-None-Match: * when the client saw the key absent; else If-Match its version, a delete one time in five. */
function casWrite(c: number, key: string, state: ClientState, rng: Rng): Request {
  const seen = state.casSeen.get(key);
  if (seen === null || seen === undefined) return { kind: 'write', key, value: `${c}.${state.seq++}`, ifNoneMatch: true };
  if (rng.next() < 0.2) return { kind: 'delete', key, ifMatch: seen };
  return { kind: 'write', key, value: `${c}.${state.seq++}`, ifMatch: seen };
}
