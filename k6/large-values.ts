/**
 * Large values: each VU writes values near the size limit to its own keys through one
 * node and reads them back through the next one. Measures write and read latency and
 * throughput of big bodies (data_sent / data_received), and checks read-your-writes
 * across coordinators: with w=quorum and r=quorum and no other writer on the key, the
 * read returns exactly the value just written (same writer tag, same length, same
 * version).
 *
 *   npm run k6 -- large-values -e KV_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
 *
 * Env: KV_NODES, KV_VUS (4), KV_DURATION (30s), KV_VALUE_BYTES (524288; the node limit is
 * 1 MiB by default), KV_KEYS_PER_VU (4), KV_P95_MS (500), KV_P99_MS (1000),
 * KV_AVG_MS (250), KV_MAX_ERROR_RATE (0.01), KV_MIN_CHECK_RATE (0.99).
 */
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { constantVus, envInt, envNum, errorThresholds, kvDel, kvGet, kvPut, latency, makeValue, nodeAt, nodeFor, runPrefix } from './lib/common.ts';

const VALUE_BYTES = envInt('KV_VALUE_BYTES', 512 * 1024);
const KEYS_PER_VU = envInt('KV_KEYS_PER_VU', 4);
const LAT = latency(500, 1000);
const AVG_MS = envNum('KV_AVG_MS', 250);
const W_QUORUM = { w: 'quorum' };
const R_QUORUM = { r: 'quorum' };

const putMs = new Trend('kv_large_put_ms', true);
const getMs = new Trend('kv_large_get_ms', true);
const roundTrips = new Counter('kv_large_roundtrips');

export const options: Options = {
  scenarios: { large: constantVus('KV_VUS', 4) },
  thresholds: {
    ...errorThresholds(),
    http_req_duration: LAT.list,
    kv_large_put_ms: [`avg<${AVG_MS}`, `p(99)<${LAT.p99}`],
    kv_large_get_ms: [`avg<${AVG_MS}`, `p(99)<${LAT.p99}`],
    kv_large_roundtrips: ['count>0'],
  },
};

interface Data { prefix: string }

function keyOf(prefix: string, vu: number, slot: number): string {
  return `${prefix}-${vu}-${slot}`;
}

export function setup(): Data {
  return { prefix: runPrefix('large') };
}

export default async function (data: Data): Promise<void> {
  const key = keyOf(data.prefix, __VU, __ITER % KEYS_PER_VU);
  const writer = `${__VU}.${__ITER}`;
  const put = await kvPut(nodeFor(), key, makeValue(key, writer, VALUE_BYTES), W_QUORUM);
  putMs.add(put.timings.duration);
  if (!check(put, { 'put: 200': (x) => x.status === 200 })) return;
  const got = await kvGet(nodeFor(1), key, R_QUORUM);
  getMs.add(got.timings.duration);
  check(got, {
    'get via another node: the value just written, whole': (x) =>
      x.status === 200 && typeof x.body === 'string' && x.body.length === VALUE_BYTES && x.body.startsWith(`${key}|${writer}|`),
    'get via another node: the version just written': (x) => x.headers['X-Kv-Version'] === put.headers['X-Kv-Version'],
  });
  roundTrips.add(1);
}

/**
 * The most VUs the run's scenarios can start (VU ids run 1..this). Read from the options
 * k6 settled on, so `--vus` overriding KV_VUS is covered; teardown has no instance
 * information in k6 0.48, but it has these.
 */
function vusUpperBound(): number {
  let total = 0;
  for (const s of Object.values(exec.test.options.scenarios ?? {})) {
    const o = s as { vus?: number; maxVUs?: number; preAllocatedVUs?: number; startVUs?: number; stages?: { target: number }[] };
    total += Math.max(o.vus ?? 0, o.maxVUs ?? 0, o.preAllocatedVUs ?? 0, o.startVUs ?? 0, ...(o.stages ?? []).map((st) => st.target));
  }
  return Math.max(total, 1);
}

/** Deletes the run's keys, those of every VU, so repeated runs do not fill the disks with big values. */
export async function teardown(data: Data): Promise<void> {
  const vus = vusUpperBound();
  for (let vu = 1; vu <= vus; vu++) {
    for (let slot = 0; slot < KEYS_PER_VU; slot++) await kvDel(nodeAt(vu + slot), keyOf(data.prefix, vu, slot));
  }
}
