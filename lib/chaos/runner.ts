/**
 * A chaos run end to end: start (or attach to) a cluster, run the workload while
 * injecting faults, heal, wait for convergence, read the final state, check.
 *
 * Phases and their bounds:
 * 1. setup: network namespaces (root only), n nodes, all members normal everywhere;
 * 2. chaos: `durationS` of workload and faults;
 * 3. heal: every pending heal runs (SIGCONT, restart, routes removed), the workload
 *    drains (each client's last request is bounded by the client timeout), then every
 *    node must serve and see every other as alive (bounded, 90 s);
 * 4. convergence: for every key in the history, every replica's own record
 *    (GET /cluster/records/:key on each node of the key's preference list) must carry
 *    the same version, with no client traffic (bounded, 120 s); the time this takes is
 *    the "converged in" figure;
 * 5. final state: an r=all read of every key through each of its replicas;
 * 6. checks (checkers.ts), the report, the exit status.
 *
 * Cleanup (processes, namespaces, the data dir unless kept) runs in `finally`, and a
 * synchronous copy of it runs on SIGINT/SIGTERM and on exit, so no node is left
 * stopped and no namespace behind.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { seededRng } from '../core/rng.ts';
import { freePort } from '../net/free-port.ts';
import { partitionOf } from '../core/partitioner.ts';
import { History } from './history.ts';
import type { FinalState, NodeReading, Op } from './history.ts';
import { checkAll, linearizable, CHECKER_NAMES } from './checkers.ts';
import type { CheckReport, CheckResult, Violation } from './checkers.ts';
import { formatReport } from './report.ts';
import { FaultInjector, FAULT_KINDS, type FaultKind, type FaultEvent } from './faults.ts';
import { LocalCluster } from './local-cluster.ts';
import { NetnsNetwork, netnsAvailable } from './netns.ts';
import { Workload, isOwnKey } from './workload.ts';

const SECOND = 1000;
const HEAL_TIMEOUT_MS = 90 * SECOND;
const CONVERGE_TIMEOUT_MS = 120 * SECOND;
/** Node quorum deadline during chaos: short, so timeouts turn into unknowns quickly. */
const NODE_REQUEST_TIMEOUT_MS = 2 * SECOND;
/** Client deadline: above the node's, so the node normally answers (504) first. */
const CLIENT_TIMEOUT_MS = 5 * SECOND;
const HTTP_CONCURRENCY = 32;

export interface ChaosOptions {
  durationS: number;
  seed: number;
  nodes: number;
  clients: number;
  /** Ports: base-port + i on loopback, or base-port in every namespace. Default: OS-chosen (loopback) or 7001 (namespaces). */
  basePort?: number;
  dataDir?: string;
  keep: boolean;
  attach?: string[];
  faults: FaultKind[];
  faultIntervalMs: number;
  jsonFile?: string;
  /** Extra `kv node` flags. */
  nodeArgs?: string[];
  /** Output: whole lines. */
  print: (line: string) => void;
  /** Live progress: a TTY gets one line rewritten in place. */
  tty: boolean;
  writeRaw: (s: string) => void;
}

export interface ChaosResult {
  ok: boolean;
  report: CheckReport;
  acked: number;
  lost: number;
  unknown: number;
  faults: number;
  faultCounts: Record<FaultKind, number>;
  convergedMs: number | undefined;
  lastLine: string;
}

interface ClusterView {
  id: string;
  epoch: number;
  members: Array<{ id: string; addr: string; state: string; liveness: string }>;
}

interface RingView {
  partitions: number;
  table: Array<{ partition: number; replicas: string[] }>;
}

async function getJson<T>(addr: string, path: string, timeoutMs = 3 * SECOND): Promise<T> {
  const res = await fetch(`http://${addr}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${path} on ${addr}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function pollUntil<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Every node serves and sees `size` normal, alive members at one epoch. */
async function waitAllAlive(addrs: string[], size: number, timeoutMs: number): Promise<ClusterView[]> {
  return pollUntil(`${size} normal, alive members in every node's view`, timeoutMs, async () => {
    const views = await Promise.all(addrs.map((a) => getJson<ClusterView>(a, '/cluster')));
    const epoch = views[0]?.epoch;
    const ok = views.every((v) => v.epoch === epoch && v.members.length === size &&
      v.members.every((m) => m.state === 'normal' && m.liveness === 'alive'));
    return ok ? views : undefined;
  });
}

