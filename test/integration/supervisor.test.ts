/**
 * `kv start` as a supervisor, with real processes: a killed node is reported and
 * restarted while the others keep serving quorum traffic, and it catches up; the nodes
 * never outlive a supervisor killed with SIGKILL; Ctrl-C (SIGINT) stops every node within
 * the shutdown bound; `--no-restart` leaves a killed node down; a node whose port is taken
 * exits before it joins, is restarted, and joins once the port is free.
 *
 * Every node process is watched by pid (from the supervisor's `[nX] started (pid N)`
 * lines). With three nodes and N=3 every node is a replica of every key, so the restarted
 * node must end up holding every write acknowledged meanwhile (hints, anti-entropy).
 *
 * Wall time: about 60-90 s on a 2-core machine (three `kv start` clusters).
 */
import { expect } from 'chai';
import net from 'node:net';
import { SHUTDOWN_BOUND_MS } from '../../lib/cli/start.ts';
import { ORPHAN_EXIT_BOUND_MS } from '../../lib/cli/parent-watch.ts';
import { KvStartProc, freePortRun, processGone } from '../helpers/kv-start.ts';
import { FatalPollError, pollUntil } from '../helpers/poll.ts';

/** Loaded 2-core machines are slow to schedule: the bounds are checked with this much slack. */
const SLACK_MS = 15_000;
const HTTP_TIMEOUT_MS = 10_000;
/** Hints are delivered and anti-entropy walks run well within this once the node is back. */
const CATCH_UP_DEADLINE_MS = 120_000;
/** Short, so the test does not idle; the bound below still checks the delay is honoured. */
const RESTART_DELAY_S = 1;

interface Acked { key: string; value: string; version: string; atMs: number }

