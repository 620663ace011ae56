/**
 * The chaos workload: C logical clients, each issuing one request at a time (so each
 * is a sequential process in the history) through a KvClient spread over all nodes.
 *
 * Keys:
 * - `u-<client>-<n>`: a client's own keys. Only that client writes, overwrites,
 *   deletes and reads them, one op at a time: single-writer, sequential keys, where
 *   DESIGN §2.3 promises that a quorum read returns the last acked write or a later
 *   one. The linearizability checker runs on these.
 * - `s-<k>`: a few shared keys every client overwrites and reads concurrently. LWW
 *   on HLC versions is not linearizable under concurrent writers (a write that began
 *   after another finished may carry the lower version), so these are checked for
 *   convergence, lost writes and honest outcomes, not linearizability.
 *
 * Values are `<client>.<seq>`, unique per key, so every value read traces back to the
 * one write that produced it.
 */
import { KvError } from '../errors.ts';
import type { Rng } from '../core/rng.ts';
import { KvClient, KvClientError } from '../client/client.ts';
import type { History } from './history.ts';

export const SHARED_KEYS = 5;

export function isOwnKey(key: string): boolean {
  return key.startsWith('u-');
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
  readonly counts: WorkloadCounts = { ok: 0, fail: 0, unknown: 0 };
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
    const state: ClientState = { own: [], nextKey: 0, seq: 0 };
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
    const { kind, key, value } = req;
    const id = h.invoke(c, kind, key, value === undefined ? {} : { value });
    try {
      if (kind === 'write') {
        const r = await client.put(key, value as string);
        h.ok(id, { version: r.version });
      } else if (kind === 'delete') {
        const r = await client.del(key);
        h.ok(id, { version: r.version });
      } else {
        const r = await client.get(key);
        h.ok(id, r === undefined ? { readValue: null } : { readValue: r.value.toString(), version: r.version });
      }
      this.counts.ok++;
    } catch (err) {
      const outcome = classify(err);
      if (outcome === 'fail') h.fail(id, errorText(err));
      else h.unknown(id, errorText(err));
      this.counts[outcome]++;
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
}

interface Request { kind: 'write' | 'delete' | 'read'; key: string; value?: string }

/** The mix of docs/chaos.md, drawn from the client's own rng. */
function nextRequest(c: number, state: ClientState, rng: Rng): Request {
  const roll = rng.next();
  const own = state.own;
  const write = (key: string): Request => ({ kind: 'write', key, value: `${c}.${state.seq++}` });
  if (roll < 0.25 || own.length === 0) return write(`u-${c}-${state.nextKey++}`);
  if (roll < 0.40) return write(own[rng.int(own.length)] as string);
  if (roll < 0.55) return write(`s-${rng.int(SHARED_KEYS)}`);
  // A deleted key stays in `own`: later reads of it must find nothing (or a later
  // overwrite), which is how reads catch a resurrected value.
  if (roll < 0.62) return { kind: 'delete', key: own[rng.int(own.length)] as string };
  if (roll < 0.88) return { kind: 'read', key: own[rng.int(own.length)] as string };
  return { kind: 'read', key: `s-${rng.int(SHARED_KEYS)}` };
}
