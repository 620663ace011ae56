/**
 * Mixed read/write/delete workload over a uniform key space, every request coordinated
 * by a different node in turn. Measures per-operation latency under a realistic mix and
 * checks each answer: reads return 200 with an intact value of the key asked for, or 404
 * (never written, or deleted); writes and deletes return 200 with a version.
 *
 *   npm run k6 -- mixed -e KV_NODES=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
 *
 * Env: KV_NODES, KV_VUS (16), KV_DURATION (30s), KV_KEYS (10000), KV_VALUE_BYTES (1024),
 * KV_READ_RATIO (0.7), KV_DELETE_RATIO (0.05), KV_P95_MS (100), KV_P99_MS (250),
 * KV_MAX_ERROR_RATE (0.01), KV_MIN_CHECK_RATE (0.99), KV_HTTP_TIMEOUT (10s), KV_KEY_PREFIX.
 */
import { check } from 'k6';
import { Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import {
  constantVus, envInt, envNum, errorThresholds, hasVersion, kvDel, kvGet, kvPut, latency, makeValue, nodeFor, runPrefix,
  valueIntact,
} from './lib/common.ts';

const KEYS = envInt('KV_KEYS', 10_000);
const VALUE_BYTES = envInt('KV_VALUE_BYTES', 1024);
const READ_RATIO = envNum('KV_READ_RATIO', 0.7);
const DELETE_RATIO = envNum('KV_DELETE_RATIO', 0.05);
if (READ_RATIO < 0 || DELETE_RATIO < 0 || READ_RATIO + DELETE_RATIO > 1) {
  throw new Error('KV_READ_RATIO and KV_DELETE_RATIO must be >= 0 and sum to at most 1');
}
const LAT = latency(100, 250);

const getMs = new Trend('kv_get_ms', true);
const putMs = new Trend('kv_put_ms', true);
const delMs = new Trend('kv_del_ms', true);

export const options: Options = {
  scenarios: { mixed: constantVus('KV_VUS', 16) },
  thresholds: {
    ...errorThresholds(),
    http_req_duration: LAT.list,
    kv_get_ms: [`p(99)<${LAT.p99}`],
    kv_put_ms: [`p(99)<${LAT.p99}`],
    kv_del_ms: [`p(99)<${LAT.p99}`],
    http_reqs: ['count>0'],
  },
};

interface Data { prefix: string }

export function setup(): Data {
  return { prefix: runPrefix('mixed') };
}

export default async function (data: Data): Promise<void> {
  const key = `${data.prefix}-${Math.floor(Math.random() * KEYS)}`;
  const node = nodeFor();
  const roll = Math.random();
  if (roll < READ_RATIO) {
    const r = await kvGet(node, key);
    getMs.add(r.timings.duration);
    check(r, {
      'get: 200 or 404': (x) => x.status === 200 || x.status === 404,
      'get: a 200 has an intact value of its key and a version': (x) => x.status !== 200 || (valueIntact(x, key, VALUE_BYTES) && hasVersion(x)),
    });
  } else if (roll < READ_RATIO + DELETE_RATIO) {
    const r = await kvDel(node, key);
    delMs.add(r.timings.duration);
    check(r, { 'del: 200 with a version': (x) => x.status === 200 && hasVersion(x) });
  } else {
    const r = await kvPut(node, key, makeValue(key, `${__VU}.${__ITER}`, VALUE_BYTES));
    putMs.add(r.timings.duration);
    check(r, { 'put: 200 with a version': (x) => x.status === 200 && hasVersion(x) });
  }
}