/** PUT at w=2 through one node, then GET at r=2 through another; records failures instead of throwing. */
class QuorumTraffic {
  readonly acked: Acked[] = [];
  readonly failures: string[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly s: KvStartProc, private readonly through: string[]) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const headers = this.s.headers('client');
    for (let i = 0; this.running; i++) {
      const writeVia = this.through[i % this.through.length] as string;
      const readVia = this.through[(i + 1) % this.through.length] as string;
      const key = `sup-${i}`;
      const value = `value-of-${key}`;
      try {
        const put = await fetch(`http://${this.s.addr(writeVia)}/kv/${key}?w=2`, { method: 'PUT', body: value, headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
        const putBody = await put.text();
        const version = put.headers.get('x-kv-version');
        if (put.status !== 200 || version === null) { this.failures.push(`PUT ${key} via ${writeVia}: ${put.status} ${putBody}`); continue; }
        const get = await fetch(`http://${this.s.addr(readVia)}/kv/${key}?r=2`, { headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
        const got = await get.text();
        if (get.status !== 200 || got !== value) { this.failures.push(`GET ${key} via ${readVia}: ${get.status} ${got.slice(0, 200)}`); continue; }
        this.acked.push({ key, value, version, atMs: Date.now() });
      } catch (err) {
        this.failures.push(`${key}: ${(err as Error).message}`);
      }
    }
  }

  ackedBetween(fromMs: number, toMs: number): Acked[] {
    return this.acked.filter((a) => a.atMs > fromMs && a.atMs < toMs);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

function listening(addr: string): Promise<boolean> {
  const [host, port] = addr.split(':') as [string, string];
  return new Promise((resolve) => {
    const sock = net.connect({ host, port: Number(port) });
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('error', () => resolve(false));
  });
}

describe('kv start supervises its nodes (real processes)', function () {
  this.timeout(300_000);
  let s: KvStartProc | undefined;

  afterEach(async () => {
    await s?.cleanup();
    s = undefined;
  });

  it('kill -9 of one node: w=2 writes and r=2 reads keep succeeding through the others, the node is reported, restarted after the delay and catches up; Ctrl-C then stops every node within the bound', async () => {
    s = await KvStartProc.start({ args: ['--restart-delay', String(RESTART_DELAY_S), '--anti-entropy-interval-ms', '5000'] });
    const traffic = new QuorumTraffic(s, ['n1', 'n2']);
    try {
      await pollUntil(() => traffic.acked.length >= 20, { timeoutMs: 30_000, what: '20 writes before the kill' });
      const oldPid = s.pid('n3');
      const mark = s.output().length;
      const killedAtMs = Date.now();
      process.kill(oldPid, 'SIGKILL');

      await s.waitForLine(/^\[n3\] exited \(SIGKILL\)$/, 30_000, mark);
      await s.waitForLine(new RegExp(`^\\[n3\\] restarting in ${RESTART_DELAY_S} s$`), 10_000, mark);
      const restarted = await s.waitForLine(/^\[n3\] started \(pid (\d+)\)$/, 60_000, mark);
      const restartSeenMs = Date.now();
      const newPid = Number(restarted[1]);
      expect(newPid).to.not.equal(oldPid);
      // The delay is a lower bound: a loaded machine may only make the restart later.
      expect(restartSeenMs - killedAtMs).to.be.at.least(RESTART_DELAY_S * 1000 - 250);
      expect(processGone(oldPid), 'the killed process is gone').to.equal(true);
      expect(traffic.ackedBetween(killedAtMs, restartSeenMs).length, 'writes acknowledged while n3 was down').to.be.greaterThan(0);

      await pollUntil(async () => (await fetch(`http://${s?.addr('n3')}/health`, { signal: AbortSignal.timeout(3000) })).ok,
        { timeoutMs: 60_000, what: 'n3 healthy again' });
      const healthyAtMs = Date.now();
      await pollUntil(() => traffic.ackedBetween(healthyAtMs, Infinity).length >= 10, { timeoutMs: 30_000, what: '10 writes after n3 is back' });
    } finally {
      await traffic.stop();
    }
    expect(traffic.failures, 'every w=2 write and r=2 read through n1/n2 succeeds').to.deep.equal([]);

    // n3 is a replica of every key: its own copy of each acknowledged write arrives.
    const missing = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const a of traffic.acked) {
        const { status, body } = await (s as KvStartProc).json<{ version: string }>('n3', `/cluster/records/${a.key}`);
        if (status !== 200 || body.version !== a.version) out.push(`${a.key}: ${status} ${JSON.stringify(body)}`);
      }
      return out;
    };
    let last: string[] = [];
    await pollUntil(async () => { last = await missing(); return last.length === 0; },
      { timeoutMs: CATCH_UP_DEADLINE_MS, intervalMs: 1000, what: `n3 holding all ${traffic.acked.length} acknowledged writes` })
      .catch((err: Error) => { throw new Error(`${err.message}; ${last.length} missing, e.g. ${last.slice(0, 5).join('; ')}`); });

    const pids = [...s.pids().values()];
    expect(pids).to.have.length(3);
    s.signal('SIGINT');
    await s.waitForLine(/^stopping the cluster: SIGTERM to 3 node\(s\)/, 10_000);
    const left = await s.waitPidsGone(pids, SHUTDOWN_BOUND_MS + SLACK_MS);
    expect(left, 'node processes still running after the shutdown bound').to.deep.equal([]);
    const exit = await s.exited;
    expect(exit.signal, 'kv start exits by itself').to.equal(null);
    for (const id of ['n1', 'n2', 'n3']) expect(await listening(s.addr(id)), `${id}'s port is closed`).to.equal(false);
  });

  it('kill -9 of the supervisor: every node exits by itself within the bound, freeing its port', async () => {
    s = await KvStartProc.start();
    const pids = [...s.pids().values()];
    expect(pids).to.have.length(3);
    s.signal('SIGKILL');
    await s.exited;
    const left = await s.waitPidsGone(pids, ORPHAN_EXIT_BOUND_MS + SLACK_MS);
    expect(left, 'node processes left running after their supervisor died').to.deep.equal([]);
    for (const id of ['n1', 'n2', 'n3']) expect(await listening(s.addr(id)), `${id}'s port is closed`).to.equal(false);
  });

  it('--no-restart leaves a killed node down while the others serve; SIGTERM then stops the rest', async () => {
    s = await KvStartProc.start({ args: ['--no-restart'] });
    const victim = s.pid('n2');
    const mark = s.output().length;
    process.kill(victim, 'SIGKILL');
    await s.waitForLine(/^\[n2\] exited \(SIGKILL\)$/, 30_000, mark);
    await s.waitForLine(/^\[n2\] not restarted \(--no-restart\)$/, 10_000, mark);

    // Watch 1 s past the default restart delay (5 s, counted from the exit line just seen): n2 must stay
    // down, the others serve w=2.
    const watchUntilMs = Date.now() + 6000;
    let writes = 0;
    const c = s;
    await pollUntil(async () => {
      if (/^\[n2\] (started|restarting)/m.test(c.output().slice(mark))) throw new FatalPollError('n2 was restarted');
      if (await listening(c.addr('n2'))) throw new FatalPollError('n2 is listening again');
      const put = await fetch(`http://${c.addr('n1')}/kv/no-restart-${writes}?w=2`, { method: 'PUT', body: 'x', headers: c.headers('client'), signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) })
        .catch((err: Error) => { throw new FatalPollError(`w=2 write through n1 with n2 down: ${err.message}`); });
      const body = await put.text();
      if (put.status !== 200) throw new FatalPollError(`w=2 write through n1 with n2 down: ${put.status} ${body}`);
      writes++;
      return Date.now() > watchUntilMs;
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'the end of the observation window' });
    expect(writes).to.be.greaterThan(0);

    const others = [s.pid('n1'), s.pid('n3')];
    s.signal('SIGTERM');
    const left = await s.waitPidsGone(others, SHUTDOWN_BOUND_MS + SLACK_MS);
    expect(left).to.deep.equal([]);
    expect((await s.exited).signal).to.equal(null);
  });

  it('a node whose port is taken exits with the error before it joins, is restarted, and joins once the port is free', async () => {
    const base = await freePortRun(3);
    const blocker = net.createServer();
    await new Promise<void>((resolve, reject) => { blocker.once('error', reject); blocker.listen(base + 2, '127.0.0.1', resolve); });
    let blocked = true;
    const unblock = (): Promise<void> => {
      if (!blocked) return Promise.resolve();
      blocked = false;
      return new Promise((resolve) => blocker.close(() => resolve()));
    };
    try {
      s = await KvStartProc.start({ basePort: base, converge: false, args: ['--restart-delay', String(RESTART_DELAY_S)] });
      const c = s;
      await s.waitForLine(/^\[n3\] kv: EADDRINUSE: .*127\.0\.0\.1:\d+$/, 60_000);
      const exited = await s.waitForLine(/^\[n3\] exited \(1\)$/, 30_000);
      await s.waitForLine(/^\[n3\] (restarting|started)/, 30_000, (exited.index ?? 0) + exited[0].length);
      // n1 and n2 form the cluster; n3 never became a member, so no change waits on it.
      await pollUntil(async () => {
        const { status, body } = await c.json<{ members: { id: string; state: string }[] }>('n1', '/cluster');
        if (status !== 200) return false;
        if (body.members.some((m) => m.id === 'n3')) throw new FatalPollError(`n3 is a member although it never listened: ${JSON.stringify(body.members)}`);
        return body.members.filter((m) => m.state === 'normal').length === 2;
      }, { timeoutMs: 60_000, intervalMs: 250, what: 'n1 and n2 normal members' });
      await unblock();
      await s.waitConverged(120_000);
    } finally {
      await unblock();
    }
  });
});
