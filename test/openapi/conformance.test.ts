/**
 * The OpenAPI 3.1 description (lib/api/openapi.json) against the server: the document is
 * valid (a maintained OpenAPI 3.1 validator, every $ref resolves, every schema compiles),
 * it describes exactly the routes of the server's route table (lib/api/routes.ts), it puts
 * every error code of lib/errors.ts at its status, and a live cluster of real processes
 * answers every probe of every operation with a documented status, headers and body.
 */
import { expect } from 'chai';
import { Validator } from '@seriousme/openapi-schema-validator';
import { ROUTES } from '../../lib/api/routes.ts';
import { ERROR_STATUS } from '../../lib/errors.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { raw as request } from '../helpers/raw-http.ts';
import { METHODS, allRefs, deref, mismatches, operations, spec, validator, type Answer, type Json, type Operation } from './spec.ts';

interface Probe {
  op: string;
  method: string;
  path: string;
  body?: Buffer | string;
  headers?: Record<string, string>;
  /** Statuses this probe may get (one, or the documented alternatives). */
  status: number | number[];
  code?: string;
}

const BIG_HEADER = { 'x-filler': 'h'.repeat(20 * 1024) };

function probes(etag: string): Probe[] {
  const json = { 'content-type': 'application/json' };
  return [
    { op: 'health', method: 'GET', path: '/health', status: 200 },
    { op: 'metrics', method: 'GET', path: '/metrics', status: 200 },
    { op: 'cluster', method: 'GET', path: '/cluster', status: 200 },
    { op: 'ring', method: 'GET', path: '/cluster/ring', status: 200 },
    { op: 'partitions', method: 'GET', path: '/cluster/partitions', status: 200 },
    { op: 'clusterStats', method: 'GET', path: '/cluster/stats', status: 200 },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-key', body: 'v1', status: 200 },
    { op: 'putKey', method: 'PUT', path: '/kv/conf%2Fkey/with/slashes?w=1&sloppy=false', body: 'v2', status: 200 },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-key?w=quorum&sloppy', body: '', status: 200 },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-key?w=abc', body: 'x', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-key?bogus=1', body: 'x', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'putKey', method: 'PUT', path: `/kv/${'k'.repeat(1100)}`, body: 'x', status: 400, code: 'KV_INVALID_KEY' },
    { op: 'putKey', method: 'PUT', path: '/kv/%E0%A4%A', body: 'x', status: 400, code: 'KV_INVALID_KEY' },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-big', body: Buffer.alloc(4096, 1), status: 413, code: 'KV_VALUE_TOO_LARGE' },
    { op: 'putKey', method: 'PUT', path: `/kv/${'u'.repeat(9000)}`, body: 'x', status: 414, code: 'KV_URI_TOO_LONG' },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-key', body: 'x', headers: BIG_HEADER, status: 431, code: 'KV_HEADERS_TOO_LARGE' },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-cas', body: 'c', headers: { 'if-none-match': '*' }, status: 200 },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-cas', body: 'c', headers: { 'if-none-match': '*' }, status: 412, code: 'KV_PRECONDITION_FAILED' },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-cas', body: 'c', headers: { 'if-match': 'not-a-version' }, status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-ttl?ttl=60', body: 't', status: 200 },
    { op: 'putKey', method: 'PUT', path: '/kv/conf-ttl?ttl=0', body: 't', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'getKey', method: 'GET', path: '/kv/conf-ttl', status: 200 },
    { op: 'getKey', method: 'GET', path: '/kv/conf-cas?serial=true', status: 200 },
    { op: 'getKey', method: 'GET', path: '/kv/conf-absent?serial=true', status: 404, code: 'KV_NOT_FOUND' },
    { op: 'headKey', method: 'HEAD', path: '/kv/conf-cas?serial=true', status: 200 },
    { op: 'deleteKey', method: 'DELETE', path: '/kv/conf-cas', headers: { 'if-match': '0000000000010000:n1' }, status: 412, code: 'KV_PRECONDITION_FAILED' },
    { op: 'listKeys', method: 'GET', path: '/kv?prefix=conf-&limit=2', status: 200 },
    { op: 'listKeys', method: 'GET', path: '/kv', status: 200 },
    { op: 'listKeys', method: 'GET', path: '/kv?limit=0', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'listKeys', method: 'GET', path: '/kv?cursor=%21%21', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'getKey', method: 'GET', path: '/kv/conf-key', status: 200 },
    { op: 'getKey', method: 'GET', path: '/kv/conf-key?r=1', headers: { 'x-kv-session': '' }, status: 200 },
    { op: 'getKey', method: 'GET', path: '/kv/conf-absent', status: 404, code: 'KV_NOT_FOUND' },
    { op: 'getKey', method: 'GET', path: '/kv/conf-key?r=0', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'getKey', method: 'GET', path: '/kv/', status: 400, code: 'KV_INVALID_KEY' },
    { op: 'headKey', method: 'HEAD', path: '/kv/conf-key', status: 200 },
    { op: 'headKey', method: 'HEAD', path: '/kv/conf-absent', status: 404 },
    { op: 'deleteKey', method: 'DELETE', path: '/kv/conf-key?w=all', status: 200 },
    { op: 'deleteKey', method: 'DELETE', path: '/kv/conf-key?w=9', status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'localRecord', method: 'GET', path: '/cluster/records/conf-key', status: 200 },
    { op: 'localRecord', method: 'GET', path: '/cluster/records/conf-never', status: 404, code: 'KV_NOT_FOUND' },
    { op: 'decommission', method: 'POST', path: '/cluster/decommission', body: '{}', headers: json, status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'decommission', method: 'POST', path: '/cluster/decommission', body: 'not json', headers: json, status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'decommission', method: 'POST', path: '/cluster/decommission', body: '{"id":"nobody"}', headers: json, status: 404, code: 'KV_NOT_FOUND' },
    { op: 'scrub', method: 'POST', path: '/cluster/scrub', status: 200 },
    { op: 'repair', method: 'POST', path: '/cluster/repair', status: 202 },
    { op: 'operations', method: 'GET', path: '/cluster/operations', status: 200 },
    { op: 'removenode', method: 'POST', path: '/cluster/removenode', body: '{}', headers: json, status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'removenode', method: 'POST', path: '/cluster/removenode', body: '{"id":"nobody"}', headers: json, status: 404, code: 'KV_NOT_FOUND' },
    { op: 'removenode', method: 'POST', path: '/cluster/removenode', body: '{"id":"n2"}', headers: json, status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'join', method: 'POST', path: '/cluster/join', status: 400, code: 'KV_INVALID_ARGUMENT' },
    // A join not signed with the cluster secret (the body's shape differs between join protocol versions: 400 or 401).
    { op: 'join', method: 'POST', path: '/cluster/join', body: JSON.stringify({ id: 'x', addr: '127.0.0.1:1', ts: Date.now(), mac: '00'.repeat(32) }), headers: json, status: [400, 401] },
    { op: 'joinChallenge', method: 'POST', path: '/cluster/join/challenge', body: JSON.stringify({ id: 'x', addr: '127.0.0.1:1', nonce: '00'.repeat(32) }), headers: json, status: 200 },
    { op: 'joinChallenge', method: 'POST', path: '/cluster/join/challenge', body: '{}', headers: json, status: 400, code: 'KV_INVALID_ARGUMENT' },
    { op: 'dashboard', method: 'GET', path: '/ui', status: 200 },
    { op: 'dashboard', method: 'GET', path: '/ui', headers: { 'if-none-match': etag }, status: 304 },
    { op: 'dashboardFile', method: 'GET', path: '/ui/app.js', status: 200 },
    { op: 'dashboardFile', method: 'GET', path: '/ui/dashboard-math.js', status: 200 },
    { op: 'dashboardFile', method: 'GET', path: '/ui/style.css', status: 200 },
    { op: 'dashboardFile', method: 'GET', path: '/ui/uPlot.iife.min.js', status: 200 },
    { op: 'dashboardFile', method: 'GET', path: '/ui/uPlot.min.css', status: 200 },
    { op: 'dashboardFile', method: 'GET', path: '/ui/secrets.js', status: 404, code: 'KV_NOT_FOUND' },
    { op: 'openapi', method: 'GET', path: '/openapi.json', status: 200 },
  ];
}

