/**
 * Bounded resources on real `kv node` processes: stray upgrades destroyed at once, open
 * connections capped, body bytes in flight capped (503 KV_OVERLOADED, retryable) and stalled
 * bodies cut, a flood of half-open peer handshakes that cannot lock a real peer out, one
 * scrub at a time, a value limit a peer frame cannot carry refused at start, and a node with
 * every kind of socket open exiting within its shutdown bound.
 */
import net from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import WebSocket from 'ws';
import { cleanupAll, freePort, spawnNode, tempDir, waitHealthy, type NodeProc } from '../helpers/proc.ts';
import { pollUntil } from '../helpers/poll.ts';
import { errCode, raw } from './helpers.ts';

/** A TCP socket that sent `head` and then nothing; resolves when the server closed it (or never). */
function halfSent(addr: string, head: string): { socket: net.Socket; closed: Promise<void>; data: () => string } {
  const [host, port] = addr.split(':') as [string, string];
  const socket = net.connect(Number(port), host, () => socket.write(head));
  let data = '';
  socket.on('data', (b: Buffer) => { data += b.toString(); });
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, closed, data: () => data };
}

const upgrade = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

describe('security: bounded resources (real processes)', function () {
  this.timeout(60_000);
  let node: NodeProc;

  before(async () => {
    node = spawnNode({ id: 'r1', port: await freePort(), dataDir: join(tempDir('kv-sec-res-'), 'r1'), args: ['--bootstrap', '--partitions', '64',
      '--max-connections', '40', '--max-inflight-bytes', String(4 * 1024 * 1024), '--body-idle-timeout-ms', '1000'] });
    await waitHealthy(node);
    expect((await raw(node.addr, 'PUT', '/kv/keep', { body: 'kept' })).status).to.equal(200);
  });
  after(cleanupAll);

  async function intact(): Promise<void> {
    const r = await raw(node.addr, 'GET', '/kv/keep');
    expect(r.status).to.equal(200);
    expect(r.body.toString()).to.equal('kept');
  }

  it('destroys upgrade requests to any path but the peer path at once', async () => {
    const socks = Array.from({ length: 30 }, (_, i) => halfSent(node.addr, upgrade(i % 2 ? '/kv/x' : '/chat')));
    await Promise.all(socks.map((s) => s.closed));
    expect(socks.every((s) => s.data() === '')).to.equal(true);
    await intact();
  });

  it('answers 503 KV_OVERLOADED with Retry-After once declared bodies exceed maxInflightBytes, and cuts stalled bodies', async () => {
    const mib = 1024 * 1024;
    const stalled = Array.from({ length: 4 }, (_, i) => halfSent(node.addr, `PUT /kv/big${i} HTTP/1.1\r\nHost: x\r\nContent-Length: ${mib}\r\n\r\n`));
    await pollUntil(async () => {
      const r = await raw(node.addr, 'PUT', '/kv/one-more', { body: Buffer.alloc(1000) });
      return r.status === 503 ? r : undefined;
    }, { what: 'a 503 while 4 MiB are promised' }).then((r) => {
      expect(errCode(r)).to.equal('KV_OVERLOADED');
      expect(r.headers['retry-after']).to.equal('1');
    });
    // Bodies that never come are cut after the idle timeout and their reservation freed.
    await Promise.all(stalled.map((s) => s.closed));
    expect(stalled.every((s) => s.data().startsWith('HTTP/1.1 408'))).to.equal(true);
    expect((await raw(node.addr, 'PUT', '/kv/one-more', { body: Buffer.alloc(1000) })).status).to.equal(200);
    await intact();
  });

  it('refuses connections beyond maxConnections with 503 KV_OVERLOADED, and serves again once they close', async () => {
    const idle = await Promise.all(Array.from({ length: 40 }, () => new Promise<net.Socket>((resolve) => {
      const [host, port] = node.addr.split(':') as [string, string];
      const s = net.connect(Number(port), host, () => resolve(s));
      s.on('error', () => {});
    })));
    try {
      await pollUntil(async () => {
        const r = await raw(node.addr, 'GET', '/kv/keep').catch(() => undefined);
        return r?.status === 503 && errCode(r) === 'KV_OVERLOADED';
      }, { what: '503 beyond maxConnections' });
    } finally {
      for (const s of idle) s.destroy();
    }
    await pollUntil(async () => (await raw(node.addr, 'GET', '/kv/keep')).status === 200, { what: 'served again' });
  });

  it('lets a real peer in while half-open peer handshakes flood the node', async () => {
    const flood = Array.from({ length: 200 }, () => {
      const ws = new WebSocket(`ws://${node.addr}/_peer`);
      ws.on('error', () => {});
      return ws;
    });
    try {
      await pollUntil(() => flood.filter((w) => w.readyState === WebSocket.OPEN).length >= 8, { what: 'flood holding handshakes' });
      const p = spawnNode({ id: 'r2', port: await freePort(), dataDir: join(tempDir('kv-sec-res-'), 'r2'), args: ['--join', node.addr, '--partitions', '64'] });
      await waitHealthy(p, 30_000);
      await pollUntil(async () => {
        const v = JSON.parse((await raw(node.addr, 'GET', '/cluster')).body.toString()) as { members: { id: string; liveness: string }[] };
        return v.members.some((m) => m.id === 'r2' && m.liveness === 'alive');
      }, { timeoutMs: 30_000, what: 'r2 alive in r1\'s view' });
    } finally {
      for (const w of flood) w.terminate();
    }
    await intact();
  });

  it('runs one scrub at a time: a second one gets 409 KV_BUSY', async () => {
    const [a, b] = await Promise.all([raw(node.addr, 'POST', '/cluster/scrub'), raw(node.addr, 'POST', '/cluster/scrub')]);
    expect([a.status, b.status].sort()).to.deep.equal([200, 409]);
    expect(errCode(a.status === 409 ? a : b)).to.equal('KV_BUSY');
    expect((await raw(node.addr, 'POST', '/cluster/scrub')).status).to.equal(200);
  });

  it('refuses at start a maxValueBytes that a peer frame cannot carry', async () => {
    const p = spawnNode({ id: 'r3', port: await freePort(), dataDir: tempDir('kv-sec-res-'), args: ['--bootstrap', '--max-value-bytes', String(64 * 1024 * 1024)] });
    expect(await p.exited).to.not.equal(0);
    expect(p.output()).to.include('maxValueBytes').and.include('peer frame');
  });
});

