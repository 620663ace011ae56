/**
 * The first contact of a fresh node with a cluster: an HTTP POST /cluster/join to a
 * seed, authenticated with an HMAC of the request over the cluster secret (peers have
 * no cluster id to run the WebSocket handshake with yet). The seed forwards it to the
 * Raft leader, which adds the node as `joining` and answers with the cluster id, Q and
 * the members to dial.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { KvError } from '../errors.ts';
import type { JoinAnswer } from './membership.ts';

/** A join request older than this is refused (replay window). */
const JOIN_MAX_AGE_MS = 5 * 60_000;
/** How long a fresh node keeps trying its seeds. 60 s covers a seed cluster still electing. */
const JOIN_DEADLINE_MS = 60_000;
/** While another ownership change runs, ask again this often (the deadline does not run meanwhile). */
const BUSY_RETRY_MS = 2000;

export interface JoinRequest { id: string; addr: string; ts: number; mac: string; replace?: boolean }

/** `replace` (take over a dead member's place) is part of what is signed. */
function mac(secret: string, id: string, addr: string, ts: number, replace: boolean): string {
  return createHmac('sha256', secret).update(`${replace ? 'kv-replace' : 'kv-join'}\u0000${id}\u0000${addr}\u0000${ts}`).digest('hex');
}

export function signJoin(secret: string, id: string, addr: string, now = Date.now(), replace = false): JoinRequest {
  const req: JoinRequest = { id, addr, ts: now, mac: mac(secret, id, addr, now, replace) };
  if (replace) req.replace = true;
  return req;
}

export function verifyJoin(secret: string, body: unknown, now = Date.now()): { id: string; addr: string; replace: boolean } {
  const b = body as Partial<JoinRequest> | null;
  if (typeof b !== 'object' || b === null || typeof b.id !== 'string' || typeof b.addr !== 'string' ||
    typeof b.ts !== 'number' || typeof b.mac !== 'string') {
    throw new KvError('KV_INVALID_ARGUMENT', 'join body must be {"id","addr","ts","mac"}');
  }
  const replace = b.replace === true;
  const want = Buffer.from(mac(secret, b.id, b.addr, b.ts, replace), 'hex');
  const got = Buffer.from(b.mac, 'hex');
  if (got.length !== want.length || !timingSafeEqual(got, want) || Math.abs(now - b.ts) > JOIN_MAX_AGE_MS) {
    throw new KvError('KV_UNAUTHORIZED', 'join request not signed with this cluster\'s secret');
  }
  return { id: b.id, addr: b.addr, replace };
}

export async function requestJoin(seeds: string[], secret: string, id: string, addr: string, log: { warn(o: object, m: string): void },
  opts: { replace?: boolean } = {}): Promise<JoinAnswer> {
  let deadline = Date.now() + JOIN_DEADLINE_MS;
  let last: unknown;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const seed = seeds[attempt % seeds.length] as string;
    try {
      const res = await fetch(`http://${seed}/cluster/join`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify(signJoin(secret, id, addr, Date.now(), opts.replace === true)), signal: AbortSignal.timeout(25_000),
      });
      const body = await res.json() as JoinAnswer & { error?: { code: string; message: string } };
      if (res.ok) return body;
      if (body.error?.code === 'KV_TOPOLOGY_BUSY') {
        // One ownership change at a time: wait for the one in progress, however long it streams.
        log.warn({ seed, reason: body.error.message }, 'join waits: KV_TOPOLOGY_BUSY, another ownership change is in progress');
        deadline = Math.max(deadline, Date.now() + JOIN_DEADLINE_MS);
        await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
        continue;
      }
      if (res.status === 401 || res.status === 400) throw new KvError(body.error?.code === 'KV_UNAUTHORIZED' ? 'KV_UNAUTHORIZED' : 'KV_INVALID_ARGUMENT', `join refused by ${seed}: ${body.error?.message}`);
      last = new Error(`${seed}: ${body.error?.code} ${body.error?.message}`);
    } catch (err) {
      if (err instanceof KvError) throw err;
      last = err;
    }
    log.warn({ seed, err: (last as Error)?.message }, 'join attempt failed; retrying');
    await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** Math.min(attempt, 4))));
  }
  throw new KvError('KV_UNAVAILABLE', `could not join through ${seeds.join(', ')}: ${(last as Error)?.message}`);
}
