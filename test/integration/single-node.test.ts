/**
 * One real `kv node` process: round trips, crash durability, and every bad input of
 * the foundation issue answered with its 4xx code while the node keeps serving.
 */
import { expect } from 'chai';
import { cleanupAll, freePort, kill, spawnNode, tempDir, waitHealthy, type NodeProc } from '../helpers/proc.ts';
import { raw, type RawResponse } from '../helpers/raw-http.ts';

function errCode(r: RawResponse): string {
  return (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code;
}

describe('single node (real process)', function () {
  this.timeout(60_000);
  let node: NodeProc;
  let port: number;
  let dataDir: string;

  before(async () => {
    port = await freePort();
    dataDir = tempDir();
    node = spawnNode({ id: 'solo', port, dataDir, args: ['--bootstrap'] });
    await waitHealthy(node);
  });

  after(async () => {
    await cleanupAll();
  });

  it('round-trips binary values through PUT, GET and DELETE', async () => {
    const value = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    const put = await raw(node.addr, 'PUT', '/kv/bin%2Fkey%20%E2%9C%93', { body: value });
    expect(put.status).to.equal(200);
    const version = (JSON.parse(put.body.toString()) as { version: string }).version;
    expect(put.headers['x-kv-version']).to.equal(version);

    const get = await raw(node.addr, 'GET', '/kv/bin%2Fkey%20%E2%9C%93');
    expect(get.status).to.equal(200);
    expect(get.headers['x-kv-version']).to.equal(version);
    expect(Buffer.compare(get.body, value)).to.equal(0);

    const empty = await raw(node.addr, 'PUT', '/kv/empty', { body: Buffer.alloc(0) });
    expect(empty.status).to.equal(200);
    expect((await raw(node.addr, 'GET', '/kv/empty')).body.length).to.equal(0);

    const del = await raw(node.addr, 'DELETE', '/kv/bin%2Fkey%20%E2%9C%93');
    expect(del.status).to.equal(200);
    const delVersion = (JSON.parse(del.body.toString()) as { version: string }).version;
    expect(delVersion > version, 'a delete gets a newer version').to.equal(true);
    const gone = await raw(node.addr, 'GET', '/kv/bin%2Fkey%20%E2%9C%93');
    expect(gone.status).to.equal(404);
    expect(errCode(gone)).to.equal('KV_NOT_FOUND');
  });

  it('gives every later write to a key a higher version', async () => {
    const versions: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await raw(node.addr, 'PUT', '/kv/counter', { body: Buffer.from(String(i)) });
      versions.push((JSON.parse(r.body.toString()) as { version: string }).version);
    }
    expect([...versions].sort()).to.deep.equal(versions);
    expect(new Set(versions).size).to.equal(versions.length);
    expect((await raw(node.addr, 'GET', '/kv/counter')).body.toString()).to.equal('19');
  });

  it('keeps acknowledged values across kill -9 and restart', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `durable-${i}`);
    await Promise.all(keys.map((k) => raw(node.addr, 'PUT', `/kv/${k}`, { body: Buffer.from(`v-${k}`) }).then((r) => expect(r.status).to.equal(200))));
    await kill(node, 'SIGKILL');
    node = spawnNode({ id: 'solo', port, dataDir });
    await waitHealthy(node);
    for (const k of keys) {
      const r = await raw(node.addr, 'GET', `/kv/${k}`);
      expect(r.status, k).to.equal(200);
      expect(r.body.toString()).to.equal(`v-${k}`);
    }
  });

  describe('rejects bad input with a stable code and keeps serving', () => {
    const cases: Array<[string, () => Promise<RawResponse>, number, string]> = [];
    const add = (name: string, run: () => Promise<RawResponse>, status: number, code: string): void => { cases.push([name, run, status, code]); };
    add('empty key', () => raw(node.addr, 'PUT', '/kv/', { body: Buffer.from('x') }), 400, 'KV_INVALID_KEY');
    add('key over the limit', () => raw(node.addr, 'PUT', `/kv/${'k'.repeat(1025)}`, { body: Buffer.from('x') }), 400, 'KV_INVALID_KEY');
    add('multi-byte key over the limit in bytes', () => raw(node.addr, 'GET', `/kv/${'%E2%9C%93'.repeat(342)}`), 400, 'KV_INVALID_KEY');
    add('invalid percent-encoding', () => raw(node.addr, 'GET', '/kv/%ZZ'), 400, 'KV_INVALID_KEY');
    add('percent-encoding that is not UTF-8', () => raw(node.addr, 'GET', '/kv/%C3%28'), 400, 'KV_INVALID_KEY');
    add('value over the limit with Content-Length', () => raw(node.addr, 'PUT', '/kv/big', { headers: { 'content-length': 2 * 1024 * 1024 }, chunks: [Buffer.alloc(64 * 1024)] }), 413, 'KV_VALUE_TOO_LARGE');
    add('value over the limit without Content-Length (chunked)', () => raw(node.addr, 'PUT', '/kv/big', { headers: { 'transfer-encoding': 'chunked' }, chunks: Array.from({ length: 40 }, () => Buffer.alloc(64 * 1024, 1)) }), 413, 'KV_VALUE_TOO_LARGE');
    add('chunked body past the cap in one chunk', () => raw(node.addr, 'PUT', '/kv/big', { headers: { 'transfer-encoding': 'chunked' }, chunks: [Buffer.alloc(1024 * 1024 + 1, 2)] }), 413, 'KV_VALUE_TOO_LARGE');
    add('w=0', () => raw(node.addr, 'PUT', '/kv/a?w=0', { body: Buffer.from('x') }), 400, 'KV_INVALID_ARGUMENT');
    add('w=abc', () => raw(node.addr, 'PUT', '/kv/a?w=abc', { body: Buffer.from('x') }), 400, 'KV_INVALID_ARGUMENT');
    add('r=99', () => raw(node.addr, 'GET', '/kv/a?r=99'), 400, 'KV_INVALID_ARGUMENT');
    add('unknown parameter', () => raw(node.addr, 'GET', '/kv/a?q=1'), 400, 'KV_INVALID_ARGUMENT');
    add('sloppy=maybe', () => raw(node.addr, 'PUT', '/kv/a?sloppy=maybe', { body: Buffer.from('x') }), 400, 'KV_INVALID_ARGUMENT');
    add('unknown route', () => raw(node.addr, 'GET', '/nope'), 404, 'KV_NOT_FOUND');
    add('wrong method on /kv', () => raw(node.addr, 'POST', '/kv/a', { body: Buffer.from('x') }), 405, 'KV_METHOD_NOT_ALLOWED');
    add('wrong method on /health', () => raw(node.addr, 'DELETE', '/health'), 405, 'KV_METHOD_NOT_ALLOWED');
    add('URL over the limit', () => raw(node.addr, 'GET', `/kv/a?r=${'1'.repeat(9000)}`), 414, 'KV_URI_TOO_LONG');
    add('headers over the limit', () => raw(node.addr, 'GET', '/kv/a', { headers: { 'x-pad': 'p'.repeat(20_000) } }), 431, 'KV_HEADERS_TOO_LARGE');
    add('decommission without an id', () => raw(node.addr, 'POST', '/cluster/decommission', { body: Buffer.from('{"x":1}') }), 400, 'KV_INVALID_ARGUMENT');
    add('decommission with malformed JSON', () => raw(node.addr, 'POST', '/cluster/decommission', { body: Buffer.from('{') }), 400, 'KV_INVALID_ARGUMENT');

    for (const [name, run, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const r = await run();
        expect(r.status).to.equal(status);
        expect(errCode(r)).to.equal(code);
        const health = await raw(node.addr, 'GET', '/health');
        expect(health.status).to.equal(200);
      });
    }

    it('stores nothing from a refused oversized value', async () => {
      const r = await raw(node.addr, 'GET', '/kv/big');
      expect(r.status).to.equal(404);
    });
  });

  it('serves /metrics with request counts by route and status', async () => {
    await raw(node.addr, 'PUT', '/kv/metered', { body: Buffer.from('x') });
    await raw(node.addr, 'GET', '/kv/never-written');
    const r = await raw(node.addr, 'GET', '/metrics');
    expect(r.status).to.equal(200);
    const text = r.body.toString();
    expect(text).to.match(/kv_http_requests_total\{route="kv",method="PUT",status="200"\} \d+/);
    expect(text).to.match(/kv_http_request_duration_seconds_bucket\{le="0.005",route="kv",method="GET",status="404"\} \d+/);
  });

  it('keeps metric labels bounded whatever paths clients send', async () => {
    for (let i = 0; i < 30; i++) await raw(node.addr, 'GET', `/random-path-${i}`);
    const text = (await raw(node.addr, 'GET', '/metrics')).body.toString();
    expect(text).to.not.contain('random-path-');
    expect(text).to.match(/kv_http_requests_total\{route="other",method="GET",status="404"\} \d+/);
  });

  it('serves /cluster in the documented shape', async () => {
    const r = await raw(node.addr, 'GET', '/cluster');
    const body = JSON.parse(r.body.toString()) as Record<string, unknown>;
    expect(body).to.include.keys('id', 'epoch', 'ringChecksum', 'raft', 'members');
    expect(body['id']).to.equal('solo');
  });
});