type RecordSig = string;

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const print = o.print;
  const attach = o.attach !== undefined && o.attach.length > 0;
  let kinds = attach ? [] : [...o.faults];
  print(`chaos: seed ${o.seed} (replay: kv chaos --seed ${o.seed} --duration ${o.durationS}${o.nodes !== 5 ? ` --nodes ${o.nodes}` : ''}${o.clients !== 8 ? ` --clients ${o.clients}` : ''})`);
  if (attach && o.faults.length > 0) print('chaos: attached to an existing cluster: process faults and partitions are off (no pids, no namespaces to act on)');

  let netw: NetnsNetwork | undefined;
  let cluster: LocalCluster | undefined;
  let root: string | undefined;
  let cleaned = false;
  const cleanupSync = (): void => {
    if (cleaned) return;
    cleaned = true;
    cluster?.stopAllSync();
    netw?.destroySync();
    if (root !== undefined && !o.keep) rmSync(root, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    o.writeRaw('\n');
    print(`chaos: ${sig}: stopping every node and removing the chaos network`);
    cleanupSync();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', cleanupSync);

  try {
    // ---- setup
    let addrs: string[];
    if (attach) {
      addrs = o.attach as string[];
    } else {
      if (kinds.includes('partition')) {
        const can = await netnsAvailable();
        if (can.ok) {
          netw = await NetnsNetwork.create(o.nodes);
          print(`chaos: partitions on: ${o.nodes} network namespaces kvc-${netw.runId}-*, bridge kvc${netw.runId}br, ${netw.hostAddr}/24`);
        } else {
          kinds = kinds.filter((k) => k !== 'partition');
          print(`chaos: partitions skipped: ${can.why} (kills and pauses only)`);
        }
      }
      root = o.dataDir !== undefined ? resolvePath(o.dataDir) : mkdtempSync(join(tmpdir(), 'kv-chaos-'));
      if (netw !== undefined) {
        const port = o.basePort ?? 7001;
        addrs = netw.nodeAddrs.map((a) => `${a}:${port}`);
      } else if (o.basePort !== undefined) {
        addrs = Array.from({ length: o.nodes }, (_, i) => `127.0.0.1:${(o.basePort as number) + i}`);
      } else {
        addrs = [];
        for (let i = 0; i < o.nodes; i++) addrs.push(`127.0.0.1:${await freePort()}`);
      }
      cluster = new LocalCluster({
        nodes: o.nodes, addrs, root, secret: randomBytes(24).toString('hex'), net: netw,
        nodeArgs: [
          '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100',
          '--request-timeout-ms', String(NODE_REQUEST_TIMEOUT_MS),
          '--anti-entropy-interval-ms', '2000', '--log-level', 'warn',
          ...(o.nodeArgs ?? []),
        ],
      });
      print(`chaos: starting ${o.nodes} nodes (data in ${root}${o.keep ? ', kept' : ''})`);
      await cluster.start();
    }
    const initial = await waitAllAlive(addrs, attach ? (await getJson<ClusterView>(addrs[0] as string, '/cluster')).members.length : o.nodes, 60 * SECOND);
    const idToAddr = new Map((initial[0] as ClusterView).members.map((m) => [m.id, m.addr]));
    print(`chaos: ${idToAddr.size} nodes up; ${o.clients} clients for ${o.durationS}s; faults: ${kinds.length > 0 ? kinds.join(', ') : 'none'}`);

    // ---- chaos
    const t0 = performance.now();
    const clockMs = (): number => Math.floor(performance.now() - t0);
    const history = new History(clockMs);
    const workload = new Workload({
      nodes: addrs, clients: o.clients, history, timeoutMs: CLIENT_TIMEOUT_MS,
      rngFor: (c) => seededRng((o.seed * 7919 + c * 104_729) >>> 0),
    });
    const faultErrors: string[] = [];
    const faults = cluster !== undefined
      ? new FaultInjector({
        cluster, net: netw, kinds, rng: seededRng((o.seed ^ 0x5bd1e995) >>> 0), intervalMs: o.faultIntervalMs, clockMs,
        onError: (err) => { faultErrors.push(String((err as Error)?.message ?? err)); },
      })
      : undefined;
    const progress = (): string => {
      const c = workload.counts;
      const f = faults?.counts ?? { kill: 0, pause: 0, partition: 0 };
      const s = faults?.status() ?? { down: [], paused: [], partitioned: [] };
      const list = (xs: string[]): string => (xs.length === 0 ? '-' : xs.join(','));
      return `[${String(Math.floor(clockMs() / SECOND)).padStart(4)}s] ops ok ${c.ok} fail ${c.fail} unknown ${c.unknown}` +
        ` | faults kill ${f.kill} pause ${f.pause} partition ${f.partition}` +
        ` | down ${list(s.down)} paused ${list(s.paused)} cut ${list(s.partitioned)}`;
    };
    const tick = setInterval(() => {
      if (o.tty) o.writeRaw(`\r\x1b[2K${progress()}`);
      else print(progress());
    }, o.tty ? SECOND : 5 * SECOND);
    workload.start();
    faults?.start();
    await new Promise((r) => setTimeout(r, o.durationS * SECOND));
    clearInterval(tick);
    if (o.tty) o.writeRaw(`\r\x1b[2K${progress()}\n`);
    else print(progress());

    // ---- heal
    print('chaos: healing: resuming, restarting and reconnecting every node');
    await faults?.stop();
    await workload.stop();
    if (cluster !== undefined) {
      for (const s of cluster.specs) if (cluster.state(s.id) === 'down') cluster.restart(s.id);
      for (const s of cluster.specs) await cluster.waitHealthy(s.id, HEAL_TIMEOUT_MS);
    }
    await waitAllAlive(addrs, idToAddr.size, HEAL_TIMEOUT_MS);

    // ---- convergence
    const ops = history.ops();
    const keys = [...new Set(ops.map((op) => op.key))];
    const ring = await getJson<RingView>(addrs[0] as string, '/cluster/ring', 10 * SECOND);
    const replicasOf = (key: string): string[] => ring.table[partitionOf(key, ring.partitions)]?.replicas ?? [];
    const recordSigs = async (key: string): Promise<Map<string, RecordSig>> => {
      const out = new Map<string, RecordSig>();
      await Promise.all(replicasOf(key).map(async (id) => {
        const res = await fetch(`http://${idToAddr.get(id)}/cluster/records/${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(5 * SECOND) });
        if (res.status === 404) out.set(id, 'absent');
        else if (res.ok) {
          const r = (await res.json()) as { version: string; tombstone: boolean };
          out.set(id, `${r.tombstone ? 'tombstone' : 'value'} @${r.version}`);
        } else out.set(id, `error HTTP ${res.status}`);
      }));
      return out;
    };
    const agree = (sigs: Map<string, RecordSig>): boolean => new Set(sigs.values()).size <= 1 && ![...sigs.values()].some((s) => s.startsWith('error'));
    print(`chaos: waiting for ${keys.length} keys to converge on every replica`);
    const c0 = performance.now();
    let pending = keys;
    let convergedMs: number | undefined;
    let divergent = new Map<string, Map<string, RecordSig>>();
    while (performance.now() - c0 < CONVERGE_TIMEOUT_MS) {
      const still: string[] = [];
      divergent = new Map();
      await pool(pending, HTTP_CONCURRENCY, async (key) => {
        try {
          const sigs = await recordSigs(key);
          if (!agree(sigs)) {
            still.push(key);
            divergent.set(key, sigs);
          }
        } catch {
          still.push(key);
        }
      });
      if (still.length === 0) {
        if (pending.length === keys.length) {
          convergedMs = performance.now() - c0;
          break;
        }
        // Every key agreed at some point; a full pass confirms none moved since
        // (a late hint can still land on one replica).
        pending = keys;
        continue;
      }
      pending = still;
      await new Promise((r) => setTimeout(r, 500));
    }
    const convergeViolations: Violation[] = [...divergent].slice(0, 1000).map(([key, sigs]) => ({
      key, nodes: [...sigs.keys()],
      message: `replicas still disagree ${CONVERGE_TIMEOUT_MS / SECOND} s after healing: ${[...sigs].map(([n, s]) => `${n} ${s}`).join(', ')}`,
    }));

    // ---- final state
    const final = new Map<string, Map<string, NodeReading>>();
    await pool(keys, HTTP_CONCURRENCY, async (key) => {
      const perNode = new Map<string, NodeReading>();
      final.set(key, perNode);
      for (const id of replicasOf(key)) {
        try {
          const res = await fetch(`http://${idToAddr.get(id)}/kv/${encodeURIComponent(key)}?r=all`, { signal: AbortSignal.timeout(10 * SECOND) });
          const body = Buffer.from(await res.arrayBuffer());
          if (res.status === 404) perNode.set(id, { value: null, version: res.headers.get('x-kv-version') });
          else if (res.ok) perNode.set(id, { value: body.toString(), version: res.headers.get('x-kv-version') });
          else perNode.set(id, { value: null, version: null, error: `HTTP ${res.status} ${body.toString().slice(0, 120)}` });
        } catch (err) {
          perNode.set(id, { value: null, version: null, error: (err as Error).message });
        }
      }
    });

    // ---- checks
    const report = check(ops, final, convergeViolations);
    const lostStat = report.results.find((r) => r.name === 'noLostWrites')?.stats['lost'] ?? 0;
    const mutations = ops.filter((op) => op.kind !== 'read');
    const acked = mutations.filter((op) => op.status === 'ok').length;
    const unknown = mutations.filter((op) => op.status === 'unknown').length;
    const faultCounts = faults?.counts ?? { kill: 0, pause: 0, partition: 0 };
    const totalFaults = faults?.total ?? 0;

    print('');
    print(formatReport(report).trimEnd());
    print('');
    print(faultTable(faults?.events ?? [], faultCounts));
    if (faultErrors.length > 0) print(`fault injection errors (${faultErrors.length}): ${faultErrors.slice(0, 5).join('; ')}`);
    const own = report.results.find((r) => r.name === 'linearizable');
    if (own !== undefined) print(`linearizability checked on ${own.stats['keys'] ?? 0} single-writer keys (shared keys are LWW: see docs/chaos.md)`);
    if (o.keep && root !== undefined) print(`data and node logs kept in ${root}`);

    if (o.jsonFile !== undefined) {
      writeFileSync(o.jsonFile, JSON.stringify({
        seed: o.seed, options: { ...o, print: undefined, writeRaw: undefined }, faults: faults?.events ?? [],
        convergedMs, history: ops, finalState: Object.fromEntries([...final].map(([k, m]) => [k, Object.fromEntries(m)])), report,
      }, null, 1));
      print(`chaos: history and results written to ${o.jsonFile}`);
    }
    const conv = convergedMs === undefined ? `>${(CONVERGE_TIMEOUT_MS / SECOND).toFixed(1)}` : (convergedMs / SECOND).toFixed(1);
    const lastLine = `chaos: acked ${acked}, lost ${lostStat}, unknown ${unknown}, faults ${totalFaults}, converged in ${conv}s`;
    print(lastLine);
    return {
      ok: report.ok, report, acked, lost: lostStat, unknown, faults: totalFaults, faultCounts, convergedMs, lastLine,
    };
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('exit', cleanupSync);
    if (!cleaned) {
      cleaned = true;
      await cluster?.stopAll();
      await netw?.destroy();
      if (root !== undefined && !o.keep) rmSync(root, { recursive: true, force: true });
    }
  }
}

/**
 * checkAll with linearizability limited to single-writer keys: on shared keys, LWW
 * with concurrent writers is not linearizable by design (DESIGN §2.3 promises read
 * your writes only without a concurrent writer), so a "violation" there would be
 * the model's, not the store's. Replica disagreement seen by the convergence wait is
 * added to the converged checker.
 */
export function check(ops: readonly Op[], final: FinalState, convergeViolations: Violation[] = []): CheckReport {
  const base = checkAll(ops, final, { skip: ['linearizable'] });
  const lin = linearizable(ops.filter((op) => isOwnKey(op.key)));
  const results: CheckResult[] = [];
  for (const name of CHECKER_NAMES) {
    if (name === 'linearizable') {
      results.push(lin);
      continue;
    }
    const r = base.results.find((x) => x.name === name);
    if (r === undefined) continue;
    if (name === 'converged' && convergeViolations.length > 0) {
      results.push({ ...r, ok: false, violations: [...convergeViolations, ...r.violations], stats: { ...r.stats, notConvergedInTime: convergeViolations.length } });
    } else {
      results.push(r);
    }
  }
  const failed = results.filter((r) => !r.ok);
  return {
    ok: failed.length === 0,
    results,
    summary: {
      ...base.summary,
      violations: results.reduce((s, r) => s + r.violations.length, 0),
      failedCheckers: failed.map((r) => r.name),
    },
  };
}

function faultTable(events: FaultEvent[], counts: Record<FaultKind, number>): string {
  const rows: string[][] = [['fault', 'count', 'detail']];
  for (const kind of FAULT_KINDS) {
    const evs = events.filter((e) => e.kind === kind);
    let detail = '';
    if (evs.length > 0) {
      const secs = evs.reduce((s, e) => s + e.durationMs, 0) / SECOND;
      detail = `${secs.toFixed(1)} s in total`;
      if (kind === 'partition') {
        const iso = evs.filter((e) => e.shape === 'isolate').length;
        const seen = evs.filter((e) => e.observed).length;
        detail += `; isolate ${iso}, split ${evs.length - iso}; seen by gossip on the other side ${seen}/${evs.length}`;
      }
    }
    rows.push([kind, String(counts[kind]), detail]);
  }
  const w0 = Math.max(...rows.map((r) => (r[0] as string).length));
  const w1 = Math.max(...rows.map((r) => (r[1] as string).length));
  return rows.map((r) => `${(r[0] as string).padEnd(w0)}  ${(r[1] as string).padStart(w1)}  ${r[2]}`.trimEnd()).join('\n');
}
