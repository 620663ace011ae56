/**
 * The first contact of a fresh node with a cluster, over HTTP to a seed (any member), in
 * two steps. The joiner knows the cluster secret but not the cluster id, so it cannot run
 * the peer handshake yet; the seed must not hand the cluster id to strangers, and a signed
 * join must be single-use and short-lived.
 *
 *   joiner → seed  POST /cluster/join/challenge  {id, addr, nonce: Nj}
 *   seed → joiner  {seed, exp, r, tmac, iv, sealed, tag}
 *                    ticket = (seed, id, addr, exp, r), exp = seed's now + 60 s, r random
 *                    tmac   = HMAC(kTicket, ticket)                  (the seed keeps no state)
 *                    sealed = AES-256-GCM(kSeal, iv, clusterId, aad = ticket ‖ Nj)
 *   joiner          opens `sealed`: it authenticates only if the seed knows the secret and
 *                   answered this very Nj (no replayed or forged challenge); yields clusterId
 *   joiner → seed  POST /cluster/join  {id, addr, seed, exp, r, tmac, mac}
 *                    mac = HMAC(kSign, clusterId ‖ ticket)
 *   seed           checks: seed is itself, exp not passed and at most 60 s ahead, tmac (its
 *                   own ticket, for this id and addr), mac (binds the cluster id, the joiner's
 *                   id and the nonce r), r not used before; then marks r used until exp and
 *                   forwards the join to the Raft leader, which answers the JoinAnswer.
 *
 * Keys are derived from the secret with HKDF-SHA256 under distinct labels, so no value made
 * for one purpose verifies as another. Only the seed's clock matters (it checks its own exp).
 * Used nonces are kept until they expire, at most USED_NONCES_MAX; only fully signed joins
 * get there, so strangers cannot fill it. A ticket names its seed, so a join replayed to
 * another seed is refused too.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import { KvError, isKvError } from '../errors.ts';
import { NODE_ID_RE } from '../core/hlc.ts';
import { validateTopologyCommand } from '../core/topology.ts';
import { KvClient } from '../client/client.ts';
import type { JoinAnswer } from './membership.ts';

/** Lifetime of a join ticket: a join completes in well under a second; 60 s covers a slow seed cluster. */
export const JOIN_TICKET_MS = 60_000;
/** How long a fresh node keeps trying its seeds. 60 s covers a seed cluster still electing. */
const JOIN_DEADLINE_MS = 60_000;
/** While another ownership change runs, ask again this often (the deadline does not run meanwhile). */
const BUSY_RETRY_MS = 2000;
/** Used nonces kept per seed (each for at most JOIN_TICKET_MS): far above any real join rate. */
const USED_NONCES_MAX = 4096;
const HEX32_RE = /^[0-9a-f]{64}$/;
const HEX16_RE = /^[0-9a-f]{32}$/;

function keys(secret: string): { ticket: Buffer; seal: Buffer; sign: Buffer } {
  const k = (label: string): Buffer => Buffer.from(hkdfSync('sha256', Buffer.from(secret), Buffer.alloc(0), label, 32));
  return { ticket: k('kv-join-ticket/1'), seal: k('kv-join-seal/1'), sign: k('kv-join-sign/1') };
}

