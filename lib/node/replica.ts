/**
 * The replica side of the data path: peer requests to read and write-if-newer one
 * record, fenced by epoch (DESIGN.md §6 "Fencing"). Payloads are positional arrays to
 * keep replication frames small:
 *   rep.put  [key, record, epoch]  → [applied, storedVersion]
 *   rep.get  [key, epoch]          → record | null
 */
import { KvError } from '../errors.ts';
import { validateRecord, recordToWire, type StoredRecord } from '../storage/record.ts';
import type { RecordStore } from '../storage/record-store.ts';
import type { Transport } from '../net/transport.ts';

export interface Fence {
  /** Throws KV_STALE_EPOCH when a request at `epoch` may have picked the wrong owners of `key`. */
  check(key: string, epoch: number): void;
}

export interface ReplicaDeps {
  store: RecordStore;
  transport: Transport;
  fence: Fence;
  maxKeyBytes: number;
  maxValueBytes: number;
  /** Called when a replica write changed a record (metrics). */
  onApplied?: () => void;
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

export function registerReplica(d: ReplicaDeps): void {
  d.transport.handle('rep.put', async (_from, payload) => {
    if (!Array.isArray(payload) || payload.length !== 3) throw new KvError('KV_INVALID_ARGUMENT', 'rep.put takes [key, record, epoch]');
    const key = validateKey(payload[0], d.maxKeyBytes);
    const rec = validateWireRecord(payload[1], d.maxValueBytes);
    d.fence.check(key, validateEpoch(payload[2]));
    const res = await d.store.apply(key, rec);
    if (res.applied) d.onApplied?.();
    return [res.applied, res.version];
  });
  d.transport.handle('rep.get', async (_from, payload) => {
    if (!Array.isArray(payload) || payload.length !== 2) throw new KvError('KV_INVALID_ARGUMENT', 'rep.get takes [key, epoch]');
    const key = validateKey(payload[0], d.maxKeyBytes);
    d.fence.check(key, validateEpoch(payload[1]));
    const rec = await d.store.get(key);
    return rec ? recordToWire(rec) : null;
  });
}
