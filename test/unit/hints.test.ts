import { expect } from 'chai';
import { HintStore } from '../../lib/node/hints.ts';
import { MemoryBackend } from '../../lib/storage/memory-backend.ts';
import { MemoryNetwork } from '../../lib/net/index.ts';
import { createLogger } from '../../lib/node/log.ts';
import { makeVersion } from '../../lib/core/hlc.ts';
import { pollUntil } from '../helpers/poll.ts';

const LIMITS = { hintsMaxCount: 3, hintsMaxBytes: 1 << 20, hintsMaxAgeMs: 60_000, maxKeyBytes: 1024, maxValueBytes: 1024 };

describe('hinted handoff store', () => {
  it('ages out hints for a target that never comes back, so the bounds free up for others', async () => {
    const backend = new MemoryBackend();
    await backend.open();
    const net = new MemoryNetwork();
    const transport = net.transport({ selfId: 'a' });
    let member = true;
    const hints = new HintStore({
      backend, transport, limits: LIMITS, log: createLogger('t', 'silent'),
      cluster: { isAlive: () => false, epoch: () => 1, owns: () => true, isMember: () => member },
    });
    await hints.open();
    try {
      for (let i = 0; i < 3; i++) expect(await hints.add('gone', `k${i}`, { version: makeVersion({ wall: 1, logical: i }, 'a'), value: Buffer.from('v') })).to.equal(true);
      expect(await hints.add('other', 'x', { version: makeVersion({ wall: 2, logical: 0 }, 'a'), value: null }), 'count bound reached').to.equal(false);
      member = false; // the target was removed from the cluster
      await pollUntil(() => hints.pending('gone') === 0, { what: 'hints of a removed target dropped', timeoutMs: 5000 });
      expect(hints.stats.expired).to.equal(3);
      expect(await hints.add('other', 'x', { version: makeVersion({ wall: 2, logical: 0 }, 'a'), value: null })).to.equal(true);
    } finally {
      hints.stop();
      await transport.close();
    }
  });
});
