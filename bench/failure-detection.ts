/**
 * How fast SWIM notices a crash and a comeback, and how often it cries wolf under load
 * and through event-loop stalls (docs/liveness.md, "Measured"):
 *
 *   npm run bench:failure-detection [-- --trials 10 --sizes 3,5,9 --fp-seconds 300
 *       --stalls 3 --stall-ms 2000 --victim any|follower --seed 1
 *       --probe-interval-ms MS --probe-timeout-ms MS]
 *
 * The nodes run the shipped SWIM defaults unless --probe-interval-ms or
 * --probe-timeout-ms is given.
 *
 * Detection, per cluster size: each trial kill -9's a random node, then polls every
 * other node's GET /cluster every 25 ms until ALL of them show it dead ("kill→dead");
 * then restarts it from its data dir and polls until all show it alive again
 * ("restart→alive", which includes the process start; the time to /health is printed
 * beside it). Trials start only once every node sees every other alive and every
 * Lifeguard health score is back at 0, so one trial's aftermath does not slow the next.
 * The goal (issue 14) is a median of at most 3 s and a maximum of at most 4.5 s.
 *
 * False positives: a fresh 5-node cluster under mixed PUT/GET load on all nodes for
 * --fp-seconds, nobody killed; --stalls times during it, one node (each time another)
 * is SIGSTOPped for --stall-ms and continued: an event-loop stall. Every liveness change
 * a node logs ('member liveness changed', with member and time) is classified: a
 * stalled node suspected during its stall or the 10 s after is allowed (it must then be
 * refuted); any dead, and any suspect of another node, is a false positive. The totals
 * of kv_swim_events_total (exact, all nodes) and the views polled every 100 ms are
 * printed beside it, with the highest health score and event-loop lag seen.
 *
 * Figures depend on the machine's load: take the final ones on a quiet machine.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from '../lib/cli/args.ts';
import { seededRng } from '../lib/core/rng.ts';
import { suspicionBoundsMs } from '../lib/core/swim/suspicion.ts';
import { DEFAULT_SWIM_CONFIG } from '../lib/core/swim/config.ts';
import { DEFAULTS } from '../lib/config.ts';
import { median, runLoad, preload, formatResult, type LoadResult } from './load.ts';
import { TestCluster, type ClusterView } from '../test/helpers/cluster.ts';
import { waitHealthy } from '../test/helpers/proc.ts';
import { pollUntil } from '../test/helpers/poll.ts';

const flags = parseArgs(process.argv.slice(2), new Set()).flags;
function num(name: string, dflt: number): number {
  const v = flags[name] === undefined ? dflt : Number(flags[name]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a non-negative number`);
  return v;
}
const trials = num('trials', 10);
const sizes = String(flags['sizes'] ?? '3,5,9').split(',').map(Number);
const fpSeconds = num('fp-seconds', 300);
const fpNodes = num('fp-nodes', 5);
const fpConcurrency = num('fp-concurrency', 32);
const stalls = num('stalls', 3);
const stallMs = num('stall-ms', 2000);
const probeIntervalMs = num('probe-interval-ms', DEFAULTS.swimProbeIntervalMs);
const probeTimeoutMs = num('probe-timeout-ms', DEFAULTS.swimProbeTimeoutMs);
const victimMode = String(flags['victim'] ?? 'any');
const seed = num('seed', Date.now() % 2 ** 31);
if (sizes.some((n) => !Number.isInteger(n) || n < 2)) throw new Error('--sizes takes integers >= 2, e.g. 3,5');
if (victimMode !== 'any' && victimMode !== 'follower') throw new Error('--victim is any or follower');

/** The cadence the issue asks for: a 25 ms poll keeps the measuring error well under one probe period. */
const POLL_MS = 25;
const FP_POLL_MS = 100;
const HTTP_TIMEOUT_MS = 1000;
/** Give up on one trial after this long: far beyond the detection bound even at the worst health score. */
const TRIAL_DEADLINE_MS = 180_000;
const SETTLE_DEADLINE_MS = 120_000;
/** A stalled node's suspicion within this long after it resumed belongs to its stall. */
const STALL_AFTERMATH_MS = 10_000;
/** Detection goals of issue 14 (report against them; never asserted). */
const GOAL_MEDIAN_MS = 3000;
const GOAL_MAX_MS = 4500;

