/**
 * The replica side of the data path: read and write-if-newer one record, fenced by epoch
 * (DESIGN.md §6 "Fencing") and bounded in time (a version too far ahead of this node's
 * clock is refused). `Replica.apply` is the ONE apply path: the coordinator calls it for
 * its own copy, the `rep.put` handler for every remote one, read repair and hints reach it
 * through `rep.put`. Wire payloads are positional arrays to keep replication frames small;
 * their syntax is checked here at the edge, once:
 *   rep.put  [key, record, epoch]  → [applied, storedVersion]
 *   rep.get  [key, epoch]          → record | null
 */
import { KvError } from '../errors.ts';
import { checkVersionBound, isVersion, type Version } from '../core/hlc.ts';
import { validateRecord, recordToWire, type StoredRecord } from '../storage/record.ts';
import type { RecordStore } from '../storage/record-store.ts';
import type { Transport } from '../net/transport.ts';

export interface Fence {
  /** Throws KV_STALE_EPOCH when a request at `epoch` may have picked the wrong owners of `key`. */
  check(key: string, epoch: number): void;
}

/** A replica's answer to a write: whether it stored the record, and the version it holds now. */
export interface ReplicaAck {
  readonly applied: boolean;
  readonly version: Version;
}

export interface ReplicaOptions {
  store: RecordStore;
  fence: Fence;
  maxKeyBytes: number;
  maxValueBytes: number;
  maxClockSkewMs: number;
  now?: () => number;
  /** A version refused for being too far ahead of this node's clock (metrics). */
  onVersionRefused?: () => void;
  /** False while this node's data is incomplete (it is replacing a dead member and still streaming):
   *  it takes writes but answers no reads, so an empty copy never counts toward R. */
  serving?: () => boolean;
}

export function validateKey(k: unknown, maxKeyBytes: number): string {
  if (typeof k !== 'string' || k.length === 0 || Buffer.byteLength(k) > maxKeyBytes) {
    throw new KvError('KV_INVALID_KEY', 'invalid key in replica request');
  }
  return k;
}

function validateEpoch(e: unknown): number {
  if (typeof e !== 'number' || !Number.isSafeInteger(e) || e < 0) throw new KvError('KV_INVALID_ARGUMENT', 'invalid epoch in replica request');
  return e;
}

export function validateWireRecord(r: unknown, maxValueBytes: number): StoredRecord {
  const rec = validateRecord(r);
  if (!rec) throw new KvError('KV_INVALID_ARGUMENT', 'malformed record in replica request');
  if (rec.value !== null && rec.value.length > maxValueBytes) throw new KvError('KV_VALUE_TOO_LARGE', 'replicated value over the limit');
  return rec;
}

/** The `rep.put` request payload. */
export function putPayload(key: string, rec: StoredRecord, epoch: number): unknown[] {
  return [key, recordToWire(rec), epoch];
}

/** A `rep.put` answer from a peer; undefined when malformed (the caller treats it as lost). */
export function parseAck(raw: unknown): ReplicaAck | undefined {
  if (!Array.isArray(raw) || raw.length !== 2 || typeof raw[0] !== 'boolean' || !isVersion(raw[1])) return undefined;
  return { applied: raw[0], version: raw[1] };
}

export class Replica {
  private readonly now: () => number;

  constructor(private readonly o: ReplicaOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Write-if-newer of one record at `epoch`. Syntax was checked by the caller; this checks meaning. */
  async apply(key: string, rec: StoredRecord, epoch: number): Promise<ReplicaAck> {
    this.o.fence.check(key, epoch);
    try {
      checkVersionBound(rec.version, this.now(), this.o.maxClockSkewMs);
    } catch (err) {
      this.o.onVersionRefused?.();
      throw err;
    }
    return this.o.store.apply(key, rec);
  }

  /** The stored record of `key` (tombstones included) at `epoch`. */
  async read(key: string, epoch: number): Promise<StoredRecord | undefined> {
    this.o.fence.check(key, epoch);
    if (this.o.serving && !this.o.serving()) throw new KvError('KV_UNAVAILABLE', 'this replica is still streaming its data (replacing a dead member)');
    return this.o.store.get(key);
  }

  /** Serve `rep.put` and `rep.get` for peers. */
  register(transport: Transport): void {
    transport.handle('rep.put', async (_from, payload) => {
      if (!Array.isArray(payload) || payload.length !== 3) throw new KvError('KV_INVALID_ARGUMENT', 'rep.put takes [key, record, epoch]');
      const key = validateKey(payload[0], this.o.maxKeyBytes);
      const rec = validateWireRecord(payload[1], this.o.maxValueBytes);
      const ack = await this.apply(key, rec, validateEpoch(payload[2]));
      return [ack.applied, ack.version];
    });
    transport.handle('rep.get', async (_from, payload) => {
      if (!Array.isArray(payload) || payload.length !== 2) throw new KvError('KV_INVALID_ARGUMENT', 'rep.get takes [key, epoch]');
      const rec = await this.read(validateKey(payload[0], this.o.maxKeyBytes), validateEpoch(payload[1]));
      return rec ? recordToWire(rec) : null;
    });
  }
}