/** A concrete path of a route template, for probing methods. */
const concrete = (template: string): string => template.replace('{key}', 'conf-key').replace('{file}', 'app.js');

function codeOf(a: Answer): string | undefined {
  try {
    return (JSON.parse(a.body.toString('utf8')) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

describe('OpenAPI description (lib/api/openapi.json)', function () {
  this.timeout(120_000);
  const ops = operations();
  const byId = new Map(ops.map((o) => [o.id, o]));

  it('is a valid OpenAPI 3.1 document whose $refs resolve and whose schemas compile', async () => {
    const result = await new Validator().validate(spec);
    expect(result.valid, JSON.stringify(result.errors)).to.equal(true);
    expect(spec.openapi).to.match(/^3\.1\./);
    for (const ref of allRefs()) expect(() => deref({ $ref: ref }), ref).to.not.throw();
    for (const [name, schema] of Object.entries<Json>(spec.components.schemas)) expect(() => validator(schema), name).to.not.throw();
    expect(new Set(ops.map((o) => o.id)).size, 'operationIds are unique').to.equal(ops.length);
  });

  it('describes exactly the routes and methods of the server\'s route table', () => {
    const table = new Set(ROUTES.flatMap((r) => r.methods.map((m) => `${m} ${r.path}`)));
    const described = new Set(ops.map((o) => `${o.method} ${o.path}`));
    expect([...table].filter((x) => !described.has(x)), 'served but not described').to.deep.equal([]);
    expect([...described].filter((x) => !table.has(x)), 'described but not served').to.deep.equal([]);
  });

  it('places every error code of lib/errors.ts at its HTTP status, and documents the error body on every error answer', () => {
    const codeSchema = spec.components.schemas.ErrorCode;
    expect([...codeSchema.enum].sort()).to.deep.equal(Object.keys(ERROR_STATUS).sort());
    const placed = new Set<string>([...codeSchema['x-kv-peer-codes'], ...codeSchema['x-kv-reserved-codes']]);
    for (const op of ops) {
      for (const [status, ref] of Object.entries<Json>(op.op.responses)) {
        if (Number(status) < 400) continue;
        const r = deref(ref);
        const schema = r.content?.['application/json']?.schema;
        expect(schema?.allOf?.[0]?.$ref, `${op.id} ${status} carries the error body`).to.equal('#/components/schemas/Error');
        const codes: string[] = schema.allOf[1].properties.error.properties.code.enum;
        for (const c of codes) {
          expect(ERROR_STATUS[c as keyof typeof ERROR_STATUS], `${c} at ${status}`).to.equal(Number(status));
          placed.add(c);
        }
      }
      if (op.op['x-kv-role']) expect(op.op.responses, `${op.id} needs a token: 401 and 403`).to.include.keys('401', '403');
    }
    expect(Object.keys(ERROR_STATUS).filter((c) => !placed.has(c)), 'codes at no status').to.deep.equal([]);
  });

  describe('a live 2-node cluster answers as described', () => {
    let cluster: TestCluster;
    let addr: string;
    const seen = new Map<string, Set<number>>();
    const codesSeen = new Set<string>();

    async function check(op: Operation, method: string, path: string, opts: { body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<Answer> {
      const a = await request(addr, method, path, opts);
      expect(mismatches(op, a), `${method} ${path.slice(0, 80)}`).to.deep.equal([]);
      let s = seen.get(op.id);
      if (!s) seen.set(op.id, (s = new Set()));
      s.add(a.status);
      const code = codeOf(a);
      if (code) codesSeen.add(code);
      return a;
    }

    before(async () => {
      cluster = await TestCluster.start(2, {
        args: ['--n', '2', '--max-value-bytes', '1024', '--request-timeout-ms', '1500', '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100'],
      });
      addr = cluster.addr('n1');
    });

    after(async () => {
      const paramCount = ops.reduce((n, o) => n + o.params.length, 0);
      const statuses = ops.reduce((n, o) => n + Object.keys(o.op.responses).length, 0);
      const observed = [...seen.values()].reduce((n, s) => n + s.size, 0);
      process.stdout.write(`      covered: ${new Set(ops.map((o) => o.path)).size} paths, ${ops.length} operations, ${paramCount} parameters, ` +
        `${statuses} documented statuses (${observed} seen live), ${Object.keys(ERROR_STATUS).length} error codes (${codesSeen.size} seen live: ${[...codesSeen].sort().join(' ')})\n`);
      await cluster?.stop();
    });

    it('answers every probe of every operation with a documented status, headers and body', async () => {
      const page = await request(addr, 'GET', '/ui');
      const etag = String(page.headers['etag']);
      const list = probes(etag);
      for (const p of list) {
        const op = byId.get(p.op);
        expect(op, p.op).to.not.equal(undefined);
        const a = await check(op as Operation, p.method, p.path, { ...(p.body === undefined ? {} : { body: p.body }), ...(p.headers ? { headers: p.headers } : {}) });
        const want = Array.isArray(p.status) ? p.status : [p.status];
        expect(want, `${p.method} ${p.path.slice(0, 60)}: ${a.status} ${a.body.toString('utf8').slice(0, 200)}`).to.include(a.status);
        if (p.code && p.method !== 'HEAD') expect(codeOf(a), `${p.method} ${p.path.slice(0, 60)}`).to.equal(p.code);
      }
      const unprobed = ops.filter((o) => !list.some((p) => p.op === o.id)).map((o) => o.id);
      expect(unprobed, 'documented operations without a probe').to.deep.equal([]);
      // The served description is the file in the repo.
      const served = await request(addr, 'GET', '/openapi.json');
      expect(JSON.parse(served.body.toString('utf8'))).to.deep.equal(spec);
    });

    it('answers 405 with the error body for every method a route does not take, and 404 off the route table', async () => {
      for (const r of ROUTES) {
        for (const m of METHODS.map((x) => x.toUpperCase())) {
          if (r.methods.includes(m)) continue;
          const a = await request(addr, m, concrete(r.path));
          expect(a.status, `${m} ${r.path}`).to.equal(405);
          if (m !== 'HEAD') expect(codeOf(a), `${m} ${r.path}`).to.equal('KV_METHOD_NOT_ALLOWED');
          codesSeen.add('KV_METHOD_NOT_ALLOWED');
        }
      }
      for (const path of ['/nope', '/kvx', '/ui/', '/cluster/', '/cluster/stats/x', '/openapi.yaml']) {
        const a = await request(addr, 'GET', path);
        expect(a.status, path).to.equal(404);
        expect(codeOf(a), path).to.equal('KV_NOT_FOUND');
      }
    });

    it('answers a write and a read that need a killed replica with documented 503 or 504 answers, and 503 once it is known dead', async () => {
      await cluster.kill('n2', 'SIGKILL');
      const put = byId.get('putKey') as Operation;
      const get = byId.get('getKey') as Operation;
      await pollUntil(async () => {
        const a = await check(put, 'PUT', '/kv/conf-dead?w=all', { body: 'x' });
        const b = await check(get, 'GET', '/kv/conf-dead?r=all');
        expect([503, 504]).to.include(a.status);
        expect([503, 504]).to.include(b.status);
        return a.status === 503 && codeOf(a) === 'KV_UNAVAILABLE' && (JSON.parse(a.body.toString('utf8')) as { error: { outcome?: string } }).error.outcome === 'failed';
      }, { timeoutMs: 60_000, what: 'PUT w=all answered 503 KV_UNAVAILABLE (outcome failed) once n2 is dead' });
      const stats = await check(byId.get('clusterStats') as Operation, 'GET', '/cluster/stats');
      const n2 = (JSON.parse(stats.body.toString('utf8')) as { nodes: { id: string; ok: boolean }[] }).nodes.find((n) => n.id === 'n2');
      expect(n2?.ok).to.equal(false);
    });
  });
});
