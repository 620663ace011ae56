/**
 * Smoke runs of the k6 scripts (k6/*.ts) against a live 3-node cluster, through the
 * minimal runner of the k6 APIs they use (test/helpers/k6-runner.ts): each script runs
 * a couple of seconds with a few VUs, must pass its thresholds with no iteration error,
 * and must have sent requests to every node (seen by the runner and by each node's own
 * request counter). Latency bounds are set out of reach of a loaded CI machine: timing
 * goals belong to real k6 runs, while the error-rate and check thresholds keep their
 * defaults. A run with an impossible bound proves the thresholds can fail.
 * Wall time: about 20 s, half of it starting the cluster.
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { TestCluster } from '../helpers/cluster.ts';
import { formatResult, runK6Script, type RunResult } from '../helpers/k6-runner.ts';

const script = (name: string): string => fileURLToPath(new URL(`../../k6/${name}`, import.meta.url));

/** Requests each node served on /kv/, from its Prometheus counter. */
async function kvRequestsServed(addr: string): Promise<number> {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^kv_http_requests_total\{[^}]*route="kv"[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

describe('k6 scripts: smoke runs through the minimal k6 runner on a 3-node cluster', function () {
  this.timeout(120_000);
  let cluster: TestCluster | undefined;
  let addrs: string[] = [];

  before(async () => {
    cluster = await TestCluster.start(3);
    addrs = cluster.addrs();
  });

  after(async () => {
    await cluster?.stop();
  });

  const baseEnv = (): Record<string, string> => ({
    KV_NODES: addrs.join(','),
    KV_DURATION: '2s',
    KV_P95_MS: '30000',
    KV_P99_MS: '30000',
    KV_AVG_MS: '30000',
  });

  const cases: { file: string; env: Record<string, string> }[] = [
    { file: 'mixed.ts', env: { KV_VUS: '3', KV_KEYS: '200', KV_VALUE_BYTES: '512' } },
    { file: 'hot-keys.ts', env: { KV_WRITE_VUS: '2', KV_READ_VUS: '2', KV_HOT_KEYS: '3' } },
    { file: 'large-values.ts', env: { KV_VUS: '2', KV_VALUE_BYTES: String(256 * 1024), KV_KEYS_PER_VU: '2' } },
  ];

  for (const c of cases) {
    it(`${c.file} passes its thresholds with no failed check and spreads requests over every node`, async () => {
      const served = await Promise.all(addrs.map(kvRequestsServed));
      const r: RunResult = await runK6Script(script(c.file), { env: { ...baseEnv(), ...c.env }, maxVus: 4, maxDurationMs: 3000 });
      const report = formatResult(r);
      expect(r.errors, report).to.deep.equal([]);
      expect(r.thresholds.filter((t) => !t.ok), report).to.deep.equal([]);
      expect(r.thresholds.length, report).to.be.greaterThan(4);
      expect(r.passed, report).to.equal(true);
      const failedChecks = Object.entries(r.checks).filter(([, v]) => v.fails > 0);
      expect(failedChecks, report).to.deep.equal([]);
      for (const addr of addrs) expect(r.requestsByHost[addr] ?? 0, `${addr}\n${report}`).to.be.greaterThan(0);
      const servedAfter = await Promise.all(addrs.map(kvRequestsServed));
      addrs.forEach((addr, i) => expect(servedAfter[i] as number, addr).to.be.greaterThan(served[i] as number));
    });
  }

  it('reports a failed threshold when a latency bound is impossible (KV_P99_MS=0 → p(99)<0)', async () => {
    const r = await runK6Script(script('mixed.ts'), {
      env: { ...baseEnv(), KV_P99_MS: '0', KV_DURATION: '1s', KV_VUS: '2', KV_KEYS: '50' },
      maxVus: 2, maxDurationMs: 1500,
    });
    const report = formatResult(r);
    expect(r.passed, report).to.equal(false);
    const failed = r.thresholds.filter((t) => !t.ok).map((t) => `${t.metric}: ${t.expression}`);
    expect(failed, report).to.include('http_req_duration: p(99)<0');
    // Only the impossible latency bounds fail; the error-rate thresholds still hold.
    expect(failed.every((f) => f.endsWith('p(99)<0')), report).to.equal(true);
    expect(r.thresholds.find((t) => t.metric === 'http_req_failed')?.ok, report).to.equal(true);
  });
});
