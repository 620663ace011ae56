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
  private readonly kvClients: KvClient[] = [];

  constructor(private readonly o: WorkloadOptions) {}

  start(): void {
    this.running = true;
    for (let c = 0; c < this.o.clients; c++) {
      // Each client starts at a different node, so coordinators are spread from the start.
      const nodes = [...this.o.nodes.slice(c % this.o.nodes.length), ...this.o.nodes.slice(0, c % this.o.nodes.length)];
      const client = new KvClient({ nodes, timeoutMs: this.o.timeoutMs, maxSockets: 4 });
      this.kvClients.push(client);
      this.loops.push(this.clientLoop(c, client, this.o.rngFor(c)));
    }
  }

  /** Stop issuing; waits for every client's current request to finish. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    for (const c of this.kvClients) c.close();
  }

  private async clientLoop(c: number, client: KvClient, rng: Rng): Promise<void> {
    const h = this.o.history;
    /** Own keys this client has written (some since deleted). */
    const own: string[] = [];
    let nextKey = 0;
    let seq = 0;
    const value = (): string => `${c}.${seq++}`;
    while (this.running) {
      const roll = rng.next();
      let kind: 'write' | 'delete' | 'read';
      let key: string;
      if (roll < 0.25 || own.length === 0) {
        kind = 'write';
        key = `u-${c}-${nextKey++}`;
      } else if (roll < 0.40) {
        kind = 'write';
        key = own[rng.int(own.length)] as string;
      } else if (roll < 0.55) {
        kind = 'write';
        key = `s-${rng.int(SHARED_KEYS)}`;
      } else if (roll < 0.62) {
        kind = 'delete';
        // The key stays in `own`: later reads of it must find nothing (or a later
        // overwrite), which is how reads catch a resurrected value.
        key = own[rng.int(own.length)] as string;
      } else if (roll < 0.88) {
        kind = 'read';
        key = own[rng.int(own.length)] as string;
      } else {
        kind = 'read';
        key = `s-${rng.int(SHARED_KEYS)}`;
      }
      const v = kind === 'write' ? value() : undefined;
      const id = h.invoke(c, kind, key, v);
      try {
        if (kind === 'write') {
          const r = await client.put(key, v as string);
          h.ok(id, { version: r.version });
          if (isOwnKey(key) && !own.includes(key)) own.push(key);
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
        // A new key whose first write failed or is unknown is still worth reading
        // and overwriting: the checkers hold every read to what may have happened.
        if (kind === 'write' && isOwnKey(key) && !own.includes(key)) own.push(key);
      }
    }
  }
}
