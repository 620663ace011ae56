/**
 * A small closed-loop HTTP load generator shared by the benchmarks, so every system
 * in one comparison is driven by the same code and settings: `concurrency` workers,
 * each with its own keep-alive socket, send one request, wait for the answer, repeat,
 * until `durationMs` has passed. Latency is measured per request with hrtime.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

/** User+system CPU seconds of a process so far (Linux /proc; undefined elsewhere). */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const USER_HZ = 100; // the unit of /proc tick counts, fixed by the kernel ABI
    return (Number(f[11]) + Number(f[12])) / USER_HZ;
  } catch {
    return undefined;
  }
}

/** HTTPS with this CA (bench/tls.ts, bench/etcd.ts --tls); plain HTTP when absent. */
export interface LoadTls { ca: Buffer }

function agentFor(tls: LoadTls | undefined, maxSockets: number): http.Agent {
  return tls ? new https.Agent({ keepAlive: true, maxSockets, ca: tls.ca }) : new http.Agent({ keepAlive: true, maxSockets });
}

export interface LoadResult {
  name: string;
  requests: number;
  errors: number;
  seconds: number;
  throughput: number;
  p50ms: number;
  p99ms: number;
}

export interface LoadOptions {
  name: string;
  targets: string[]; // HOST:PORT, spread round-robin over workers
  concurrency: number;
  durationMs: number;
  /** Builds request i of worker w. */
  request: (w: number, i: number) => { method: string; path: string; body?: Buffer; headers?: Record<string, string> };
  /** Status codes that count as success. Default: 2xx. */
  ok?: (status: number) => boolean;
  tls?: LoadTls;
  /** Requests per second over all workers, sent on a fixed schedule (open loop: worker w sends
   *  request i at start + (i × concurrency + w) / rate, or as soon as its previous one answered
   *  if that is later), each latency counted from its scheduled time, so a stall shows in full
   *  (no coordinated omission). Unset or 0: closed loop, each worker sends as fast as answers come. */
  rate?: number;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const ok = o.ok ?? ((s: number) => s >= 200 && s < 300);
  const latencies: number[] = [];
  let errors = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(o.durationMs) * 1_000_000n;
  const worker = async (w: number): Promise<void> => {
    const target = o.targets[w % o.targets.length] as string;
    const i = target.lastIndexOf(':');
    const agent = agentFor(o.tls, 1);
    const proto = o.tls ? https : http;
    let n = 0;
    const periodNs = o.rate ? 1e9 / o.rate : 0; // between two requests of the whole load
    try {
      while (process.hrtime.bigint() < end) {
        let t0 = process.hrtime.bigint();
        if (periodNs > 0) {
          const due = start + BigInt(Math.round((n * o.concurrency + w) * periodNs));
          if (due >= end) break;
          if (due > t0) await new Promise((r) => setTimeout(r, Number(due - t0) / 1e6));
          t0 = due;
        }
        const r = o.request(w, n++);
        const status = await new Promise<number>((resolve) => {
          const req = proto.request({ host: target.slice(0, i), port: Number(target.slice(i + 1)), method: r.method, path: r.path, agent,
            headers: { ...(r.body ? { 'content-length': String(r.body.length) } : {}), ...r.headers } }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
            res.on('error', () => resolve(0));
          });
          req.on('error', () => resolve(0));
          req.end(r.body);
        });
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (!ok(status)) errors++;
      }
    } finally {
      agent.destroy();
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, w) => worker(w)));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const sorted = Float64Array.from(latencies).sort();
  return { name: o.name, requests: latencies.length, errors, seconds, throughput: latencies.length / seconds,
    p50ms: percentile(sorted, 0.5), p99ms: percentile(sorted, 0.99) };
}

export function formatResult(r: LoadResult): string {
  return `${r.name.padEnd(28)} ${r.throughput.toFixed(0).padStart(8)} req/s   p50 ${r.p50ms.toFixed(2).padStart(7)} ms   p99 ${r.p99ms.toFixed(2).padStart(7)} ms   errors ${r.errors}/${r.requests}`;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** One request to HOST:PORT over HTTP, or HTTPS with `tls`'s CA: status and whole body (checks and health polls). */
export function requestOnce(target: string, r: { method: string; path: string; body?: Buffer; headers?: Record<string, string> },
  tls?: LoadTls, agent?: http.Agent): Promise<{ status: number; body: Buffer }> {
  const proto = tls ? https : http;
  const i = target.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = proto.request({ host: target.slice(0, i), port: Number(target.slice(i + 1)), method: r.method, path: r.path,
      ...(agent ? { agent } : tls ? { ca: tls.ca } : {}),
      headers: { ...(r.body ? { 'content-length': String(r.body.length) } : {}), ...r.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(r.body);
  });
}

/** How preload writes key k to a system other than kv (PUT /kv/key-k). */
export type PreloadRequest = (k: number) => { method: string; path: string; body: Buffer; headers?: Record<string, string> };

/** Write keys key-0..key-(count-1) once each, 32 at a time. */
export async function preload(target: string, count: number, value: Buffer, build?: PreloadRequest, tls?: LoadTls): Promise<void> {
  const agent = agentFor(tls, 32);
  const requestFor: PreloadRequest = build ?? ((k) => ({ method: 'PUT', path: `/kv/key-${k}`, body: value }));
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < count) {
      const r = requestFor(next++);
      const res = await requestOnce(target, r, tls, agent);
      if (res.status !== 200) throw new Error(`preload ${r.method} ${r.path}: ${res.status}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: 32 }, one));
  } finally {
    agent.destroy();
  }
}
