/**
 * Behaviour every Transport implementation must show, run against WsTransport (real
 * sockets on loopback) and MemoryTransport alike, in the spirit of abstract-level's
 * shared compliance suite.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { KvError, isKvError } from '../../lib/errors.ts';
import { MemoryNetwork } from '../../lib/net/memory-transport.ts';
import type { MemoryTransport } from '../../lib/net/memory-transport.ts';
import { WsTransport } from '../../lib/net/ws-transport.ts';
import type { TransportLimits } from '../../lib/net/limits.ts';
import type { Envelope, Transport, TransportHooks } from '../../lib/net/transport.ts';
import { waitUntil } from '../helpers/poll.ts';

const SECRET = 'test-secret-of-at-least-16-bytes';
/** Short reconnect and close timers keep the suite fast; the protocol is unchanged. */
const FAST: Partial<TransportLimits> = { reconnectBaseMs: 10, reconnectMaxMs: 100, closeGraceMs: 200 };

interface HarnessOptions {
  limits?: Partial<TransportLimits>;
  hooks?: (id: string) => TransportHooks;
  /** Registers handlers before the transport can receive anything. */
  setup?: (t: Transport) => void;
}

interface Harness {
  t(id: string): Transport;
  /** The peer goes away: its process is gone as far as the others can tell. */
  stop(id: string): Promise<void>;
  /** Comes back under the same id (and, for ws, the same port). */
  restart(id: string): Promise<void>;
  close(): Promise<void>;
}

interface Impl {
  name: string;
  start(ids: string[], opts?: HarnessOptions): Promise<Harness>;
}

async function allConnected(ts: Transport[]): Promise<void> {
  await waitUntil(() => ts.every((a) => ts.every((b) => a === b || a.isConnected(b.selfId))), 'full mesh');
}

async function rejection(p: Promise<unknown>): Promise<KvError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof KvError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

const wsImpl: Impl = {
  name: 'WsTransport',
  async start(ids, opts = {}) {
    const nodes = new Map<string, { t: WsTransport; server: http.Server }>();
    const ports = new Map<string, number>();
    const peersOf = (id: string): Record<string, string> =>
      Object.fromEntries([...ports].filter(([p]) => p !== id).map(([p, port]) => [p, `127.0.0.1:${port}`]));

    const boot = async (id: string, port: number): Promise<WsTransport> => {
      const server = http.createServer((_req, res) => { res.statusCode = 404; res.end(); });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve());
      });
      ports.set(id, (server.address() as AddressInfo).port);
      const t = new WsTransport({
        selfId: id, clusterId: 'test-cluster', secret: SECRET, limits: { ...FAST, ...opts.limits }, ...opts.hooks?.(id),
      });
      opts.setup?.(t);
      t.attach(server);
      nodes.set(id, { t, server });
      return t;
    };
    const shutdown = async (id: string): Promise<void> => {
      const n = nodes.get(id);
      if (n === undefined) return;
      nodes.delete(id);
      await n.t.close();
      n.server.closeAllConnections();
      await new Promise<void>((resolve) => n.server.close(() => resolve()));
    };

    for (const id of ids) await boot(id, 0);
    for (const [id, n] of nodes) n.t.setPeers(peersOf(id));
    await allConnected([...nodes.values()].map((n) => n.t));
    return {
      t: (id) => {
        const n = nodes.get(id);
        if (n === undefined) throw new Error(`no node ${id}`);
        return n.t;
      },
      stop: shutdown,
      async restart(id) {
        const t = await boot(id, ports.get(id) ?? 0);
        t.setPeers(peersOf(id));
      },
      async close() {
        for (const id of [...nodes.keys()]) await shutdown(id);
      },
    };
  },
};

