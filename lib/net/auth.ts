/**
 * Mutual HMAC-SHA256 challenge-response between two nodes that share the cluster secret.
 * Pure message construction and checking; the socket handling lives in ws-transport.ts.
 *
 *   acceptor → dialer    ['kv-peer/1', 'challenge', nonceA]
 *   dialer   → acceptor  ['kv-peer/1', 'auth', dialerId, acceptorId, nonceD, macD]
 *   acceptor → dialer    ['kv-peer/1', 'welcome', acceptorId, macA]
 *
 *   macD = HMAC(secret, transcript('dialer',   clusterId, dialerId, acceptorId, nonceA, nonceD))
 *   macA = HMAC(secret, transcript('acceptor', clusterId, dialerId, acceptorId, nonceA, nonceD))
 *
 * Both fresh nonces make every MAC single-use (no replay); the role label makes the two
 * MACs of one exchange differ (no reflection of a MAC back to its author); both ids bind
 * the session to the pair (no relaying to a third node); the cluster id keeps two
 * clusters that reuse a secret apart. The cluster id and secret never travel.
 * The acceptor speaks first and says nothing but its nonce until the dialer has proven
 * itself, and the dialer sends no frame before it has checked the acceptor's MAC.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { NODE_ID_RE } from '../core/hlc.ts';

export const PROTOCOL = 'kv-peer/1';
export const NONCE_BYTES = 32;
const MAC_BYTES = 32;
/** Handshake messages are a few hundred bytes; anything bigger is not a handshake. */
export const HANDSHAKE_MAX_BYTES = 512;

export interface AuthConfig {
  readonly clusterId: string;
  /** Shared cluster secret: at least 16 bytes (128 bits), checked at construction. */
  readonly secret: Buffer;
}

export const SECRET_MIN_BYTES = 16;

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

type Role = 'dialer' | 'acceptor';

/** Length-prefixed fields so no two different transcripts serialise to the same bytes. */
function transcript(role: Role, clusterId: string, dialerId: string, acceptorId: string, nonceA: Buffer, nonceD: Buffer): Buffer {
  const fields = [Buffer.from(PROTOCOL), Buffer.from(role), Buffer.from(clusterId), Buffer.from(dialerId),
    Buffer.from(acceptorId), nonceA, nonceD];
  const parts: Buffer[] = [];
  for (const f of fields) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(f.length, 0);
    parts.push(len, f);
  }
  return Buffer.concat(parts);
}

export function computeMac(cfg: AuthConfig, role: Role, dialerId: string, acceptorId: string, nonceA: Buffer, nonceD: Buffer): Buffer {
  return createHmac('sha256', cfg.secret).update(transcript(role, cfg.clusterId, dialerId, acceptorId, nonceA, nonceD)).digest();
}

export function macEquals(a: Buffer, b: Buffer): boolean {
  return a.length === MAC_BYTES && b.length === MAC_BYTES && timingSafeEqual(a, b);
}

export type HandshakeMessage =
  | { t: 'challenge'; nonce: Buffer }
  | { t: 'auth'; dialerId: string; acceptorId: string; nonce: Buffer; mac: Buffer }
  | { t: 'welcome'; acceptorId: string; mac: Buffer };

export function toWire(m: HandshakeMessage): unknown[] {
  switch (m.t) {
    case 'challenge': return [PROTOCOL, m.t, m.nonce];
    case 'auth': return [PROTOCOL, m.t, m.dialerId, m.acceptorId, m.nonce, m.mac];
    case 'welcome': return [PROTOCOL, m.t, m.acceptorId, m.mac];
  }
}

const isBytes = (v: unknown, n: number): v is Uint8Array => v instanceof Uint8Array && v.length === n;
const isId = (v: unknown): v is string => typeof v === 'string' && NODE_ID_RE.test(v);

/** Parses a decoded handshake message; null for anything malformed or of another protocol. */
export function fromWire(v: unknown): HandshakeMessage | null {
  if (!Array.isArray(v) || v[0] !== PROTOCOL) return null;
  const t = v[1];
  if (t === 'challenge' && v.length === 3 && isBytes(v[2], NONCE_BYTES)) {
    return { t, nonce: Buffer.from(v[2]) };
  }
  if (t === 'auth' && v.length === 6 && isId(v[2]) && isId(v[3]) && isBytes(v[4], NONCE_BYTES) && isBytes(v[5], MAC_BYTES)) {
    return { t, dialerId: v[2], acceptorId: v[3], nonce: Buffer.from(v[4]), mac: Buffer.from(v[5]) };
  }
  if (t === 'welcome' && v.length === 4 && isId(v[2]) && isBytes(v[3], MAC_BYTES)) {
    return { t, acceptorId: v[2], mac: Buffer.from(v[3]) };
  }
  return null;
}
