/**
 * The minimal k6 runner (test/helpers/k6-runner.ts): duration and threshold parsing,
 * k6's aggregations and percentile, threshold evaluation, and one run of a fixture
 * script against a local HTTP server (VU/iteration numbering, executors, per-VU module
 * instances, setup data, expected statuses, iteration errors). Wall time: under 1 s.
 */
import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MetricSink, compileThresholds, evaluateThreshold, parseDuration, parseThreshold, percentile, runK6Script,
} from '../helpers/k6-runner.ts';
import { removeDir, tempDir } from '../helpers/proc.ts';

function sink(type: 'counter' | 'gauge' | 'rate' | 'trend', values: number[], name = `m_${type}`): MetricSink {
  const s = new MetricSink(name, type);
  for (const v of values) s.add(v);
  return s;
}

describe('k6 runner: durations', () => {
  it('parses k6 duration strings', () => {
    expect(parseDuration('500ms')).to.equal(500);
    expect(parseDuration('30s')).to.equal(30_000);
    expect(parseDuration('1m30s')).to.equal(90_000);
    expect(parseDuration('1.5s')).to.equal(1500);
    expect(parseDuration('2h')).to.equal(7_200_000);
  });

  it('rejects anything else', () => {
    for (const bad of ['', '10', '5x', '1s ', 's', '-1s']) expect(() => parseDuration(bad), bad).to.throw(/duration/);
  });
});

describe('k6 runner: threshold expressions', () => {
  it('parses the forms the scripts use, with or without spaces', () => {
    expect(parseThreshold('rate<0.01')).to.include({ method: 'rate', op: '<', value: 0.01 });
    expect(parseThreshold('p(95) < 200')).to.include({ method: 'p', pct: 95, op: '<', value: 200 });
    expect(parseThreshold('p(99.9)<=1e3')).to.include({ method: 'p', pct: 99.9, op: '<=', value: 1000 });
    expect(parseThreshold('avg<250')).to.include({ method: 'avg', op: '<', value: 250 });
    expect(parseThreshold('count>0')).to.include({ method: 'count', op: '>', value: 0 });
    expect(parseThreshold('med >= 1')).to.include({ method: 'med', op: '>=', value: 1 });
    expect(parseThreshold('value===3')).to.include({ method: 'value', op: '===', value: 3 });
  });

  it('rejects malformed expressions instead of passing them', () => {
    for (const bad of ['p95<1', 'rate<', 'foo<1', 'p(101)<1', 'rate=0.1', 'avg<1ms', '']) {
      expect(() => parseThreshold(bad), bad).to.throw(/threshold/);
    }
  });
});

describe('k6 runner: aggregation and evaluation', () => {
  it('interpolates percentiles between ranks like k6', () => {
    expect(percentile([1, 2, 3, 4], 50)).to.equal(2.5);
    expect(percentile([7], 99)).to.equal(7);
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(hundred, 95)).to.be.closeTo(95.05, 1e-9);
    expect(percentile(hundred, 0)).to.equal(1);
    expect(percentile(hundred, 100)).to.equal(100);
  });

  it('evaluates rate, percentile, avg, count and value thresholds both ways', () => {
    const failed = sink('rate', [...Array(199).fill(0), 1]); // 0.5 % failed
    expect(evaluateThreshold(parseThreshold('rate<0.01'), failed, 1)).to.include({ ok: true, actual: 0.005 });
    expect(evaluateThreshold(parseThreshold('rate<0.001'), failed, 1).ok).to.equal(false);
    const lat = sink('trend', [5, 1, 3, 2, 4]);
    expect(evaluateThreshold(parseThreshold('p(99)<5'), lat, 1).ok).to.equal(true);
    expect(evaluateThreshold(parseThreshold('p(99)<0'), lat, 1).ok).to.equal(false);
    expect(evaluateThreshold(parseThreshold('avg<3'), lat, 1)).to.include({ ok: false, actual: 3 });
    expect(evaluateThreshold(parseThreshold('med==3'), lat, 1).ok).to.equal(true);
    const reqs = sink('counter', [1, 1, 1, 1]);
    expect(evaluateThreshold(parseThreshold('count>3'), reqs, 2).ok).to.equal(true);
    expect(evaluateThreshold(parseThreshold('count>4'), reqs, 2).ok).to.equal(false);
    expect(evaluateThreshold(parseThreshold('rate==2'), reqs, 2).ok).to.equal(true); // per second
    expect(evaluateThreshold(parseThreshold('value==9'), sink('gauge', [4, 9]), 1).ok).to.equal(true);
  });

  it('fails a threshold on a metric that got no samples', () => {
    const r = evaluateThreshold(parseThreshold('p(99)<1000'), sink('trend', []), 1);
    expect(r).to.include({ ok: false, actual: undefined });
  });

  it('refuses aggregations the metric type does not have, unknown metrics and sub-metrics', () => {
    const metrics = new Map([['lat', sink('trend', [], 'lat')], ['failed', sink('rate', [], 'failed')]]);
    expect(() => compileThresholds({ failed: ['avg<1'] }, metrics)).to.throw(/not an aggregation of a rate/);
    expect(() => compileThresholds({ lat: ['rate<1'] }, metrics)).to.throw(/not an aggregation of a trend/);
    expect(() => compileThresholds({ nope: ['rate<1'] }, metrics)).to.throw(/unknown metric/);
    expect(() => compileThresholds({ 'lat{op:get}': ['p(99)<1'] }, metrics)).to.throw(/sub-metric/);
    expect(() => compileThresholds({ lat: [{ threshold: 'p(99)<1', abortOnFail: true }] }, metrics)).to.throw(/abortOnFail/);
    expect(compileThresholds({ lat: ['p(95)<1', { threshold: 'avg<1' }], failed: ['rate<0.1'] }, metrics)).to.have.length(3);
  });
});