/** Only what the command line asks for: the defaults are what is measured. */
const NODE_ARGS = [
  ...(flags['probe-interval-ms'] === undefined ? [] : ['--swim-probe-interval-ms', String(probeIntervalMs)]),
  ...(flags['probe-timeout-ms'] === undefined ? [] : ['--swim-probe-timeout-ms', String(probeTimeoutMs)]),
];
/** Info level for the 'member liveness changed' lines the false-positive run classifies. */
const NODE_ENV = { KV_LOG_LEVEL: 'info' };
const rng = seededRng(seed);
const clusters = new Set<TestCluster>();
const out = (s: string): void => { process.stdout.write(`${s}\n`); };

// Ctrl-C must not leave nodes behind: the helpers' exit hook does not run on a signal.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void Promise.all([...clusters].map((c) => c.stop())).finally(() => process.exit(130));
  });
}

/** TestCluster.start, but holding the cluster before it converges so a failed start is cleaned up too. */
async function startCluster(n: number): Promise<TestCluster> {
  const c = new TestCluster(NODE_ARGS, NODE_ENV);
  clusters.add(c);
  try {
    await c.add('n1', { bootstrap: true });
    for (let i = 2; i <= n; i++) await c.add(`n${i}`);
    await c.waitConverged(n);
  } catch (err) {
    const views = await Promise.all(c.running().map((id) => view(c, id).then((v) => JSON.stringify({ id, epoch: v.epoch, raft: v.raft, members: v.members.map((m) => `${m.id}:${m.state}:${m.liveness}`) }), (e: unknown) => `${id}: ${String(e)}`)));
    throw new Error(`${n}-node cluster did not start: ${(err as Error).message}\n${views.join('\n')}`, { cause: err });
  }
  return c;
}

async function stopCluster(c: TestCluster): Promise<void> {
  await c.stop();
  clusters.delete(c);
}

type View = Omit<ClusterView, 'members'> & { members: (ClusterView['members'][number] & { lastHeardMs: number | null })[] };

async function view(c: TestCluster, id: string): Promise<View> {
  const res = await fetch(`http://${c.addr(id)}/cluster`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`/cluster on ${id}: ${res.status}`);
  return (await res.json()) as View;
}

