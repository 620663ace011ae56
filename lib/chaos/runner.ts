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
 * 4. convergence: a serial read of each compare-and-set key finishes a conditional
 *    write left half done (bounded, 30 s); then, for every key in the history, every
 *    replica's own record (GET /cluster/records/:key on each node of the key's
 *    preference list) must carry the same version, with no other client traffic
 *    (bounded, 120 s); the time this takes is the "converged in" figure;
 * 5. final state: an r=all read of every key through each of its replicas;
 * 6. checks (checkers.ts), the report, the exit status.
 *
 * Cleanup (processes, namespaces, the data dir unless kept) runs in `finally`, and a
 * synchronous copy of it runs on SIGINT/SIGTERM and on exit, so no node is left
 * stopped and no namespace behind.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { seededRng } from '../core/rng.ts';
import { freePort } from '../net/free-port.ts';
import { History, isConditional } from './history.ts';
import type { FinalState, NodeReading, Op } from './history.ts';
import { checkAll } from './checkers.ts';
import type { CheckReport, CheckResult, Violation } from './checkers.ts';
import { DEFAULTS } from '../config.ts';
import { faultTable, formatReport, progressLine } from './report.ts';
import { DEFAULT_FAULT_KINDS, FaultInjector, type FaultKind, type SkewFaultOptions } from './faults.ts';
import { LocalCluster, type NodeCrash } from './local-cluster.ts';
import { NetnsNetwork, netnsAvailable } from './netns.ts';
import { Workload } from './workload.ts';
import { ReplicaMap, getJson, pollUntil, waitAllAlive, type ClusterView } from './cluster-probe.ts';
import { readFinalState, settleConditionalKeys, waitForConvergence, type Convergence } from './convergence.ts';
import { INSTALL_HINT, faketimeAvailable } from './faketime.ts';

const SECOND = 1000;
const HEAL_TIMEOUT_MS = 90 * SECOND;
/** Starts of one node while healing: a node that keeps crashing is not restarted forever. */
const HEAL_RESTARTS_PER_NODE = 3;
const CONVERGE_TIMEOUT_MS = 120 * SECOND;
/** One serial read per compare-and-set key after healing: every node is up, so seconds suffice; the rest is margin for a loaded machine. */
const SETTLE_TIMEOUT_MS = 30 * SECOND;
/** Time for a fresh cluster to show every member normal and alive everywhere. */
const STARTUP_TIMEOUT_MS = 60 * SECOND;
/** Node quorum deadline during chaos: short, so timeouts turn into unknowns quickly. */
const NODE_REQUEST_TIMEOUT_MS = 2 * SECOND;
/** Client deadline: above the node's, so the node normally answers (504) first. */
const CLIENT_TIMEOUT_MS = 5 * SECOND;
/**
 * Topology changes start no later than this before the end of the run: a join
 * streams its partitions for about that long on a loaded 2-core machine (measured
 * 22..48 s there, less on a quiet one), so most changes complete under client traffic.
 */
const TOPOLOGY_CHANGE_LEAD_MS = 20 * SECOND;

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

/**
 * What a run creates and must take down again: the chaos network, the node
 * processes, the data dir. `cleanup` runs in `finally`; `cleanupSync` on SIGINT/SIGTERM
 * and on exit, where nothing can be awaited.
 */
class RunResources {
  net: NetnsNetwork | undefined;
  cluster: LocalCluster | undefined;
  root: string | undefined;
  /** Keep the data dir: asked for (--keep), or a failed run's evidence. */
  keep: boolean;
  private cleaned = false;
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.o.writeRaw('\n');
    this.o.print(`chaos: ${sig}: stopping every node and removing the chaos network`);
    this.cleanupSync();
    process.exit(130);
  };
  private readonly onExit = (): void => this.cleanupSync();

  constructor(private readonly o: ChaosOptions) {
    this.keep = o.keep;
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
    process.once('exit', this.onExit);
  }

  private cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    this.cluster?.stopAllSync();
    this.net?.destroySync();
    this.removeRoot();
  }

  async cleanup(): Promise<void> {
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    process.removeListener('exit', this.onExit);
    if (this.cleaned) return;
    this.cleaned = true;
    await this.cluster?.stopAll();
    await this.net?.destroy();
    this.removeRoot();
  }

  private removeRoot(): void {
    if (this.root !== undefined && !this.keep) rmSync(this.root, { recursive: true, force: true });
  }
}

