/**
 * Every node's numbers, gathered through any one node. A browser (the dashboard at /ui) or
 * an operator's tool often reaches only one node, e.g. through a Kubernetes client
 * Service, so, as Riak Control does, the node it talks to asks the others:
 *
 *  - `node.stats` (peer request): a node answers a summary of itself (NodeStats): state,
 *    Raft role, epoch, records and bytes on disk, owned partitions, hints pending,
 *    anti-entropy progress and when its last walk completed, request counts and latency
 *    histogram buckets per route and method, event-loop lag, uptime.
 *  - GET /cluster/stats: the node asks every active member at once with a short deadline
 *    (STATS_PEER_TIMEOUT_MS) and answers when all replied or the deadline passed. A member
 *    that did not answer is listed with the error, never waited for.
 *
 * Costs are bounded whatever polls it: a node computes its own summary at most every
 * LOCAL_CACHE_MS and its storage figures every STORAGE_REFRESH_MS; concurrent gathers
 * share one round of peer requests. Answers are bounded too (members, series, buckets,
 * string lengths), and a peer's answer is validated like any peer message.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KvError, isKvError } from '../errors.ts';
import { replicasOf } from '../core/partitioner.ts';
import type { Topology } from '../core/topology.ts';
import type { Transport } from '../net/transport.ts';
import type { Metrics } from '../api/metrics.ts';

/** A member gets this long to answer: a healthy node answers in milliseconds, and even one
 *  with a few hundred ms of event-loop lag makes it; the dashboard polls every 2 s, so a
 *  stalled node still leaves the page live. */
export const STATS_PEER_TIMEOUT_MS = 1500;
/** A node's own summary is reused for this long, however many dashboards poll it. */
const LOCAL_CACHE_MS = 500;
/** Records and bytes on disk change slowly and cost one read per partition: refreshed this often. */
const STORAGE_REFRESH_MS = 5000;
/** Members listed in one answer (the rest are counted in `omitted`): keeps the answer under ~2 MB. */
export const MAX_STATS_MEMBERS = 128;
/** Route × method series per node, busiest first (the route label set is fixed, so this is headroom). */
export const MAX_HTTP_SERIES = 64;
/** Histogram bucket bounds per series (the node's own histogram has 14). */
const MAX_BUCKETS = 32;
/** Files counted under the data dir (LevelDB keeps a few hundred at most). */
const MAX_DISK_FILES = 100_000;
/** Longest string kept from a peer's answer. */
const MAX_STRING = 200;

export interface HttpSeries {
  route: string;
  method: string;
  /** Requests answered since the node started. */
  count: number;
  /** Summed latency, seconds. */
  sumS: number;
  /** Answers with status 400..499 and 500..599. */
  clientErrors: number;
  serverErrors: number;
  /** Cumulative counts per bucket of `HttpStats.boundsS`, then the +Inf bucket (= count). */
  buckets: number[];
}

export interface HttpStats {
  /** Upper bounds of the latency buckets, seconds (the +Inf bucket is implied). */
  boundsS: number[];
  series: HttpSeries[];
}

/** What one node says about itself. */
export interface NodeStats {
  id: string;
  addr: string;
  clusterId: string;
  /** The node's wall clock when it answered, and when it started (ms since the epoch). */
  nowMs: number;
  startedAtMs: number;
  epoch: number;
  ringChecksum: string;
  /** Its own state in its committed membership, or null before it is a member. */
  state: string | null;
  raft: { role: string; term: number; leader: string | null; commit: number };
  /** How many members it sees alive, suspect and dead (itself excluded). */
  view: { alive: number; suspect: number; dead: number };
  storage: { records: number; diskBytes: number; measuredAtMs: number };
  ownership: { partitions: number; primary: number; replicated: number };
  hints: { enabled: boolean; pending: number; stored: number; delivered: number; dropped: number; expired: number };
  antiEntropy: { walk: number; partitionsDone: number; partitionsTotal: number; walksCompleted: number; lastWalkDoneMs: number | null; keysRepaired: number };
  http: HttpStats;
  /** p99 event-loop delay over the last second, ms. */
  eventLoopLagMs: number;
  process: { rssBytes: number; heapUsedBytes: number; nodeVersion: string };
}

export type MemberStats =
  | { id: string; addr: string; state: string; liveness: string; ok: true; latencyMs: number; stats: NodeStats }
  | { id: string; addr: string; state: string; liveness: string; ok: false; error: { code: string; message: string } };

export interface ClusterStats {
  via: string;
  atMs: number;
  timeoutMs: number;
  /** The answering node's /cluster view: members, Raft, epoch. */
  cluster: unknown;
  nodes: MemberStats[];
  /** Active members not listed because of MAX_STATS_MEMBERS. */
  omitted: number;
}