async function metricsText(c: TestCluster, id: string): Promise<string> {
  const res = await fetch(`http://${c.addr(id)}/metrics`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  return res.text();
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** Every node sees every other alive and has heard from it, and every health score is 0. */
async function settle(c: TestCluster): Promise<void> {
  await pollUntil(async () => {
    const ids = c.running();
    const views = await Promise.all(ids.map((id) => view(c, id)));
    const allAlive = views.every((v) => v.members.every((m) => m.id === v.id || (m.liveness === 'alive' && typeof m.lastHeardMs === 'number')));
    if (!allAlive) return false;
    const texts = await Promise.all(ids.map((id) => metricsText(c, id)));
    return texts.every((t) => sample(t, 'kv_swim_health_score') === 0);
  }, { timeoutMs: SETTLE_DEADLINE_MS, intervalMs: 200, what: 'every node alive in every view and every health score 0' });
}

/**
 * Polls `observers` every POLL_MS until each has shown `target` as `liveness` once.
 * Returns, relative to t0, when the first and when the last observer showed it.
 */
async function untilEveryone(c: TestCluster, observers: string[], target: string, liveness: string, t0: number): Promise<{ firstMs: number; allMs: number }> {
  const seenAt = new Map<string, number>();
  const deadline = t0 + TRIAL_DEADLINE_MS;
  while (seenAt.size < observers.length) {
    if (performance.now() > deadline) throw new Error(`${target} not ${liveness} on ${observers.filter((o) => !seenAt.has(o)).join(',')} after ${TRIAL_DEADLINE_MS} ms`);
    const round = performance.now();
    await Promise.all(observers.filter((o) => !seenAt.has(o)).map(async (o) => {
      try {
        const v = await view(c, o);
        if (v.members.find((m) => m.id === target)?.liveness === liveness) seenAt.set(o, performance.now() - t0);
      } catch {
        // A slow answer is retried next round; the deadline bounds the whole wait.
      }
    }));
    const wait = POLL_MS - (performance.now() - round);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const times = [...seenAt.values()];
  return { firstMs: Math.min(...times), allMs: Math.max(...times) };
}

async function pickVictim(c: TestCluster): Promise<string> {
  const ids = c.running();
  if (victimMode === 'follower') {
    const leader = (await view(c, ids[0] as string)).raft.leader;
    const followers = ids.filter((id) => id !== leader);
    return followers[rng.int(followers.length)] as string;
  }
  return ids[rng.int(ids.length)] as string;
}

interface Trial { victim: string; deadFirstMs: number; deadAllMs: number; healthyMs: number; aliveAllMs: number }

async function detectionTrials(n: number): Promise<Trial[]> {
  const c = await startCluster(n);
  const results: Trial[] = [];
  try {
    for (let t = 1; t <= trials; t++) {
      await settle(c);
      const victim = await pickVictim(c);
      const observers = c.running().filter((id) => id !== victim);
      const t0 = performance.now();
      await c.kill(victim, 'SIGKILL');
      const dead = await untilEveryone(c, observers, victim, 'dead', t0);
      const t1 = performance.now();
      const p = await c.restart(victim, { waitHealthy: false });
      const healthy = waitHealthy(p, 60_000).then(() => performance.now() - t1);
      const alive = await untilEveryone(c, observers, victim, 'alive', t1);
      const r: Trial = { victim, deadFirstMs: dead.firstMs, deadAllMs: dead.allMs, healthyMs: await healthy, aliveAllMs: alive.allMs };
      results.push(r);
      out(`  n=${n} trial ${String(t).padStart(2)}: kill ${victim.padEnd(3)} → first dead ${ms(r.deadFirstMs)}, dead on all ${ms(r.deadAllMs)};` +
        ` restart → healthy ${ms(r.healthyMs)}, alive on all ${ms(r.aliveAllMs)}`);
    }
  } finally {
    await stopCluster(c);
  }
  return results;
}

interface LivenessLine { observer: string; member: string; liveness: string; atMs: number }

/** The 'member liveness changed' lines each node printed after byte marks[id] of its output. */
function livenessLines(c: TestCluster, marks: Map<string, number>): LivenessLine[] {
  const out: LivenessLine[] = [];
  for (const [id, p] of c.nodes) {
    for (const line of p.output().slice(marks.get(id) ?? 0).split('\n')) {
      if (!line.includes('member liveness changed')) continue;
      try {
        const rec = JSON.parse(line) as { member: string; liveness: string; time: string };
        out.push({ observer: id, member: rec.member, liveness: rec.liveness, atMs: Date.parse(rec.time) });
      } catch {
        // A line cut by the output buffer's bound: counted by kv_swim_events_total anyway.
      }
    }
  }
  return out;
}

interface Stall {
  victim: string; startMs: number; endMs: number; aliveAgainMs: number | null; suspectedBy: number; deadBy: number;
  /**
   * The closest call: over the observers that suspected the victim, the least time
   * left on a minimum suspicion timeout when the refutation was logged (negative: it
   * would have been declared dead had every confirmation been in). Null if nobody suspected it.
   */
  marginMs: number | null;
}

interface FalsePositives {
  suspect: number; dead: number; polledSuspect: number; polledDead: number; maxHealth: number; maxLagMs: number; load: LoadResult;
  stalls: Stall[];
  /** Logged liveness changes that are false positives: any dead, any suspect outside a stalled node's own window. */
  falsePositives: LivenessLine[];
}

async function falsePositives(): Promise<FalsePositives> {
  const c = await startCluster(fpNodes);
  try {
    await settle(c);
    const KEYS = 2000;
    const value = Buffer.alloc(100, 'v');
    await preload(c.addr('n1'), KEYS, value);
    const ids = c.running();
    const counts = async (): Promise<{ suspect: number; dead: number }> => {
      const texts = await Promise.all(ids.map((id) => metricsText(c, id)));
      return {
        suspect: texts.reduce((a, t) => a + sample(t, 'kv_swim_events_total{type="suspect"}'), 0),
        dead: texts.reduce((a, t) => a + sample(t, 'kv_swim_events_total{type="dead"}'), 0),
      };
    };
    const before = await counts();
    const marks = new Map(ids.map((id) => [id, c.nodes.get(id)?.output().length ?? 0]));
    let polling = true;
    let polledSuspect = 0;
    let polledDead = 0;
    let maxHealth = 0;
    let maxLagMs = 0;
    const last = new Map<string, string>(); // "observer/member" → liveness
    const pollViews = async (): Promise<void> => {
      while (polling) {
        const round = performance.now();
        await Promise.all(ids.map(async (o) => {
          try {
            for (const m of (await view(c, o)).members) {
              const k = `${o}/${m.id}`;
              if (m.liveness !== last.get(k) && m.liveness === 'suspect') polledSuspect++;
              if (m.liveness !== last.get(k) && m.liveness === 'dead') polledDead++;
              last.set(k, m.liveness);
            }
          } catch {
            // An answer slower than the timeout (under load, or from a stopped node) is not a liveness change.
          }
        }));
        const wait = FP_POLL_MS - (performance.now() - round);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    };
    const pollHealth = async (): Promise<void> => {
      while (polling) {
        await Promise.all(ids.map(async (id) => {
          try {
            const t = await metricsText(c, id);
            maxHealth = Math.max(maxHealth, sample(t, 'kv_swim_health_score'));
            maxLagMs = Math.max(maxLagMs, sample(t, 'kv_event_loop_lag_seconds') * 1000);
          } catch {
            // Same as above.
          }
        }));
        await new Promise((r) => setTimeout(r, 1000));
      }
    };
    const stallLog: Stall[] = [];
    const loadStart = performance.now();
    /** Stall k of `stalls` at k/(stalls+1) of the run, each on another node (never n1, the preload target, first). */
    const stallTask = async (): Promise<void> => {
      for (let k = 1; k <= stalls; k++) {
        const at = loadStart + (k * fpSeconds * 1000) / (stalls + 1);
        const wait = at - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const victim = ids[k % ids.length] as string;
        const others = ids.filter((id) => id !== victim);
        const startMs = Date.now();
        c.signal(victim, 'SIGSTOP');
        try {
          await new Promise((r) => setTimeout(r, stallMs));
        } finally {
          c.signal(victim, 'SIGCONT');
        }
        const endMs = Date.now();
        let aliveAgainMs: number | null = null;
        try {
          await untilEveryone(c, others, victim, 'alive', performance.now());
          aliveAgainMs = Date.now() - endMs;
        } catch {
          // Reported as never alive again.
        }
        stallLog.push({ victim, startMs, endMs, aliveAgainMs, suspectedBy: 0, deadBy: 0, marginMs: null });
        out(`  stall ${k}: SIGSTOP ${victim} for ${endMs - startMs} ms; alive on every other node again ${aliveAgainMs === null ? 'NEVER' : `${aliveAgainMs} ms`} after SIGCONT`);
      }
    };
    const pollers = Promise.all([pollViews(), pollHealth()]);
    const targets = ids.map((id) => c.addr(id));
    const [load] = await Promise.all([runLoad({
      name: `${fpNodes} nodes, PUT/GET 50/50`, targets, concurrency: fpConcurrency, durationMs: fpSeconds * 1000,
      request: (w, i) => {
        const key = `/kv/key-${(w * 7919 + i * 31) % KEYS}`;
        return i % 2 === 0 ? { method: 'PUT', path: key, body: value } : { method: 'GET', path: key };
      },
    }), stallTask()]);
    polling = false;
    await pollers;
    const after = await counts();
    const fps: LivenessLine[] = [];
    const lines = livenessLines(c, marks);
    // A stalled node's connections stay open, so its suspicions carry one period of grace.
    const minMs = suspicionBoundsMs({ ...DEFAULT_SWIM_CONFIG, probeIntervalMs }, fpNodes).minMs + probeIntervalMs;
    for (const st of stallLog) {
      for (const o of ids) {
        const mine = lines.filter((e) => e.observer === o && e.member === st.victim && e.atMs >= st.startMs && e.atMs <= st.endMs + STALL_AFTERMATH_MS);
        const suspected = mine.find((e) => e.liveness === 'suspect');
        const back = suspected === undefined ? undefined : mine.find((e) => e.liveness === 'alive' && e.atMs >= suspected.atMs);
        if (suspected === undefined || back === undefined) continue;
        const margin = suspected.atMs + minMs - back.atMs;
        st.marginMs = st.marginMs === null ? margin : Math.min(st.marginMs, margin);
      }
    }
    for (const e of lines) {
      if (e.liveness === 'alive') continue;
      const stall = stallLog.find((st) => st.victim === e.member && e.atMs >= st.startMs && e.atMs <= st.endMs + STALL_AFTERMATH_MS);
      if (stall !== undefined && e.liveness === 'suspect') stall.suspectedBy++;
      else {
        if (stall !== undefined) stall.deadBy++;
        fps.push(e);
      }
    }
    return {
      suspect: after.suspect - before.suspect, dead: after.dead - before.dead, polledSuspect, polledDead, maxHealth, maxLagMs, load,
      stalls: stallLog, falsePositives: fps,
    };
  } finally {
    await stopCluster(c);
  }
}

function ms(x: number): string {
  return `${x.toFixed(0).padStart(6)} ms`;
}

/**
 * Worst case from the config at health score 0 (docs/liveness.md) for a crash that
 * closes no connection (power, cable; a kill is found much sooner through the closed
 * sockets): every node's own probe reaches the crashed one within 2(n-1) periods, and
 * its suspicion timer runs at most the maximum timeout plus the open-connection grace
 * of one period. The nodes run with the product's other SWIM defaults.
 */
function boundMs(n: number): number {
  return 2 * (n - 1) * probeIntervalMs + suspicionBoundsMs({ ...DEFAULT_SWIM_CONFIG, probeIntervalMs }, n).maxMs + probeIntervalMs;
}

out(`failure detection: sizes ${sizes.join(',')}, ${trials} trials each, probe ${probeIntervalMs}/${probeTimeoutMs} ms, victim ${victimMode}, seed ${seed}`);
const summary: string[] = [];
try {
  for (const n of sizes) {
    if (trials === 0) break;
    out(`\n${n} nodes:`);
    const rs = await detectionTrials(n);
    const row = (xs: number[]): string => `${ms(median(xs))} ${ms(Math.max(...xs))}`;
    const dead = rs.map((r) => r.deadAllMs);
    const met = median(dead) <= GOAL_MEDIAN_MS && Math.max(...dead) <= GOAL_MAX_MS;
    summary.push(`${String(n).padStart(5)} ${String(rs.length).padStart(7)}   ${row(rs.map((r) => r.deadFirstMs))}   ${row(dead)}` +
      `   ${row(rs.map((r) => r.aliveAllMs))}   ${row(rs.map((r) => r.healthyMs))}   ${ms(boundMs(n))}     ${met ? 'met' : 'NOT met'}`);
  }
  let fp: FalsePositives | undefined;
  if (fpSeconds > 0) {
    out(`\nfalse positives: ${fpNodes} nodes under load for ${fpSeconds} s, nobody killed, ${stalls} stall(s) of ${stallMs} ms (SIGSTOP)`);
    fp = await falsePositives();
    out(`  load: ${formatResult(fp.load)}`);
  }
  out(`\nsummary (probe ${probeIntervalMs}/${probeTimeoutMs} ms; each pair is median / max; goal for kill→dead on all: median <= ${GOAL_MEDIAN_MS} ms, max <= ${GOAL_MAX_MS} ms)`);
  if (summary.length > 0) {
    out(`nodes  trials   ${['kill→first dead', 'kill→dead on all', 'restart→alive on all', 'restart→healthy'].map((h) => h.padStart(19)).join('   ')}   config bound  goal`);
    for (const s of summary) out(s);
  }
  if (fp) {
    out(`false positives: ${fp.falsePositives.length} logged (any dead, or a suspect of a node that was not stalled), ` +
      `kv_swim_events_total over ${fpSeconds} s on all ${fpNodes} nodes: suspect ${fp.suspect}, dead ${fp.dead};` +
      ` polled views saw suspect ${fp.polledSuspect}, dead ${fp.polledDead}; max health score ${fp.maxHealth}, max event-loop lag ${fp.maxLagMs.toFixed(0)} ms`);
    for (const e of fp.falsePositives) out(`  false positive: ${e.observer} saw ${e.member} ${e.liveness} at ${new Date(e.atMs).toISOString()}`);
    for (const st of fp.stalls) {
      out(`  stall of ${st.victim} (${st.endMs - st.startMs} ms): suspected by ${st.suspectedBy} node(s), declared dead by ${st.deadBy}; ` +
        `alive everywhere ${st.aliveAgainMs === null ? 'NEVER' : `${st.aliveAgainMs} ms`} after it resumed` +
        (st.marginMs === null ? '' : `; closest call: refuted ${st.marginMs} ms before a minimum suspicion timeout would have run out`));
    }
  }
} finally {
  await Promise.all([...clusters].map((c) => stopCluster(c)));
}
