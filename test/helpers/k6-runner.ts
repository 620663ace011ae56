/**
 * A minimal runner of the k6 APIs that the scripts in k6/ use, so the test suite can
 * smoke-run them against a live cluster where the k6 binary is not installed. Real load
 * runs use k6 (`k6 run k6/mixed.ts`); this is not a k6 replacement.
 *
 * What it does, in k6's order: loads the script (TypeScript, through tsx) with the
 * specifiers 'k6', 'k6/http' and 'k6/metrics' resolved to the Node implementations
 * below (a resolve hook registered with module.register maps each to a tiny data: URL
 * module that re-exports them from a process-wide registry); imports one script instance per VU plus one for options/setup/teardown, as
 * k6 gives every VU its own runtime; runs setup(), the scenarios, teardown(); collects
 * the metrics and checks; evaluates the thresholds the script declares.
 *
 * Supported, and nothing more (anything else fails loudly rather than running with
 * different semantics):
 * - k6: check, fail. k6/http: asyncRequest (params headers, tags, timeout,
 *   responseType, responseCallback), expectedStatuses. k6/metrics: Counter, Gauge,
 *   Rate, Trend. Globals __ENV (only the env passed in, not the process env), __VU,
 *   __ITER (per async context, so interleaved VUs each see their own).
 * - options.scenarios with executors constant-vus, per-vu-iterations and
 *   shared-iterations (vus, duration, iterations, maxDuration, exec, env), or the
 *   top-level vus/duration/iterations shortcut. In-flight iterations always finish
 *   (gracefulStop is accepted and ignored).
 * - Thresholds `metric: ['expr', ...]` or `{threshold}` objects, expressions
 *   `avg|min|max|med|count|rate|value|p(N)  <|<=|>|>=|==|===|!=  number`, checked
 *   against the metric type as k6 does. Sub-metric thresholds (`metric{tag:v}`) are
 *   rejected. Stricter than k6: a threshold on a metric without samples fails.
 * - Builtin metrics: checks, http_reqs, http_req_duration, http_req_waiting,
 *   http_req_receiving, http_req_failed, iterations, iteration_duration, data_sent,
 *   data_received (body bytes only). http_req_duration spans send to last body byte on
 *   a pooled keep-alive connection, like k6's sending+waiting+receiving.
 *
 * k6's sync http.get/put/del cannot be emulated without blocking the event loop every
 * VU shares here, so the scripts use http.asyncRequest, which returns a Promise in k6
 * as well; their default functions are async (supported by k6).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { register } from 'node:module';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

// ---------------------------------------------------------------- durations

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/y;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** k6 duration strings: '500ms', '30s', '1m30s', '2h', '1.5s'. */
export function parseDuration(text: string): number {
  if (text.length === 0) throw new Error('empty k6 duration');
  let total = 0;
  for (let pos = 0; pos < text.length; pos = DURATION_PART.lastIndex) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(text);
    if (!m) throw new Error(`invalid k6 duration '${text}'`);
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return total;
}

// ---------------------------------------------------------------- metrics

export type MetricType = 'counter' | 'gauge' | 'rate' | 'trend';

/** Aggregation methods k6 accepts per metric type in thresholds. */
const METHODS: Record<MetricType, ReadonlySet<string>> = {
  counter: new Set(['count', 'rate']),
  gauge: new Set(['value', 'min', 'max']),
  rate: new Set(['rate']),
  trend: new Set(['avg', 'min', 'max', 'med', 'p']),
};

/** k6's percentile: linear interpolation between the closest ranks over n-1. */
export function percentile(sorted: readonly number[], pct: number): number {
  if (sorted.length === 0) return NaN;
  const i = (pct / 100) * (sorted.length - 1);
  const lo = sorted[Math.floor(i)] as number;
  const hi = sorted[Math.ceil(i)] as number;
  return lo + (hi - lo) * (i - Math.floor(i));
}

export class MetricSink {
  samples = 0;
  sum = 0;
  nonZero = 0;
  min = Infinity;
  max = -Infinity;
  last = 0;
  private values: number[] = [];
  private sorted = true;

  constructor(readonly name: string, readonly type: MetricType, readonly isTime = false) {}

