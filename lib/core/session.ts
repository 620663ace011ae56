/**
 * Session tokens (`X-Kv-Session`), after Azure Cosmos DB's session consistency: a client
 * that sends back the token of its last answer reads its own writes and never reads older
 * than it has read, through any coordinator and any `r`.
 *
 * A token is the highest version the client has observed, followed by the highest version
 * it observed of each of its most recently used keys, newest first:
 *
 *   <version>[,<key hash>:<version>]...      e.g.
 *   0191a2b3c4d50000:n1,9f3c2a1b4d5e6f70:0191a2b3c4d50000:n1
 *
 * `key hash` is the key's xxh64 in 16 hex digits, so a token never carries key bytes.
 * Writes merge the token into the coordinator's HLC before stamping (the new version is
 * above everything the client saw); reads of a key demand a version at least that key's
 * entry. Versions are bounded like any other (checkVersionBound) by the caller.
 *
 * Pure: parsing, merging and formatting only.
 */
import { KvError } from '../errors.ts';
import { isVersion, type Version } from './hlc.ts';
import { h64 } from './partitioner.ts';

/** Keys a token remembers. 64 entries keep a token under ~3 KiB, far below the header limit. */
export const SESSION_MAX_KEYS = 64;
/** Longest token accepted: one version per entry plus the header's own, with room for long node ids. */
export const SESSION_MAX_BYTES = (SESSION_MAX_KEYS + 1) * (17 + 16 + 65) + SESSION_MAX_KEYS;

const HASH_RE = /^[0-9a-f]{16}$/;

export interface SessionToken {
  /** Highest version observed by the client, on any key. */
  readonly max: Version;
  /** key hash → highest version observed on that key, most recent first. */
  readonly keys: ReadonlyMap<string, Version>;
}

/** The token's key for `key`. */
export function sessionKeyHash(key: string): string {
  return BigInt.asUintN(64, h64(key)).toString(16).padStart(16, '0');
}

export function parseSession(raw: string): SessionToken {
  const bad = (why: string): never => { throw new KvError('KV_INVALID_ARGUMENT', `invalid X-Kv-Session token: ${why}`); };
  if (raw.length > SESSION_MAX_BYTES) bad(`longer than ${SESSION_MAX_BYTES} bytes`);
  const parts = raw.trim().split(',');
  const max = parts[0] as string;
  if (!isVersion(max)) bad('the first element must be a version');
  if (parts.length - 1 > SESSION_MAX_KEYS) bad(`more than ${SESSION_MAX_KEYS} keys`);
  const keys = new Map<string, Version>();
  for (const part of parts.slice(1)) {
    const i = part.indexOf(':');
    const hash = part.slice(0, i);
    const version = part.slice(i + 1);
    if (i !== 16 || !HASH_RE.test(hash) || !isVersion(version)) bad('entries are <16 hex key hash>:<version>');
    if (version > max) bad('an entry is above the token\'s highest version');
    if (!keys.has(hash)) keys.set(hash, version);
  }
  return { max, keys };
}

export function formatSession(t: SessionToken): string {
  let out = t.max;
  for (const [hash, version] of t.keys) out += `,${hash}:${version}`;
  return out;
}

/** The version a read of the key must reach, if the client has seen one. */
export function sessionRequirement(t: SessionToken | undefined, keyHash: string): Version | undefined {
  return t?.keys.get(keyHash);
}

/** The token after the client observed `version` of the key (undefined: observed absence). */
export function observe(t: SessionToken | undefined, keyHash: string, version: Version | undefined): SessionToken | undefined {
  const prevKey = t?.keys.get(keyHash);
  const keyVersion = prevKey === undefined ? version : version === undefined || prevKey > version ? prevKey : version;
  let max = t?.max;
  if (keyVersion !== undefined && (max === undefined || keyVersion > max)) max = keyVersion;
  if (max === undefined) return undefined;
  const keys = new Map<string, Version>();
  if (keyVersion !== undefined) keys.set(keyHash, keyVersion);
  if (t) {
    for (const [h, v] of t.keys) {
      if (keys.size >= SESSION_MAX_KEYS) break;
      if (h !== keyHash) keys.set(h, v);
    }
  }
  return { max, keys };
}
