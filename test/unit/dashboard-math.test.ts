/**
 * The dashboard's arithmetic (lib/api/ui/dashboard-math.js, the same file the browser
 * loads): quantiles from cumulative buckets, rates from counter deltas across restarts,
 * windows over samples, and the event feed derived from successive answers.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  SampleHistory, delta, diffEvents, digest, foldOperations, mergeDeltas, operationOf, quantile, summarize,
  type StatsLike,
} from '../../lib/api/ui/dashboard-math.js';

const BOUNDS = [0.001, 0.01, 0.1];

function stats(nowMs: number, startedAtMs: number, get: number[], put: number[] = [0, 0, 0, 0]): StatsLike {
  const series = (method: string, buckets: number[]) => ({ route: 'kv', method, count: buckets[buckets.length - 1] as number, serverErrors: 0, buckets });
  return { nowMs, startedAtMs, http: { boundsS: BOUNDS, series: [series('GET', get), series('PUT', put), { route: '/cluster/stats', method: 'GET', count: 7, serverErrors: 0, buckets: [7, 7, 7, 7] }] } };
}

describe('dashboard math', () => {
  it('interpolates quantiles within a bucket as histogram_quantile does', () => {
    const cum = [10, 60, 100, 100];
    expect(quantile(0.5, BOUNDS, cum)).to.be.closeTo(0.001 + 0.009 * (40 / 50), 1e-12);
    expect(quantile(0.99, BOUNDS, cum)).to.be.closeTo(0.01 + 0.09 * (39 / 40), 1e-12);
    expect(quantile(0.05, BOUNDS, cum)).to.be.closeTo(0.0005, 1e-12);
    expect(quantile(0.5, BOUNDS, [0, 0, 0, 0])).to.equal(null);
    // Everything slower than the last bound: the histogram cannot say more than that bound.
    expect(quantile(0.99, BOUNDS, [0, 0, 0, 5])).to.equal(0.1);
  });

  it('gives quantiles that never fall as q rises and stay within the bounds', () => {
    fc.assert(fc.property(fc.array(fc.nat(1000), { minLength: 4, maxLength: 4 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (counts, q1, q2) => {
      const cum = counts.reduce<number[]>((acc, c) => [...acc, (acc[acc.length - 1] ?? 0) + c], []);
      const [lo, hi] = q1 <= q2 ? [q1, q2] : [q2, q1];
      const a = quantile(lo, BOUNDS, cum);
      const b = quantile(hi, BOUNDS, cum);
      if ((cum[3] ?? 0) === 0) return a === null && b === null;
      return a !== null && b !== null && a <= b + 1e-12 && a >= 0 && b <= 0.1;
    }));
  });

  it('names client operations by method on the kv route, everything else admin', () => {
    expect(['GET', 'PUT', 'DELETE', 'HEAD'].map((m) => operationOf('kv', m))).to.deep.equal(['get', 'put', 'delete', 'head']);
    expect(operationOf('/cluster', 'GET')).to.equal('admin');
  });

  it('computes rates and quantiles from counter deltas, and none across a restart', () => {
    const older = { nowMs: 10_000, startedAtMs: 1, fold: foldOperations(stats(10_000, 1, [10, 10, 10, 10])) };
    const newer = { nowMs: 12_000, startedAtMs: 1, fold: foldOperations(stats(12_000, 1, [10, 30, 50, 50], [0, 4, 4, 4])) };
    const d = delta(older, newer);
    expect(d?.ops['get']).to.include({ count: 40, rate: 20 });
    expect(d?.ops['get']?.buckets).to.deep.equal([0, 20, 40, 40]);
    const s = summarize(d, (op) => op === 'get');
    expect(s.rate).to.equal(20);
    expect(s.p50).to.be.closeTo(0.01, 1e-12);
    expect(summarize(d, (op) => op !== 'admin').rate).to.equal(22);
    expect(delta(older, { ...newer, startedAtMs: 2 })).to.equal(null);
    expect(delta(newer, older)).to.equal(null);
    const both = mergeDeltas([d, null, d]);
    expect(both?.ops['get']).to.include({ count: 80, rate: 40 });
    expect(mergeDeltas([null])).to.equal(null);
  });

  it('windows reach back at most the asked span and never across a restart', () => {
    const h = new SampleHistory(300_000);
    h.add(0, 'n1', stats(100_000, 1, [0, 0, 0, 0]));
    h.add(2000, 'n1', stats(102_000, 1, [0, 0, 10, 10]));
    h.add(4000, 'n1', stats(104_000, 1, [0, 0, 30, 30]));
    expect(h.window('n1', 2500)?.ops['get']?.count).to.equal(20);
    expect(h.window('n1', 10_000)?.ops['get']?.count).to.equal(30);
    h.add(6000, 'n1', stats(5_000, 3, [0, 0, 1, 1]));
    expect(h.window('n1', 10_000)).to.equal(null);
    expect(h.window('nobody', 10_000)).to.equal(null);
  });

  it('derives joins, state and liveness changes, elections, epoch changes, silence and restarts from two answers', () => {
    const answer = (o: { epoch: number; leader: string; term: number; members: [string, string, string][]; down?: string[]; started?: Record<string, number> }) => ({
      via: 'n1',
      cluster: { clusterId: 'abcdef0123', epoch: o.epoch, raft: { leader: o.leader, term: o.term }, members: o.members.map(([id, state, liveness]) => ({ id, state, liveness })) },
      nodes: o.members.map(([id]) => (o.down?.includes(id)
        ? { id, ok: false, error: { code: 'KV_UNAVAILABLE', message: 'peer is not connected' } }
        : { id, ok: true, stats: { startedAtMs: o.started?.[id] ?? 1 } })),
    });
    const first = digest(answer({ epoch: 5, leader: 'n1', term: 2, members: [['n1', 'normal', 'alive'], ['n2', 'normal', 'alive'], ['n3', 'normal', 'alive']] }));
    expect(diffEvents(null, first).map((e) => e.text)).to.deep.equal(['connected through n1: cluster abcdef01, epoch 5, 3 members, leader n1']);
    const second = digest(answer({
      epoch: 6, leader: 'n2', term: 3, down: ['n3'], started: { n2: 9 },
      members: [['n1', 'normal', 'alive'], ['n2', 'normal', 'alive'], ['n3', 'normal', 'dead'], ['n4', 'joining', 'alive']],
    }));
    expect(diffEvents(first, second).map((e) => e.text)).to.deep.equal([
      'epoch 5 → 6',
      'election: leader n1 → n2 (term 3)',
      'n3 alive → dead',
      'n4 joined (joining)',
      'n2 restarted',
      'n3 stopped answering (KV_UNAVAILABLE: peer is not connected)',
    ]);
    const third = digest(answer({ epoch: 7, leader: 'n2', term: 3, started: { n2: 9 }, members: [['n1', 'normal', 'alive'], ['n2', 'leaving', 'alive'], ['n3', 'normal', 'alive']] }));
    expect(diffEvents(second, third).map((e) => e.text)).to.deep.equal([
      'epoch 6 → 7', 'n2 normal → leaving', 'n3 dead → alive', 'n4 left the cluster', 'n3 answers again',
    ]);
  });
});