const memoryImpl: Impl = {
  name: 'MemoryTransport',
  async start(ids, opts = {}) {
    const net = new MemoryNetwork();
    const nodes = new Map<string, MemoryTransport>();
    const boot = (id: string): void => {
      const t = net.transport({ selfId: id, limits: { ...FAST, ...opts.limits }, ...opts.hooks?.(id) });
      opts.setup?.(t);
      nodes.set(id, t);
    };
    for (const id of ids) boot(id);
    await allConnected([...nodes.values()]);
    return {
      t: (id) => {
        const t = nodes.get(id);
        if (t === undefined) throw new Error(`no node ${id}`);
        return t;
      },
      async stop(id) {
        await nodes.get(id)?.close();
        nodes.delete(id);
      },
      async restart(id) {
        boot(id);
      },
      async close() {
        for (const t of nodes.values()) await t.close();
      },
    };
  },
};

for (const impl of [wsImpl, memoryImpl]) {
  describe(`net: ${impl.name} behaviour`, function () {
    let h: Harness | undefined;
    afterEach(async () => {
      await h?.close();
      h = undefined;
    });

    it('exchanges one-way messages both ways, in order, stamped with epoch and HLC', async () => {
      const got: { at: string; from: string; payload: unknown; env: Envelope }[] = [];
      const observed: Envelope[] = [];
      h = await impl.start(['a', 'b'], {
        hooks: (id) => ({
          getEpoch: () => (id === 'a' ? 7 : 9),
          hlcNow: () => (id === 'a' ? '00000000000000aa' : '00000000000000bb'),
          onEnvelope: (env) => { observed.push(env); },
        }),
        setup: (t) => t.handle('gossip', (from, payload, env) => { got.push({ at: t.selfId, from, payload, env }); }),
      });
      expect(h.t('a').send('b', 'gossip', { n: 1 })).to.equal(true);
      expect(h.t('a').send('b', 'gossip', { n: 2 })).to.equal(true);
      expect(h.t('b').send('a', 'gossip', Buffer.from('hi'))).to.equal(true);
      await waitUntil(() => got.length === 3, 'three messages');
      const atB = got.filter((g) => g.at === 'b');
      expect(atB.map((g) => g.payload)).to.deep.equal([{ n: 1 }, { n: 2 }]);
      expect(atB[0]?.from).to.equal('a');
      expect(atB[0]?.env).to.include({ kind: 'msg', type: 'gossip', from: 'a', epoch: 7, hlc: '00000000000000aa', id: 0 });
      const atA = got.find((g) => g.at === 'a');
      expect(Buffer.from(atA?.payload as Uint8Array).toString()).to.equal('hi');
      expect(atA?.env).to.include({ epoch: 9, hlc: '00000000000000bb' });
      expect(observed).to.have.length(3);
    });

    it('answers requests both ways and among three nodes', async () => {
      h = await impl.start(['a', 'b', 'c'], {
        setup: (t) => t.handle('echo', (from, payload) => ({ by: t.selfId, from, payload })),
      });
      const calls: Promise<unknown>[] = [];
      const expected: unknown[] = [];
      for (const x of ['a', 'b', 'c']) {
        for (const y of ['a', 'b', 'c']) {
          if (x === y) continue;
          calls.push(h.t(x).request(y, 'echo', [x, y]));
          expected.push({ by: y, from: x, payload: [x, y] });
        }
      }
      expect(await Promise.all(calls)).to.deep.equal(expected);
    });

    it('resolves async handlers and keeps many concurrent requests apart', async () => {
      h = await impl.start(['a', 'b'], {
        setup: (t) => t.handle('double', async (_from, payload) => {
          await new Promise((r) => setImmediate(r));
          return (payload as number) * 2;
        }),
      });
      const results = await Promise.all(Array.from({ length: 500 }, (_, i) => h!.t('a').request<number>('b', 'double', i)));
      expect(results).to.deep.equal(Array.from({ length: 500 }, (_, i) => i * 2));
    });

    it('gives the caller a KvError with the code the remote handler threw', async () => {
      h = await impl.start(['a', 'b'], {
        setup: (t) => {
          t.handle('stale', () => { throw new KvError('KV_STALE_EPOCH', 'epoch 3 < 4', { details: { epoch: 4 } }); });
          t.handle('stale.async', async () => { throw new KvError('KV_NOT_FOUND', 'gone'); });
          t.handle('bug', () => { throw new TypeError('undefined is not a function'); });
        },
      });
      const e1 = await rejection(h.t('a').request('b', 'stale', null));
      expect(e1.code).to.equal('KV_STALE_EPOCH');
      expect(e1.message).to.equal('epoch 3 < 4');
      expect(e1.details).to.include({ epoch: 4, remote: true, peer: 'b' });
      expect((await rejection(h.t('a').request('b', 'stale.async', null))).code).to.equal('KV_NOT_FOUND');
      const e3 = await rejection(h.t('a').request('b', 'bug', null));
      expect(e3.code).to.equal('KV_INTERNAL');
      expect(e3.message).not.to.include('undefined is not a function');
      expect(h.t('b').stats().handlerErrors).to.equal(3);
      // The connection survives handler failures.
      expect(h.t('a').isConnected('b')).to.equal(true);
    });

    it('counts a throwing one-way handler and keeps serving', async () => {
      const seen: unknown[] = [];
      h = await impl.start(['a', 'b'], {
        setup: (t) => {
          t.handle('boom', () => { throw new Error('handler bug'); });
          t.handle('boom.async', () => Promise.reject(new Error('async handler bug')));
          t.handle('ok', (_f, p) => { seen.push(p); });
        },
      });
      h.t('a').send('b', 'boom', 1);
      h.t('a').send('b', 'boom.async', 2);
      h.t('a').send('b', 'ok', 3);
      await waitUntil(() => seen.length === 1 && h!.t('b').stats().handlerErrors === 2, 'handler errors counted');
      expect(h.t('b').isConnected('a')).to.equal(true);
    });

    it('answers a request of an unknown type with KV_INVALID_ARGUMENT and keeps the connection', async () => {
      h = await impl.start(['a', 'b'], { setup: (t) => t.handle('known', () => 'yes') });
      const err = await rejection(h.t('a').request('b', 'nobody.home', 1));
      expect(err.code).to.equal('KV_INVALID_ARGUMENT');
      expect(err.details).to.include({ unknownType: 'nobody.home' });
      expect(await h.t('a').request('b', 'known', 1)).to.equal('yes');
    });

    it('times out a request with KV_TIMEOUT (outcome unknown) and counts the late answer', async () => {
      let release: () => void = () => {};
      const released = new Promise<void>((r) => { release = r; });
      h = await impl.start(['a', 'b'], { setup: (t) => t.handle('slow', async () => { await released; return 'late'; }) });
      const err = await rejection(h.t('a').request('b', 'slow', null, { timeoutMs: 50 }));
      expect(err.code).to.equal('KV_TIMEOUT');
      expect(err.outcome).to.equal('unknown');
      expect(err.details).to.include({ maybeDelivered: true });
      expect(h.t('a').stats().requestTimeouts).to.equal(1);
      release();
      await waitUntil(() => h!.t('a').stats().lateResponses === 1, 'late response counted');
    });

    it('rejects with the abort reason when the signal aborts', async () => {
      h = await impl.start(['a', 'b'], { setup: (t) => t.handle('never', () => new Promise(() => {})) });
      const ac = new AbortController();
      const p = h.t('a').request('b', 'never', null, { signal: ac.signal });
      const reason = new KvError('KV_TIMEOUT', 'client deadline');
      ac.abort(reason);
      expect(await rejection(p)).to.equal(reason);
      const pre = AbortSignal.abort(new KvError('KV_CLOSED', 'already'));
      expect((await rejection(h.t('a').request('b', 'never', null, { signal: pre }))).code).to.equal('KV_CLOSED');
    });

    it('refuses requests beyond the pending limit with KV_TOO_MANY_REQUESTS, then recovers', async () => {
      const waiting: (() => void)[] = [];
      h = await impl.start(['a', 'b'], {
        limits: { maxPendingRequestsPerPeer: 3 },
        setup: (t) => t.handle('park', () => new Promise<string>((r) => { waiting.push(() => r('done')); })),
      });
      const parked = [1, 2, 3].map(() => h!.t('a').request('b', 'park', null));
      const err = await rejection(h.t('a').request('b', 'park', null));
      expect(err.code).to.equal('KV_TOO_MANY_REQUESTS');
      expect(err.outcome).to.equal('failed');
      await waitUntil(() => waiting.length === 3, 'handlers parked');
      for (const w of waiting) w();
      expect(await Promise.all(parked)).to.deep.equal(['done', 'done', 'done']);
      waiting.length = 0;
      const again = h.t('a').request('b', 'park', null);
      await waitUntil(() => waiting.length === 1, 'handler parked again');
      waiting[0]?.();
      expect(await again).to.equal('done');
    });

    it('fails fast with KV_UNAVAILABLE beyond the buffered-bytes limit', async () => {
      h = await impl.start(['a', 'b'], {
        limits: { maxFrameBytes: 64 * 1024, maxBatchBytes: 16 * 1024, maxBufferedBytesPerPeer: 64 * 1024 },
        setup: (t) => t.handle('sink', (_f, p) => (p as Buffer).length),
      });
      const chunk = Buffer.alloc(10 * 1024);
      // All queued in one tick, so the queue alone crosses the limit at the seventh.
      const calls = Array.from({ length: 8 }, () => h!.t('a').request('b', 'sink', chunk).then((v) => v, (e: unknown) => e));
      const sent = h.t('a').send('b', 'sink', chunk);
      const results = await Promise.all(calls);
      expect(results.slice(0, 6)).to.deep.equal(Array(6).fill(10 * 1024));
      for (const r of results.slice(6)) {
        expect(isKvError(r, 'KV_UNAVAILABLE')).to.equal(true);
        expect((r as KvError).details).to.include({ backpressure: true, maybeDelivered: false });
      }
      expect(sent).to.equal(false);
      expect(h.t('a').stats().sendsDropped).to.equal(1);
      // Once drained, the peer is usable again.
      expect(await h.t('a').request('b', 'sink', chunk)).to.equal(10 * 1024);
    });

    it('refuses an envelope larger than the frame limit with KV_FRAME_TOO_LARGE', async () => {
      h = await impl.start(['a', 'b'], { limits: { maxFrameBytes: 8 * 1024, maxBatchBytes: 4096, maxBufferedBytesPerPeer: 64 * 1024 },
        setup: (t) => t.handle('sink', () => 'ok') });
      const err = await rejection(h.t('a').request('b', 'sink', Buffer.alloc(9000)));
      expect(err.code).to.equal('KV_FRAME_TOO_LARGE');
      expect(h.t('a').send('b', 'sink', Buffer.alloc(9000))).to.equal(false);
      expect(await h.t('a').request('b', 'sink', Buffer.alloc(7000))).to.equal('ok');
    });

    it('fails fast for a peer it is not connected to, sending nothing', async () => {
      h = await impl.start(['a', 'b'], { setup: (t) => t.handle('x', () => 1) });
      const before = h.t('a').stats().framesOut;
      const err = await rejection(h.t('a').request('zed', 'x', null));
      expect(err.code).to.equal('KV_UNAVAILABLE');
      expect(err.details).to.include({ maybeDelivered: false });
      expect(h.t('a').send('zed', 'x', null)).to.equal(false);
      await new Promise((r) => setImmediate(r));
      expect(h.t('a').stats().framesOut).to.equal(before);
    });

    it('sends everything queued for a peer in one tick as one frame, split at the batch bound', async () => {
      let count = 0;
      h = await impl.start(['a', 'b'], {
        limits: { maxBatchEnvelopes: 100 },
        setup: (t) => t.handle('tick', () => { count++; }),
      });
      const b0 = h.t('b').stats();
      for (let i = 0; i < 50; i++) h.t('a').send('b', 'tick', i);
      await waitUntil(() => count === 50, '50 messages');
      const b1 = h.t('b').stats();
      expect(b1.framesIn - b0.framesIn).to.equal(1);
      expect(b1.envelopesIn - b0.envelopesIn).to.equal(50);
      // Requests and messages share the batch; 250 envelopes need three frames of <= 100.
      const reqs: Promise<unknown>[] = [];
      for (let i = 0; i < 250; i++) {
        if (i % 2 === 0) h.t('a').send('b', 'tick', i);
        else reqs.push(h.t('a').request('b', 'tick', i));
      }
      await Promise.all(reqs);
      await waitUntil(() => count === 50 + 250, 'all envelopes');
      expect(h.t('b').stats().framesIn - b1.framesIn).to.equal(3);
    });

    it('rejects in-flight requests as maybe-delivered when the peer goes away, fails fast while it is down, and reconnects', async () => {
      const ups: string[] = [];
      const downs: string[] = [];
      let arrived = 0;
      h = await impl.start(['a', 'b'], {
        setup: (t) => {
          t.handle('park', () => { arrived++; return new Promise(() => {}); });
          t.handle('ping', () => 'pong');
        },
      });
      h.t('a').on('peer-up', (p) => ups.push(p));
      h.t('a').on('peer-down', (p) => downs.push(p));
      const inflight = rejection(h.t('a').request('b', 'park', null, { timeoutMs: 10_000 }));
      await waitUntil(() => arrived === 1, 'request delivered');
      await h.stop('b');
      const err = await inflight;
      expect(err.code).to.equal('KV_UNAVAILABLE');
      expect(err.outcome).to.equal('unknown');
      expect(err.details).to.include({ maybeDelivered: true });
      await waitUntil(() => downs.length === 1, 'peer-down');
      expect(h.t('a').isConnected('b')).to.equal(false);
      const fast = await rejection(h.t('a').request('b', 'ping', null));
      expect(fast.code).to.equal('KV_UNAVAILABLE');
      expect(fast.details).to.include({ maybeDelivered: false });

      await h.restart('b');
      await waitUntil(() => h!.t('a').isConnected('b') && h!.t('b').isConnected('a'), 'reconnect');
      expect(ups).to.deep.equal(['b']);
      expect(await h.t('a').request('b', 'ping', null)).to.equal('pong');
    });

    it('rejects an envelope refused by onEnvelope: error response for a request, counted drop for a message', async () => {
      const got: unknown[] = [];
      h = await impl.start(['a', 'b'], {
        hooks: (id) => ({
          onEnvelope: (env) => {
            if (id === 'b' && env.payload === 'skewed') throw new KvError('KV_CLOCK_SKEW', 'remote clock ahead');
          },
        }),
        setup: (t) => {
          t.handle('m', (_f, p) => { got.push(p); });
          t.handle('r', (_f, p) => p);
        },
      });
      const err = await rejection(h.t('a').request('b', 'r', 'skewed'));
      expect(err.code).to.equal('KV_CLOCK_SKEW');
      h.t('a').send('b', 'm', 'skewed');
      h.t('a').send('b', 'm', 'fine');
      await waitUntil(() => got.length === 1, 'good message');
      expect(got).to.deep.equal(['fine']);
      expect(h.t('b').stats().envelopesRejected).to.equal(2);
      expect(await h.t('a').request('b', 'r', 'fine')).to.equal('fine');
    });

    it('rejects a response refused by onEnvelope as maybe-delivered', async () => {
      h = await impl.start(['a', 'b'], {
        hooks: (id) => ({
          onEnvelope: (env) => {
            if (id === 'a' && env.kind === 'res') throw new KvError('KV_CLOCK_SKEW', 'answer from the future');
          },
        }),
        setup: (t) => t.handle('r', () => 'applied'),
      });
      const err = await rejection(h.t('a').request('b', 'r', null));
      expect(err.code).to.equal('KV_CLOCK_SKEW');
      expect(err.outcome).to.equal('unknown');
      expect(err.details).to.include({ maybeDelivered: true });
    });

    it('close() rejects pending requests with KV_CLOSED and refuses new ones', async () => {
      h = await impl.start(['a', 'b'], { setup: (t) => t.handle('never', () => new Promise(() => {})) });
      const p = h.t('a').request('b', 'never', null);
      const closing = h.t('a').close();
      const err = await rejection(p);
      expect(err.code).to.equal('KV_CLOSED');
      await closing;
      expect((await rejection(h.t('a').request('b', 'never', null))).code).to.equal('KV_CLOSED');
      expect(h.t('a').send('b', 'never', null)).to.equal(false);
      await waitUntil(() => !h!.t('b').isConnected('a'), 'peer sees the close');
    });
  });
}
