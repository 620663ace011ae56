// The dashboard's arithmetic, kept apart from the page so it runs (and is tested) in Node
// as well as in the browser: rates and latency quantiles from the nodes' histogram
// counters, and the event feed derived from two successive /cluster/stats answers.
// Plain ES module, no dependencies.

/** Which client operation a (route, method) series is, or 'admin' for every other route. */
export function operationOf(route, method) {
  if (route !== 'kv') return 'admin';
  return method === 'GET' ? 'get' : method === 'PUT' ? 'put' : method === 'DELETE' ? 'delete' : method === 'HEAD' ? 'head' : 'admin';
}

export const OPERATIONS = ['get', 'put', 'delete', 'head', 'admin'];

/**
 * The q-quantile (0..1) of the observations counted by cumulative buckets `cum` (one per
 * bound in `boundsS`, then the +Inf bucket), in seconds; linear within a bucket as
 * Prometheus' histogram_quantile does. Null when nothing was observed. An answer in the
 * +Inf bucket is reported as the highest finite bound (the histogram knows no more).
 */
export function quantile(q, boundsS, cum) {
  const total = cum[cum.length - 1] ?? 0;
  if (!(total > 0)) return null;
  const rank = q * total;
  for (let i = 0; i < cum.length; i++) {
    if (cum[i] >= rank) {
      if (i >= boundsS.length) return boundsS[boundsS.length - 1] ?? null;
      const lo = i === 0 ? 0 : boundsS[i - 1];
      const below = i === 0 ? 0 : cum[i - 1];
      const inBucket = cum[i] - below;
      return inBucket > 0 ? lo + (boundsS[i] - lo) * ((rank - below) / inBucket) : boundsS[i];
    }
  }
  return boundsS[boundsS.length - 1] ?? null;
}

/** Sum of cumulative bucket lists of equal length (null when the lengths differ). */
function addBuckets(a, b) {
  if (a === null) return b.slice();
  if (a.length !== b.length) return null;
  return a.map((x, i) => x + b[i]);
}

/**
 * Counters of one node's stats folded per operation: {op: {count, errors, buckets}} plus
 * the bucket bounds; `errors` counts 5xx answers (unavailable, timeouts, internal).
 */
export function foldOperations(stats) {
  const out = {};
  for (const s of stats.http.series) {
    const op = operationOf(s.route, s.method);
    const cur = out[op] ?? { count: 0, errors: 0, buckets: null };
    cur.count += s.count;
    cur.errors += s.serverErrors;
    cur.buckets = addBuckets(cur.buckets, s.buckets);
    out[op] = cur;
  }
  return { boundsS: stats.http.boundsS, ops: out };
}

/**
 * What happened between two samples of one node's counters, per operation: requests per
 * second and the bucket deltas. Null when the node restarted in between (its counters
 * began again) or the samples are not in order.
 */
export function delta(older, newer) {
  if (older.startedAtMs !== newer.startedAtMs) return null;
  const dtS = (newer.nowMs - older.nowMs) / 1000;
  if (!(dtS > 0)) return null;
  const ops = {};
  for (const [op, cur] of Object.entries(newer.fold.ops)) {
    const prev = older.fold.ops[op] ?? { count: 0, errors: 0, buckets: cur.buckets ? cur.buckets.map(() => 0) : null };
    const dCount = cur.count - prev.count;
    if (dCount < 0) return null;
    const buckets = cur.buckets && prev.buckets && cur.buckets.length === prev.buckets.length
      ? cur.buckets.map((x, i) => Math.max(0, x - prev.buckets[i])) : null;
    ops[op] = { count: dCount, rate: dCount / dtS, errorRate: Math.max(0, cur.errors - prev.errors) / dtS, buckets };
  }
  return { dtS, boundsS: newer.fold.boundsS, ops };
}

/**
 * Several nodes' deltas as one (the cluster): rates add up, bucket deltas add up (so the
 * quantiles are over every request in the cluster). Nulls are skipped; null if none is left.
 */
export function mergeDeltas(list) {
  const ds = list.filter((d) => d !== null);
  if (ds.length === 0) return null;
  const ops = {};
  const boundsS = ds[0].boundsS;
  for (const d of ds) {
    if (d.boundsS.length !== boundsS.length) continue; // another histogram layout cannot be added
    for (const [op, v] of Object.entries(d.ops)) {
      const cur = ops[op] ?? { count: 0, rate: 0, errorRate: 0, buckets: null };
      cur.count += v.count;
      cur.rate += v.rate;
      cur.errorRate += v.errorRate;
      if (v.buckets) cur.buckets = addBuckets(cur.buckets, v.buckets);
      ops[op] = cur;
    }
  }
  return { dtS: Math.max(...ds.map((d) => d.dtS)), boundsS, ops };
}