  add(v: number): void {
    if (!Number.isFinite(v)) throw new Error(`metric ${this.name}: sample ${v} is not a finite number`);
    this.samples++;
    this.sum += v;
    if (v !== 0) this.nonZero++;
    this.min = Math.min(this.min, v);
    this.max = Math.max(this.max, v);
    this.last = v;
    if (this.type === 'trend') {
      this.values.push(v);
      this.sorted = false;
    }
  }

  /** `method` is an aggregation name; `pct` is N of p(N). `elapsedS` feeds Counter rate. */
  aggregate(method: string, pct: number | undefined, elapsedS: number): number {
    if (!METHODS[this.type].has(method)) {
      throw new Error(`threshold on ${this.name}: '${method}' is not an aggregation of a ${this.type} metric`);
    }
    switch (this.type) {
      case 'counter': return method === 'count' ? this.sum : this.sum / Math.max(elapsedS, 1e-9);
      case 'rate': return this.nonZero / this.samples;
      case 'gauge': return method === 'value' ? this.last : method === 'min' ? this.min : this.max;
      case 'trend': {
        if (!this.sorted) {
          this.values.sort((a, b) => a - b);
          this.sorted = true;
        }
        if (method === 'avg') return this.sum / this.samples;
        if (method === 'min') return this.min;
        if (method === 'max') return this.max;
        return percentile(this.values, method === 'med' ? 50 : (pct as number));
      }
    }
  }

  summary(elapsedS: number): Record<string, number> {
    if (this.samples === 0) return { samples: 0 };
    switch (this.type) {
      case 'counter': return { count: this.sum, rate: this.aggregate('rate', undefined, elapsedS) };
      case 'rate': return { rate: this.nonZero / this.samples, passes: this.nonZero, fails: this.samples - this.nonZero };
      case 'gauge': return { value: this.last, min: this.min, max: this.max };
      case 'trend': {
        const a = (m: string, p?: number): number => this.aggregate(m, p, elapsedS);
        return { count: this.samples, avg: a('avg'), min: a('min'), med: a('med'), max: a('max'), 'p(95)': a('p', 95), 'p(99)': a('p', 99) };
      }
    }
  }
}

// ---------------------------------------------------------------- thresholds

export type ThresholdOp = '<' | '<=' | '>' | '>=' | '==' | '===' | '!=';

export interface Threshold {
  source: string;
  method: string;
  pct?: number;
  op: ThresholdOp;
  value: number;
}

const THRESHOLD = /^\s*(avg|min|max|med|count|rate|value|p\(\s*(\d+(?:\.\d+)?)\s*\))\s*(<=|>=|===|==|!=|<|>)\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*$/;

export function parseThreshold(source: string): Threshold {
  const m = THRESHOLD.exec(source);
  if (!m) throw new Error(`unsupported threshold expression '${source}'`);
  const t: Threshold = { source, method: (m[1] as string).startsWith('p(') ? 'p' : (m[1] as string), op: m[3] as ThresholdOp, value: Number(m[4]) };
  if (m[2] !== undefined) {
    t.pct = Number(m[2]);
    if (t.pct > 100) throw new Error(`threshold '${source}': percentile above 100`);
  }
  return t;
}

function compare(actual: number, op: ThresholdOp, bound: number): boolean {
  switch (op) {
    case '<': return actual < bound;
    case '<=': return actual <= bound;
    case '>': return actual > bound;
    case '>=': return actual >= bound;
    case '==': case '===': return actual === bound;
    case '!=': return actual !== bound;
  }
}

export interface ThresholdResult {
  metric: string;
  expression: string;
  ok: boolean;
  /** The aggregated value; undefined when the metric got no samples. */
  actual: number | undefined;
}

export function evaluateThreshold(t: Threshold, sink: MetricSink, elapsedS: number): ThresholdResult {
  const actual = sink.samples === 0 ? undefined : sink.aggregate(t.method, t.pct, elapsedS);
  return { metric: sink.name, expression: t.source, ok: actual !== undefined && compare(actual, t.op, t.value), actual };
}

