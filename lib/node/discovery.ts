/**
 * Start-up discovery: how a node on a fresh data dir finds its cluster from a list of seed
 * names alone (config `seeds`), with no address given by hand and no flag that differs
 * between pods. In Kubernetes the seeds are the StatefulSet's first pods behind the
 * headless peer Service (deploy/, docs/deploy.md).
 *
 * Each round the node asks every other seed `GET /health?nonce=N`:
 *   - 200: a member serving a cluster → join through it (and every other such seed).
 *   - 503 with a `discovery` proof: a fresh node, like this one, still looking. The proof is
 *     an HMAC over (its id, its address, N) under a key derived from the cluster secret, so
 *     nobody without the secret can pass for a fresh node, and an old answer cannot be
 *     replayed (N is new each time).
 *   - anything else (503 of a member still starting, 401, no answer): not known to be fresh.
 *
 * Creating the cluster is the one decision that cannot be undone, so it has the strictest
 * rule: only the node whose advertise address is the first seed, only with `seedBootstrap`,
 * and only when EVERY other seed proved it is fresh and none serves a cluster. A pod whose
 * volume was lost therefore never creates a second cluster: its peers hold the cluster and
 * answer as members (it joins, and is then refused as a lost member, below), and while they
 * cannot be reached it waits. Only when every seed's data is gone is a new cluster made.
 *
 * While it looks, the node answers every request on its port itself (503 KV_UNAVAILABLE, with
 * the proof on /health), so the other seeds can tell it is fresh; it stops before the real
 * server takes the port.
 */
import http from 'node:http';
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { KvError } from '../errors.ts';
import { NODE_ID_RE } from '../core/hlc.ts';
import { parseHostPort } from '../config.ts';
import type { JoinAnswer } from './membership.ts';

/** One probe's deadline: a seed on the same network answers in milliseconds. */
const PROBE_TIMEOUT_MS = 2000;
/** Pause between rounds, doubling from the first to the last: quick when pods start together, calm when waiting. */
const ROUND_PAUSE_MIN_MS = 250;
const ROUND_PAUSE_MAX_MS = 2000;
/** A progress line at most this often while waiting. */
const LOG_EVERY_MS = 10_000;
/** Bounds of the discovery responder: it serves tiny answers to a handful of peers. */
const RESPONDER_MAX_CONNECTIONS = 64;
const RESPONDER_TIMEOUT_MS = 5000;
/** Longest body read from a seed's answer. */
const MAX_ANSWER_BYTES = 16 * 1024;

const NONCE_RE = /^[0-9a-f]{32}$/;

export type Found = { mode: 'bootstrap' } | { mode: 'join'; seeds: string[] };

export interface DiscoveryOptions {
  id: string;
  listen: string;
  advertise: string;
  seeds: readonly string[];
  seedBootstrap: boolean;
  secret: string;
  timeoutMs: number;
  log: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

type SeedAnswer =
  | { kind: 'member' }
  | { kind: 'fresh'; id: string }
  | { kind: 'other'; why: string };

function proofKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret), Buffer.alloc(0), 'kv-discovery-fresh/1', 32));
}

/** Ids and addresses cannot hold NUL (both are validated), so the joined fields are unambiguous. */
export function freshProof(key: Buffer, id: string, addr: string, nonce: string): string {
  return createHmac('sha256', key).update(`${id}\u0000${addr}\u0000${nonce}`).digest('hex');
}

/** What a seed's answer to `GET /health?nonce=` says about it. Exported for tests. */
export function classifyAnswer(key: Buffer, seed: string, nonce: string, status: number, body: unknown, selfId: string): SeedAnswer {
  if (status === 200) return { kind: 'member' };
  const d = (body as { error?: { discovery?: { id?: unknown; addr?: unknown; proof?: unknown } } } | null)?.error?.discovery;
  if (status !== 503 || !d) return { kind: 'other', why: `HTTP ${status}` };
  if (typeof d.id !== 'string' || !NODE_ID_RE.test(d.id) || d.addr !== seed || typeof d.proof !== 'string' || !/^[0-9a-f]{64}$/.test(d.proof)) {
    return { kind: 'other', why: 'malformed discovery answer' };
  }
  const want = Buffer.from(freshProof(key, d.id, seed, nonce), 'hex');
  if (!timingSafeEqual(want, Buffer.from(d.proof, 'hex'))) return { kind: 'other', why: 'discovery proof not made with this cluster secret' };
  if (d.id === selfId) return { kind: 'other', why: `answers with this node's own id ${selfId}` };
  return { kind: 'fresh', id: d.id };
}

