/**
 * The record store's write decision, pure (DESIGN.md §4 "Conflict rule"): for one batch of
 * writes and purges, in arrival order, against the versions stored before the batch,
 * decide which apply, what the batch writes, how each partition's contents change and what
 * every writer is answered. Last writer wins on the version; equal versions are the same
 * write (idempotent); a purge removes a key only while its stored version is still the one
 * the purger saw, so tombstone GC and hand-offs never drop a newer write.
 */
import type { Version } from './hlc.ts';

export interface Versioned {
  readonly version: Version;
}

/** One item of a batch: a record to write if newer, or (rec = null) a purge of `purgeVersion`. */
export interface BatchItem<R extends Versioned> {
  readonly key: string;
  readonly partition: number;
  readonly rec: R | null;
  readonly purgeVersion?: Version;
}

/** One applied change of a key, as the partition index (Merkle leaves, key counts) sees it. */
export interface RecordChange {
  readonly key: string;
  readonly oldVersion: Version | null;
  readonly newVersion: Version | null;
}

/** A writer's answer: whether its record replaced what was stored, and the version stored after. */
export interface ApplyResult {
  readonly applied: boolean;
  readonly version: Version;
}

export interface BatchDecision<R extends Versioned> {
  /** Per item, in order: the write's result, or for a purge the purged version (undefined: not purged). */
  readonly results: (ApplyResult | undefined)[];
  /** key → what the batch stores for it (null: delete the key). Only keys that changed. */
  readonly writes: ReadonlyMap<string, R | null>;
  /** partition → its changes in order. */
  readonly changes: ReadonlyMap<number, readonly RecordChange[]>;
  /** key → stored version after the batch (null: absent), for every key of the batch. */
  readonly versions: ReadonlyMap<string, Version | null>;
}

/** `stored` holds the version of every key of the batch before it (null: absent). */
export function decideBatch<R extends Versioned>(items: readonly BatchItem<R>[], stored: ReadonlyMap<string, Version | null>): BatchDecision<R> {
  const versions = new Map(stored);
  const writes = new Map<string, R | null>();
  const changes = new Map<number, RecordChange[]>();
  const results: (ApplyResult | undefined)[] = [];
  const change = (it: BatchItem<R>, c: RecordChange): void => {
    let list = changes.get(it.partition);
    if (!list) changes.set(it.partition, (list = []));
    list.push(c);
  };
  for (const it of items) {
    const cur = versions.get(it.key) ?? null;
    if (it.rec === null) {
      const ok = cur !== null && cur === it.purgeVersion;
      if (ok) {
        change(it, { key: it.key, oldVersion: cur, newVersion: null });
        versions.set(it.key, null);
        writes.set(it.key, null);
      }
      results.push(ok ? { applied: true, version: cur } : undefined);
      continue;
    }
    if (cur === null || it.rec.version > cur) {
      change(it, { key: it.key, oldVersion: cur, newVersion: it.rec.version });
      versions.set(it.key, it.rec.version);
      writes.set(it.key, it.rec);
      results.push({ applied: true, version: it.rec.version });
    } else {
      results.push({ applied: false, version: cur });
    }
  }
  return { results, writes, changes, versions };
}

/** A partition's key count after its changes. */
export function countAfter(count: number, changes: readonly RecordChange[]): number {
  for (const ch of changes) count += (ch.oldVersion === null ? 1 : 0) - (ch.newVersion === null ? 1 : 0);
  return count;
}