/** What the stats need from the node (named hooks, not positional closures). */
export interface StatsSources {
  selfId: string;
  advertise: string;
  dataDir: string;
  transport: Transport;
  metrics: Metrics;
  clusterId(): string;
  topology(): Topology;
  raft(): { role: string; term: number; leader: string | null; commit: number };
  liveness(id: string): 'alive' | 'suspect' | 'dead';
  partitionKeyCount(partition: number): Promise<number>;
  /** undefined when hinted handoff is off. */
  hints(): { pending: number; stats: { stored: number; delivered: number; dropped: number; expired: number } } | undefined;
  antiEntropy(): { walk: number; partitionsDone: number; partitionsTotal: number; lastWalkDoneMs: number | null } | undefined;
  clusterView(): unknown;
  now?: () => number;
}

export class StatsService {
  private readonly now: () => number;
  private readonly startedAtMs: number;
  private localCache: { at: number; value: Promise<NodeStats> } | undefined;
  private storage: { at: number; value: Promise<NodeStats['storage']> } | undefined;
  private gathering: Promise<ClusterStats> | undefined;

  constructor(private readonly o: StatsSources) {
    this.now = o.now ?? Date.now;
    this.startedAtMs = this.now();
    o.transport.handle('node.stats', () => this.local());
  }

  /** This node's summary (cached for LOCAL_CACHE_MS). */
  local(): Promise<NodeStats> {
    const at = this.now();
    if (!this.localCache || at - this.localCache.at >= LOCAL_CACHE_MS) {
      const value = this.compute();
      value.catch(() => { if (this.localCache?.value === value) this.localCache = undefined; });
      this.localCache = { at, value };
    }
    return this.localCache.value;
  }

  /** Every active member's summary, asked in parallel with a deadline (GET /cluster/stats). */
  gather(): Promise<ClusterStats> {
    this.gathering ??= this.gatherOnce().finally(() => { this.gathering = undefined; });
    return this.gathering;
  }

  private async gatherOnce(): Promise<ClusterStats> {
    const o = this.o;
    const t = o.topology();
    let members = t.activeMembers().map((m) => ({ id: m.id, addr: m.addr, state: m.state as string }));
    // Before the cluster exists (or this node is in it) the answer still shows this node.
    if (!members.some((m) => m.id === o.selfId)) members.unshift({ id: o.selfId, addr: o.advertise, state: t.member(o.selfId)?.state ?? 'none' });
    const omitted = Math.max(0, members.length - MAX_STATS_MEMBERS);
    members = members.slice(0, MAX_STATS_MEMBERS);
    const nodes = await Promise.all(members.map(async (m): Promise<MemberStats> => {
      const base = { id: m.id, addr: m.addr, state: m.state, liveness: m.id === o.selfId ? 'alive' : o.liveness(m.id) };
      const started = this.now();
      try {
        const stats = m.id === o.selfId
          ? await this.local()
          : validateNodeStats(await o.transport.request(m.id, 'node.stats', null, { timeoutMs: STATS_PEER_TIMEOUT_MS }), m.id);
        return { ...base, ok: true, latencyMs: this.now() - started, stats };
      } catch (err) {
        const error = isKvError(err) ? { code: err.code, message: err.message } : { code: 'KV_INTERNAL', message: (err as Error)?.message ?? String(err) };
        return { ...base, ok: false, error: { code: error.code, message: error.message.slice(0, MAX_STRING) } };
      }
    }));
    return { via: o.selfId, atMs: this.now(), timeoutMs: STATS_PEER_TIMEOUT_MS, cluster: o.clusterView(), nodes, omitted };
  }