/** The members and where they listen. */
interface Members {
  addrs: string[];
  /** Member id → address, as the cluster reported it. */
  idToAddr: Map<string, string>;
}

/** The cluster the run acts on, once it is up. */
interface Setup extends Members {
  /** The faults that can actually be injected here. */
  kinds: FaultKind[];
  cluster: LocalCluster | undefined;
  net: NetnsNetwork | undefined;
  /** Set when the skew fault is on. */
  skew: SkewFaultOptions | undefined;
}

/** What the workload-and-faults phase leaves behind. */
interface ChaosPhase {
  history: History;
  workload: Workload;
  faults: FaultInjector | undefined;
  faultErrors: string[];
}

export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const attach = o.attach !== undefined && o.attach.length > 0;
  o.print(`chaos: seed ${o.seed} (replay: ${replayCommand(o)})`);
  if (attach && o.faults.length > 0) o.print('chaos: attached to an existing cluster: process faults and partitions are off (no pids, no namespaces to act on)');
  const res = new RunResources(o);
  let phase: ChaosPhase | undefined;
  try {
    const setup = attach ? await attachCluster(o) : await startCluster(o, res);
    o.print(`chaos: ${setup.idToAddr.size} nodes up; ${o.clients} clients for ${o.durationS}s; faults: ${setup.kinds.length > 0 ? setup.kinds.join(', ') : 'none'}`);
    phase = await runWorkloadWithFaults(o, setup);
    const members = await heal(o, setup, phase);
    const ops = phase.history.ops();
    const keys = [...new Set(ops.map((op) => op.key))];
    // The final membership: nodes that joined are replicas now, decommissioned ones are not.
    const replicas = await ReplicaMap.fetch(members.addrs[0] as string, members.idToAddr);
    const conditional = [...new Set(ops.filter((op) => isConditional(op) || op.serial === true).map((op) => op.key))];
    if (conditional.length > 0) o.print(`chaos: a serial read of each of ${conditional.length} compare-and-set keys (it finishes a conditional write left half done)`);
    const unsettled = await settleConditionalKeys(conditional, members.addrs, SETTLE_TIMEOUT_MS, CLIENT_TIMEOUT_MS);
    o.print(`chaos: waiting for ${keys.length} keys to converge on every replica`);
    const convergence = await waitForConvergence(keys, replicas, CONVERGE_TIMEOUT_MS);
    const final = await readFinalState(keys, replicas);
    const report = check(ops, final, {
      convergeViolations: [...unsettled, ...convergence.violations], ...(setup.cluster !== undefined ? { crashes: setup.cluster.crashes } : {}),
    });
    return reportRun(o, { root: res.root, kinds: setup.kinds, phase, ops, final, convergence, report });
  } catch (err) {
    keepEvidence(o, res, phase, err);
    throw err;
  } finally {
    await res.cleanup();
  }
}

/**
 * A run that could not finish (the cluster never healed, a node would not start)
 * leaves its evidence: the data dir and node logs, and with --json the history and
 * fault log so far.
 */
function keepEvidence(o: ChaosOptions, res: RunResources, phase: ChaosPhase | undefined, err: unknown): void {
  o.print(`chaos: the run could not finish: ${(err as Error)?.message ?? String(err)}`);
  if (phase !== undefined && o.jsonFile !== undefined) {
    writeFileSync(o.jsonFile, JSON.stringify({
      seed: o.seed, options: { ...o, print: undefined, writeRaw: undefined }, error: String((err as Error)?.message ?? err),
      faults: phase.faults?.events ?? [], faultErrors: phase.faultErrors, history: phase.history.ops(),
    }, null, 1));
    o.print(`chaos: history so far written to ${o.jsonFile}`);
  }
  if (res.root !== undefined) {
    res.keep = true;
    o.print(`chaos: data and node logs kept in ${res.root}`);
  }
}