/** Parses options.thresholds and validates every expression against its metric, as k6 does before the run. */
export function compileThresholds(spec: unknown, metrics: ReadonlyMap<string, MetricSink>): { sink: MetricSink; t: Threshold }[] {
  if (spec === undefined) return [];
  if (typeof spec !== 'object' || spec === null) throw new Error('options.thresholds must be an object');
  const out: { sink: MetricSink; t: Threshold }[] = [];
  for (const [name, list] of Object.entries(spec)) {
    if (name.includes('{')) throw new Error(`threshold on sub-metric '${name}' is not supported by the minimal k6 runner`);
    const sink = metrics.get(name);
    if (!sink) throw new Error(`threshold on unknown metric '${name}'`);
    if (!Array.isArray(list)) throw new Error(`thresholds of '${name}' must be an array`);
    for (const item of list as unknown[]) {
      const expr = typeof item === 'string' ? item
        : typeof item === 'object' && item !== null && typeof (item as { threshold?: unknown }).threshold === 'string'
          ? (item as { threshold: string }).threshold : undefined;
      if (expr === undefined) throw new Error(`threshold of '${name}' must be a string or {threshold}`);
      if (typeof item === 'object' && (item as { abortOnFail?: unknown }).abortOnFail) {
        throw new Error(`abortOnFail (threshold of '${name}') is not supported by the minimal k6 runner`);
      }
      const t = parseThreshold(expr);
      sink.aggregate(t.method, t.pct ?? 50, 1); // throws when the method does not fit the type
      out.push({ sink, t });
    }
  }
  return out;
}

// ---------------------------------------------------------------- run state

interface VuStore {
  vu: number;
  iter: number;
  env: Record<string, string>;
}

class RunState {
  readonly metrics = new Map<string, MetricSink>();
  readonly checks = new Map<string, { passes: number; fails: number }>();
  readonly requestsByHost = new Map<string, number>();
  readonly statusCounts = new Map<string, number>();
  readonly errors: string[] = [];
  errorCount = 0;

  constructor(readonly env: Record<string, string>) {
    for (const [name, type, isTime] of [
      ['checks', 'rate', false], ['http_reqs', 'counter', false], ['http_req_duration', 'trend', true],
      ['http_req_waiting', 'trend', true], ['http_req_receiving', 'trend', true], ['http_req_failed', 'rate', false],
      ['iterations', 'counter', false], ['iteration_duration', 'trend', true], ['data_sent', 'counter', false],
      ['data_received', 'counter', false],
    ] as const) this.metrics.set(name, new MetricSink(name, type, isTime));
  }

  metric(name: string): MetricSink {
    return this.metrics.get(name) as MetricSink;
  }

  register(name: string, type: MetricType, isTime: boolean): MetricSink {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) throw new Error(`invalid metric name '${name}'`);
    const have = this.metrics.get(name);
    if (have) {
      if (have.type !== type) throw new Error(`metric '${name}' already exists as a ${have.type}, not a ${type}`);
      return have;
    }
    const sink = new MetricSink(name, type, isTime);
    this.metrics.set(name, sink);
    return sink;
  }

  error(what: string): void {
    this.errorCount++;
    if (this.errors.length < 50) this.errors.push(what); // bounded: a broken script fails every iteration
  }
}

/**
 * Run state lives on globalThis, not in this module: mocha may load this file through
 * tsx's CommonJS path while the data: shims reach it as ESM, and two module instances
 * must still see one run.
 */
interface Shared {
  active: RunState | undefined;
  vuContext: AsyncLocalStorage<VuStore>;
  modules: Record<string, Record<string, unknown>> | undefined;
  runSeq: number;
}
const SHARED = Symbol.for('kvstore.k6-runner');
const shared: Shared = ((globalThis as Record<symbol, unknown>)[SHARED] ??=
  { active: undefined, vuContext: new AsyncLocalStorage<VuStore>(), modules: undefined, runSeq: 0 }) as Shared;
const vuContext = shared.vuContext;

function current(): RunState {
  if (!shared.active) throw new Error('k6 API used outside a runK6Script run');
  return shared.active;
}

// ---------------------------------------------------------------- module 'k6'

function check<T>(val: T, sets: Record<string, (v: T) => unknown>): boolean {
  const run = current();
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    const ok = Boolean(fn(val));
    all &&= ok;
    const c = run.checks.get(name) ?? { passes: 0, fails: 0 };
    if (ok) c.passes++;
    else c.fails++;
    run.checks.set(name, c);
    run.metric('checks').add(ok ? 1 : 0);
  }
  return all;
}