  private async compute(): Promise<NodeStats> {
    const o = this.o;
    const t = o.topology();
    const self = t.member(o.selfId);
    const view = { alive: 0, suspect: 0, dead: 0 };
    for (const m of t.activeMembers()) if (m.id !== o.selfId) view[o.liveness(m.id)]++;
    const ae = o.antiEntropy();
    const hints = o.hints();
    const [storage, http, lag, walks, repaired] = await Promise.all([
      this.storageStats(), this.httpStats(), this.metricSum('kv_event_loop_lag_seconds'),
      this.metricSum('kv_ae_walks_total'), this.metricSum('kv_ae_keys_repaired_total'),
    ]);
    const mem = process.memoryUsage();
    const raft = o.raft();
    return {
      id: o.selfId, addr: o.advertise, clusterId: o.clusterId(), nowMs: this.now(), startedAtMs: this.startedAtMs,
      epoch: t.epoch, ringChecksum: t.epoch === 0 ? '' : t.table('current').checksum, state: self?.state ?? null,
      raft: { role: raft.role, term: raft.term, leader: raft.leader, commit: raft.commit },
      view, storage, ownership: this.ownership(t),
      hints: hints
        ? { enabled: true, pending: hints.pending, ...pickCounts(hints.stats) }
        : { enabled: false, pending: 0, stored: 0, delivered: 0, dropped: 0, expired: 0 },
      antiEntropy: {
        walk: ae?.walk ?? 0, partitionsDone: ae?.partitionsDone ?? 0, partitionsTotal: ae?.partitionsTotal ?? 0,
        walksCompleted: walks, lastWalkDoneMs: ae?.lastWalkDoneMs ?? null, keysRepaired: repaired,
      },
      http, eventLoopLagMs: lag * 1000,
      process: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, nodeVersion: process.version },
    };
  }

  private ownership(t: Topology): NodeStats['ownership'] {
    if (t.epoch === 0) return { partitions: t.partitions, primary: 0, replicated: 0 };
    const table = t.table('current');
    let primary = 0;
    let replicated = 0;
    for (let p = 0; p < t.partitions; p++) {
      const r = replicasOf(table, p);
      if (r[0] === this.o.selfId) primary++;
      if (r.includes(this.o.selfId)) replicated++;
    }
    return { partitions: t.partitions, primary, replicated };
  }

  private storageStats(): Promise<NodeStats['storage']> {
    const at = this.now();
    if (!this.storage || at - this.storage.at >= STORAGE_REFRESH_MS) {
      const value = (async () => {
        const q = this.o.topology().partitions;
        let records = 0;
        for (let p = 0; p < q; p++) records += await this.o.partitionKeyCount(p);
        return { records, diskBytes: await dirBytes(this.o.dataDir), measuredAtMs: this.now() };
      })();
      value.catch(() => { if (this.storage?.value === value) this.storage = undefined; });
      this.storage = { at, value };
    }
    return this.storage.value;
  }

  /** Sum of a metric's values over its label sets (0 when it is not registered). */
  private async metricSum(name: string): Promise<number> {
    const m = this.o.metrics.registry.getSingleMetric(name);
    if (!m) return 0;
    const got = await m.get();
    return got.values.reduce((s, v) => s + (Number.isFinite(v.value) ? v.value : 0), 0);
  }

  /** kv_http_request_duration_seconds folded over status: one series per route and method. */
  private async httpStats(): Promise<HttpStats> {
    const got = await this.o.metrics.httpDuration.get();
    const bounds = new Set<number>();
    interface Acc { route: string; method: string; count: number; sumS: number; clientErrors: number; serverErrors: number; le: Map<number, number> }
    const acc = new Map<string, Acc>();
    for (const v of got.values as { labels: Record<string, string | number>; value: number; metricName?: string }[]) {
      const route = String(v.labels['route'] ?? '');
      const method = String(v.labels['method'] ?? '');
      const id = `${route} ${method}`;
      let a = acc.get(id);
      if (!a) acc.set(id, (a = { route, method, count: 0, sumS: 0, clientErrors: 0, serverErrors: 0, le: new Map() }));
      const name = v.metricName ?? '';
      if (name.endsWith('_sum')) a.sumS += v.value;
      else if (name.endsWith('_count')) {
        a.count += v.value;
        const status = Number(v.labels['status']);
        if (status >= 400 && status < 500) a.clientErrors += v.value;
        else if (status >= 500) a.serverErrors += v.value;
      } else if (name.endsWith('_bucket')) {
        const le = v.labels['le'] === '+Inf' ? Infinity : Number(v.labels['le']);
        if (Number.isFinite(le)) bounds.add(le);
        a.le.set(le, (a.le.get(le) ?? 0) + v.value);
      }
    }
    const boundsS = [...bounds].sort((x, y) => x - y).slice(0, MAX_BUCKETS);
    const series = [...acc.values()].sort((x, y) => y.count - x.count).slice(0, MAX_HTTP_SERIES).map((a) => ({
      route: a.route, method: a.method, count: a.count, sumS: a.sumS, clientErrors: a.clientErrors, serverErrors: a.serverErrors,
      buckets: [...boundsS.map((b) => a.le.get(b) ?? 0), a.count],
    }));
    return { boundsS, series };
  }
}

function pickCounts(s: { stored: number; delivered: number; dropped: number; expired: number }): { stored: number; delivered: number; dropped: number; expired: number } {
  return { stored: s.stored, delivered: s.delivered, dropped: s.dropped, expired: s.expired };
}

