/**
 * The Raft runtime's fatal paths: a snapshot the core accepted but the state machine could
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

describe('raft runtime', () => {
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
