/**
 * The HTTP API server in-process: a real ApiServer on an OS-chosen loopback port in front
 * of a real coordinator (the coordinator harness: memory transport and backends). Checks
 * what a client sees for good and bad requests, that bad input leaves the stored data as it
 * was, and the server's own limits (body size, silent bodies, connections, roles).
 */
import { expect } from 'chai';
import net from 'node:net';
import { ApiServer, type ApiLimits } from '../../lib/api/server.ts';
import { Metrics } from '../../lib/api/metrics.ts';
import { hashToken, type Authenticator } from '../../lib/api/tokens.ts';
import { KvError } from '../../lib/errors.ts';
import type { ClusterService } from '../../lib/api/service.ts';
import { Harness } from '../helpers/coordinator-harness.ts';
import { raw, type RawResponse } from '../helpers/raw-http.ts';
import { pollUntil } from '../helpers/poll.ts';

const LIMITS: ApiLimits = {
  maxKeyBytes: 64, maxValueBytes: 1024, maxUrlBytes: 2048, maxHeaderBytes: 16 * 1024, httpRequestTimeoutMs: 30_000,
  maxInflightRequests: 64, maxConnections: 8, maxInflightBytes: 1024 * 1024, bodyIdleTimeoutMs: 300,
};

const CLUSTER: ClusterService = {
  cluster: async () => ({ epoch: 1 }), ring: async () => ({}), partitions: async () => ({}),
  decommission: async () => ({}), joinChallenge: async () => ({}), join: async () => ({}), localRecord: async () => ({}),
  scrub: async () => ({}), removenode: async () => ({}), repair: async () => ({}), operations: async () => ({ operations: [] }),
  ready: () => true,
};

/** Tokens "r", "w" and "a" with the roles read, write and admin. */
const AUTH: Authenticator = {
  open: false,
  check(authorization, need) {
    const role = ({ 'Bearer r': 'read', 'Bearer w': 'write', 'Bearer a': 'admin' } as Record<string, string>)[authorization ?? ''];
    if (role === undefined) throw new KvError('KV_UNAUTHORIZED', 'needs a token');
    const rank = ['read', 'write', 'admin'];
    if (rank.indexOf(role) < rank.indexOf(need)) throw new KvError('KV_FORBIDDEN', `needs ${need}`);
  },
};

function code(res: RawResponse): string {
  return (JSON.parse(res.body.toString()) as { error: { code: string } }).error.code;
}

