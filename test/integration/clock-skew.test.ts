/**
 * Acknowledged means visible under clock skew, on real processes with libfaketime:
 *
 * - 4 nodes (N=3), n4's wall clock 3 s behind (well inside maxClockSkewMs = 10 s). One
 *   client, sequentially: PUT first through n1, PUT second through n4, GET at r=all through
 *   n2: always `second` (before the applied/refused acknowledgement, `first` came back in
 *   about 17 % of rounds: the replicas kept the higher version while n4 counted their refusals
 *   as acknowledgements).
 * - A single node restarted with its wall clock 5 s back stamps versions above its earlier
 *   ones (the durable HLC high-water mark; with no peer to pull its clock forward).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { faketimeEnv, faketimeOffset, findLibfaketime } from '../../lib/chaos/faketime.ts';
import { KvClient } from '../../lib/client/client.ts';
import { ensureFaketime } from '../chaos/ensure-faketime.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { freePort, kill, removeDir, spawnNode, tempDir, waitHealthy, type NodeProc } from '../helpers/proc.ts';
import { skipMissingBinary } from '../helpers/skip.ts';

const ROUNDS = 160;

async function skewedLib(ctx: Mocha.Context): Promise<string> {
  const why = await ensureFaketime();
  const lib = findLibfaketime();
  if (why !== undefined || lib === undefined) return skipMissingBinary(ctx, 'libfaketime', why ?? 'not found after installing');
  return lib;
}

describe('clock skew (real processes under libfaketime)', function () {
  this.timeout(240_000);

  it('never hides a later acknowledged write below an earlier one when the later coordinator\'s clock is 3 s behind', async function () {
    const lib = await skewedLib(this);
    const c = await TestCluster.start(3, { args: ['--partitions', '64'] });
    let n4: NodeProc | undefined;
    try {
      const dir = tempDir('kv-skew-');
      const clockFile = join(dir, 'n4.clock');
      writeFileSync(clockFile, faketimeOffset(-3000));
      const port = await freePort();
      n4 = spawnNode({ id: 'n4', port, dataDir: join(c.root, 'n4'), args: ['--join', c.addr('n1'), '--partitions', '64'], env: faketimeEnv(lib, clockFile) });
      c.nodes.set('n4', n4);
      c.ports.set('n4', port);
      await waitHealthy(n4, 60_000);
      await c.waitConverged(4);
      // n4's wall clock really is 3 s behind: /cluster reports its own lastHeardMs as its Date.now().
      const view = await (await fetch(`http://${c.addr('n4')}/cluster`)).json() as { members: { id: string; lastHeardMs: number }[] };
      const behindMs = Date.now() - (view.members.find((m) => m.id === 'n4')?.lastHeardMs ?? Date.now());
      expect(behindMs, 'n4 runs behind').to.be.within(2000, 4500);
      const client = new KvClient({ nodes: [c.addr('n1')], session: false });
      const lost: string[] = [];
      try {
        for (let i = 0; i < ROUNDS; i++) {
          const key = `skew-${i}`;
          const first = await client.put(key, 'first', { node: c.addr('n1') });
          const second = await client.put(key, 'second', { node: c.addr('n4') });
          const got = await client.get(key, { r: 'all', node: c.addr('n2') });
          if (got?.value.toString() !== 'second') lost.push(`${key}: read ${got?.value.toString()} (first ${first.version}, second ${second.version})`);
          expect(second.version > first.version, `${key}: the later write's version ${second.version} is above ${first.version}`).to.equal(true);
        }
      } finally {
        client.close();
      }
      expect(lost, 'later acknowledged writes hidden by earlier ones').to.deep.equal([]);
      removeDir(dir);
    } finally {
      await c.stop();
    }
  });

  it('stamps above its earlier versions after a restart with the wall clock 5 s back (alone: no peer moves its clock)', async function () {
    const lib = await skewedLib(this);
    const dir = tempDir('kv-skew-restart-');
    const clockFile = join(dir, 'clock');
    writeFileSync(clockFile, faketimeOffset(0));
    const port = await freePort();
    const start = (args: string[]): NodeProc => spawnNode({ id: 'solo', port, dataDir: join(dir, 'solo'), args: [...args, '--n', '1', '--w', '1', '--r', '1'], env: faketimeEnv(lib, clockFile) });
    let p = start(['--bootstrap']);
    try {
      await waitHealthy(p, 60_000);
      const client = new KvClient({ nodes: [p.addr], session: false });
      let before = '';
      try {
        await pollUntil(async () => (await client.put('warm', 'x').then(() => true, () => false)), { what: 'the new cluster writable' });
        for (let i = 0; i < 50; i++) before = (await client.put(`k${i}`, 'v')).version;
      } finally {
        client.close();
      }
      await kill(p, 'SIGKILL');
      writeFileSync(clockFile, faketimeOffset(-5000));
      p = start([]);
      await waitHealthy(p, 60_000);
      const again = new KvClient({ nodes: [p.addr], session: false });
      try {
        const after = await pollUntil(async () => (await again.put('after-restart', 'v').then((r) => r.version, () => undefined)), { what: 'writable after restart' });
        expect(after > before, `after the restart ${after} is above ${before}`).to.equal(true);
      } finally {
        again.close();
      }
    } finally {
      await kill(p, 'SIGKILL');
      removeDir(dir);
    }
  });
});
