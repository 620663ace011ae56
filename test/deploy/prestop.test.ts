/**
 * The StatefulSet's preStop hook (deploy/prestop.mjs) against real nodes: it returns at once
 * when the node keeps no hints, waits while hints for a down replica are pending and gives up
 * at its bound, and returns once they are delivered.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';

const run = promisify(execFile);
const PRESTOP = fileURLToPath(new URL('../../deploy/prestop.mjs', import.meta.url));

async function prestop(addr: string, maxWaitMs: number): Promise<{ out: string }> {
  const { stdout } = await run(process.execPath, [PRESTOP], {
    env: { PATH: process.env['PATH'] ?? '', KV_PRESTOP_URL: `http://${addr}/metrics`, KV_PRESTOP_MAX_WAIT_MS: String(maxWaitMs) },
    timeout: maxWaitMs + 30_000,
  });
  return { out: stdout };
}

async function pendingHints(addr: string): Promise<number> {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  return Number(/^kv_hints_pending (\d+)/m.exec(text)?.[1] ?? 'NaN');
}

describe('preStop hook: wait for hints to drain (deploy/prestop.mjs)', function () {
  this.timeout(180_000);
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start(3, { args: ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100'] });
  });
  after(async () => { await cluster?.stop(); });

  it('returns at once when the node keeps no hints', async () => {
    expect(await pendingHints(cluster.addr('n1'))).to.equal(0);
    const r = await prestop(cluster.addr('n1'), 20_000);
    expect(r.out).to.match(/no hints pending/);
  });

  it('waits while hints for a down replica are pending, up to its bound, and returns once they are delivered', async () => {
    await cluster.kill('n3');
    const a1 = cluster.addr('n1');
    // Writes at w=2 while n3 is down leave hints for it on the coordinator.
    await pollUntil(async () => {
      for (let i = 0; i < 20; i++) await fetch(`http://${a1}/kv/prestop-${Date.now()}-${i}?w=2`, { method: 'PUT', body: 'x' });
      return (await pendingHints(a1)) > 0;
    }, { timeoutMs: 60_000, what: 'hints pending on n1' });
    const bounded = await prestop(a1, 1500);
    expect(bounded.out).to.match(/hints still pending after 1500 ms/);
    await cluster.restart('n3');
    const drained = await prestop(a1, 120_000);
    expect(drained.out).to.match(/no hints pending/);
    expect(await pendingHints(a1)).to.equal(0);
  });
});