/** The command that repeats this experiment: the seed, and every option that changes what it does. */
export function replayCommand(o: Pick<ChaosOptions, 'seed' | 'durationS' | 'nodes' | 'clients' | 'faults'>): string {
  const faults = o.faults.join(',') === DEFAULT_FAULT_KINDS.join(',') ? '' : ` --faults ${o.faults.length === 0 ? 'none' : o.faults.join(',')}`;
  return `kv chaos --seed ${o.seed} --duration ${o.durationS}${o.nodes !== 5 ? ` --nodes ${o.nodes}` : ''}` +
    `${o.clients !== 8 ? ` --clients ${o.clients}` : ''}${faults}`;
}

/** Setup for --attach: the given nodes, no faults. */
async function attachCluster(o: ChaosOptions): Promise<Setup> {
  const addrs = o.attach as string[];
  const size = (await getJson<ClusterView>(addrs[0] as string, '/cluster')).members.length;
  const initial = await waitAllAlive(addrs, size, STARTUP_TIMEOUT_MS);
  return { addrs, idToAddr: membersOf(initial), kinds: [], cluster: undefined, net: undefined, skew: undefined };
}

function membersOf(views: ClusterView[]): Map<string, string> {
  return new Map((views[0] as ClusterView).members.map((m) => [m.id, m.addr]));
}

/** Setup: the chaos network (root only, when partitions are asked for), the nodes, every member normal everywhere. */
async function startCluster(o: ChaosOptions, res: RunResources): Promise<Setup> {
  let kinds = [...o.faults];
  if (kinds.includes('partition')) {
    const can = await netnsAvailable();
    if (can.ok) {
      res.net = await NetnsNetwork.create(o.nodes);
      o.print(`chaos: partitions on: ${o.nodes} network namespaces kvc-${res.net.runId}-*, bridge kvc${res.net.runId}br, ${res.net.hostAddr}/24`);
    } else {
      kinds = kinds.filter((k) => k !== 'partition');
      o.print(`chaos: partitions skipped: ${can.why} (kills and pauses only)`);
    }
  }
  const root = o.dataDir !== undefined ? resolvePath(o.dataDir) : mkdtempSync(join(tmpdir(), 'kv-chaos-'));
  mkdirSync(root, { recursive: true });
  res.root = root;
  let skew: SkewFaultOptions | undefined;
  if (kinds.includes('skew')) {
    const can = await faketimeAvailable(join(root, 'probe.faketime'));
    if (can.ok) {
      skew = { lib: can.lib, dir: root, maxClockSkewMs: maxClockSkewMs(o.nodeArgs ?? []) };
      o.print(`chaos: clock skew on: ${can.lib}, offsets within ±${(skew.maxClockSkewMs / 2 / SECOND).toFixed(1)} s (maxClockSkewMs/2)`);
    } else {
      kinds = kinds.filter((k) => k !== 'skew');
      o.print(`chaos: clock skew skipped: ${can.why} (install it with: ${INSTALL_HINT})`);
    }
  }
  const addrs = await nodeAddrs(o, res.net);
  res.cluster = new LocalCluster({
    nodes: o.nodes, addrs, root, secret: randomBytes(24).toString('hex'), net: res.net,
    nodeArgs: [
      '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100',
      '--request-timeout-ms', String(NODE_REQUEST_TIMEOUT_MS),
      '--anti-entropy-interval-ms', '2000', '--log-level', 'warn',
      ...(o.nodeArgs ?? []),
    ],
  });
  o.print(`chaos: starting ${o.nodes} nodes (data in ${root}${o.keep ? ', kept' : ''})`);
  await res.cluster.start();
  const initial = await waitAllAlive(addrs, o.nodes, STARTUP_TIMEOUT_MS);
  return { addrs, idToAddr: membersOf(initial), kinds, cluster: res.cluster, net: res.net, skew };
}

/** The nodes' maxClockSkewMs: from `--max-clock-skew-ms` in the extra node flags, else the node default. */
function maxClockSkewMs(nodeArgs: readonly string[]): number {
  const at = nodeArgs.indexOf('--max-clock-skew-ms');
  const v = at >= 0 ? Number(nodeArgs[at + 1]) : NaN;
  return Number.isInteger(v) && v > 0 ? v : DEFAULTS.maxClockSkewMs;
}