/** Length-prefixed fields: no two different field lists serialise alike. */
function fields(...xs: (string | number)[]): Buffer {
  const parts: Buffer[] = [];
  for (const x of xs) {
    const b = Buffer.from(String(x));
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(b.length, 0);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

const hmac = (key: Buffer, data: Buffer): string => createHmac('sha256', key).update(data).digest('hex');

function hexEquals(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

interface Ticket { seed: string; id: string; addr: string; exp: number; r: string }
const ticketBytes = (t: Ticket): Buffer => fields('ticket', t.seed, t.id, t.addr, t.exp, t.r);

export interface JoinChallenge { seed: string; exp: number; r: string; tmac: string; iv: string; sealed: string; tag: string }
/** `replace: true` asks to take over dead member `id`'s place (kv node --replace); it is part of what is signed. */
export interface SignedJoin { id: string; addr: string; seed: string; exp: number; r: string; tmac: string; mac: string; replace?: true }

function idAddr(b: Record<string, unknown>): { id: string; addr: string } {
  const c = validateTopologyCommand({ op: 'add', id: b['id'], addr: b['addr'] }) as { id: string; addr: string };
  return { id: c.id, addr: c.addr };
}

function asObject(body: unknown, what: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new KvError('KV_INVALID_ARGUMENT', `${what} body must be a JSON object`);
  return body as Record<string, unknown>;
}

/** The seed's side: issues tickets and verifies signed joins. */
export class JoinSeed {
  private readonly k: ReturnType<typeof keys>;
  /** Used nonce → its expiry (ms). */
  private readonly used = new Map<string, number>();

  constructor(private readonly o: { selfId: string; secret: string; clusterId: () => string; now?: () => number }) {
    this.k = keys(o.secret);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  challenge(body: unknown): JoinChallenge {
    const b = asObject(body, 'join challenge');
    const { id, addr } = idAddr(b);
    const nj = b['nonce'];
    if (typeof nj !== 'string' || !HEX32_RE.test(nj)) throw new KvError('KV_INVALID_ARGUMENT', 'join challenge needs "nonce": 32 random bytes in hex');
    const clusterId = this.o.clusterId();
    if (clusterId === '') throw new KvError('KV_UNAVAILABLE', 'this node is not part of a cluster yet');
    const t: Ticket = { seed: this.o.selfId, id, addr, exp: this.now() + JOIN_TICKET_MS, r: randomBytes(16).toString('hex') };
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.k.seal, iv);
    cipher.setAAD(Buffer.concat([ticketBytes(t), Buffer.from(nj, 'hex')]));
    const sealed = Buffer.concat([cipher.update(clusterId, 'utf8'), cipher.final()]);
    return {
      seed: t.seed, exp: t.exp, r: t.r, tmac: hmac(this.k.ticket, ticketBytes(t)),
      iv: iv.toString('hex'), sealed: sealed.toString('hex'), tag: cipher.getAuthTag().toString('hex'),
    };
  }

  /** Verifies a signed join and spends its nonce; throws KV_UNAUTHORIZED for anything not genuine and fresh. */
  verify(body: unknown): { id: string; addr: string; replace: boolean } {
    const b = asObject(body, 'join');
    const { id, addr } = idAddr(b);
    const { seed, exp, r, tmac, mac } = b;
    const replace = b['replace'] === true;
    if (typeof seed !== 'string' || typeof exp !== 'number' || !Number.isSafeInteger(exp) || typeof r !== 'string' || !HEX16_RE.test(r) ||
      typeof tmac !== 'string' || !HEX32_RE.test(tmac) || typeof mac !== 'string' || !HEX32_RE.test(mac)) {
      throw new KvError('KV_INVALID_ARGUMENT', 'join body must be {"id","addr","seed","exp","r","tmac","mac"} from /cluster/join/challenge');
    }
    const refuse = (why: string): never => { throw new KvError('KV_UNAUTHORIZED', `join refused: ${why}`); };
    const now = this.now();
    if (seed !== this.o.selfId) refuse(`the ticket was issued by ${seed.slice(0, 64)}, not this node`);
    if (now > exp || exp - now > JOIN_TICKET_MS) refuse('the ticket expired; ask for a new challenge');
    const t: Ticket = { seed, id, addr, exp, r };
    if (!hexEquals(tmac, hmac(this.k.ticket, ticketBytes(t)))) refuse('not a ticket of this node for this id and address');
    if (!hexEquals(mac, hmac(this.k.sign, fields(replace ? 'replace' : 'join', this.o.clusterId(), seed, id, addr, exp, r)))) refuse('not signed with this cluster\'s secret');
    for (const [k, e] of this.used) if (e < now) this.used.delete(k);
    if (this.used.has(r)) refuse('this ticket was already used');
    if (this.used.size >= USED_NONCES_MAX) throw new KvError('KV_OVERLOADED', 'too many joins in the last minute; retry later');
    this.used.set(r, exp);
    return { id, addr, replace };
  }
}

/** The joiner's side of step 2: opens the sealed cluster id and signs the join. */
export function signJoin(secret: string, id: string, addr: string, nj: Buffer, ch: JoinChallenge, replace = false): { clusterId: string; join: SignedJoin } {
  const k = keys(secret);
  const t: Ticket = { seed: ch.seed, id, addr, exp: ch.exp, r: ch.r };
  let clusterId: string;
  try {
    const d = createDecipheriv('aes-256-gcm', k.seal, Buffer.from(ch.iv, 'hex'));
    d.setAAD(Buffer.concat([ticketBytes(t), nj]));
    d.setAuthTag(Buffer.from(ch.tag, 'hex'));
    clusterId = Buffer.concat([d.update(Buffer.from(ch.sealed, 'hex')), d.final()]).toString('utf8');
  } catch (err) {
    throw new KvError('KV_UNAUTHORIZED', `seed ${String(ch.seed).slice(0, 64)} could not prove it knows the cluster secret`, { cause: err });
  }
  const mac = hmac(k.sign, fields(replace ? 'replace' : 'join', clusterId, t.seed, id, addr, t.exp, t.r));
  const join: SignedJoin = { id, addr, seed: t.seed, exp: t.exp, r: t.r, tmac: ch.tmac, mac };
  if (replace) join.replace = true;
  return { clusterId, join };
}

function validChallenge(x: unknown): JoinChallenge {
  const c = x as Partial<JoinChallenge> | null;
  const hex = (v: unknown): v is string => typeof v === 'string' && /^[0-9a-f]{1,512}$/.test(v);
  if (typeof c !== 'object' || c === null || typeof c.seed !== 'string' || !NODE_ID_RE.test(c.seed) || typeof c.exp !== 'number' ||
    !hex(c.r) || !hex(c.tmac) || !hex(c.iv) || !hex(c.sealed) || !hex(c.tag)) {
    throw new KvError('KV_INVALID_ARGUMENT', 'malformed join challenge from the seed');
  }
  return c as JoinChallenge;
}

export interface JoinTransport {
  /** PEM of the cluster CA when its nodes speak HTTPS. */
  ca?: string | Buffer;
  /** Take over dead member `id`'s place instead of joining as a new member. */
  replace?: boolean;
}

/** One complete join through one seed: challenge, then the signed join. */
export async function joinThrough(seed: string, secret: string, id: string, addr: string, t: JoinTransport = {}): Promise<JoinAnswer> {
  const c = new KvClient({ nodes: [seed], timeoutMs: 25_000, ...(t.ca !== undefined ? { ca: t.ca } : {}) });
  try {
    const nj = randomBytes(32);
    const ch = validChallenge(await c.json('POST', '/cluster/join/challenge', { id, addr, nonce: nj.toString('hex') }));
    const { clusterId, join } = signJoin(secret, id, addr, nj, ch, t.replace === true);
    const answer = await c.json<JoinAnswer>('POST', '/cluster/join', join);
    if (answer.clusterId !== clusterId) throw new KvError('KV_UNAUTHORIZED', `seed ${seed} answered for another cluster`);
    return answer;
  } finally {
    c.close();
  }
}

export async function requestJoin(seeds: string[], secret: string, id: string, addr: string, log: { warn(o: object, m: string): void },
  t: JoinTransport = {}): Promise<JoinAnswer> {
  let deadline = Date.now() + JOIN_DEADLINE_MS;
  let last: unknown;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const seed = seeds[attempt % seeds.length] as string;
    try {
      return await joinThrough(seed, secret, id, addr, t);
    } catch (err) {
      if (isKvError(err, 'KV_TOPOLOGY_BUSY')) {
        // One ownership change at a time: wait for the one in progress, however long it streams.
        log.warn({ seed, reason: err.message }, 'join waits: KV_TOPOLOGY_BUSY, another ownership change is in progress');
        deadline = Math.max(deadline, Date.now() + JOIN_DEADLINE_MS);
        await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
        continue;
      }
      // A refusal stays a refusal (wrong secret, bad id); only unavailability is retried.
      if (isKvError(err) && (err.code === 'KV_UNAUTHORIZED' || err.code === 'KV_INVALID_ARGUMENT' || err.code === 'KV_INVALID_KEY')) {
        throw new KvError(err.code, `join refused by ${seed}: ${err.message}`, { cause: err });
      }
      last = err;
    }
    log.warn({ seed, err: (last as Error)?.message }, 'join attempt failed; retrying');
    await new Promise((r) => setTimeout(r, Math.min(2000, 200 * 2 ** Math.min(attempt, 4))));
  }
  throw new KvError('KV_UNAVAILABLE', `could not join through ${seeds.join(', ')}: ${(last as Error)?.message}`);
}

const ANSWER_FILE = 'join-answer.json';

/**
 * The members a joiner was told about, kept beside its data: until its own topology reaches
 * the answer's epoch they are the only peers it admits, also after a restart mid-join.
 */
export function saveJoinAnswer(dataDir: string, answer: JoinAnswer): void {
  writeFileSync(joinPath(dataDir, ANSWER_FILE), JSON.stringify({ epoch: answer.epoch, members: answer.members }), { mode: 0o600 });
}

export function loadJoinAnswer(dataDir: string): { epoch: number; members: { id: string; addr: string }[] } | undefined {
  const file = joinPath(dataDir, ANSWER_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as { epoch: number; members: { id: string; addr: string }[] };
    if (typeof o.epoch !== 'number' || !Array.isArray(o.members)) return undefined;
    return { epoch: o.epoch, members: o.members.filter((m) => typeof m?.id === 'string' && NODE_ID_RE.test(m.id) && typeof m.addr === 'string') };
  } catch {
    return undefined;
  }
}
