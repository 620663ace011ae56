/**
 * Hinted handoff (DESIGN.md §8). A write meant for a down replica is kept as a hint
 * in the `hints` sublevel of a fallback node and replayed, with its original version
 * (so replay is idempotent under LWW), once gossip says the target is alive again.
 *
 * Bounds (config): hintsMaxCount, hintsMaxBytes per node, hintsMaxAgeMs per hint; a
 * hint over a bound is dropped and counted: anti-entropy repairs what hints miss.
 */
import { Packr } from 'msgpackr';
import { KvError } from '../errors.ts';
import { parseVersion } from '../core/hlc.ts';
import { SUBLEVELS, type Backend, type BatchOp } from '../storage/backend.ts';
import { recordToWire, validateRecord, type StoredRecord } from '../storage/record.ts';
import type { Transport } from '../net/transport.ts';
import { validateKey, validateWireRecord } from './replica.ts';
import type { Logger } from './log.ts';
import type { VersionGuard } from './peer-guard.ts';
import { Gauge, type Registry } from 'prom-client';
import { partitionOf, replicasOf } from '../core/partitioner.ts';
import type { Topology } from '../core/topology.ts';

const packr = new Packr({ useRecords: false });

export interface HintLimits {
  hintsMaxCount: number;
  hintsMaxBytes: number;
  hintsMaxAgeMs: number;
  maxKeyBytes: number;
  maxValueBytes: number;
  /** Bounds the version of every hint taken from a peer and of every hint replayed (kv_versions_refused_total). */
  versionGuard?: VersionGuard;
}

/** Delivery round period. 1 s: hints reach a recovered node within a second or two of it being seen alive. */
const DELIVERY_INTERVAL_MS = 1000;
/** Hints replayed per target per round (at most ~1 MiB/s of 1 KiB records, near Cassandra's 1024 KiB/s throttle). */
const DELIVERY_BATCH = 1024;
/** Replays in flight at once per target. */
const DELIVERY_CONCURRENCY = 32;

interface Hint { dbKey: string; target: string; key: string; rec: StoredRecord; createdAt: number; bytes: number }

/** What the hint store asks about the cluster (memberlist-style delegate). */
export interface HintDelegate {
  /** Whether gossip considers `id` alive (hints are replayed only then). */
  isAlive(id: string): boolean;
  /** This node's topology epoch (replays are fenced like any replica write). */
  epoch(): number;
  /** Whether `target` still owns `key` (current or future replica): hints for anything else are dropped. */
  owns(target: string, key: string): boolean;
  /** Whether `target` is still a member of the cluster. */
  isMember(target: string): boolean;
}

export interface HintStoreOptions {
  backend: Backend;
  transport: Transport;
  limits: HintLimits;
  log: Logger;
  cluster: HintDelegate;
  /** Registers kv_hints_pending and kv_hints_by_fate here. */
  registry?: Registry;
  now?: () => number;
}

/** The cluster questions a hint store asks, answered from the committed topology and gossip. */
export function topologyHintDelegate(topology: () => Topology, isAlive: (id: string) => boolean): HintDelegate {
  return {
    isAlive,
    epoch: () => topology().epoch,
    owns: (target, key) => {
      const t = topology();
      if (t.epoch === 0) return true;
      const p = partitionOf(key, t.partitions);
      return replicasOf(t.table('current'), p).includes(target) || replicasOf(t.table('future'), p).includes(target);
    },
    isMember: (id) => {
      const m = topology().member(id);
      return m !== undefined && m.state !== 'removed';
    },
  };
}

export class HintStore {
  private seq = 0;
  private count = 0;
  private bytes = 0;
  private readonly perTarget = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private delivering = false;
  readonly stats = { stored: 0, dropped: 0, delivered: 0, expired: 0 };

  private readonly backend: Backend;
  private readonly transport: Transport;
  private readonly limits: HintLimits;
  private readonly log: Logger;
  private readonly cluster: HintDelegate;
  private readonly now: () => number;

  constructor(o: HintStoreOptions) {
    this.backend = o.backend;
    this.transport = o.transport;
    this.limits = o.limits;
    this.log = o.log;
    this.cluster = o.cluster;
    this.now = o.now ?? Date.now;
    const { transport, limits } = o;
    if (o.registry) this.registerMetrics(o.registry);
    transport.handle('hint.put', async (_from, payload) => {
      if (!Array.isArray(payload) || payload.length !== 3) throw new KvError('KV_INVALID_ARGUMENT', 'hint.put takes [target, key, record]');
      const [target, key, rec] = payload as [unknown, unknown, unknown];
      if (typeof target !== 'string' || target.length === 0 || target.length > 64) throw new KvError('KV_INVALID_ARGUMENT', 'bad hint target');
      const record = validateWireRecord(rec, limits.maxValueBytes);
      // A far-future version kept as a hint would be replayed later and win every comparison there.
      limits.versionGuard?.check(record.version, 'hint');
      return this.add(target, validateKey(key, limits.maxKeyBytes), record);
    });
  }

  private registerMetrics(r: Registry): void {
    const pending = (): number => this.pending();
    const stats = this.stats;
    new Gauge({ name: 'kv_hints_pending', help: 'Hints kept on this node for down replicas', registers: [r], collect() { this.set(pending()); } });
    const byFate = new Gauge({ name: 'kv_hints_by_fate', help: 'Hints by fate since start: stored, delivered, dropped (over a bound), expired',
      labelNames: ['fate'] as const, registers: [r],
      collect() { for (const [fate, n] of Object.entries(stats)) byFate.labels({ fate }).set(n); } });
  }