/** Where the next joining node listens: a fresh namespace, the next base port, or an OS-chosen port. */
function nextNodeAddr(o: ChaosOptions, net: NetnsNetwork | undefined, started: () => number): () => Promise<{ addr: string; index: number }> {
  return async () => {
    if (net !== undefined) {
      const index = await net.addNode();
      return { addr: `${net.nodeAddrs[index]}:${o.basePort ?? 7001}`, index };
    }
    const index = started();
    return { addr: `127.0.0.1:${o.basePort !== undefined ? o.basePort + index : await freePort()}`, index };
  };
}

/** Where the nodes listen: their namespace addresses, base-port + i on loopback, or OS-chosen loopback ports. */
async function nodeAddrs(o: ChaosOptions, net: NetnsNetwork | undefined): Promise<string[]> {
  if (net !== undefined) {
    const port = o.basePort ?? 7001;
    return net.nodeAddrs.map((a) => `${a}:${port}`);
  }
  if (o.basePort !== undefined) return Array.from({ length: o.nodes }, (_, i) => `127.0.0.1:${(o.basePort as number) + i}`);
  const addrs: string[] = [];
  for (let i = 0; i < o.nodes; i++) addrs.push(`127.0.0.1:${await freePort()}`);
  return addrs;
}

/** `durationS` of workload with faults injected at random, with a progress line. */
async function runWorkloadWithFaults(o: ChaosOptions, setup: Setup): Promise<ChaosPhase> {
  const t0 = performance.now();
  const clockMs = (): number => Math.floor(performance.now() - t0);
  const history = new History(clockMs);
  const workload = new Workload({
    nodes: setup.addrs, clients: o.clients, history, timeoutMs: CLIENT_TIMEOUT_MS,
    rngFor: (c) => seededRng((o.seed * 7919 + c * 104_729) >>> 0),
  });
  const faultErrors: string[] = [];
  const cluster = setup.cluster;
  const faults = cluster !== undefined
    ? new FaultInjector({
      cluster, net: setup.net, kinds: setup.kinds, rng: seededRng((o.seed ^ 0x5bd1e995) >>> 0), intervalMs: o.faultIntervalMs, clockMs,
      onError: (err) => { faultErrors.push(String((err as Error)?.message ?? err)); },
      ...(setup.skew !== undefined ? { skew: setup.skew } : {}),
      topology: {
        nextNode: nextNodeAddr(o, setup.net, () => cluster.specs.length + cluster.retired.length),
        onMembers: (addrs) => workload.setNodes(addrs),
        lastStartMs: Math.max(0, o.durationS * SECOND - TOPOLOGY_CHANGE_LEAD_MS),
      },
    })
    : undefined;
  const progress = (): string => progressLine(clockMs(), workload.counts, faults, setup.kinds);
  const tick = setInterval(() => {
    if (o.tty) o.writeRaw(`\r\x1b[2K${progress()}`);
    else o.print(progress());
  }, o.tty ? SECOND : 5 * SECOND);
  workload.start();
  faults?.start();
  await new Promise((r) => setTimeout(r, o.durationS * SECOND));
  clearInterval(tick);
  if (o.tty) o.writeRaw(`\r\x1b[2K${progress()}\n`);
  else o.print(progress());
  return { history, workload, faults, faultErrors };
}

/**
 * Heal: every pending heal runs (SIGCONT, restart, routes removed), the workload
 * drains, killed nodes restart, and every node must serve and see every member as
 * normal and alive.
 */
