/**
 * Peer transport micro-benchmark: pipelined small request/response between two
 * WsTransports over loopback in one process (both ends share one CPU core, so this
 * is a lower bound for two nodes), plus one-way message rate and the in-memory twin.
 *
 *   npx tsx bench/transport.ts [seconds=3] [window=1000] [payloadBytes=64]
 *
 * Reports figures only; nothing here is asserted.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MemoryNetwork } from '../lib/net/memory-transport.ts';
import { WsTransport } from '../lib/net/ws-transport.ts';
import type { Transport } from '../lib/net/transport.ts';

const seconds = Number(process.argv[2] ?? 3);
const window = Number(process.argv[3] ?? 1000);
const payloadBytes = Number(process.argv[4] ?? 64);
const SECRET = 'bench-secret-at-least-16-bytes';

async function wsPair(): Promise<{ a: Transport; b: Transport; close: () => Promise<void> }> {
  const servers: http.Server[] = [];
  const make = async (id: string): Promise<{ t: WsTransport; addr: string }> => {
    const server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    servers.push(server);
    const t = new WsTransport({ selfId: id, clusterId: 'bench', secret: SECRET });
    t.attach(server);
    return { t, addr: `127.0.0.1:${(server.address() as AddressInfo).port}` };
  };
  const a = await make('a');
  const b = await make('b');
  a.t.connect('b', b.addr);
  while (!a.t.isConnected('b')) await new Promise((r) => setTimeout(r, 5));
  return {
    a: a.t, b: b.t,
    async close() {
      await a.t.close();
      await b.t.close();
      for (const s of servers) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
  };
}

function memoryPair(): { a: Transport; b: Transport; close: () => Promise<void> } {
  const net = new MemoryNetwork();
  const a = net.transport({ selfId: 'a' });
  const b = net.transport({ selfId: 'b' });
  return { a, b, close: async () => { await a.close(); await b.close(); } };
}

/** Keeps `window` requests in flight for `seconds`; returns completed requests per second. */
async function pipelined(a: Transport, b: Transport): Promise<{ rps: number; p50Ms: number; p99Ms: number }> {
  const payload = { key: 'k', value: Buffer.alloc(payloadBytes, 1), version: '018c3f2a1b2c0001:a' };
  b.handle('bench.echo', (_from, p) => (p as { version: string }).version);
  while (!a.isConnected('b')) await new Promise((r) => setTimeout(r, 5));
  // Warm-up lets V8 optimise the hot path before measuring.
  await Promise.all(Array.from({ length: 2000 }, () => a.request('b', 'bench.echo', payload)));
  const deadline = performance.now() + seconds * 1000;
  const latencies: number[] = [];
  let done = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await a.request('b', 'bench.echo', payload);
      if (done % 16 === 0) latencies.push(performance.now() - t0);
      done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: window }, worker));
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((x, y) => x - y);
  const pct = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rps: done / elapsed, p50Ms: pct(0.5), p99Ms: pct(0.99) };
}

/** One-way messages, sent in bursts of 1000 per tick, counted at the receiver. */
async function oneWay(a: Transport, b: Transport): Promise<number> {
  let got = 0;
  b.handle('bench.msg', () => { got++; });
  const payload = { seq: 0, body: Buffer.alloc(payloadBytes) };
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  let sent = 0;
  while (performance.now() < deadline) {
    for (let i = 0; i < 1000; i++) if (a.send('b', 'bench.msg', payload)) sent++;
    // Let the batch flush and the receiver drain so buffered bytes stay under the limit.
    while (got < sent - 5000) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
  while (got < sent) await new Promise((r) => setImmediate(r));
  return got / ((performance.now() - start) / 1000);
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

const ws = await wsPair();
const r1 = await pipelined(ws.a, ws.b);
const m1 = await oneWay(ws.a, ws.b);
const s = ws.a.stats();
console.log(`ws      request/response  window=${window} payload=${payloadBytes}B: ${fmt(r1.rps)} req/s  p50 ${r1.p50Ms.toFixed(2)} ms  p99 ${r1.p99Ms.toFixed(2)} ms`);
console.log(`ws      one-way messages  payload=${payloadBytes}B: ${fmt(m1)} msg/s`);
console.log(`ws      envelopes per frame (sender a): ${(s.envelopesOut / s.framesOut).toFixed(1)}`);
await ws.close();

const mem = memoryPair();
const r2 = await pipelined(mem.a, mem.b);
console.log(`memory  request/response  window=${window} payload=${payloadBytes}B: ${fmt(r2.rps)} req/s  p50 ${r2.p50Ms.toFixed(2)} ms  p99 ${r2.p99Ms.toFixed(2)} ms`);
await mem.close();
