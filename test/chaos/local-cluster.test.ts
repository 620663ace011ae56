/**
 * The chaos cluster's process bookkeeping (real `kv node` processes): an exit the
 * runner did not cause is recorded as a crash with the error the node printed, and one
 * it caused (a kill fault, the final stop) is not.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster } from '../../lib/chaos/local-cluster.ts';
import { freePort } from '../../lib/net/free-port.ts';
import { pollUntil } from '../helpers/poll.ts';

describe('chaos local cluster', function () {
  this.timeout(120_000);
  let root: string;
  let cluster: LocalCluster | undefined;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'kv-chaos-cluster-test-'));
  });

  afterEach(async () => {
    await cluster?.stopAll();
    cluster = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  it('records a node that exits on its own as a crash, with the error it printed', async () => {
    cluster = new LocalCluster({ nodes: 1, addrs: [`127.0.0.1:${await freePort()}`], root, secret: 's'.repeat(32), nodeArgs: ['--no-such-flag', '1'] });
    await cluster.start().catch(() => undefined); // it never serves
    await pollUntil(() => cluster?.crashes.length === 1, { timeoutMs: 60_000, what: 'the crash' });
    const [crash] = cluster.crashes;
    expect(crash).to.include({ id: 'n1', code: 1, signal: null });
    expect(crash?.reason).to.contain('no-such-flag');
    expect(cluster.state('n1')).to.equal('down');
  });

  it('does not count the exits it causes: a kill (also behind a restart onto a skewed clock), the final stop', async () => {
    cluster = new LocalCluster({ nodes: 1, addrs: [`127.0.0.1:${await freePort()}`], root, secret: 's'.repeat(32), nodeArgs: ['--log-level', 'warn'] });
    await cluster.start();
    await cluster.kill('n1');
    expect(cluster.state('n1')).to.equal('down');
    cluster.restart('n1');
    await cluster.waitHealthy('n1', 60_000);
    await cluster.stopAll();
    expect(cluster.crashes).to.deep.equal([]);
  });
});
