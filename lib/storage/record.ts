/**
 * The record format on disk and on the wire: msgpackr-packed `[version, value, expiresAt?]`.
 * A null value is a tombstone. Arrays (not maps) keep every record a few bytes smaller.
 */
import { Packr } from 'msgpackr';
import { KvError } from '../errors.ts';
import { isVersion, type Version } from '../core/hlc.ts';

export interface StoredRecord {
  readonly version: Version;
  /** null = tombstone (the key was deleted at `version`). */
  readonly value: Buffer | null;
  /** Wall-clock ms after which the record reads as absent (optional TTL). */
  readonly expiresAt?: number;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeRecord(rec: StoredRecord): Buffer {
  return packr.pack(rec.expiresAt === undefined ? [rec.version, rec.value] : [rec.version, rec.value, rec.expiresAt]);
}

export function decodeRecord(buf: Buffer): StoredRecord {
  const raw = packr.unpack(buf) as unknown;
  const rec = validateRecord(raw);
  if (!rec) throw new KvError('KV_INTERNAL', 'corrupt record on disk');
  return rec;
}

/** Accept a record from a peer or disk only if it is well formed; undefined otherwise. */
export function validateRecord(raw: unknown): StoredRecord | undefined {
  if (!Array.isArray(raw) || raw.length < 2 || raw.length > 3) return undefined;
  const [version, value, expiresAt] = raw as [unknown, unknown, unknown];
  if (!isVersion(version)) return undefined;
  let v: Buffer | null;
  if (value === null) v = null;
  else if (Buffer.isBuffer(value)) v = value;
  else if (value instanceof Uint8Array) v = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  else return undefined;
  if (expiresAt !== undefined && (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt))) return undefined;
  return expiresAt === undefined ? { version, value: v } : { version, value: v, expiresAt };
}

/** The record as a plain wire tuple (for replication frames). */
export function recordToWire(rec: StoredRecord): unknown[] {
  return rec.expiresAt === undefined ? [rec.version, rec.value] : [rec.version, rec.value, rec.expiresAt];
}