describe('API server (in-process, over a real coordinator)', function () {
  this.timeout(20_000);
  let h: Harness;
  let api: ApiServer;
  let addr: string;

  async function serve(opts: { auth?: Authenticator; limits?: Partial<ApiLimits> } = {}): Promise<void> {
    const a = h.node('a');
    api = new ApiServer({
      kv: a.coordinator, cas: a.cas, list: a.lister, cluster: CLUSTER, metrics: new Metrics(), limits: { ...LIMITS, ...opts.limits },
      log: { warn() {}, error() {} }, clusterId: 'cluster-1', ...(opts.auth ? { auth: opts.auth } : {}),
    });
    await api.listen('127.0.0.1', 0);
    const a0 = api.server.address() as net.AddressInfo;
    addr = `127.0.0.1:${a0.port}`;
  }

  beforeEach(async () => {
    h = await Harness.start(['a', 'b', 'c']);
  });
  afterEach(async () => {
    await api?.close(100);
    await h.stop();
  });

  it('writes and reads a key with its version, session and cluster headers; HEAD has no body', async () => {
    await serve();
    const put = await raw(addr, 'PUT', '/kv/some%2Fkey', { body: 'hello' });
    expect(put.status).to.equal(200);
    const version = (JSON.parse(put.body.toString()) as { version: string }).version;
    expect(put.headers['x-kv-version']).to.equal(version);
    expect(put.headers['x-kv-cluster']).to.equal('cluster-1');
    const get = await raw(addr, 'GET', '/kv/some%2Fkey', { headers: { 'x-kv-session': put.headers['x-kv-session'] as string } });
    expect([get.status, get.body.toString(), get.headers['x-kv-version']]).to.deep.equal([200, 'hello', version]);
    const head = await raw(addr, 'HEAD', '/kv/some%2Fkey');
    expect([head.status, head.body.length, head.headers['content-length']]).to.deep.equal([200, 0, '5']);
    const missing = await raw(addr, 'GET', '/kv/nothing-here');
    expect([missing.status, code(missing)]).to.deep.equal([404, 'KV_NOT_FOUND']);
  });

  it('refuses bad keys, parameters, methods, sessions and conditions with stable codes, and the stored value stays', async () => {
    await serve();
    expect((await raw(addr, 'PUT', '/kv/k', { body: 'kept' })).status).to.equal(200);
    const bad: [string, string, string, Record<string, string>, string][] = [
      ['PUT', `/kv/${'x'.repeat(65)}`, 'v', {}, 'KV_INVALID_KEY'],
      ['PUT', '/kv/%E0%A4%A', 'v', {}, 'KV_INVALID_KEY'],
      ['PUT', '/kv/k?w=seven', 'v', {}, 'KV_INVALID_ARGUMENT'],
      ['PUT', '/kv/k?w=9', 'v', {}, 'KV_INVALID_ARGUMENT'],
      ['PUT', '/kv/k?colour=blue', 'v', {}, 'KV_INVALID_ARGUMENT'],
      ['PUT', '/kv/k?ttl=-1', 'v', {}, 'KV_INVALID_ARGUMENT'],
      ['PUT', '/kv/k', 'v', { 'x-kv-session': 'not a token' }, 'KV_INVALID_ARGUMENT'],
      ['PUT', '/kv/k?w=1', 'v', { 'if-none-match': '*' }, 'KV_INVALID_ARGUMENT'],
      ['PUT', '/kv/k', 'v', { 'if-match': 'junk' }, 'KV_INVALID_ARGUMENT'],
      ['DELETE', '/kv/k?ttl=5', '', {}, 'KV_INVALID_ARGUMENT'],
      ['PATCH', '/kv/k', 'v', {}, 'KV_METHOD_NOT_ALLOWED'],
      ['PUT', '/kv/k', 'x'.repeat(1025), {}, 'KV_VALUE_TOO_LARGE'],
      ['GET', `/kv/k?r=1&${'p'.repeat(2100)}=1`, '', {}, 'KV_URI_TOO_LONG'],
    ];
    for (const [method, path, body, headers, want] of bad) {
      const res = await raw(addr, method, path, { body, headers });
      expect(res.headers['content-type'], `${method} ${path.slice(0, 40)}`).to.match(/^application\/json/);
      expect(code(res), `${method} ${path.slice(0, 40)}`).to.equal(want);
    }
    const get = await raw(addr, 'GET', '/kv/k');
    expect([get.status, get.body.toString()]).to.deep.equal([200, 'kept']);
  });

  it('answers 412 with the current version when a condition is false, and applies it when true', async () => {
    await serve();
    const created = await raw(addr, 'PUT', '/kv/lock', { body: 'a', headers: { 'if-none-match': '*' } });
    expect(created.status).to.equal(200);
    const v1 = created.headers['x-kv-version'] as string;
    const again = await raw(addr, 'PUT', '/kv/lock', { body: 'b', headers: { 'if-none-match': '*' } });
    expect([again.status, code(again), again.headers['x-kv-version']]).to.deep.equal([412, 'KV_PRECONDITION_FAILED', v1]);
    const swapped = await raw(addr, 'PUT', '/kv/lock', { body: 'c', headers: { 'if-match': `"${v1}"` } });
    expect(swapped.status).to.equal(200);
    expect((await raw(addr, 'GET', '/kv/lock?serial=true')).body.toString()).to.equal('c');
  });

  it('closes a request whose body goes silent with 408 KV_REQUEST_TIMEOUT', async () => {
    await serve();
    const [host, port] = addr.split(':') as [string, string];
    const socket = net.connect(Number(port), host);
    let answer = '';
    socket.on('data', (b: Buffer) => { answer += b.toString(); });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('PUT /kv/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc');
    await closed;
    expect(answer).to.match(/^HTTP\/1\.1 408 /);
    expect(answer).to.include('KV_REQUEST_TIMEOUT');
    expect((await raw(addr, 'GET', '/kv/slow')).status, 'nothing of it was stored').to.equal(404);
  });

  it('refuses connections past maxConnections with 503 KV_OVERLOADED, and serves again once they close', async () => {
    await serve({ limits: { maxConnections: 2 } });
    const [host, port] = addr.split(':') as [string, string];
    const held = await Promise.all([0, 1].map(() => new Promise<net.Socket>((resolve) => { const s = net.connect(Number(port), host, () => resolve(s)); })));
    await pollUntil(async () => {
      const res = await raw(addr, 'GET', '/kv/k').catch(() => undefined);
      return res?.status === 503 ? res : undefined;
    }, { timeoutMs: 5_000, what: 'the third connection refused' }).then((res) => expect(code(res)).to.equal('KV_OVERLOADED'));
    for (const s of held) s.destroy();
    await pollUntil(async () => (await raw(addr, 'GET', '/kv/k')).status === 404, { timeoutMs: 5_000, what: 'served again' });
  });

  it('asks for a token, and for the role each route needs', async () => {
    await serve({ auth: AUTH });
    const none = await raw(addr, 'GET', '/kv/k');
    expect([none.status, code(none)]).to.deep.equal([401, 'KV_UNAUTHORIZED']);
    const readerWrites = await raw(addr, 'PUT', '/kv/k', { body: 'v', headers: { authorization: 'Bearer r' } });
    expect([readerWrites.status, code(readerWrites)]).to.deep.equal([403, 'KV_FORBIDDEN']);
    expect((await raw(addr, 'PUT', '/kv/k', { body: 'v', headers: { authorization: 'Bearer w' } })).status).to.equal(200);
    expect((await raw(addr, 'GET', '/kv/k', { headers: { authorization: 'Bearer r' } })).status).to.equal(200);
    const writerRepairs = await raw(addr, 'POST', '/cluster/repair', { headers: { authorization: 'Bearer w' } });
    expect([writerRepairs.status, code(writerRepairs)]).to.deep.equal([403, 'KV_FORBIDDEN']);
    expect((await raw(addr, 'GET', '/health')).status, '/health is open').to.equal(200);
    expect(hashToken('w').length).to.equal(32);
  });
});
