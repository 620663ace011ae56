/**
 * lib/node/stats.ts in one process over the memory transport: a gather lists every member,
 * reports one that does not answer without waiting past the deadline, bounds what it keeps,
 * and refuses a peer's answer of the wrong shape.
 */
import { expect } from 'chai';
import { MemoryNetwork, type MemoryTransport } from '../../lib/net/memory-transport.ts';
import { Topology } from '../../lib/core/topology.ts';
import { Metrics } from '../../lib/api/metrics.ts';
import { KvError } from '../../lib/errors.ts';
import { STATS_PEER_TIMEOUT_MS, StatsService, validateNodeStats, type NodeStats } from '../../lib/node/stats.ts';
import { tempDir, removeDir } from '../helpers/proc.ts';
import { waitUntil } from '../helpers/poll.ts';

function topology(ids: string[]): Topology {
  const t = new Topology();
  t.apply({ op: 'create', clusterId: 'c-1', partitions: 64, n: 3, vnodes: 16, id: ids[0] as string, addr: `${ids[0]}:1` });
  for (const id of ids.slice(1)) {
    t.apply({ op: 'add', id, addr: `${id}:1` });
    t.apply({ op: 'normal', id });
  }
  return t;
}

describe('node stats (GET /cluster/stats, node.stats)', () => {
  let net: MemoryNetwork;
  let transports: MemoryTransport[] = [];
  let dir: string;

  beforeEach(() => {
    net = new MemoryNetwork();
    dir = tempDir('kv-stats-');
  });
  afterEach(async () => {
    for (const t of transports) await t.close();
    transports = [];
    removeDir(dir);
  });

  function service(id: string, t: Topology, metrics = new Metrics({ defaultMetrics: false })): StatsService {
    const transport = net.transport({ selfId: id });
    transports.push(transport);
    return new StatsService({
      selfId: id, advertise: `${id}:1`, dataDir: dir, transport, metrics,
      clusterId: () => 'c-1', topology: () => t, raft: () => ({ role: id === 'a' ? 'leader' : 'follower', term: 3, leader: 'a', commit: 9 }),
      liveness: () => 'alive', partitionKeyCount: async (p) => (p < 4 ? 10 : 0),
      hints: () => ({ pending: 2, stats: { stored: 5, delivered: 3, dropped: 0, expired: 0 } }),
      antiEntropy: () => ({ walk: 2, partitionsDone: 8, partitionsTotal: 64, lastWalkDoneMs: 1000 }),
      clusterView: () => ({ id }),
    });
  }

  it('gathers every member through one node, with its own numbers', async () => {
    const t = topology(['a', 'b', 'c']);
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.observeHttp('kv', 'GET', 200, 0.002);
    metrics.observeHttp('kv', 'GET', 404, 0.0004);
    metrics.observeHttp('kv', 'PUT', 503, 0.2);
    const a = service('a', t, metrics);
    service('b', t);
    service('c', t);
    await waitUntil(() => transports[0]?.isConnected('b') === true && transports[0]?.isConnected('c') === true, 'links');
    const got = await a.gather();
    expect(got.via).to.equal('a');
    expect(got.nodes.map((n) => [n.id, n.ok])).to.deep.equal([['a', true], ['b', true], ['c', true]]);
    const self = got.nodes[0] as { ok: true; stats: NodeStats };
    expect(self.stats.storage.records).to.equal(40);
    expect(self.stats.hints).to.include({ enabled: true, pending: 2, delivered: 3 });
    expect(self.stats.antiEntropy).to.include({ walk: 2, partitionsDone: 8, partitionsTotal: 64, lastWalkDoneMs: 1000 });
    expect(self.stats.ownership.partitions).to.equal(64);
    expect(self.stats.ownership.replicated).to.equal(64); // 3 members, N=3: every partition
    const get = self.stats.http.series.find((s) => s.route === 'kv' && s.method === 'GET');
    expect(get).to.include({ count: 2, clientErrors: 1, serverErrors: 0 });
    expect(get?.buckets.length).to.equal(self.stats.http.boundsS.length + 1);
    expect(get?.buckets[0]).to.equal(1); // 0.4 ms ≤ 0.5 ms
    const put = self.stats.http.series.find((s) => s.route === 'kv' && s.method === 'PUT');
    expect(put).to.include({ count: 1, serverErrors: 1 });
  });

  it('lists a member that does not answer with its error, after at most the deadline', async () => {
    const t = topology(['a', 'b', 'c']);
    const a = service('a', t);
    service('b', t);
    service('c', t);
    await waitUntil(() => transports[0]?.isConnected('b') === true, 'links');
    net.isolate('c');
    const started = Date.now();
    const got = await a.gather();
    expect(Date.now() - started).to.be.below(STATS_PEER_TIMEOUT_MS + 1000);
    const c = got.nodes.find((n) => n.id === 'c');
    expect(c?.ok).to.equal(false);
    expect(c && !c.ok ? c.error.code : '').to.match(/^KV_(UNAVAILABLE|TIMEOUT)$/);
    expect(got.nodes.find((n) => n.id === 'b')?.ok).to.equal(true);
  });

  it('shares one round of peer requests between concurrent gathers', async () => {
    const t = topology(['a', 'b']);
    const a = service('a', t);
    service('b', t);
    await waitUntil(() => transports[0]?.isConnected('b') === true, 'links');
    const before = transports[0]?.stats().requestsSent ?? 0;
    const [x, y] = await Promise.all([a.gather(), a.gather()]);
    expect(x).to.equal(y);
    expect((transports[0]?.stats().requestsSent ?? 0) - before).to.equal(1);
  });

  it('refuses a peer answer that is not a NodeStats, and one that claims another id', async () => {
    const t = topology(['a', 'b']);
    const metrics = new Metrics({ defaultMetrics: false });
    metrics.observeHttp('kv', 'GET', 200, 0.002);
    const real = await service('b', t, metrics).local();
    expect(real.http.series.length).to.equal(1);
    const copy = (): Record<string, unknown> => JSON.parse(JSON.stringify(real)) as Record<string, unknown>;
    expect(validateNodeStats(copy(), 'b')).to.deep.equal(real);
    const cases: Array<[string, (o: Record<string, unknown>) => void]> = [
      ['another id', (o) => { o['id'] = 'x'; }],
      ['not an object', (o) => { o['raft'] = 'leader'; }],
      ['a number that is not finite', (o) => { (o['storage'] as Record<string, unknown>)['records'] = 'many'; }],
      ['too many series', (o) => { (o['http'] as { series: unknown[] }).series = Array.from({ length: 1000 }, () => ({})); }],
      ['buckets not matching bounds', (o) => { ((o['http'] as { series: { buckets: number[] }[] }).series[0] ?? { buckets: [] }).buckets = [1, 2]; }],
    ];
    for (const [what, spoil] of cases) {
      const o = copy();
      spoil(o);
      expect(() => validateNodeStats(o, 'b'), what).to.throw(KvError, /node.stats answer/);
    }
    const long = copy();
    long['addr'] = 'x'.repeat(10_000);
    expect(validateNodeStats(long, 'b').addr.length).to.equal(200);
  });
});