describe('k6 runner: running a script', () => {
  let dir = '';
  let server: http.Server;
  let base = '';
  const hits: string[] = [];

  before(async () => {
    dir = tempDir('kv-k6-runner-');
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      hits.push(url.search);
      // Uneven delays make VUs interleave, so __VU/__ITER must survive the awaits.
      setTimeout(() => {
        res.writeHead(Number(url.pathname.slice(1)), { 'x-test': 'yes' });
        res.end('body');
      }, (hits.length * 7) % 5);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise((resolve) => server.close(resolve));
    removeDir(dir);
  });

  it('numbers VUs and iterations per executor, isolates VU module state, passes setup data and counts failures', async () => {
    const file = join(dir, 'fixture.mts');
    writeFileSync(file, `
      import { check, fail } from 'k6';
      import http from 'k6/http';
      import { Counter } from 'k6/metrics';
      const torn = new Counter('torn_down');
      let mine = 0; // module state: one instance per VU, as in k6
      export const options = {
        scenarios: {
          a: { executor: 'per-vu-iterations', vus: 3, iterations: 4, exec: 'a' },
          b: { executor: 'shared-iterations', vus: 2, iterations: 5, exec: 'b', env: { WHO: 'b' } },
        },
        thresholds: { iterations: ['count==17'], http_req_failed: ['rate<0.5'], checks: ['rate==1'], torn_down: ['count==7'] },
      };
      export function setup() { return { base: __ENV.BASE, n: 7 }; }
      export async function a(data) {
        mine++;
        const r = await http.asyncRequest('GET', data.base + '/404?vu=' + __VU + '&iter=' + __ITER, null,
          { responseCallback: http.expectedStatuses(200, 404) });
        check(r, { 'own module state': () => mine === __ITER + 1, 'status and header': (x) => x.status === 404 && x.headers['X-Test'] === 'yes' });
      }
      export async function b() {
        await http.asyncRequest('GET', __ENV.BASE + '/500');
        if (__ENV.WHO !== 'b') fail('scenario env not applied');
        if (__VU === 4 && __ITER === 0) throw new Error('boom');
      }
      export function teardown(data) { torn.add(data.n); }
    `);
    hits.length = 0;
    const r = await runK6Script(file, { env: { BASE: base } });
    expect(r.errors).to.have.length(1);
    expect(r.errors[0]).to.match(/^b VU 4 iteration 0: Error: boom/);
    expect(r.passed, JSON.stringify(r.thresholds)).to.equal(true);
    expect(r.checks).to.deep.equal({ 'own module state': { passes: 12, fails: 0 }, 'status and header': { passes: 12, fails: 0 } });
    const pairs = hits.filter((h) => h.startsWith('?vu=')).sort();
    const want = [1, 2, 3].flatMap((vu) => [0, 1, 2, 3].map((iter) => `?vu=${vu}&iter=${iter}`)).sort();
    expect(pairs).to.deep.equal(want);
    expect(r.statusCounts).to.deep.equal({ 'GET 404': 12, 'GET 500': 5 });
    expect(r.metrics['http_req_failed']).to.include({ passes: 5, fails: 12 });
    expect(r.requestsByHost).to.deep.equal({ [base.slice('http://'.length)]: 17 });
  });

  it('fails its thresholds when the numbers say so', async () => {
    const file = join(dir, 'failing.mts');
    writeFileSync(file, `
      import http from 'k6/http';
      export const options = { iterations: 3, thresholds: { http_req_failed: ['rate<0.01'], http_req_duration: ['p(99)<0'], http_reqs: ['count>2'] } };
      export default async function () { await http.asyncRequest('GET', __ENV.BASE + '/503'); }
    `);
    const r = await runK6Script(file, { env: { BASE: base } });
    expect(r.passed).to.equal(false);
    expect(r.thresholds.map((t) => `${t.metric} ${t.expression} ${t.ok}`)).to.deep.equal([
      'http_req_failed rate<0.01 false', 'http_req_duration p(99)<0 false', 'http_reqs count>2 true',
    ]);
  });

  it('refuses a k6 module it does not implement', async () => {
    const file = join(dir, 'ws.mts');
    writeFileSync(file, `import ws from 'k6/ws';\nexport default function () { return ws; }\n`);
    let err: unknown;
    try {
      await runK6Script(file);
    } catch (e) {
      err = e;
    }
    expect(String(err)).to.match(/k6\/ws is not implemented by the minimal k6 runner/);
  });
});
