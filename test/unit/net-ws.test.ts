/**
 * WsTransport specifics on real loopback sockets: mutual authentication, what an
 * unauthenticated or misbehaving socket gets, upgrade-path routing, duplicate dials.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { Packr } from 'msgpackr';
import WebSocket, { WebSocketServer } from 'ws';
import { KvError } from '../../lib/errors.ts';
import { computeMac, fromWire, newNonce, toWire } from '../../lib/net/auth.ts';
import { CloseCode } from '../../lib/net/frame.ts';
import type { TransportLimits } from '../../lib/net/limits.ts';
import { WsTransport } from '../../lib/net/ws-transport.ts';
import type { WsTransportOptions } from '../../lib/net/ws-transport.ts';
import { waitUntil } from '../helpers/poll.ts';

const SECRET = 'test-secret-of-at-least-16-bytes';
const CLUSTER = 'test-cluster';
const FAST: Partial<TransportLimits> = { reconnectBaseMs: 10, reconnectMaxMs: 100, closeGraceMs: 200 };
const packr = new Packr({ useRecords: false });
const HLC = '0000000000000001';

interface Node {
  t: WsTransport;
  server: http.Server;
  port: number;
  addr: string;
}

/** Everything a test created, torn down in afterEach. */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

async function node(id: string, opts: Partial<WsTransportOptions> = {}, setup?: (t: WsTransport) => void): Promise<Node> {
  const server = http.createServer((_req, res) => { res.statusCode = 404; res.end(); });
  const port = await listen(server);
  const t = new WsTransport({ selfId: id, clusterId: CLUSTER, secret: SECRET, ...opts, limits: { ...FAST, ...opts.limits } });
  setup?.(t);
  t.attach(server);
  cleanup.push(() => t.close());
  return { t, server, port, addr: `127.0.0.1:${port}` };
}

interface Raw {
  ws: WebSocket;
  /** Every message received, in order. */
  received: Buffer[];
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;
}

function raw(port: number, path = '/_peer'): Raw {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { perMessageDeflate: false });
  const received: Buffer[] = [];
  ws.on('message', (d: Buffer) => received.push(d));
  ws.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('close', () => reject(new Error('closed before open')));
  });
  opened.catch(() => {});
  cleanup.push(async () => {
    ws.terminate();
    await closed;
  });
  return { ws, received, closed, opened };
}

/** Runs the dialer side of the handshake by hand; resolves true once welcomed and verified. */
async function rawHandshake(r: Raw, acceptorId: string, as = 'raw', secret = SECRET, clusterId = CLUSTER): Promise<boolean> {
  await waitUntil(() => r.received.length >= 1, 'challenge');
  const challenge = fromWire(packr.unpack(r.received[0] as Buffer));
  if (challenge?.t !== 'challenge') throw new Error('first message is not a challenge');
  const cfg = { clusterId, secret: Buffer.from(secret) };
  const nonceD = newNonce();
  const mac = computeMac(cfg, 'dialer', as, acceptorId, challenge.nonce, nonceD);
  r.ws.send(packr.pack(toWire({ t: 'auth', dialerId: as, acceptorId, nonce: nonceD, mac })));
  const outcome = await Promise.race([
    waitUntil(() => r.received.length >= 2, 'welcome', { timeoutMs: 2000 }).then(() => 'welcome' as const),
    r.closed.then(() => 'closed' as const),
  ]);
  if (outcome === 'closed') return false;
  const welcome = fromWire(packr.unpack(r.received[1] as Buffer));
  if (welcome?.t !== 'welcome') return false;
  const expected = computeMac(cfg, 'acceptor', as, acceptorId, challenge.nonce, nonceD);
  return welcome.mac.equals(expected);
}

/** One batch holding the given envelope tuples. */
function batch(...envs: unknown[][]): Buffer {
  return packr.pack(envs);
}

