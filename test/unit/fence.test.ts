import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { PartitionFence, decodeFence, encodeFence, type FenceState } from '../../lib/node/fence.ts';
import { Topology, type TopologyCommand } from '../../lib/core/topology.ts';

const Q = 32;
const base: TopologyCommand[] = [
  { op: 'create', clusterId: 'c', partitions: Q, n: 2, vnodes: 16, id: 'a', addr: 'a:1' },
  { op: 'add', id: 'b', addr: 'b:1' }, { op: 'normal', id: 'b' },
];

function topo(cmds: readonly TopologyCommand[]): Topology {
  const t = new Topology();
  for (const c of cmds) t.apply(c);
  return t;
}

function staleAt(f: PartitionFence, epoch: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < Q; p++) {
    try { f.checkPartition(p, epoch); } catch (err) { if (err instanceof KvError && err.code === 'KV_STALE_EPOCH') out.push(p); else throw err; }
  }
  return out;
}

describe('partition fence', () => {
  it('fences only the partitions whose owners changed, and keeps that across a restart', async () => {
    let saved: FenceState | undefined;
    const f = new PartitionFence({ save: async (s) => { saved = s; } });
    const t1 = topo(base);
    f.update(t1);
    const t2 = topo([...base, { op: 'add', id: 'c', addr: 'c:1' }]);
    f.update(t2);
    await f.flushed();
    const fenced = staleAt(f, t1.epoch);
    expect(fenced.length, 'some partitions moved to the joining node').to.be.greaterThan(0);
    expect(fenced.length, 'not every partition').to.be.below(Q);
    // A restarted node restores the saved fence: the same partitions stay fenced.
    const again = new PartitionFence();
    again.restore(decodeFence(encodeFence(saved as FenceState)));
    again.update(t2);
    expect(staleAt(again, t1.epoch)).to.deep.equal(fenced);
  });

  it('fences every partition when it comes back to a topology newer than its saved state', () => {
    const f = new PartitionFence();
    f.update(topo(base));
    const saved: FenceState = { epoch: 3, changedAt: new Uint32Array(Q), changedAtMs: new Float64Array(Q) };
    const restarted = new PartitionFence({ now: () => 123 });
    restarted.restore(saved);
    const t = topo([...base, { op: 'add', id: 'c', addr: 'c:1' }, { op: 'normal', id: 'c' }]);
    restarted.update(t);
    expect(staleAt(restarted, 3)).to.have.length(Q);
    expect(restarted.lastChangeMs(0)).to.equal(123);
  });

  it('does not make old changes look recent when replaying epochs the saved state covers', () => {
    const cmds: TopologyCommand[] = [...base, { op: 'add', id: 'c', addr: 'c:1' }, { op: 'normal', id: 'c' }];
    const saved: FenceState = { epoch: 5, changedAt: new Uint32Array(Q).fill(4), changedAtMs: new Float64Array(Q).fill(7) };
    const f = new PartitionFence({ now: () => 999 });
    f.restore(saved);
    // Raft replays the log from the start: epochs 1..5.
    for (let i = 1; i <= cmds.length; i++) f.update(topo(cmds.slice(0, i)));
    for (let p = 0; p < Q; p++) expect(f.lastChangeMs(p), `partition ${p}`).to.equal(7);
  });
  it('holds GC back (lastChangeMs) only where a node stopped owning a partition, not where owners were only added', () => {
    let clock = 1000;
    const f = new PartitionFence({ now: () => clock });
    // N=2 over a and b: every partition on both. c joins (adds a future owner), then is normal (a or b loses partitions).
    const t1 = topo(base);
    f.update(t1);
    clock = 2000;
    const joining = [...base, { op: 'add', id: 'c', addr: 'c:1' } as TopologyCommand];
    f.update(topo(joining));
    const moved = staleAt(f, t1.epoch);
    expect(moved.length, 'the join moves the epoch fence').to.be.greaterThan(0);
    for (const p of moved) expect(f.lastChangeMs(p), `partition ${p}: only an owner added`).to.equal(0);
    clock = 3000;
    f.update(topo([...joining, { op: 'normal', id: 'c' }]));
    for (const p of moved) expect(f.lastChangeMs(p), `partition ${p}: a former owner hands off`).to.equal(3000);
  });
});
