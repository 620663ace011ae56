/**
 * The Raft runtime: elections, heartbeats and proposals with ticks counted rather than
 * woken for; and its fatal paths: a snapshot the core accepted but the state machine could
 * not install stops the node (like a failed persist), instead of moving the applied index on
 * with the old topology.
 */
import { expect } from 'chai';
import { MemoryNetwork } from '../../lib/net/index.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { RaftStore } from '../../lib/storage/raft-store.ts';
import { RaftRuntime } from '../../lib/node/raft-runtime.ts';
import { createLogger } from '../../lib/node/log.ts';
import { pollUntil } from '../helpers/poll.ts';
import type { Transport } from '../../lib/net/transport.ts';

const CONF3 = { voters: ['a', 'b', 'c'], learners: [] };
const TICK_MS = 20;

describe('raft runtime', () => {
  it('elects a leader, heartbeats every 3 ticks, commits proposals and re-elects after the leader stops', async () => {
    const net = new MemoryNetwork();
    const ids = ['a', 'b', 'c'];
    const sent = new Map<string, number>();
    const transports = ids.map((id) => {
      const t = net.transport({ selfId: id });
      const send = t.send.bind(t);
      // Count the heartbeats each node sends.
      t.send = ((to: string, type: string, payload: unknown) => {
        if ((payload as { type?: string }).type === 'heartbeat') sent.set(id, (sent.get(id) ?? 0) + 1);
        return send(to, type, payload);
      }) as Transport['send'];
      return t;
    });
    const applied = new Map<string, unknown[]>(ids.map((id) => [id, []]));
    const rts: RaftRuntime[] = [];
    try {
      for (const [i, id] of ids.entries()) {
        const backend = new MemoryBackend();
        await backend.open();
        const rt = new RaftRuntime({
          id, transport: transports[i] as Transport, store: new RaftStore(backend), log: createLogger(id, 'silent'), tickMs: TICK_MS,
          apply: (data) => applied.get(id)?.push(data), restore: () => undefined, snapshotData: () => null,
        });
        rts.push(rt);
        await rt.start({ entries: [] }, CONF3);
      }
      const leaderOf = (among: RaftRuntime[]): RaftRuntime | undefined => among.find((r) => r.status().role === 'leader');
      await pollUntil(() => leaderOf(rts) !== undefined, { what: 'a leader', timeoutMs: 10_000 });
      const leader = leaderOf(rts) as RaftRuntime;
      const leaderId = leader.status().leader as string;
      await leader.propose('x1');
      await pollUntil(() => ids.every((id) => applied.get(id)?.includes('x1')), { what: 'x1 applied everywhere', timeoutMs: 10_000 });
      // Heartbeats: one per 3 ticks per follower, not one per tick (timers only ever fire late).
      const before = sent.get(leaderId) ?? 0;
      const t0 = performance.now();
      await pollUntil(() => performance.now() - t0 >= 30 * TICK_MS, { what: '30 ticks', intervalMs: TICK_MS });
      const perFollower = ((sent.get(leaderId) ?? 0) - before) / 2;
      const ticks = (performance.now() - t0) / TICK_MS;
      expect(perFollower).to.be.at.most(Math.ceil(ticks / 3) + 1);
      expect(perFollower).to.be.at.least(1);
      // The followers, ticking lazily, still notice a silent leader and elect another.
      leader.stop();
      const rest = rts.filter((r) => r !== leader);
      await pollUntil(() => leaderOf(rest) !== undefined, { what: 'a new leader', timeoutMs: 10_000 });
      await (leaderOf(rest) as RaftRuntime).propose('x2');
      await pollUntil(() => ids.filter((id) => id !== leaderId).every((id) => applied.get(id)?.includes('x2')), { what: 'x2 applied on the survivors', timeoutMs: 10_000 });
    } finally {
      for (const rt of rts) rt.stop();
      for (const t of transports) await t.close();
    }
  });

  it('stops (onFatal) when an accepted snapshot cannot be installed, and never applies past it', async () => {
    const net = new MemoryNetwork();
    const leader = net.transport({ selfId: 'a' });
    const follower = net.transport({ selfId: 'b' });
    const backend = new MemoryBackend();
    await backend.open();
    let fatal: unknown;
    const applied: unknown[] = [];
    const rt = new RaftRuntime({
      id: 'b', transport: follower, store: new RaftStore(backend), log: createLogger('b', 'silent'),
      apply: (data) => applied.push(data),
      restore: () => { throw new Error('state machine refused the snapshot'); },
      snapshotData: () => null,
      onFatal: (err) => { fatal = err; },
    });
    await rt.start({ entries: [] }, undefined);
    try {
      await pollUntil(() => leader.isConnected('b'), { what: 'memory link' });
      leader.send('b', 'raft', {
        type: 'snapshot', from: 'a', to: 'b', term: 2,
        snapshot: { index: 10, term: 2, config: { voters: ['a', 'b', 'c'], learners: [] }, data: { any: 'thing' } },
      });
      await pollUntil(() => fatal !== undefined, { what: 'the runtime reports the failed install', timeoutMs: 5000 });
      expect(String((fatal as Error).message)).to.include('snapshot at index 10 could not be installed');
      expect(applied).to.deep.equal([]);
    } finally {
      rt.stop();
      await leader.close();
      await follower.close();
    }
  });
});