  /** Rebuild the counters from disk (bounded by hintsMaxCount). */
  async open(): Promise<void> {
    for await (const [k, v] of this.backend.range(SUBLEVELS.hints, {})) {
      const target = k.slice(0, k.indexOf('\u0000'));
      this.count++;
      this.bytes += v.length;
      this.perTarget.set(target, (this.perTarget.get(target) ?? 0) + 1);
      this.seq = Math.max(this.seq, parseInt(k.slice(k.indexOf('\u0000') + 1), 16) + 1);
    }
    this.timer = setInterval(() => void this.deliverAll(), DELIVERY_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  pending(target?: string): number {
    return target === undefined ? this.count : this.perTarget.get(target) ?? 0;
  }

  /** Store a hint; false when a bound refused it. */
  async add(target: string, key: string, rec: StoredRecord): Promise<boolean> {
    const value = packr.pack([key, recordToWire(rec), this.now()]);
    if (this.count + 1 > this.limits.hintsMaxCount || this.bytes + value.length > this.limits.hintsMaxBytes) {
      this.stats.dropped++;
      return false;
    }
    const dbKey = `${target}\u0000${(this.seq++).toString(16).padStart(12, '0')}`;
    this.count++;
    this.bytes += value.length;
    this.perTarget.set(target, (this.perTarget.get(target) ?? 0) + 1);
    try {
      await this.backend.batch([{ type: 'put', sub: SUBLEVELS.hints, key: dbKey, value }], false);
    } catch (err) {
      this.forget(target, value.length);
      throw err;
    }
    this.stats.stored++;
    return true;
  }

  private forget(target: string, bytes: number): void {
    this.count--;
    this.bytes -= bytes;
    const left = (this.perTarget.get(target) ?? 1) - 1;
    if (left <= 0) this.perTarget.delete(target);
    else this.perTarget.set(target, left);
  }

  private async deliverAll(): Promise<void> {
    if (this.delivering) return;
    this.delivering = true;
    try {
      for (const target of [...this.perTarget.keys()]) {
        if (this.cluster.isAlive(target) && this.transport.isConnected(target)) await this.deliver(target);
        else await this.expire(target);
      }
    } catch (err) {
      this.log.warn({ err }, 'hint delivery round failed');
    } finally {
      this.delivering = false;
    }
  }

  /** Hints for a target that stays away (or was removed) still age out, or they would fill the bounds for everyone. */
  private async expire(target: string): Promise<void> {
    const now = this.now();
    const gone: BatchOp[] = [];
    for await (const [k, v] of this.backend.range(SUBLEVELS.hints, { gt: `${target}\u0000`, lt: `${target}\u0001`, limit: DELIVERY_BATCH })) {
      const [, wire, createdAt] = packr.unpack(v) as [string, unknown, number];
      const rec = validateRecord(wire);
      if (rec && !this.tooOld(rec, createdAt, now) && this.cluster.isMember(target)) break; // oldest first: the rest are younger
      gone.push({ type: 'del', sub: SUBLEVELS.hints, key: k });
      this.forget(target, v.length);
      this.stats.expired++;
    }
    if (gone.length > 0) await this.backend.batch(gone, false);
  }

  /**
   * A hint's age counts from its record's version time (or its creation here, if earlier):
   * the tombstone grace that bounds it is measured from the tombstone's version too.
   */
  private tooOld(rec: StoredRecord, createdAt: number, now: number): boolean {
    return now - Math.min(createdAt, parseVersion(rec.version).ts.wall) > this.limits.hintsMaxAgeMs;
  }

  private inBound(h: Hint): boolean {
    try {
      this.limits.versionGuard?.check(h.rec.version, 'hint');
      return true;
    } catch {
      this.log.debug({ target: h.target, version: h.rec.version.slice(0, 80) }, 'hint dropped: version too far ahead of this node\'s clock');
      return false;
    }
  }

  private async deliver(target: string): Promise<void> {
    const hints: Hint[] = [];
    for await (const [k, v] of this.backend.range(SUBLEVELS.hints, { gt: `${target}\u0000`, lt: `${target}\u0001`, limit: DELIVERY_BATCH })) {
      const [key, wire, createdAt] = packr.unpack(v) as [string, unknown, number];
      const rec = validateRecord(wire);
      if (rec) hints.push({ dbKey: k, target, key, rec, createdAt, bytes: v.length });
    }
    const done: BatchOp[] = [];
    const now = this.now();
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < hints.length) {
        const h = hints[i++] as Hint;
        if (this.tooOld(h.rec, h.createdAt, now) || !this.cluster.owns(target, h.key) || !this.inBound(h)) {
          // Too old, the target no longer owns the key (a copy there would outlive tombstone GC),
          // or a version too far ahead (a hint stored before versions were bounded): dropped.
          this.stats.expired++;
        } else {
          try {
            await this.transport.request(target, 'rep.put', [h.key, recordToWire(h.rec), this.cluster.epoch()], { timeoutMs: 5000 });
            this.stats.delivered++;
          } catch {
            return; // target went away again; keep the rest for the next round
          }
        }
        done.push({ type: 'del', sub: SUBLEVELS.hints, key: h.dbKey });
        this.forget(target, h.bytes);
      }
    };
    await Promise.all(Array.from({ length: DELIVERY_CONCURRENCY }, worker));
    if (done.length > 0) await this.backend.batch(done, false);
    if (done.length > 0) this.log.info({ target, delivered: done.length, left: this.pending(target) }, 'hints replayed');
  }
}
