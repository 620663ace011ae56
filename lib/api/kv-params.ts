/**
 * Syntax of the conditional-write headers (`If-Match`, `If-None-Match`) and of the `ttl`,
 * `serial` and listing parameters, checked once at the HTTP edge; what they mean is decided
 * inside (lib/node/cas.ts, coordinator.ts, list.ts). Every refusal is 400
 * KV_INVALID_ARGUMENT naming the header or parameter.
 */
import { KvError } from '../errors.ts';
import { isVersion } from '../core/hlc.ts';
import { parseQuorum } from '../core/quorum.ts';
import type { ListOptions, WriteCondition } from './service.ts';

/**
 * Longest TTL: 10 years. Beyond that a TTL means "never" in practice, and every expiry time
 * stays a small safe integer of milliseconds.
 */
export const TTL_MAX_SECONDS = 10 * 365 * 24 * 3600;
/** Keys per listing page when the client asks for none, and at most (S3's max-keys). */
export const LIST_DEFAULT_LIMIT = 100;
export const LIST_MAX_LIMIT = 1000;

function bad(message: string): never {
  throw new KvError('KV_INVALID_ARGUMENT', message);
}

/** `?ttl=SECONDS` → milliseconds (undefined: no TTL). Whole seconds, 1..TTL_MAX_SECONDS. */
export function parseTtl(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,10}$/.test(raw) || Number(raw) < 1 || Number(raw) > TTL_MAX_SECONDS) {
    bad(`ttl must be a whole number of seconds in 1..${TTL_MAX_SECONDS}; got "${raw.slice(0, 20)}"`);
  }
  return Number(raw) * 1000;
}

function header(raw: string | string[] | undefined): string | undefined {
  if (raw === undefined) return undefined;
  return (Array.isArray(raw) ? raw.join(', ') : raw).trim();
}

/**
 * The condition of a PUT or DELETE from its headers (undefined: an ordinary write).
 * `If-Match: <version>` (the X-Kv-Version of the value the client saw; ETag-style double
 * quotes allowed) or, for PUT only, `If-None-Match: *` (create only if absent).
 */
export function parseCondition(method: 'PUT' | 'DELETE', ifMatchRaw: string | string[] | undefined, ifNoneMatchRaw: string | string[] | undefined): WriteCondition | undefined {
  const ifMatch = header(ifMatchRaw);
  const ifNoneMatch = header(ifNoneMatchRaw);
  if (ifMatch !== undefined && ifNoneMatch !== undefined) bad('If-Match and If-None-Match exclude each other');
  if (ifNoneMatch !== undefined) {
    if (method !== 'PUT') bad('If-None-Match is for PUT (create only if absent)');
    if (ifNoneMatch !== '*') bad('If-None-Match takes only "*" (create only if absent)');
    return { ifNoneMatch: true };
  }
  if (ifMatch === undefined) return undefined;
  const v = ifMatch.length >= 2 && ifMatch.startsWith('"') && ifMatch.endsWith('"') ? ifMatch.slice(1, -1) : ifMatch;
  if (v === '*') bad('If-Match: * is not supported; send the version to match (X-Kv-Version)');
  if (!isVersion(v)) bad('If-Match takes one version, as returned in X-Kv-Version');
  return { ifMatch: v };
}

/** `GET /kv?prefix=&limit=&cursor=&r=` (unknown parameters were refused by the caller). */
export function parseListQuery(q: ReadonlyMap<string, string>, n: number, maxKeyBytes: number): Omit<ListOptions, 'signal'> {
  const prefix = q.get('prefix') ?? '';
  if (Buffer.byteLength(prefix) > maxKeyBytes) bad(`prefix is longer than ${maxKeyBytes} bytes`);
  const rawLimit = q.get('limit');
  let limit = LIST_DEFAULT_LIMIT;
  if (rawLimit !== undefined) {
    if (!/^[0-9]{1,4}$/.test(rawLimit) || Number(rawLimit) < 1 || Number(rawLimit) > LIST_MAX_LIMIT) bad(`limit must be 1..${LIST_MAX_LIMIT}; got "${rawLimit.slice(0, 20)}"`);
    limit = Number(rawLimit);
  }
  const cursor = q.get('cursor');
  if (cursor === '') bad('cursor must not be empty (omit it for the first page)');
  const rRaw = q.get('r');
  return {
    prefix, limit,
    ...(cursor === undefined ? {} : { cursor }),
    ...(rRaw === undefined ? {} : { r: parseQuorum('r', rRaw, n) }),
  };
}