describe('net: WsTransport authentication', function () {
  it('authenticates mutually and exchanges node ids', async () => {
    const a = await node('a');
    const b = await node('b', {}, (t) => t.handle('who', (from) => ({ me: t.selfId, you: from })));
    a.t.connect('b', b.addr);
    await waitUntil(() => a.t.isConnected('b') && b.t.isConnected('a'), 'connected');
    expect(await a.t.request('b', 'who', null)).to.deep.equal({ me: 'b', you: 'a' });
    expect(b.t.connectedPeers()).to.deep.equal(['a']);
  });

  it('refuses a node with the wrong secret (close 4001) and dispatches nothing', async () => {
    let dispatched = 0;
    const good = await node('good', {}, (t) => t.handle('x', () => { dispatched++; }));
    const bad = await node('bad', { secret: 'another-secret-of-16-bytes' });
    bad.t.connect('good', good.addr);
    await waitUntil(() => good.t.stats().authFailures >= 1, 'auth failure at acceptor');
    expect(bad.t.isConnected('good')).to.equal(false);
    expect(good.t.isConnected('bad')).to.equal(false);
    expect(bad.t.send('good', 'x', 1)).to.equal(false);

    const r = raw(good.port);
    expect(await rawHandshake(r, 'good', 'raw', 'another-secret-of-16-bytes')).to.equal(false);
    expect((await r.closed).code).to.equal(CloseCode.AUTH_FAILED);
    // The challenge, and nothing else, reached the unauthenticated socket.
    expect(r.received).to.have.length(1);
    expect(dispatched).to.equal(0);
  });

  it('refuses a node of another cluster with the same secret (close 4001)', async () => {
    const good = await node('good');
    const other = await node('other', { clusterId: 'another-cluster' });
    other.t.connect('good', good.addr);
    await waitUntil(() => good.t.stats().authFailures >= 1, 'auth failure');
    expect(good.t.isConnected('other')).to.equal(false);

    const r = raw(good.port);
    expect(await rawHandshake(r, 'good', 'raw', SECRET, 'another-cluster')).to.equal(false);
    expect((await r.closed).code).to.equal(CloseCode.AUTH_FAILED);
    expect(r.received).to.have.length(1);
  });

  it('refuses a dialer that expected a different node at that address', async () => {
    const a = await node('a');
    const c = await node('c');
    a.t.connect('b', c.addr);
    await waitUntil(() => c.t.stats().authFailures >= 1, 'auth failure');
    expect(a.t.isConnected('b') || a.t.isConnected('c') || c.t.isConnected('a')).to.equal(false);
  });

  it('the dialer refuses an acceptor that cannot prove the secret', async () => {
    // A fake acceptor: sends a challenge, then a welcome with a forged MAC.
    const server = http.createServer();
    const port = await listen(server);
    const wss = new WebSocketServer({ server, path: '/_peer' });
    cleanup.push(() => new Promise((r) => wss.close(() => r())));
    const codes: number[] = [];
    wss.on('connection', (ws) => {
      ws.send(packr.pack(toWire({ t: 'challenge', nonce: newNonce() })));
      ws.on('message', () => ws.send(packr.pack(toWire({ t: 'welcome', acceptorId: 'b', mac: Buffer.alloc(32) }))));
      ws.on('close', (code) => codes.push(code));
    });
    const a = await node('a');
    a.t.connect('b', `127.0.0.1:${port}`);
    await waitUntil(() => codes.length >= 1, 'dialer closes');
    expect(codes[0]).to.equal(CloseCode.AUTH_FAILED);
    expect(a.t.isConnected('b')).to.equal(false);
    expect(a.t.stats().authFailures).to.be.at.least(1);
  });

  it('closes a socket that stays silent past the handshake timeout with 4001', async () => {
    const a = await node('a', { limits: { handshakeTimeoutMs: 150 } });
    const r = raw(a.port);
    const { code } = await r.closed;
    expect(code).to.equal(CloseCode.AUTH_FAILED);
    expect(r.received).to.have.length(1);
  });

  it('closes a socket that sends garbage or an envelope before authenticating with 4001', async () => {
    let dispatched = 0;
    const a = await node('a', {}, (t) => t.handle('x', () => { dispatched++; }));
    const r1 = raw(a.port);
    await r1.opened;
    r1.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
    expect((await r1.closed).code).to.equal(CloseCode.AUTH_FAILED);
    const r2 = raw(a.port);
    await r2.opened;
    r2.ws.send(batch([0, 'x', 0, 'raw', 0, HLC, 1]));
    expect((await r2.closed).code).to.equal(CloseCode.AUTH_FAILED);
    expect(dispatched).to.equal(0);
    expect(a.t.stats().authFailures).to.equal(2);
  });

  it('closes the oldest pending handshake, not the newcomer, when every slot is taken', async () => {
    const a = await node('a', { limits: { maxPendingHandshakes: 1 } });
    const r1 = raw(a.port);
    await r1.opened;
    const r2 = raw(a.port);
    await r2.opened;
    await r1.closed;
    await waitUntil(() => r2.received.length === 1, 'challenge for the newcomer');
    expect(a.t.stats().handshakesEvicted).to.equal(1);
  });

  it('does not leak a handshake slot on a malformed upgrade request', async () => {
    const a = await node('a', { limits: { maxPendingHandshakes: 1 } });
    for (let i = 0; i < 3; i++) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({ port: a.port, host: '127.0.0.1', path: '/_peer', headers: { Connection: 'Upgrade', Upgrade: 'websocket' } });
        req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
        req.on('upgrade', () => reject(new Error('upgraded without a key')));
        req.on('error', reject);
        req.end();
      });
      expect(status).to.equal(400);
    }
    const r = raw(a.port);
    await waitUntil(() => r.received.length === 1, 'challenge');
  });

  it('rejects a short secret and bad limits at construction', () => {
    expect(() => new WsTransport({ selfId: 'a', clusterId: CLUSTER, secret: 'short' })).to.throw(KvError, /at least 16 bytes/);
    expect(() => new WsTransport({ selfId: 'a', clusterId: CLUSTER, secret: SECRET, limits: { maxBatchBytes: 10 * 1024 * 1024 } }))
      .to.throw(KvError, /maxBatchBytes/);
  });
});

