/**
 * The SWIM runtime shell (lib/node/gossip.ts) over the in-memory transport, with real
 * timers and the shipped defaults: that it ticks only when the core asks, that its
 * lag measurement does not mistake its own start for a stall, and that a closed
 * connection (the transport's peer-down) reaches the core. The protocol itself is
 * covered by test/unit/swim.test.ts and test/sim/swim.test.ts.
 */
import { expect } from 'chai';
import { Metrics } from '../../lib/api/metrics.ts';
import { MemoryNetwork } from '../../lib/net/memory-transport.ts';
import type { Transport } from '../../lib/net/transport.ts';
import { Gossip } from '../../lib/node/gossip.ts';
import { createLogger } from '../../lib/node/log.ts';
import { waitUntil } from '../helpers/poll.ts';

describe('SWIM runtime (lib/node/gossip.ts, memory transport, real timers)', function () {
  this.timeout(30_000);
  let net: MemoryNetwork;
  let transports: Transport[];
  let nodes: Gossip[];

  function start(ids: string[], members: string[] = ids): Gossip[] {
    const out = ids.map((id) => {
      const t = net.transport({ selfId: id });
      transports.push(t);
      const g = new Gossip({ selfId: id, transport: t, config: {}, metrics: new Metrics({ defaultMetrics: false }), log: createLogger(id, 'silent'), epoch: () => 0, onEpochBehind: () => {} });
      if (members.length > 0) g.setMembers(members);
      g.start();
      return g;
    });
    nodes.push(...out);
    return out;
  }

  beforeEach(() => {
    net = new MemoryNetwork();
    transports = [];
    nodes = [];
  });

  afterEach(async () => {
    for (const g of nodes) g.stop();
    await Promise.all(transports.map((t) => t.close()));
  });

  it('does not take the wait before its first tick for event-loop lag (health stays 0)', async () => {
    // A joining node starts gossip before it is a member of anything.
    const [g] = start(['a'], []) as [Gossip];
    await waitUntil(() => g.swim.nextProbeAtMs !== undefined, 'the first tick');
    expect(g.swim.healthScore).to.equal(0);
    g.setMembers(['a', 'b']);
    await waitUntil(() => g.swim.probe() !== null, 'a first probe');
    expect(g.swim.healthScore).to.equal(0);
  });

  it('ticks when the core asks: a few times a second in a quiet cluster, not every 50 ms', async () => {
    const gs = start(['a', 'b', 'c']);
    const ticks = new Map<Gossip, number>(gs.map((g) => [g, 0]));
    for (const g of gs) {
      const tick = g.swim.tick.bind(g.swim);
      g.swim.tick = (nowMs: number) => {
        ticks.set(g, (ticks.get(g) ?? 0) + 1);
        return tick(nowMs);
      };
    }
    // Three probe periods, and everyone has heard from everyone.
    await waitUntil(() => gs.every((g) => g.swim.members().every((m) => m.id === g.swim.selfId || m.lastHeardMs !== undefined)), 'every member heard from');
    const startMs = Date.now();
    const counts = new Map(ticks);
    await new Promise((r) => setTimeout(r, 3000));
    const seconds = (Date.now() - startMs) / 1000;
    for (const g of gs) {
      const perSecond = ((ticks.get(g) ?? 0) - (counts.get(g) ?? 0)) / seconds;
      // At least the probe itself; far below the 20 a second of a 50 ms cadence.
      expect(perSecond, `${g.swim.selfId} ticks per second`).to.be.within(0.5, 5);
    }
    expect(gs.every((g) => g.swim.members().every((m) => m.liveness === 'alive'))).to.equal(true);
  });

  it('suspects, then declares dead, a member whose connections close, and no one else', async () => {
    const gs = start(['a', 'b', 'c', 'd']);
    await waitUntil(() => gs.every((g) => g.swim.members().every((m) => m.id === g.swim.selfId || m.lastHeardMs !== undefined)), 'every member heard from');
    const d = gs[3] as Gossip;
    d.stop();
    // The memory network closes d's links: peer-down on a, b and c.
    net.isolate('d');
    const others = gs.slice(0, 3);
    await waitUntil(() => others.every((g) => g.swim.member('d')?.liveness === 'dead'), 'd dead on a, b and c', { timeoutMs: 20_000 });
    for (const g of others) {
      expect(g.swim.members().filter((m) => m.liveness !== 'alive').map((m) => m.id)).to.deep.equal(['d']);
    }
  });
});
