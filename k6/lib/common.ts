/**
 * Shared pieces of the k6 scripts: configuration from __ENV, spreading requests over
 * every node, the KV HTTP calls, self-describing values and the common thresholds.
 *
 * Only k6 APIs are used (k6 0.48 or newer, after bundling: see k6/README.md). Requests
 * go through http.asyncRequest from async VU functions, so one VU never blocks k6's
 * event loop while it waits for a node.
 */
import http from 'k6/http';
import type { Params, RefinedResponse } from 'k6/http';
import type { ConstantVUsScenario } from 'k6/options';

export type Res = RefinedResponse<'text'>;

export function envStr(name: string, fallback: string): string {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function envNum(name: string, fallback: number): number {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name}=${raw} is not a number`);
  return n;
}

export function envInt(name: string, fallback: number, min = 1): number {
  const n = envNum(name, fallback);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}=${n} must be an integer >= ${min}`);
  return n;
}

/**
 * Base URL of every node; each request goes to one of them, so all coordinate. KV_NODES
 * lists HOST:PORT (plain HTTP) or full `https://HOST:PORT` entries for a TLS cluster.
 */
export const NODES: readonly string[] = envStr('KV_NODES', '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003')
  .split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  .map((s) => (/^https?:\/\//.test(s) ? s.replace(/\/+$/, '') : `http://${s}`));
if (NODES.length === 0) throw new Error('KV_NODES lists no node');

/** Node number `i`, wrapping around; usable anywhere, setup and teardown included. */
export function nodeAt(i: number): string {
  return NODES[((i % NODES.length) + NODES.length) % NODES.length] as string;
}

/**
 * The node for this VU's current iteration, shifted by `offset` for a second request in
 * the same iteration. (__VU + __ITER) walks every VU through all nodes in turn. Only
 * inside iterations: k6 defines __ITER there alone (setup/teardown use nodeAt).
 */
export function nodeFor(offset = 0): string {
  return nodeAt(__VU + __ITER + offset);
}

export function kvUrl(node: string, key: string, query: Record<string, string> = {}): string {
  const q = Object.keys(query).map((k) => `${k}=${encodeURIComponent(query[k] as string)}`).join('&');
  return `${node}/kv/${encodeURIComponent(key)}${q === '' ? '' : `?${q}`}`;
}

const TIMEOUT = envStr('KV_HTTP_TIMEOUT', '10s');
// A read of a never-written or deleted key answers 404: a legitimate outcome, not a failed request.
const READ_STATUSES = http.expectedStatuses(200, 404);
/** KV_TOKEN: a client token (`<data>/client.token` of `kv start`), sent as a bearer token when set. */
const TOKEN = envStr('KV_TOKEN', '');
const HEADERS: Record<string, string> = TOKEN === '' ? {} : { Authorization: `Bearer ${TOKEN}` };

function params(name: string, extra: Partial<Params> = {}): Params & { responseType: 'text' } {
  return Object.assign({ responseType: 'text' as const, timeout: TIMEOUT, tags: { name }, headers: HEADERS }, extra);
}

export function kvPut(node: string, key: string, value: string, query?: Record<string, string>): Promise<Res> {
  return http.asyncRequest('PUT', kvUrl(node, key, query), value, params('PUT /kv/:key'));
}

export function kvGet(node: string, key: string, query?: Record<string, string>): Promise<Res> {
  return http.asyncRequest('GET', kvUrl(node, key, query), null, params('GET /kv/:key', { responseCallback: READ_STATUSES }));
}

export function kvDel(node: string, key: string, query?: Record<string, string>): Promise<Res> {
  return http.asyncRequest('DELETE', kvUrl(node, key, query), null, params('DELETE /kv/:key'));
}

const padding = new Map<number, string>();

/**
 * A value of exactly `bytes` ASCII bytes that names its key and writer
 * (`key|writer|....`), so a read can tell a value of another key or a truncated one.
 */
export function makeValue(key: string, writer: string, bytes: number): string {
  const head = `${key}|${writer}|`;
  if (head.length >= bytes) throw new Error(`value size ${bytes} too small for key ${key}`);
  const n = bytes - head.length;
  let pad = padding.get(n);
  if (pad === undefined) {
    pad = '.'.repeat(n);
    padding.set(n, pad);
  }
  return head + pad;
}

/** The value read is whole (`bytes` long) and was written for `key`. */
export function valueIntact(r: Res, key: string, bytes: number): boolean {
  return typeof r.body === 'string' && r.body.length === bytes && r.body.startsWith(`${key}|`);
}

export function hasVersion(r: Res): boolean {
  const v = r.headers['X-Kv-Version'];
  return typeof v === 'string' && v.length > 0;
}

/** A fresh prefix per run (from setup), so repeated runs do not read each other's keys. */
export function runPrefix(name: string): string {
  return `${envStr('KV_KEY_PREFIX', 'k6')}-${name}-${Date.now().toString(36)}`;
}

export function constantVus(vusEnv: string, vus: number, exec?: string): ConstantVUsScenario {
  const s: ConstantVUsScenario = { executor: 'constant-vus', vus: envInt(vusEnv, vus), duration: envStr('KV_DURATION', '30s') };
  if (exec !== undefined) s.exec = exec;
  return s;
}

/** Error-rate thresholds every script shares: failed requests and failed checks. */
export function errorThresholds(): Record<string, string[]> {
  return {
    http_req_failed: [`rate<${envNum('KV_MAX_ERROR_RATE', 0.01)}`],
    checks: [`rate>${envNum('KV_MIN_CHECK_RATE', 0.99)}`],
  };
}

/** p(95)/p(99) bounds in ms, overridable with KV_P95_MS / KV_P99_MS. */
export function latency(p95: number, p99: number): { p95: number; p99: number; list: string[] } {
  const a = envNum('KV_P95_MS', p95);
  const b = envNum('KV_P99_MS', p99);
  return { p95: a, p99: b, list: [`p(95)<${a}`, `p(99)<${b}`] };
}
