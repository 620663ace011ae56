/**
 * The k6 scripts (k6/*.ts) on the real k6 binary, bundled as `npm run k6` bundles them,
 * against a live 3-node cluster of real processes started by `kv start`. Each script runs
 * a few seconds with a few VUs; a run passes when k6 exits 0 (99 means a crossed
 * threshold), its --summary-export shows no crossed threshold and no failed check, and
 * every node served requests (each node's own request counter). Latency bounds are set
 * out of reach of a loaded CI machine: timing belongs to real k6 runs (README figures),
 * while the error-rate and check thresholds keep their defaults; a run with an impossible
 * bound shows the thresholds can fail. Afterwards Ctrl-C (SIGINT) of `kv start` must
 * leave no node process behind within the shutdown bound.
 *
 * Also: k6 trusts a custom CA through SSL_CERT_FILE (how k6/README.md tells to run against
 * a TLS cluster), checked with a CA made by openssl and a local HTTPS server.
 *
 * The k6 binary comes from K6, else PATH, else ../shared/bin/k6; without one every test
 * here is reported as skipped by name (and `.ci/run` fails).
 * Wall time: about 40-60 s, a fifth of it starting the cluster.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Context } from 'mocha';
import { K6_SCRIPTS, bundleK6Script, findK6, runK6, scriptPath, type K6Run } from '../../k6/tools/k6.ts';
import { SHUTDOWN_BOUND_MS } from '../../lib/cli/start.ts';
import { KvStartProc } from '../helpers/kv-start.ts';
import { removeDir, tempDir } from '../helpers/proc.ts';
import { skipMissingBinary } from '../helpers/skip.ts';

/** A k6 run of a few seconds finishes well within this, even on a loaded machine. */
const K6_TIMEOUT_MS = 120_000;
const SLACK_MS = 15_000;

/** The parts of k6's --summary-export (legacy JSON summary) read here. */
interface Summary {
  root_group: Group;
  /** Per metric: its values, and for each threshold expression whether it was crossed (true = crossed). */
  metrics: Record<string, { count?: number; thresholds?: Record<string, boolean> }>;
}
interface Group { checks: Record<string, { passes: number; fails: number }>; groups: Record<string, Group> }

function allChecks(g: Group): { name: string; passes: number; fails: number }[] {
  return [...Object.entries(g.checks).map(([name, c]) => ({ name, passes: c.passes, fails: c.fails })), ...Object.values(g.groups).flatMap(allChecks)];
}

function thresholds(s: Summary): { metric: string; expression: string; crossed: boolean }[] {
  return Object.entries(s.metrics).flatMap(([metric, m]) =>
    Object.entries(m.thresholds ?? {}).map(([expression, crossed]) => ({ metric, expression, crossed })));
}

