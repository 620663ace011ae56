/**
 * Hot keys: writers and readers, on every node, hammer a handful of keys (plus a thin
 * stream over a cold key space). Measures latency when many coordinators write the same
 * keys at once (per-key serialization on the replicas, last-writer-wins on versions)
 * and checks that contention never loses a key: the hot keys are written with w=all in
 * setup and never deleted, so every quorum read of one must answer 200 with an intact
 * value of that key.
 *
 *   npm run k6 -- hot-keys -e KV_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
 *
 * Env: KV_NODES, KV_WRITE_VUS (8), KV_READ_VUS (8), KV_DURATION (30s), KV_HOT_KEYS (8),
 * KV_HOT_FRACTION (0.9), KV_KEYS (10000 cold keys), KV_VALUE_BYTES (256),
 * KV_P95_MS (100), KV_P99_MS (250), KV_MAX_ERROR_RATE (0.01), KV_MIN_CHECK_RATE (0.99).
 */
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import {
  constantVus, envInt, envNum, errorThresholds, hasVersion, kvDel, kvGet, kvPut, latency, makeValue, nodeAt, nodeFor, runPrefix,
  valueIntact,
} from './lib/common.ts';

const HOT_KEYS = envInt('KV_HOT_KEYS', 8);
const HOT_FRACTION = envNum('KV_HOT_FRACTION', 0.9);
const COLD_KEYS = envInt('KV_KEYS', 10_000);
const VALUE_BYTES = envInt('KV_VALUE_BYTES', 256);
const LAT = latency(100, 250);
const W_QUORUM = { w: 'quorum' };
const R_QUORUM = { r: 'quorum' };

const hotPutMs = new Trend('kv_hot_put_ms', true);
const hotGetMs = new Trend('kv_hot_get_ms', true);
const hotOps = new Counter('kv_hot_ops');

export const options: Options = {
  scenarios: {
    hot_writers: constantVus('KV_WRITE_VUS', 8, 'writer'),
    hot_readers: constantVus('KV_READ_VUS', 8, 'reader'),
  },
  thresholds: {
    ...errorThresholds(),
    http_req_duration: LAT.list,
    kv_hot_put_ms: [`p(99)<${LAT.p99}`],
    kv_hot_get_ms: [`p(99)<${LAT.p99}`],
    kv_hot_ops: ['count>0'],
  },
};

interface Data { prefix: string }

function hotKey(prefix: string, i: number): string {
  return `${prefix}-hot-${i}`;
}

function pick(prefix: string): { key: string; hot: boolean } {
  return Math.random() < HOT_FRACTION
    ? { key: hotKey(prefix, Math.floor(Math.random() * HOT_KEYS)), hot: true }
    : { key: `${prefix}-cold-${Math.floor(Math.random() * COLD_KEYS)}`, hot: false };
}

export async function setup(): Promise<Data> {
  const prefix = runPrefix('hot');
  for (let i = 0; i < HOT_KEYS; i++) {
    const key = hotKey(prefix, i);
    const r = await kvPut(nodeAt(i), key, makeValue(key, 'setup', VALUE_BYTES), { w: 'all' });
    if (r.status !== 200) fail(`setup: PUT ${key} w=all answered ${r.status} ${r.body ?? r.error}`);
  }
  return { prefix };
}

export async function writer(data: Data): Promise<void> {
  const { key, hot } = pick(data.prefix);
  const r = await kvPut(nodeFor(), key, makeValue(key, `${__VU}.${__ITER}`, VALUE_BYTES), W_QUORUM);
  if (hot) {
    hotPutMs.add(r.timings.duration);
    hotOps.add(1);
  }
  check(r, { 'put: 200 with a version': (x) => x.status === 200 && hasVersion(x) });
}

export async function reader(data: Data): Promise<void> {
  const { key, hot } = pick(data.prefix);
  const r = await kvGet(nodeFor(), key, R_QUORUM);
  if (hot) {
    hotGetMs.add(r.timings.duration);
    hotOps.add(1);
    check(r, { 'hot get: 200 with an intact value of its key and a version': (x) => x.status === 200 && valueIntact(x, key, VALUE_BYTES) && hasVersion(x) });
  } else {
    check(r, { 'cold get: 404, or 200 with an intact value of its key': (x) => x.status === 404 || (x.status === 200 && valueIntact(x, key, VALUE_BYTES)) });
  }
}

/**
 * What `--vus N --iterations M` (or `--duration`) run instead of the two scenarios: VUs
 * and iterations alternate between writing and reading.
 */
export default async function (data: Data): Promise<void> {
  if ((__VU + __ITER) % 2 === 0) await writer(data);
  else await reader(data);
}

export async function teardown(data: Data): Promise<void> {
  for (let i = 0; i < HOT_KEYS; i++) await kvDel(nodeAt(i), hotKey(data.prefix, i));
}