async function heal(o: ChaosOptions, setup: Setup, phase: ChaosPhase): Promise<Members> {
  o.print('chaos: healing: resuming, restarting and reconnecting every node');
  await phase.faults?.stop();
  await phase.workload.stop();
  const cluster = setup.cluster;
  if (cluster === undefined) {
    await waitAllAlive(setup.addrs, setup.idToAddr.size, HEAL_TIMEOUT_MS);
    return setup;
  }
  // A node that crashes while the cluster heals (noCrashes reports it) is started
  // again, a few times, so the run still ends with checks rather than a timeout.
  const starts = new Map<string, number>();
  const restartDown = (): void => {
    for (const s of cluster.specs) {
      if (cluster.state(s.id) !== 'down' || (starts.get(s.id) ?? 0) >= HEAL_RESTARTS_PER_NODE) continue;
      starts.set(s.id, (starts.get(s.id) ?? 0) + 1);
      cluster.restart(s.id);
    }
  };
  restartDown();
  await pollUntil('every node serving', HEAL_TIMEOUT_MS, async () => {
    restartDown();
    await Promise.all(cluster.specs.map((s) => getJson<unknown>(s.addr, '/health')));
    return true;
  });
  await phase.faults?.settleTopology();
  await settleMembership(cluster, restartDown);
  const addrs = cluster.specs.map((s) => s.addr);
  const views = await waitAllAlive(addrs, addrs.length, HEAL_TIMEOUT_MS, restartDown);
  return { addrs, idToAddr: membersOf(views) };
}

/**
 * Waits until no member is joining or leaving, then stops any node the membership no
 * longer holds (a decommission that completed after the run): what is left is the
 * final membership.
 */
async function settleMembership(cluster: LocalCluster, beforePoll: () => void): Promise<void> {
  const view = await pollUntil('no member joining or leaving', HEAL_TIMEOUT_MS, async () => {
    beforePoll();
    const v = await getJson<ClusterView>((cluster.specs[0] as { addr: string }).addr, '/cluster');
    return v.members.some((m) => m.state === 'joining' || m.state === 'leaving') ? undefined : v;
  });
  const ids = new Set(view.members.map((m) => m.id));
  for (const s of [...cluster.specs]) if (!ids.has(s.id)) await cluster.retire(s.id);
}

interface RunOutcome {
  root: string | undefined;
  kinds: readonly FaultKind[];
  phase: ChaosPhase;
  ops: Op[];
  final: Map<string, Map<string, NodeReading>>;
  convergence: Convergence;
  report: CheckReport;
}

/** The report: checker table, fault table, the JSON evidence if asked, and the last line. */
function reportRun(o: ChaosOptions, r: RunOutcome): ChaosResult {
  const { ops, report, phase } = r;
  const faults = phase.faults;
  const lostStat = report.results.find((x) => x.name === 'noLostWrites')?.stats['lost'] ?? 0;
  const mutations = ops.filter((op) => op.kind !== 'read');
  const acked = mutations.filter((op) => op.status === 'ok').length;
  const unknown = mutations.filter((op) => op.status === 'unknown').length;
  const faultCounts = faults?.counts ?? { kill: 0, pause: 0, partition: 0, skew: 0, topology: 0 };
  const totalFaults = faults?.total ?? 0;
  const convergedMs = r.convergence.convergedMs;

  o.print('');
  o.print(formatReport(report).trimEnd());
  o.print('');
  o.print(faultTable({ events: faults?.events ?? [], counts: faultCounts, kinds: r.kinds, topology: faults?.topology?.counts }));
  if (phase.faultErrors.length > 0) o.print(`fault injection errors (${phase.faultErrors.length}): ${phase.faultErrors.slice(0, 5).join('; ')}`);
  const cas = casSummary(ops);
  if (cas !== undefined) o.print(cas);
  const byClass = linearizableByClass(report);
  if (byClass !== undefined) o.print(byClass);
  if (o.keep && r.root !== undefined) o.print(`data and node logs kept in ${r.root}`);

  if (o.jsonFile !== undefined) {
    writeFileSync(o.jsonFile, JSON.stringify({
      seed: o.seed, options: { ...o, print: undefined, writeRaw: undefined }, faults: faults?.events ?? [],
      convergedMs, history: ops, finalState: Object.fromEntries([...r.final].map(([k, m]) => [k, Object.fromEntries(m)])), report,
    }, null, 1));
    o.print(`chaos: history and results written to ${o.jsonFile}`);
  }
  const conv = convergedMs === undefined ? `>${(CONVERGE_TIMEOUT_MS / SECOND).toFixed(1)}` : (convergedMs / SECOND).toFixed(1);
  const lastLine = `chaos: acked ${acked}, lost ${lostStat}, unknown ${unknown}, faults ${totalFaults}, converged in ${conv}s`;
  o.print(lastLine);
  return {
    ok: report.ok, report, acked, lost: lostStat, unknown, faults: totalFaults, faultCounts, convergedMs, lastLine,
  };
}