/** Requests/s, 5xx/s and p50/p99 (seconds) of a delta, over the operations `pick` accepts. */
export function summarize(d, pick = () => true) {
  if (d === null) return { rate: null, errorRate: null, p50: null, p99: null, count: 0 };
  let count = 0;
  let rate = 0;
  let errorRate = 0;
  let buckets = null;
  for (const [op, v] of Object.entries(d.ops)) {
    if (!pick(op)) continue;
    count += v.count;
    rate += v.rate;
    errorRate += v.errorRate;
    if (v.buckets) buckets = addBuckets(buckets, v.buckets);
  }
  return {
    count, rate, errorRate,
    p50: buckets ? quantile(0.5, d.boundsS, buckets) : null,
    p99: buckets ? quantile(0.99, d.boundsS, buckets) : null,
  };
}

/**
 * Samples of every node, newest last, kept for `keepMs` (browser time). A sample is
 * {t, nowMs, startedAtMs, fold}. `window(id, ms)` is the delta from the newest sample back to
 * the oldest one at most `ms` older that belongs to the same run of the node.
 */
export class SampleHistory {
  constructor(keepMs) {
    this.keepMs = keepMs;
    this.byNode = new Map();
  }

  add(t, id, stats) {
    let list = this.byNode.get(id);
    if (!list) this.byNode.set(id, (list = []));
    list.push({ t, nowMs: stats.nowMs, startedAtMs: stats.startedAtMs, fold: foldOperations(stats) });
    while (list.length > 0 && list[0].t < t - this.keepMs) list.shift();
  }

  forget(id) {
    this.byNode.delete(id);
  }

  window(id, ms) {
    const list = this.byNode.get(id);
    if (!list || list.length < 2) return null;
    const newest = list[list.length - 1];
    let older = null;
    for (let i = list.length - 2; i >= 0; i--) {
      const s = list[i];
      if (s.startedAtMs !== newest.startedAtMs || newest.t - s.t > ms) break;
      older = s;
    }
    return older ? delta(older, newest) : null;
  }
}

/** The stats answer reduced to what the event feed compares. */
export function digest(answer) {
  const c = answer.cluster ?? {};
  const members = new Map();
  for (const m of c.members ?? []) members.set(m.id, { state: m.state, liveness: m.liveness });
  const reach = new Map();
  const started = new Map();
  for (const n of answer.nodes ?? []) {
    reach.set(n.id, n.ok ? null : `${n.error.code}: ${n.error.message}`);
    if (n.ok) started.set(n.id, n.stats.startedAtMs);
  }
  return {
    via: answer.via, clusterId: c.clusterId ?? '', epoch: c.epoch ?? 0,
    leader: c.raft?.leader ?? null, term: c.raft?.term ?? 0, members, reach, started,
  };
}

/**
 * The events between two digests, oldest first: joins, leaves, state and liveness changes,
 * nodes that stop or resume answering, restarts, elections and leader changes, epoch changes.
 * `prev` null → one line saying what the dashboard found.
 */
export function diffEvents(prev, cur) {
  const out = [];
  if (prev === null) {
    out.push({ kind: 'info', text: `connected through ${cur.via}: cluster ${cur.clusterId.slice(0, 8) || '(not created yet)'}, epoch ${cur.epoch}, ${cur.members.size} members, leader ${cur.leader ?? 'none'}` });
    for (const [id, why] of cur.reach) if (why !== null) out.push({ kind: 'bad', text: `${id} does not answer (${why})` });
    return out;
  }
  if (cur.epoch !== prev.epoch) out.push({ kind: 'topology', text: `epoch ${prev.epoch} → ${cur.epoch}` });
  if (cur.term !== prev.term && cur.leader !== prev.leader) {
    out.push({ kind: 'election', text: `election: leader ${prev.leader ?? 'none'} → ${cur.leader ?? 'none'} (term ${cur.term})` });
  } else if (cur.term !== prev.term) {
    out.push({ kind: 'election', text: `election: term ${prev.term} → ${cur.term}, leader ${cur.leader ?? 'none'}` });
  } else if (cur.leader !== prev.leader) {
    out.push({ kind: 'election', text: `leader ${prev.leader ?? 'none'} → ${cur.leader ?? 'none'}` });
  }
  for (const [id, m] of cur.members) {
    const was = prev.members.get(id);
    if (!was) { out.push({ kind: 'topology', text: `${id} joined (${m.state})` }); continue; }
    if (was.state !== m.state) out.push({ kind: 'topology', text: `${id} ${was.state} → ${m.state}` });
    if (was.liveness !== m.liveness) {
      out.push({ kind: m.liveness === 'alive' ? 'good' : 'bad', text: `${id} ${was.liveness} → ${m.liveness}` });
    }
  }
  for (const id of prev.members.keys()) if (!cur.members.has(id)) out.push({ kind: 'topology', text: `${id} left the cluster` });
  for (const [id, why] of cur.reach) {
    const before = prev.reach.get(id);
    if (why !== null && (before === null || before === undefined)) out.push({ kind: 'bad', text: `${id} stopped answering (${why})` });
    if (why === null && before !== null && before !== undefined) out.push({ kind: 'good', text: `${id} answers again` });
    const s0 = prev.started.get(id);
    const s1 = cur.started.get(id);
    if (s0 !== undefined && s1 !== undefined && s0 !== s1) out.push({ kind: 'info', text: `${id} restarted` });
  }
  return out;
}