/** Requests a node served on /kv/, from its Prometheus counter. */
async function kvRequestsServed(s: KvStartProc, id: string): Promise<number> {
  const res = await fetch(`http://${s.addr(id)}/metrics`, { headers: s.headers('admin'), signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let n = 0;
  for (const m of text.matchAll(/^kv_http_requests_total\{[^}]*route="kv"[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

const k6 = findK6();

function k6Binary(ctx: Context): string {
  if ('missing' in k6) skipMissingBinary(ctx, 'k6', k6.missing);
  return k6.found;
}

describe('k6 scripts on the real k6 binary against a 3-node `kv start` cluster', function () {
  this.timeout(300_000);
  let s: KvStartProc | undefined;
  let work: string | undefined;
  const bundles = new Map<string, string>();
  let runs = 0;

  before(async function () {
    if ('missing' in k6) return; // each test reports the skip by name
    work = tempDir('kv-k6-');
    for (const name of K6_SCRIPTS) bundles.set(name, await bundleK6Script(scriptPath(name), work));
    s = await KvStartProc.start();
  });

  after(async () => {
    await s?.cleanup();
    if (work !== undefined) removeDir(work);
  });

  const ids = ['n1', 'n2', 'n3'];

  async function run(ctx: Context, name: string, env: Record<string, string>, args: string[] = []): Promise<{ r: K6Run; summary: Summary; report: string }> {
    const binary = k6Binary(ctx);
    const c = s as KvStartProc;
    const summaryFile = join(work as string, `summary-${name}-${runs++}.json`);
    const token = c.headers('client')['authorization']?.replace(/^Bearer /, '');
    const allEnv: Record<string, string> = {
      KV_NODES: ids.map((id) => c.addr(id)).join(','),
      KV_DURATION: '3s',
      KV_P95_MS: '30000', KV_P99_MS: '30000', KV_AVG_MS: '30000',
      ...(token === undefined ? {} : { KV_TOKEN: token }),
      ...env,
    };
    const r = await runK6(binary, [
      'run', '--quiet', '--no-color', '--summary-export', summaryFile,
      ...Object.entries(allEnv).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
      ...args, bundles.get(name) as string,
    ], { timeoutMs: K6_TIMEOUT_MS });
    const report = `k6 ${name} exited ${r.signal ?? r.code}:\n${r.output.slice(-6000)}`;
    const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as Summary;
    return { r, summary, report };
  }

  const cases: { name: string; title: string; env: Record<string, string>; args?: string[] }[] = [
    { name: 'mixed', title: 'mixed', env: { KV_VUS: '3', KV_KEYS: '200', KV_VALUE_BYTES: '512' } },
    { name: 'hot-keys', title: 'hot-keys (its two scenarios)', env: { KV_WRITE_VUS: '2', KV_READ_VUS: '2', KV_HOT_KEYS: '3' } },
    { name: 'hot-keys', title: 'hot-keys with --vus/--iterations (its default function)', env: { KV_HOT_KEYS: '3' }, args: ['--vus', '2', '--iterations', '40'] },
    { name: 'large-values', title: 'large-values (teardown included)', env: { KV_VUS: '2', KV_VALUE_BYTES: String(256 * 1024), KV_KEYS_PER_VU: '2' } },
  ];

  for (const c of cases) {
    it(`${c.title} passes its thresholds with no failed check and spreads requests over every node`, async function () {
      k6Binary(this);
      const cluster = s as KvStartProc;
      const served = await Promise.all(ids.map((id) => kvRequestsServed(cluster, id)));
      const { r, summary, report } = await run(this, c.name, c.env, c.args);
      expect(r.code, report).to.equal(0);
      const t = thresholds(summary);
      expect(t.length, report).to.be.greaterThan(4);
      expect(t.filter((x) => x.crossed), report).to.deep.equal([]);
      const checks = allChecks(summary.root_group);
      expect(checks.length, report).to.be.greaterThan(0);
      expect(checks.filter((x) => x.fails > 0), report).to.deep.equal([]);
      expect(checks.reduce((n, x) => n + x.passes, 0), report).to.be.greaterThan(0);
      expect(summary.metrics['http_reqs']?.count ?? 0, report).to.be.greaterThan(0);
      const servedAfter = await Promise.all(ids.map((id) => kvRequestsServed(cluster, id)));
      ids.forEach((id, i) => expect(servedAfter[i] as number, `${id} served requests\n${report}`).to.be.greaterThan(served[i] as number));
    });
  }

  it('fails (exit 99) on a crossed threshold: an impossible latency bound (KV_P99_MS=0 → p(99)<0)', async function () {
    k6Binary(this);
    const { r, summary, report } = await run(this, 'mixed', { KV_P99_MS: '0', KV_DURATION: '1s', KV_VUS: '2', KV_KEYS: '50' });
    expect(r.code, report).to.equal(99);
    const crossed = thresholds(summary).filter((x) => x.crossed).map((x) => `${x.metric}: ${x.expression}`);
    expect(crossed, report).to.include('http_req_duration: p(99)<0');
    // Only the impossible latency bounds are crossed; the error-rate thresholds still hold.
    expect(crossed.every((x) => x.endsWith('p(99)<0')), report).to.equal(true);
    expect(thresholds(summary).find((x) => x.metric === 'http_req_failed')?.crossed, report).to.equal(false);
  });

  it('Ctrl-C (SIGINT) of kv start after the k6 runs: every node process is gone within the shutdown bound', async function () {
    k6Binary(this);
    const cluster = s as KvStartProc;
    const pids = [...cluster.pids().values()];
    expect(pids).to.have.length(3);
    const t0 = Date.now();
    cluster.signal('SIGINT');
    const left = await cluster.waitPidsGone(pids, SHUTDOWN_BOUND_MS + SLACK_MS);
    expect(left, `node processes still running after the bound:\n${cluster.output().slice(-3000)}`).to.deep.equal([]);
    const exit = await cluster.exited;
    expect(exit.signal).to.equal(null);
    process.stdout.write(`      (all nodes gone ${Date.now() - t0} ms after SIGINT; kv start exit code ${exit.code})\n`);
  });
});

describe('k6 trusts a custom CA through SSL_CERT_FILE (TLS clusters)', function () {
  this.timeout(120_000);
  let dir: string | undefined;
  let server: https.Server | undefined;

  after(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    if (dir !== undefined) removeDir(dir);
  });

  it('refuses a server signed by an unknown CA, and accepts it with SSL_CERT_FILE=<ca.pem>', async function () {
    const binary = k6Binary(this);
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
    } catch {
      skipMissingBinary(this, 'openssl', 'openssl makes the test CA (Debian package openssl)');
    }
    const d = tempDir('kv-k6-tls-');
    dir = d;
    const openssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: d, stdio: 'pipe' }); };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=kv test CA');
    openssl('req', ...ec, '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=127.0.0.1');
    writeFileSync(join(d, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.pem', '-days', '1', '-extfile', 'san.cnf');
    const srv = https.createServer({ key: readFileSync(join(d, 'node.key')), cert: readFileSync(join(d, 'node.pem')) }, (_req, res) => res.end('ok'));
    server = srv;
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}/health`;
    writeFileSync(join(d, 'tls.js'), [
      "import http from 'k6/http';",
      "import { check } from 'k6';",
      "export const options = { thresholds: { checks: ['rate==1'] } };",
      "export default function () { const r = http.get(__ENV.URL); check(r, { 'TLS request answered 200': (x) => x.status === 200 }); if (r.error) console.log('tls error: ' + r.error); }",
    ].join('\n'));
    const args = ['run', '--quiet', '--no-color', '--iterations', '1', '-e', `URL=${url}`, join(d, 'tls.js')];
    const env = { ...process.env };
    delete env['SSL_CERT_FILE'];
    delete env['SSL_CERT_DIR'];

    const untrusted = await runK6(binary, args, { env, timeoutMs: 60_000 });
    expect(untrusted.code, untrusted.output).to.equal(99);
    expect(untrusted.output).to.match(/x509|certificate/);

    const trusted = await runK6(binary, args, { env: { ...env, SSL_CERT_FILE: join(d, 'ca.pem') }, timeoutMs: 60_000 });
    expect(trusted.code, trusted.output).to.equal(0);
  });
});