function fail(err?: string): never {
  throw new Error(err ?? 'fail() called');
}

// ---------------------------------------------------------------- module 'k6/metrics'

abstract class Metric {
  private readonly sink: MetricSink;
  constructor(readonly name: string, isTime = false, type: MetricType) {
    this.sink = current().register(name, type, isTime);
  }
  add(value: number | boolean, _tags?: Record<string, string>): void {
    this.sink.add(typeof value === 'boolean' ? Number(value) : value);
  }
}
class Counter extends Metric { constructor(name: string, isTime = false) { super(name, isTime, 'counter'); } }
class Gauge extends Metric { constructor(name: string, isTime = false) { super(name, isTime, 'gauge'); } }
class Rate extends Metric { constructor(name: string, isTime = false) { super(name, isTime, 'rate'); } }
class Trend extends Metric { constructor(name: string, isTime = false) { super(name, isTime, 'trend'); } }

// ---------------------------------------------------------------- module 'k6/http'

const EXPECTED = Symbol.for('kvstore.k6-runner.expectedStatuses');
interface ExpectedStatuses { [EXPECTED]: (status: number) => boolean }

function expectedStatuses(...spec: (number | { min: number; max: number })[]): ExpectedStatuses {
  for (const s of spec) {
    if (typeof s !== 'number' && !(typeof s === 'object' && Number.isInteger(s.min) && Number.isInteger(s.max))) {
      throw new Error('expectedStatuses takes status numbers or {min, max} objects');
    }
  }
  return { [EXPECTED]: (status) => spec.some((s) => (typeof s === 'number' ? status === s : status >= s.min && status <= s.max)) };
}

export interface K6Response {
  status: number;
  status_text: string;
  url: string;
  body: string | ArrayBuffer | null;
  headers: Record<string, string>;
  /** Non-HTTP error (connection refused, timeout); status is then 0, as in k6. */
  error: string;
  error_code: number;
  timings: { duration: number; waiting: number; receiving: number; sending: number; blocked: number; connecting: number; tls_handshaking: number };
  request: { method: string; url: string };
}

interface Params {
  headers?: Record<string, string>;
  tags?: Record<string, string>;
  timeout?: string | number;
  responseType?: 'text' | 'binary' | 'none';
  responseCallback?: ExpectedStatuses;
}
const PARAMS = new Set(['headers', 'tags', 'timeout', 'responseType', 'responseCallback']);

/** Go's CanonicalMIMEHeaderKey, which k6 applies to response header names. */
function canonicalHeader(name: string): string {
  return name.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1).toLowerCase()).join('-');
}

const K6_TIMEOUT_ERROR = 1050; // k6's error_code for a request timeout
const K6_GENERIC_ERROR = 1000;

