/**
 * Validation of everything the Paxos core is handed from outside: messages from peers
 * (possibly hostile) and acceptor state read back from disk. Anything malformed throws
 * KvError('KV_INVALID_ARGUMENT') before it reaches the core; what comes back is a fresh
 * object holding only the known fields, so extra fields a peer adds go nowhere.
 *
 * Every field is bounded: keys by `maxKeyBytes`, values by `maxValueBytes`, ballots and
 * versions by the HLC version format (at most 81 characters), expiry by the safe-integer
 * range, and the rank relations the protocol relies on (a proposal's version never above
 * its ballot, a commit's record never below the committed version) are enforced too.
 */
import { KvError } from '../../errors.ts';
import { isVersion } from '../hlc.ts';
import { compareRanks } from './rank.ts';
import { ACCEPT_HISTORY } from './types.ts';
import type {
  AcceptedProposal, AcceptorState, Ballot, PaxosMessage, PaxosRecord, PaxosReply, PaxosRequest, Rank,
} from './types.ts';

export interface PaxosLimits {
  /** Longest key in UTF-8 bytes (Config.maxKeyBytes, default 1024). */
  readonly maxKeyBytes: number;
  /** Largest value in bytes (Config.maxValueBytes, default 1 MiB). */
  readonly maxValueBytes: number;
}