/** What the run saw beside the history. */
export interface RunEvidence {
  /** Keys whose replicas still disagreed when the convergence wait gave up. */
  convergeViolations?: Violation[];
  /** Node processes that exited without being stopped. */
  crashes?: readonly NodeCrash[];
}

/**
 * checkAll over every key (linearizability included: versions order the writes of a
 * shared key, and the final state is each key's last read), with the replica
 * disagreement seen by the convergence wait added to the converged checker, and the
 * nodes that crashed as the noCrashes checker (DESIGN §2.7: a node never dies from a
 * request, a frame or a peer message; a clock step is none of those either).
 */
export function check(ops: readonly Op[], final: FinalState, evidence: RunEvidence = {}): CheckReport {
  const base = checkAll(ops, final);
  const convergeViolations = evidence.convergeViolations ?? [];
  const results: CheckResult[] = base.results.map((r) => (r.name !== 'converged' || convergeViolations.length === 0 ? r : {
    ...r, ok: false, violations: [...convergeViolations, ...r.violations], stats: { ...r.stats, notConvergedInTime: convergeViolations.length },
  }));
  if (evidence.crashes !== undefined) results.push(noCrashes(evidence.crashes));
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

function noCrashes(crashes: readonly NodeCrash[]): CheckResult {
  const violations: Violation[] = crashes.map((c) => ({
    key: '', nodes: [c.id],
    message: `${c.id} exited on its own at ${c.at} (${c.signal !== null ? `signal ${c.signal}` : `code ${c.code}`}): ${c.reason || 'no error on stderr'} (see ${c.id}.log)`,
  }));
  return { name: 'noCrashes', ok: violations.length === 0, violations, stats: { crashes: crashes.length, nodes: new Set(crashes.map((c) => c.id)).size } };
}

/** "linearizable keys: single-writer a/b, multi-writer c/d, cas e/f". */
export function linearizableByClass(report: CheckReport): string | undefined {
  const lin = report.results.find((x) => x.name === 'linearizable');
  if (lin === undefined) return undefined;
  const st = lin.stats;
  return `linearizable keys: single-writer ${st['singleWriterLinearizable'] ?? 0}/${st['singleWriterKeys'] ?? 0}, ` +
    `multi-writer ${st['multiWriterLinearizable'] ?? 0}/${st['multiWriterKeys'] ?? 0}, ` +
    `cas ${st['casLinearizable'] ?? 0}/${st['casKeys'] ?? 0} (final state as the last read of each)`;
}

/**
 * "cas: n ops on k keys; conditional writes ok a (deletes d), 412 p, fail f, unknown u;
 * serial reads ok r, fail f, unknown u", or undefined for a history without any.
 */
export function casSummary(ops: readonly Op[]): string | undefined {
  const cas = ops.filter((op) => isConditional(op) || op.serial === true);
  if (cas.length === 0) return undefined;
  const count = (list: readonly Op[], status: Op['status']): number => list.filter((op) => op.status === status).length;
  const writes = cas.filter((op) => op.kind !== 'read');
  const reads = cas.filter((op) => op.kind === 'read');
  const deletes = writes.filter((op) => op.kind === 'delete' && op.status === 'ok').length;
  return `cas: ${cas.length} ops on ${new Set(cas.map((op) => op.key)).size} keys; ` +
    `conditional writes ok ${count(writes, 'ok')} (deletes ${deletes}), 412 ${count(writes, 'precondition')}, ` +
    `fail ${count(writes, 'fail')}, unknown ${count(writes, 'unknown')}; ` +
    `serial reads ok ${count(reads, 'ok')}, fail ${count(reads, 'fail')}, unknown ${count(reads, 'unknown')}`;
}