async function asyncRequest(method: string, url: string, body?: string | ArrayBuffer | null, params?: Params | null): Promise<K6Response> {
  const run = current();
  for (const k of Object.keys(params ?? {})) {
    if (!PARAMS.has(k)) throw new Error(`http params.${k} is not supported by the minimal k6 runner`);
  }
  if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof ArrayBuffer)) {
    throw new Error('only string and ArrayBuffer request bodies are supported by the minimal k6 runner');
  }
  const timeoutMs = params?.timeout === undefined ? 60_000 : typeof params.timeout === 'number' ? params.timeout : parseDuration(params.timeout);
  const payload = body === undefined || body === null ? undefined : typeof body === 'string' ? Buffer.from(body) : new Uint8Array(body);
  const res: K6Response = {
    status: 0, status_text: '', url, body: null, headers: {}, error: '', error_code: 0,
    timings: { duration: 0, waiting: 0, receiving: 0, sending: 0, blocked: 0, connecting: 0, tls_handshaking: 0 },
    request: { method, url },
  };
  const started = performance.now();
  let received = 0;
  try {
    const r = await fetch(url, { method, body: payload, headers: params?.headers ?? {}, signal: AbortSignal.timeout(timeoutMs) });
    res.timings.waiting = performance.now() - started;
    res.status = r.status;
    res.status_text = `${r.status} ${r.statusText}`;
    r.headers.forEach((v, k) => { res.headers[canonicalHeader(k)] = v; });
    // 'none' still reads the body: the connection goes back to the pool only once it is drained.
    const buf = await r.arrayBuffer();
    received = buf.byteLength;
    const type = params?.responseType ?? 'text';
    res.body = type === 'text' ? Buffer.from(buf).toString('utf8') : type === 'binary' ? buf : null;
    res.timings.receiving = performance.now() - started - res.timings.waiting;
  } catch (err) {
    const e = err as Error;
    res.status = 0;
    res.error = `${e.name}: ${e.message}${e.cause instanceof Error ? ` (${e.cause.message})` : ''}`;
    res.error_code = e.name === 'TimeoutError' ? K6_TIMEOUT_ERROR : K6_GENERIC_ERROR;
  }
  res.timings.duration = performance.now() - started;
  const expected = params?.responseCallback ? params.responseCallback[EXPECTED](res.status) : res.status >= 200 && res.status < 400;
  run.metric('http_reqs').add(1);
  run.metric('http_req_duration').add(res.timings.duration);
  run.metric('http_req_waiting').add(res.timings.waiting);
  run.metric('http_req_receiving').add(res.timings.receiving);
  run.metric('http_req_failed').add(expected ? 0 : 1);
  run.metric('data_sent').add(payload?.byteLength ?? 0);
  run.metric('data_received').add(received);
  const host = new URL(url).host;
  run.requestsByHost.set(host, (run.requestsByHost.get(host) ?? 0) + 1);
  const sc = `${method} ${res.status}`;
  run.statusCounts.set(sc, (run.statusCounts.get(sc) ?? 0) + 1);
  return res;
}

/** What each k6 module specifier resolves to; only these names can be imported. */
export const K6_MODULES: Record<string, Record<string, unknown>> = {
  'k6': { check, fail },
  'k6/http': { asyncRequest, expectedStatuses },
  'k6/metrics': { Counter, Gauge, Rate, Trend },
};

// ---------------------------------------------------------------- loading

// Runs in the loader thread (Node 20 runs hooks off the main thread), so it gets the
// shim URLs as data and keeps no other state.
const RESOLVE_HOOK = `
let shims = {};
export async function initialize(data) { shims = data; }
export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'k6' || specifier.startsWith('k6/')) {
    const url = shims[specifier];
    if (url === undefined) throw new Error(specifier + ' is not implemented by the minimal k6 runner (test/helpers/k6-runner.ts)');
    return { url, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}`;

function registerK6Modules(): void {
  if (shared.modules) return;
  shared.modules = K6_MODULES;
  const shims: Record<string, string> = {};
  for (const [spec, mod] of Object.entries(K6_MODULES)) {
    const src = [
      `const m = globalThis[Symbol.for('kvstore.k6-runner')].modules[${JSON.stringify(spec)}];`,
      ...Object.keys(mod).map((n) => `export const ${n} = m.${n};`),
      'export default m;',
    ].join('\n');
    shims[spec] = `data:text/javascript,${encodeURIComponent(src)}`;
  }
  register(`data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`, { data: shims });
}

const GLOBALS = ['__ENV', '__VU', '__ITER'] as const;

function installGlobals(run: RunState): void {
  const get: Record<(typeof GLOBALS)[number], () => unknown> = {
    __ENV: () => vuContext.getStore()?.env ?? run.env,
    __VU: () => vuContext.getStore()?.vu ?? 0,
    __ITER: () => vuContext.getStore()?.iter ?? 0,
  };
  for (const name of GLOBALS) Object.defineProperty(globalThis, name, { get: get[name], configurable: true });
}

function removeGlobals(): void {
  for (const name of GLOBALS) Reflect.deleteProperty(globalThis, name);
}

// ---------------------------------------------------------------- scenarios

interface Plan {
  name: string;
  executor: 'constant-vus' | 'per-vu-iterations' | 'shared-iterations';
  vus: number;
  /** Wall-clock budget: duration (constant-vus) or maxDuration. */
  durationMs: number;
  /** per-vu-iterations: per VU; shared-iterations: in total. */
  iterations: number;
  exec: string;
  env: Record<string, string>;
}

const SCENARIO_KEYS = new Set(['executor', 'vus', 'duration', 'iterations', 'maxDuration', 'exec', 'env', 'gracefulStop']);