describe('net: WsTransport inbound frame validation', function () {
  /** a serves b (a real peer) and a raw authenticated socket posing as node 'raw'. */
  async function setup(): Promise<{ a: Node; b: Node; seen: unknown[] }> {
    const seen: unknown[] = [];
    const a = await node('a', { limits: { maxFrameBytes: 64 * 1024, maxBatchBytes: 16 * 1024, maxBufferedBytesPerPeer: 1 << 20 } }, (t) => {
      t.handle('note', (_f, p) => { seen.push(p); });
      t.handle('echo', (_f, p) => p);
    });
    const b = await node('b');
    b.t.connect('a', a.addr);
    await waitUntil(() => b.t.isConnected('a'), 'b connected');
    return { a, b, seen };
  }

  async function authed(a: Node): Promise<Raw> {
    const r = raw(a.port);
    expect(await rawHandshake(r, 'a')).to.equal(true);
    await waitUntil(() => a.t.isConnected('raw'), 'raw adopted');
    return r;
  }

  const cases: { name: string; frame: () => Buffer; code: number }[] = [
    { name: 'garbage bytes', frame: () => Buffer.from([0xc1, 0xc1, 0xc1]), code: CloseCode.FRAME_INVALID },
    { name: 'a msgpack value that is not a batch', frame: () => packr.pack({ hello: 'world' }), code: CloseCode.FRAME_INVALID },
    { name: 'an empty batch', frame: () => batch(), code: CloseCode.FRAME_INVALID },
    { name: 'an envelope of the wrong shape', frame: () => batch([0, 'note']), code: CloseCode.FRAME_INVALID },
    { name: 'an envelope claiming another sender', frame: () => batch([0, 'note', 0, 'b', 0, HLC, 1]), code: CloseCode.FRAME_INVALID },
    { name: 'a bad HLC', frame: () => batch([0, 'note', 0, 'raw', 0, 'NOTHEX', 1]), code: CloseCode.FRAME_INVALID },
    { name: 'a negative epoch', frame: () => batch([0, 'note', 0, 'raw', -1, HLC, 1]), code: CloseCode.FRAME_INVALID },
    { name: 'a valid envelope followed by an invalid one', frame: () => batch([0, 'note', 0, 'raw', 0, HLC, 'first'], [9, 'note', 0, 'raw', 0, HLC, 1]), code: CloseCode.FRAME_INVALID },
    { name: 'a one-way message of an unknown type', frame: () => batch([0, 'mystery', 0, 'raw', 0, HLC, 1]), code: CloseCode.UNKNOWN_TYPE },
    { name: 'a frame above maxFrameBytes', frame: () => Buffer.alloc(64 * 1024 + 1), code: CloseCode.TOO_BIG },
  ];
  for (const c of cases) {
    it(`closes a peer that sends ${c.name} with ${c.code}, dispatching none of it, and keeps serving the others`, async () => {
      const { a, b, seen } = await setup();
      const r = await authed(a);
      r.ws.send(c.frame());
      const { code } = await r.closed;
      expect(code).to.equal(c.code);
      expect(seen).to.deep.equal([]);
      expect(a.t.stats().invalidFrames).to.equal(1);
      await waitUntil(() => !a.t.isConnected('raw'), 'raw dropped');
      expect(await b.t.request('a', 'echo', 'still here')).to.equal('still here');
    });
  }

  it('answers a raw authenticated peer: a response for a request, an error response for an unknown request type', async () => {
    const { a } = await setup();
    const r = await authed(a);
    r.ws.send(batch([1, 'echo', 5, 'raw', 0, HLC, 'ping'], [1, 'mystery', 6, 'raw', 0, HLC, null]));
    await waitUntil(() => r.received.length >= 3, 'responses');
    const envs = r.received.slice(2).flatMap((m) => packr.unpack(m) as unknown[][]);
    expect(envs).to.have.length(2);
    expect(envs[0]?.slice(0, 4)).to.deep.equal([2, 'echo', 5, 'a']);
    expect(envs[0]?.[6]).to.equal('ping');
    expect(envs[1]?.slice(0, 4)).to.deep.equal([3, 'mystery', 6, 'a']);
    expect(envs[1]?.[6]).to.include({ code: 'KV_INVALID_ARGUMENT' });
    expect(a.t.isConnected('raw')).to.equal(true);
  });
});

