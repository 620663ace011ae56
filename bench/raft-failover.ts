/**
 * How long the topology log is unavailable when its Raft leader crashes: time from
 * kill -9 of the leader to a new membership change committed (docs/liveness.md,
 * "Measured"):
 *
 *   npm run bench:raft-failover [-- --runs 10 --nodes 3 --change address|join]
 *
 * Each run: wait for one agreed leader, kill -9 it, then at once ask a survivor for a
 * membership change over the public API and poll every survivor's GET /cluster every
 * 25 ms. Reported per run, from the kill:
 *   - elected:   a survivor is leader in a higher term;
 *   - first entry: that leader's commit index passed the old one (its term-start noop);
 *   - change:    a survivor shows a higher epoch: the admin request went through
 *                a new leader and committed. This is the figure.
 * The killed node is restarted before the next run.
 *
 * --change address (default): a signed join (challenge, then POST /cluster/join) for
 * the killed node's id at a fresh address, the step a node replaced on a new machine
 * takes; the killed node then restarts there. Nothing accumulates across runs.
 * --change join: a fresh node joins through a survivor (TestCluster.add), the way an
 * operator grows the cluster. It includes that process's start-up (about 0.5 s) and the
 * cluster grows by one node per run.
 *
 * Figures depend on the machine's load: take the final ones on a quiet machine.
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from '../lib/cli/args.ts';
import { joinThrough } from '../lib/node/join.ts';
import { median } from './load.ts';
import { TestCluster, type ClusterView } from '../test/helpers/cluster.ts';
import { freePort } from '../test/helpers/proc.ts';
import { pollUntil } from '../test/helpers/poll.ts';

const flags = parseArgs(process.argv.slice(2), new Set()).flags;
const runs = Number(flags['runs'] ?? 10);
const nodes = Number(flags['nodes'] ?? 3);
const change = String(flags['change'] ?? 'address');
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
if (!Number.isInteger(nodes) || nodes < 3) throw new Error('--nodes must be an integer >= 3 (a leader must be electable without the killed one)');
if (change !== 'address' && change !== 'join') throw new Error('--change is address or join');

const SECRET = 'bench-secret-0123456789';
/** The cadence of the measurements: well under Raft's 100 ms tick. */
const POLL_MS = 25;
const HTTP_TIMEOUT_MS = 1000;
/** Per run; far beyond an election (1-2 s) plus the admin retry budget (20 s). */
const RUN_DEADLINE_MS = 60_000;

type View = Omit<ClusterView, 'raft'> & { raft: ClusterView['raft'] & { commit: number } };
const out = (s: string): void => { process.stdout.write(`${s}\n`); };

const c = new TestCluster([], { KV_SECRET: SECRET });
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  // The helpers' exit hook does not run on a signal: stop the nodes here.
  process.once(sig, () => { void c.stop().finally(() => process.exit(130)); });
}

async function view(id: string): Promise<View> {
  const res = await fetch(`http://${c.addr(id)}/cluster`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`/cluster on ${id}: ${res.status}`);
  return (await res.json()) as View;
}

/** The leader every running node agrees on, with its view. */
async function agreedLeader(): Promise<View> {
  return pollUntil(async () => {
    const views = await Promise.all(c.running().map((id) => view(id)));
    const leader = views.find((v) => v.raft.role === 'leader');
    return leader && views.every((v) => v.raft.leader === leader.id && v.raft.term === leader.raft.term) ? leader : undefined;
  }, { timeoutMs: RUN_DEADLINE_MS, what: 'one leader agreed by every node' });
}