export interface RunOptions {
  /** The script's __ENV (the process environment is not passed through). */
  env?: Record<string, string>;
  /** Caps, so a smoke run stays short whatever the script asks for. */
  maxVus?: number;
  maxDurationMs?: number;
  maxIterationsPerVu?: number;
}

function planScenarios(options: Record<string, unknown>, caps: RunOptions): Plan[] {
  for (const k of ['stages', 'rps', 'minIterationDuration']) {
    if (options[k] !== undefined) throw new Error(`options.${k} is not supported by the minimal k6 runner`);
  }
  const capVus = (n: number): number => Math.max(1, Math.min(n, caps.maxVus ?? Infinity));
  const capMs = (n: number): number => Math.min(n, caps.maxDurationMs ?? Infinity);
  const scenarios = options['scenarios'] as Record<string, Record<string, unknown>> | undefined;
  if (scenarios === undefined) {
    const vus = capVus(Number(options['vus'] ?? 1));
    if (options['duration'] !== undefined) {
      return [{ name: 'default', executor: 'constant-vus', vus, durationMs: capMs(parseDuration(String(options['duration']))), iterations: Infinity, exec: 'default', env: {} }];
    }
    return [{ name: 'default', executor: 'shared-iterations', vus, durationMs: capMs(600_000), iterations: Number(options['iterations'] ?? 1), exec: 'default', env: {} }];
  }
  return Object.entries(scenarios).map(([name, s]) => {
    for (const k of Object.keys(s)) {
      if (!SCENARIO_KEYS.has(k)) throw new Error(`scenario ${name}: '${k}' is not supported by the minimal k6 runner`);
    }
    const executor = s['executor'];
    if (executor !== 'constant-vus' && executor !== 'per-vu-iterations' && executor !== 'shared-iterations') {
      throw new Error(`scenario ${name}: executor ${String(executor)} is not supported by the minimal k6 runner`);
    }
    const vus = capVus(Number(s['vus'] ?? 1));
    const exec = String(s['exec'] ?? 'default');
    const env = (s['env'] ?? {}) as Record<string, string>;
    if (executor === 'constant-vus') {
      if (s['duration'] === undefined) throw new Error(`scenario ${name}: constant-vus needs a duration`);
      return { name, executor, vus, durationMs: capMs(parseDuration(String(s['duration']))), iterations: Infinity, exec, env };
    }
    const durationMs = capMs(parseDuration(String(s['maxDuration'] ?? '10m')));
    return { name, executor, vus, durationMs, iterations: Number(s['iterations'] ?? 1), exec, env };
  });
}

// ---------------------------------------------------------------- the run

export interface RunResult {
  /** Every threshold held (k6 exits 99 otherwise). */
  passed: boolean;
  thresholds: ThresholdResult[];
  metrics: Record<string, Record<string, number>>;
  checks: Record<string, { passes: number; fails: number }>;
  /** HOST:PORT → requests sent there. */
  requestsByHost: Record<string, number>;
  /** 'METHOD status' → count (status 0 = no HTTP response). */
  statusCounts: Record<string, number>;
  /** Exceptions that aborted iterations (k6 logs them and goes on), first 50. */
  errors: string[];
  errorCount: number;
  durationMs: number;
}

type ScriptModule = Record<string, unknown>;
type ScriptFn = (data?: unknown) => unknown;