describe('net: WsTransport connections', function () {
  it('handles only its own upgrade path and leaves the others to their owners', async () => {
    const a = await node('a');
    const other = new WebSocketServer({ noServer: true });
    cleanup.push(() => new Promise((r) => other.close(() => r())));
    a.server.on('upgrade', (req, socket, head) => {
      if (req.url === '/other') other.handleUpgrade(req, socket, head, (ws) => ws.send('other'));
    });
    const r = raw(a.port, '/other');
    await waitUntil(() => r.received.length === 1, 'message from the other owner');
    expect(r.received[0]?.toString()).to.equal('other');
    expect(a.t.stats().authFailures).to.equal(0);
  });

  it('keeps exactly one connection when both nodes dial each other at once', async () => {
    const a = await node('a', {}, (t) => t.handle('id', () => t.selfId));
    const b = await node('b', {}, (t) => t.handle('id', () => t.selfId));
    a.t.connect('b', b.addr);
    b.t.connect('a', a.addr);
    const live = (n: Node): number => n.t.stats().connectionsOpened - n.t.stats().connectionsClosed;
    await waitUntil(() => a.t.isConnected('b') && b.t.isConnected('a') && live(a) === 1 && live(b) === 1, 'one connection');
    expect(await a.t.request('b', 'id', null)).to.equal('b');
    expect(await b.t.request('a', 'id', null)).to.equal('a');
    // One TCP connection survives between the two servers: the loser was closed, not leaked.
    const count = (s: http.Server): Promise<number> => new Promise((r) => s.getConnections((_e, n) => r(n)));
    const deadline = Date.now() + 5000;
    let sockets = -1;
    while (Date.now() < deadline) {
      sockets = (await count(a.server)) + (await count(b.server));
      if (sockets === 1) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(sockets).to.equal(1);
  });

  it('disconnect() drops the connection on both sides; connect() brings it back', async () => {
    const a = await node('a');
    const b = await node('b', {}, (t) => t.handle('id', () => t.selfId));
    a.t.connect('b', b.addr);
    await waitUntil(() => a.t.isConnected('b'), 'connected');
    a.t.disconnect('b');
    await waitUntil(() => !a.t.isConnected('b') && !b.t.isConnected('a'), 'disconnected');
    expect((await a.t.request('b', 'id', null).catch((e: KvError) => e.code))).to.equal('KV_UNAVAILABLE');
    a.t.connect('b', b.addr);
    await waitUntil(() => a.t.isConnected('b'), 'reconnected');
    expect(await a.t.request('b', 'id', null)).to.equal('b');
  });
});