/** Asks survivors in turn for the change until one accepts it (the node retries leader changes itself for 20 s). */
async function requestChange(run: number, victim: string, survivors: string[]): Promise<{ newPort?: number; joined?: string }> {
  if (change === 'join') {
    const id = `s${run}`;
    await c.add(id);
    return { joined: id };
  }
  const newPort = await freePort();
  const addr = `127.0.0.1:${newPort}`;
  const deadline = performance.now() + RUN_DEADLINE_MS;
  for (let i = 0; ; i++) {
    const via = survivors[i % survivors.length] as string;
    try {
      await joinThrough(c.addr(via), SECRET, victim, addr);
      return { newPort };
    } catch (err) {
      if (performance.now() > deadline) throw err;
    }
  }
}

interface Run { victim: string; electedMs: number; firstEntryMs: number; changeMs: number; answeredMs: number; epochs: string }

async function oneRun(run: number): Promise<Run> {
  await c.waitConverged(c.running().length);
  const old = await agreedLeader();
  const survivors = c.running().filter((id) => id !== old.id);
  const t0 = performance.now();
  await c.kill(old.id, 'SIGKILL');
  const changeDone = requestChange(run, old.id, survivors).then((r) => ({ ...r, at: performance.now() - t0 }));
  let electedMs: number | undefined;
  let firstEntryMs: number | undefined;
  let changeMs: number | undefined;
  let epochAfter = old.epoch;
  while (electedMs === undefined || firstEntryMs === undefined || changeMs === undefined) {
    if (performance.now() - t0 > RUN_DEADLINE_MS) throw new Error(`run ${run}: no new leader or committed change within ${RUN_DEADLINE_MS} ms`);
    const round = performance.now();
    const views = await Promise.all(survivors.map((id) => view(id).catch(() => undefined)));
    const at = performance.now() - t0;
    for (const v of views) {
      if (v === undefined) continue;
      if (v.raft.role === 'leader' && v.raft.term > old.raft.term) {
        electedMs ??= at;
        if (v.raft.commit > old.raft.commit) firstEntryMs ??= at;
      }
      if (v.epoch > old.epoch && changeMs === undefined) {
        changeMs = at;
        epochAfter = v.epoch;
      }
    }
    const wait = POLL_MS - (performance.now() - round);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const done = await changeDone;
  if (done.newPort !== undefined) c.ports.set(old.id, done.newPort);
  await c.restart(old.id);
  return { victim: old.id, electedMs, firstEntryMs, changeMs, answeredMs: done.at, epochs: `${old.epoch}→${epochAfter}` };
}

function ms(x: number): string {
  return `${x.toFixed(0).padStart(6)} ms`;
}

try {
  out(`raft failover: ${nodes} nodes, ${runs} runs, change by ${change}`);
  await c.add('n1', { bootstrap: true });
  for (let i = 2; i <= nodes; i++) await c.add(`n${i}`);
  await c.waitConverged(nodes);
  // Every voter seated before the first kill, or the first run would measure the seating.
  await pollUntil(async () => (await view('n1')).raft.voters.length === Math.min(nodes >= 5 ? 5 : 3, nodes), { timeoutMs: RUN_DEADLINE_MS, what: 'voters seated' });
  const results: Run[] = [];
  for (let run = 1; run <= runs; run++) {
    const r = await oneRun(run);
    results.push(r);
    out(`  run ${String(run).padStart(2)}: kill leader ${r.victim.padEnd(3)} → elected ${ms(r.electedMs)}, first entry committed ${ms(r.firstEntryMs)},` +
      ` change committed ${ms(r.changeMs)} (epoch ${r.epochs}; API answered ${ms(r.answeredMs)})`);
  }
  const row = (name: string, xs: number[]): string => `${name.padEnd(30)} ${ms(median(xs))} ${ms(Math.max(...xs))}`;
  out(`\nsummary over ${results.length} runs, ${nodes} nodes (median, max)`);
  out(row('kill → new leader elected', results.map((r) => r.electedMs)));
  out(row('kill → first entry committed', results.map((r) => r.firstEntryMs)));
  out(row('kill → membership change', results.map((r) => r.changeMs)));
} finally {
  await c.stop();
}
