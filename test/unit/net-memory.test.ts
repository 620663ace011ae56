/**
 * MemoryTransport specifics: partitions, drops, asynchronous delivery, and the same
 * frame validation as the socket transport (fed through injectFrame).
 */
import { expect } from 'chai';
import { Packr } from 'msgpackr';
import { KvError } from '../../lib/errors.ts';
import { seededRng } from '../../lib/core/rng.ts';
import { CloseCode } from '../../lib/net/frame.ts';
import { MemoryNetwork } from '../../lib/net/memory-transport.ts';
import type { MemoryTransport } from '../../lib/net/memory-transport.ts';
import { waitUntil } from '../helpers/poll.ts';

const packr = new Packr({ useRecords: false });
const HLC = '0000000000000001';

describe('net: MemoryTransport', () => {
  let net: MemoryNetwork;
  let nodes: MemoryTransport[] = [];
  const make = (id: string): MemoryTransport => {
    const t = net.transport({ selfId: id });
    t.handle('echo', (_f, p) => p);
    nodes.push(t);
    return t;
  };
  beforeEach(() => { net = new MemoryNetwork(); });
  afterEach(async () => {
    for (const t of nodes) await t.close();
    nodes = [];
  });

  it('delivers asynchronously, never inside send()', async () => {
    const a = make('a');
    const b = make('b');
    let got = 0;
    b.handle('m', () => { got++; });
    await waitUntil(() => a.isConnected('b'), 'linked');
    a.send('b', 'm', 1);
    expect(got).to.equal(0);
    await waitUntil(() => got === 1, 'delivery');
  });

  it('partition closes links (pending requests maybe-delivered), heal restores them', async () => {
    const a = make('a');
    const b = make('b');
    const c = make('c');
    b.handle('park', () => new Promise(() => {}));
    await waitUntil(() => a.isConnected('b') && a.isConnected('c') && b.isConnected('c'), 'mesh');
    const parked = a.request('b', 'park', null).catch((e: KvError) => e);
    await waitUntil(() => a.stats().framesOut >= 1, 'sent');
    net.partition(['a'], ['b']);
    const err = (await parked) as KvError;
    expect(err.code).to.equal('KV_UNAVAILABLE');
    expect(err.details).to.include({ maybeDelivered: true });
    expect(a.isConnected('b')).to.equal(false);
    expect(a.isConnected('c')).to.equal(true);
    expect(await a.request('c', 'echo', 'via c')).to.equal('via c');
    net.heal();
    await waitUntil(() => a.isConnected('b'), 'healed');
    expect(await a.request('b', 'echo', 'back')).to.equal('back');
  });

  it('drops frames at the configured rate, reproducibly from the seed', async () => {
    const a = make('a');
    const b = make('b');
    let got = 0;
    b.handle('m', () => { got++; });
    await waitUntil(() => a.isConnected('b'), 'linked');
    net.setDropRate(0.5, seededRng(42));
    for (let i = 0; i < 200; i++) {
      a.send('b', 'm', i);
      await new Promise((r) => setImmediate(r));
    }
    await waitUntil(() => got + net.framesDropped === 200, 'all accounted');
    expect(net.framesDropped).to.be.within(60, 140);
  });

  it('closes a link on an invalid or unknown-type frame like the socket transport does', async () => {
    const a = make('a');
    const b = make('b');
    await waitUntil(() => a.isConnected('b'), 'linked');
    net.injectFrame('a', 'b', Buffer.from([0xc1]));
    await waitUntil(() => !a.isConnected('b'), 'closed');
    expect(a.closeLog.at(-1)?.code).to.equal(CloseCode.FRAME_INVALID);
    expect(b.stats().invalidFrames).to.equal(1);
    net.heal();
    await waitUntil(() => a.isConnected('b'), 'relinked');
    net.injectFrame('a', 'b', packr.pack([[0, 'mystery', 0, 'a', 0, HLC, 1]]));
    await waitUntil(() => !a.isConnected('b'), 'closed again');
    expect(a.closeLog.at(-1)?.code).to.equal(CloseCode.UNKNOWN_TYPE);
  });

  it('refuses two live transports with the same id', () => {
    make('a');
    expect(() => net.transport({ selfId: 'a' })).to.throw(KvError, /already/);
  });
});