function jsonCopy(v: unknown): unknown {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

/** Runs a k6 script once, bounded by the caps in `opts`. Rejects if setup or teardown throws. */
export async function runK6Script(scriptPath: string, opts: RunOptions = {}): Promise<RunResult> {
  if (shared.active) throw new Error('runK6Script: one run at a time (the k6 globals are process-wide)');
  registerK6Modules();
  const run = new RunState({ ...opts.env });
  shared.active = run;
  installGlobals(run);
  const runId = ++shared.runSeq;
  const base = pathToFileURL(scriptPath).href;
  // A separate module instance per VU (query-distinct URL), as every k6 VU has its own runtime.
  const load = (vu: number): Promise<ScriptModule> =>
    vuContext.run({ vu, iter: 0, env: run.env }, () => import(`${base}?k6run=${runId}&vu=${vu}`) as Promise<ScriptModule>);
  try {
    const main = await load(0);
    const options = (main['options'] ?? {}) as Record<string, unknown>;
    const plans = planScenarios(options, opts);
    const vus: { id: number; plan: Plan; mod: ScriptModule }[] = [];
    for (const plan of plans) {
      for (let i = 0; i < plan.vus; i++) {
        const id = vus.length + 1;
        const mod = await load(id);
        if (typeof mod[plan.exec] !== 'function') throw new Error(`scenario ${plan.name}: the script exports no function '${plan.exec}'`);
        vus.push({ id, plan, mod });
      }
    }
    const thresholds = compileThresholds(options['thresholds'], run.metrics);

    const started = performance.now();
    const inVu = (fn: () => unknown, env: Record<string, string> = run.env): Promise<unknown> =>
      vuContext.run({ vu: 0, iter: 0, env }, async () => fn());
    const setupData = typeof main['setup'] === 'function' ? jsonCopy(await inVu(() => (main['setup'] as ScriptFn)())) : undefined;

    const shared = new Map<Plan, number>(plans.map((p) => [p, p.iterations]));
    const runVu = async (vu: { id: number; plan: Plan; mod: ScriptModule }, deadline: number): Promise<void> => {
      const { plan } = vu;
      const fn = vu.mod[plan.exec] as ScriptFn;
      const data = jsonCopy(setupData);
      const env = { ...run.env, ...plan.env };
      for (let iter = 0; ; iter++) {
        if (performance.now() >= deadline || iter >= (opts.maxIterationsPerVu ?? Infinity)) return;
        if (plan.executor === 'per-vu-iterations' && iter >= plan.iterations) return;
        if (plan.executor === 'shared-iterations') {
          const left = shared.get(plan) as number;
          if (left <= 0) return;
          shared.set(plan, left - 1);
        }
        const t0 = performance.now();
        try {
          await vuContext.run({ vu: vu.id, iter, env }, async () => fn(data));
        } catch (err) {
          run.error(`${plan.name} VU ${vu.id} iteration ${iter}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        }
        run.metric('iterations').add(1);
        run.metric('iteration_duration').add(performance.now() - t0);
      }
    };
    const t0 = performance.now();
    await Promise.all(vus.map((vu) => runVu(vu, t0 + vu.plan.durationMs)));

    if (typeof main['teardown'] === 'function') await inVu(() => (main['teardown'] as ScriptFn)(jsonCopy(setupData)));
    const durationMs = performance.now() - started;
    const elapsedS = durationMs / 1000;
    const results = thresholds.map(({ sink, t }) => evaluateThreshold(t, sink, elapsedS));
    return {
      passed: results.every((r) => r.ok),
      thresholds: results,
      metrics: Object.fromEntries([...run.metrics].map(([k, s]) => [k, s.summary(elapsedS)])),
      checks: Object.fromEntries(run.checks),
      requestsByHost: Object.fromEntries(run.requestsByHost),
      statusCounts: Object.fromEntries(run.statusCounts),
      errors: run.errors,
      errorCount: run.errorCount,
      durationMs,
    };
  } finally {
    removeGlobals();
    shared.active = undefined;
  }
}

/** A k6-like end-of-test summary, for logs and assertion messages. */
export function formatResult(r: RunResult): string {
  const num = (v: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(3));
  const lines = [`duration ${(r.durationMs / 1000).toFixed(1)}s, thresholds ${r.passed ? 'passed' : 'FAILED'}`];
  for (const t of r.thresholds) lines.push(`  ${t.ok ? 'ok  ' : 'FAIL'} ${t.metric}: ${t.expression} (actual ${t.actual === undefined ? 'no samples' : num(t.actual)})`);
  for (const [name, c] of Object.entries(r.checks)) lines.push(`  check ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${name}: ${c.passes} passed, ${c.fails} failed`);
  for (const [name, m] of Object.entries(r.metrics)) {
    if (m['samples'] === 0) continue;
    lines.push(`  ${name}: ${Object.entries(m).map(([k, v]) => `${k}=${num(v)}`).join(' ')}`);
  }
  lines.push(`  requests by host: ${JSON.stringify(r.requestsByHost)}; statuses: ${JSON.stringify(r.statusCounts)}`);
  if (r.errorCount > 0) lines.push(`  ${r.errorCount} iteration errors, first: ${r.errors[0]}`);
  return lines.join('\n');
}