function bad(what: string, message: string): never {
  throw new KvError('KV_INVALID_ARGUMENT', `invalid paxos ${what}: ${message}`);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** UTF-8 length of a JavaScript string, without allocating (lone surrogates count 3, as TextEncoder's U+FFFD). */
export function utf8Bytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

function key(what: string, x: unknown, limits: PaxosLimits): string {
  // The character count bounds the UTF-8 length from below: cheap rejection of huge strings first.
  if (typeof x !== 'string' || x.length === 0 || x.length > limits.maxKeyBytes || utf8Bytes(x) > limits.maxKeyBytes) {
    bad(what, `key must be a string of 1..${limits.maxKeyBytes} UTF-8 bytes`);
  }
  return x;
}

function version(what: string, field: string, x: unknown): string {
  if (!isVersion(x)) bad(what, `${field} must be a version`);
  return x;
}

function optVersion(what: string, field: string, x: unknown): string | null {
  return x === null ? null : version(what, field, x);
}

function paxosRecord(what: string, x: unknown, limits: PaxosLimits): PaxosRecord {
  if (!isObject(x)) bad(what, 'record must be an object');
  const v = version(what, 'record.version', x.version);
  const value = x.value;
  if (value !== null && !(value instanceof Uint8Array)) bad(what, 'record.value must be bytes or null');
  if (value !== null && value.byteLength > limits.maxValueBytes) bad(what, `record.value is over ${limits.maxValueBytes} bytes`);
  const exp = x.expiresAt;
  if (exp === undefined) return { version: v, value };
  if (typeof exp !== 'number' || !Number.isSafeInteger(exp) || exp < 0) bad(what, 'record.expiresAt must be a non-negative integer (ms)');
  return { version: v, value, expiresAt: exp };
}

function optRecord(what: string, x: unknown, limits: PaxosLimits): PaxosRecord | null {
  return x === null ? null : paxosRecord(what, x, limits);
}

function rank(what: string, field: string, x: unknown): Rank | null {
  if (x === null) return null;
  if (!isObject(x)) bad(what, `${field} must be an object or null`);
  const ballot = version(what, `${field}.ballot`, x.ballot);
  const v = version(what, `${field}.version`, x.version);
  if (v > ballot) bad(what, `${field}.version is above its ballot`);
  return { ballot, version: v };
}

function accepted(what: string, x: unknown, limits: PaxosLimits): AcceptedProposal | null {
  if (x === null) return null;
  if (!isObject(x)) bad(what, 'accepted must be an object or null');
  const ballot = version(what, 'accepted.ballot', x.ballot);
  const record = paxosRecord(what, x.record, limits);
  if (record.version > ballot) bad(what, 'accepted record version is above its ballot');
  return { ballot, record };
}

/** Throws KV_INVALID_ARGUMENT unless `x` is a well-formed Paxos message. */
export function validatePaxosMessage(x: unknown, limits: PaxosLimits): PaxosMessage {
  const what = 'message';
  if (!isObject(x)) bad(what, 'not an object');
  const type = x.type;
  const k = key(what, x.key, limits);
  const ballot: Ballot = version(what, 'ballot', x.ballot);
  switch (type) {
    case 'prepare':
      return { type, key: k, ballot };
    case 'promise': {
      const acc = accepted(what, x.accepted, limits);
      const committed = rank(what, 'committed', x.committed);
      // A promise for `ballot` was given after everything it reports: nothing above it.
      if (acc !== null && acc.ballot > ballot) bad(what, 'promise reports an accepted ballot above its own');
      if (committed !== null && committed.ballot > ballot) bad(what, 'promise reports a commit above its own ballot');
      return { type, key: k, ballot, accepted: acc, committed, record: optRecord(what, x.record, limits) };
    }
    case 'propose': {
      const record = paxosRecord(what, x.record, limits);
      if (record.version > ballot) bad(what, 'proposed record version is above the ballot');
      return { type, key: k, ballot, record };
    }
    case 'accept': {
      const v = version(what, 'version', x.version);
      if (v > ballot) bad(what, 'accepted version is above the ballot');
      return { type, key: k, ballot, version: v };
    }
    case 'nack': {
      const v = optVersion(what, 'version', x.version);
      if (v !== null && v > ballot) bad(what, 'nacked version is above the ballot');
      if (typeof x.neverAccepted !== 'boolean') bad(what, 'neverAccepted must be a boolean');
      return {
        type, key: k, ballot, version: v, promised: optVersion(what, 'promised', x.promised),
        committed: rank(what, 'committed', x.committed), neverAccepted: x.neverAccepted,
      };
    }
    case 'commit': {
      const v = version(what, 'version', x.version);
      if (v > ballot) bad(what, 'committed version is above the ballot');
      const record = paxosRecord(what, x.record, limits);
      if (record.version < v) bad(what, 'commit record is older than the committed version');
      return { type, key: k, ballot, version: v, record };
    }
    case 'committed': {
      const v = version(what, 'version', x.version);
      if (v > ballot) bad(what, 'committed version is above the ballot');
      return { type, key: k, ballot, version: v };
    }
    default:
      return bad(what, `unknown type ${String(type).slice(0, 32)}`);
  }
}

export function isPaxosRequest(m: PaxosMessage): m is PaxosRequest {
  return m.type === 'prepare' || m.type === 'propose' || m.type === 'commit';
}

export function isPaxosReply(m: PaxosMessage): m is PaxosReply {
  return !isPaxosRequest(m);
}

/**
 * Throws KV_INVALID_ARGUMENT unless `x` is an acceptor state as acceptor.ts writes it,
 * invariants included: a state that breaks them was not written by this code and cannot
 * be trusted to keep its promises.
 */
export function validateAcceptorState(x: unknown, limits: PaxosLimits): AcceptorState {
  const what = 'acceptor state';
  if (!isObject(x)) bad(what, 'not an object');
  const promised = optVersion(what, 'promised', x.promised);
  const acc = accepted(what, x.accepted, limits);
  const committed = rank(what, 'committed', x.committed);
  if (acc !== null && (promised === null || acc.ballot > promised)) bad(what, 'accepted ballot above the promise');
  if (committed !== null && (promised === null || committed.ballot > promised)) bad(what, 'committed ballot above the promise');
  if (acc !== null && compareRanks({ ballot: acc.ballot, version: acc.record.version }, committed) <= 0) bad(what, 'accepted proposal not above the commit');
  if (!Array.isArray(x.recent) || x.recent.length > ACCEPT_HISTORY) bad(what, `recent must be an array of at most ${ACCEPT_HISTORY} ranks`);
  const recent: Rank[] = [];
  for (const r of x.recent as unknown[]) {
    const rk = rank(what, 'recent[]', r);
    if (rk === null || compareRanks(rk, recent[recent.length - 1] ?? null) <= 0) bad(what, 'recent ranks must be ascending');
    if (promised === null || rk.ballot > promised) bad(what, 'recent rank above the promise');
    recent.push(rk);
  }
  if (acc !== null && compareRanks({ ballot: acc.ballot, version: acc.record.version }, recent[recent.length - 1] ?? null) !== 0) {
    bad(what, 'accepted proposal is not the last recent rank');
  }
  return { promised, accepted: acc, committed, recent };
}