async function probe(key: Buffer, seed: string, selfId: string): Promise<SeedAnswer> {
  const nonce = randomBytes(16).toString('hex');
  try {
    const res = await fetch(`http://${seed}/health?nonce=${nonce}`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const text = await res.text();
    let body: unknown = null;
    if (text.length <= MAX_ANSWER_BYTES) {
      try { body = JSON.parse(text); } catch { /* not ours: classified by status */ }
    }
    return classifyAnswer(key, seed, nonce, res.status, body, selfId);
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return { kind: 'other', why: e.cause?.code ?? e.name ?? 'no answer' };
  }
}

/** The temporary server on the node's port while it looks: proves freshness to whoever asks. */
function startResponder(o: DiscoveryOptions, key: Buffer): Promise<http.Server> {
  const server = http.createServer({ requestTimeout: RESPONDER_TIMEOUT_MS, headersTimeout: RESPONDER_TIMEOUT_MS, maxHeaderSize: 8 * 1024 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const nonce = url.searchParams.get('nonce') ?? '';
    const error: Record<string, unknown> = { code: 'KV_UNAVAILABLE', message: 'fresh node looking for its cluster (discovery)' };
    if (url.pathname === '/health' && NONCE_RE.test(nonce)) {
      error['discovery'] = { id: o.id, addr: o.advertise, proof: freshProof(key, o.id, o.advertise, nonce) };
    }
    const text = JSON.stringify({ error });
    res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'retry-after': '1', connection: 'close' });
    res.end(text);
    req.resume();
  });
  server.maxConnections = RESPONDER_MAX_CONNECTIONS;
  const { host, port } = parseHostPort(o.listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

function stopResponder(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Looks until a seed serves a cluster (join) or this node may create it (bootstrap); throws at the deadline. */
export async function discoverCluster(o: DiscoveryOptions): Promise<Found> {
  const key = proofKey(o.secret);
  const others = o.seeds.filter((s) => s !== o.advertise);
  const first = o.seeds[0] === o.advertise;
  const responder = await startResponder(o, key);
  const started = Date.now();
  let lastLog = 0;
  try {
    for (let round = 0; ; round++) {
      const answers = await Promise.all(others.map((s) => probe(key, s, o.id)));
      const serving = others.filter((_, i) => answers[i]?.kind === 'member');
      if (serving.length > 0) {
        o.log.info({ seeds: serving, rounds: round + 1 }, 'discovery: a cluster answers; joining it');
        return { mode: 'join', seeds: serving };
      }
      const freshIds = new Set(answers.flatMap((a) => (a.kind === 'fresh' ? [a.id] : [])));
      if (o.seedBootstrap && first && answers.every((a) => a.kind === 'fresh') && freshIds.size === others.length) {
        o.log.info({ fresh: [...freshIds], rounds: round + 1 }, 'discovery: every seed is fresh and none serves a cluster; creating it');
        return { mode: 'bootstrap' };
      }
      const now = Date.now();
      const summary = Object.fromEntries(others.map((s, i) => {
        const a = answers[i] as SeedAnswer;
        return [s, a.kind === 'other' ? a.why : a.kind === 'fresh' ? `fresh (${a.id})` : a.kind];
      }));
      if (now - started > o.timeoutMs) {
        throw new KvError('KV_UNAVAILABLE', `discovery found no cluster through ${o.seeds.join(', ')} within ${o.timeoutMs} ms (${JSON.stringify(summary)})`);
      }
      if (now - lastLog >= LOG_EVERY_MS) {
        lastLog = now;
        o.log.info({ seeds: summary, mayCreate: o.seedBootstrap && first }, 'discovery: no cluster yet; still looking');
      }
      await new Promise((r) => setTimeout(r, Math.min(ROUND_PAUSE_MAX_MS, ROUND_PAUSE_MIN_MS * 2 ** Math.min(round, 3))));
    }
  } finally {
    await stopResponder(responder);
  }
}

/**
 * After a discovered join: a node id that is already a full member (normal or leaving)
 * arriving with a fresh data dir is a member whose data was lost. Taking its seat again
 * would make it serve as a replica with none of its partitions and vote in Raft without its
 * log, so it is refused and the operator decides (remove the member, or replace it).
 */
export function refuseLostMember(answer: JoinAnswer, id: string): void {
  const me = answer.members.find((m) => m.id === id);
  if (me && me.state !== 'joining') {
    throw new KvError('KV_CONFIG', `node ${id} is already a ${me.state} member of cluster ${answer.clusterId}, but its data dir is fresh: ` +
      'its data was lost. Remove the member (decommission or removenode) or replace it before starting it again.');
  }
}