/** Bytes of the files under `dir` (the node's data dir), bounded to MAX_DISK_FILES files. */
async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  let files = 0;
  const stack = [dir];
  while (stack.length > 0 && files < MAX_DISK_FILES) {
    const d = stack.pop() as string;
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      continue; // removed while we walked (LevelDB compaction): skip it
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile() && files++ < MAX_DISK_FILES) total += await stat(p).then((s) => s.size, () => 0);
    }
  }
  return total;
}

// ---- validation of a peer's answer: nothing a peer sends is trusted unchecked ----

function bad(why: string): never {
  throw new KvError('KV_INVALID_ARGUMENT', `node.stats answer: ${why}`);
}

function obj(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) bad(`${what} is not an object`);
  return x as Record<string, unknown>;
}

function num(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(`${k} is not a finite number`);
  return v;
}

function str(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== 'string') bad(`${k} is not a string`);
  return v.slice(0, MAX_STRING);
}

function strOrNull(o: Record<string, unknown>, k: string): string | null {
  return o[k] === null || o[k] === undefined ? null : str(o, k);
}

function nums<K extends string>(x: unknown, what: string, keys: readonly K[]): Record<K, number> {
  const o = obj(x, what);
  const out = {} as Record<K, number>;
  for (const k of keys) out[k] = num(o, k);
  return out;
}

/** A peer's NodeStats, checked field by field and copied (unknown fields dropped, lists bounded). */
export function validateNodeStats(x: unknown, expectedId: string): NodeStats {
  const o = obj(x, 'answer');
  const id = str(o, 'id');
  if (id !== expectedId) bad(`answered as ${id}, asked ${expectedId}`);
  const raft = obj(o['raft'], 'raft');
  const hints = obj(o['hints'], 'hints');
  const ae = obj(o['antiEntropy'], 'antiEntropy');
  const http = obj(o['http'], 'http');
  const proc = obj(o['process'], 'process');
  const boundsRaw = http['boundsS'];
  const seriesRaw = http['series'];
  if (!Array.isArray(boundsRaw) || boundsRaw.length > MAX_BUCKETS) bad('http.boundsS is not a short list');
  if (!Array.isArray(seriesRaw) || seriesRaw.length > MAX_HTTP_SERIES) bad('http.series is not a short list');
  const boundsS = boundsRaw.map((b) => (typeof b === 'number' && Number.isFinite(b) ? b : bad('a bucket bound is not a number')));
  const series = seriesRaw.map((s) => {
    const so = obj(s, 'http series');
    const buckets = so['buckets'];
    if (!Array.isArray(buckets) || buckets.length !== boundsS.length + 1) bad('http series buckets do not match the bounds');
    return {
      route: str(so, 'route'), method: str(so, 'method'), count: num(so, 'count'), sumS: num(so, 'sumS'),
      clientErrors: num(so, 'clientErrors'), serverErrors: num(so, 'serverErrors'),
      buckets: buckets.map((b) => (typeof b === 'number' && Number.isFinite(b) ? b : bad('a bucket count is not a number'))),
    };
  });
  const lastWalk = ae['lastWalkDoneMs'];
  return {
    id, addr: str(o, 'addr'), clusterId: str(o, 'clusterId'), nowMs: num(o, 'nowMs'), startedAtMs: num(o, 'startedAtMs'),
    epoch: num(o, 'epoch'), ringChecksum: str(o, 'ringChecksum'), state: strOrNull(o, 'state'),
    raft: { role: str(raft, 'role'), term: num(raft, 'term'), leader: strOrNull(raft, 'leader'), commit: num(raft, 'commit') },
    view: nums(o['view'], 'view', ['alive', 'suspect', 'dead'] as const),
    storage: nums(o['storage'], 'storage', ['records', 'diskBytes', 'measuredAtMs'] as const),
    ownership: nums(o['ownership'], 'ownership', ['partitions', 'primary', 'replicated'] as const),
    hints: { enabled: hints['enabled'] === true, ...nums(hints, 'hints', ['pending', 'stored', 'delivered', 'dropped', 'expired'] as const) },
    antiEntropy: {
      ...nums(ae, 'antiEntropy', ['walk', 'partitionsDone', 'partitionsTotal', 'walksCompleted', 'keysRepaired'] as const),
      lastWalkDoneMs: lastWalk === null || lastWalk === undefined ? null : num(ae, 'lastWalkDoneMs'),
    },
    http: { boundsS, series },
    eventLoopLagMs: num(o, 'eventLoopLagMs'),
    process: { rssBytes: num(proc, 'rssBytes'), heapUsedBytes: num(proc, 'heapUsedBytes'), nodeVersion: str(proc, 'nodeVersion') },
  };
}