describe('security: shutdown within shutdownTimeoutMs whatever is open (real processes)', function () {
  this.timeout(60_000);
  after(cleanupAll);

  it('exits on SIGTERM with keep-alive, half-sent body, peer and stray upgrade sockets open', async () => {
    const dir = tempDir('kv-sec-stop-');
    const a = spawnNode({ id: 's1', port: await freePort(), dataDir: join(dir, 's1'), args: ['--bootstrap', '--partitions', '64', '--shutdown-timeout-ms', '4000'], env: { KV_LOG_LEVEL: 'info' } });
    await waitHealthy(a);
    const b = spawnNode({ id: 's2', port: await freePort(), dataDir: join(dir, 's2'), args: ['--join', a.addr, '--partitions', '64'] });
    await waitHealthy(b, 30_000);
    await pollUntil(() => a.output().includes('peer connection authenticated'), { what: 'peer link up' });
    const keepAlive = halfSent(a.addr, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    const body = halfSent(a.addr, 'PUT /kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc');
    const stray = Array.from({ length: 20 }, () => halfSent(a.addr, upgrade('/_peer')));
    await pollUntil(() => keepAlive.data().includes('200'), { what: 'keep-alive answered' });
    const started = Date.now();
    a.child.kill('SIGTERM');
    const code = await Promise.race([a.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    const tookMs = Date.now() - started;
    expect(code, `${tookMs} ms\n${a.output().slice(-2000)}`).to.equal(0);
    expect(a.output()).to.include('node stopped');
    for (const s of [keepAlive, body, ...stray]) s.socket.destroy();
    // The peer that stays up sees the link closed, not a hung socket.
    await pollUntil(() => b.child.exitCode === null, { what: 's2 still running' });
  });
});
