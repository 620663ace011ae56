/**
 * Prometheus metrics for one node. Each node owns its registry (no global default),
 * so several nodes can live in one process in tests.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Sampling period of the `kv_nodejs_eventloop_lag_*` histogram. Each sample wakes the event
 *  loop (10 ms: about 0.9 % of a core on an idle node, 100 ms: 0.2 %). Its values are whole
 *  sampling intervals (an idle loop shows 100 ms); the lag is what they add to this. */
export const LAG_SAMPLE_MS = 100;

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'kv_http_requests_total', help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'] as const, registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'kv_http_request_duration_seconds', help: 'HTTP request latency by route, method and status',
    labelNames: ['route', 'method', 'status'] as const, registers: [this.registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  readonly httpErrors = new Counter({
    name: 'kv_http_errors_total', help: 'Error answers by code', labelNames: ['code'] as const, registers: [this.registry],
  });
  readonly inflight = new Gauge({ name: 'kv_http_inflight_requests', help: 'Client requests in flight', registers: [this.registry] });
  readonly clockSkewRejected = new Counter({
    name: 'kv_hlc_skew_rejected_total', help: 'Remote timestamps rejected for being too far ahead', registers: [this.registry],
  });
  readonly readRepairs = new Counter({
    name: 'kv_read_repairs_total', help: 'Replicas repaired by reads: before answering (r >= 2) or in the background',
    labelNames: ['mode'] as const, registers: [this.registry],
  });
  readonly versionsRefused = new Counter({
    name: 'kv_versions_refused_total', help: 'Record versions from peers, hints or sessions refused for being too far ahead of local time',
    labelNames: ['source'] as const, registers: [this.registry],
  });
  readonly peerRefused = new Counter({
    name: 'kv_peer_refused_total', help: 'Peer messages refused: sender not a member, Raft sender mismatch, invalid snapshot',
    labelNames: ['reason'] as const, registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'kv_connections_refused_total', help: 'Sockets refused or cut: over maxConnections, stray upgrades, stalled bodies',
    labelNames: ['reason'] as const, registers: [this.registry],
  });
  readonly inflightBytes = new Gauge({ name: 'kv_http_inflight_body_bytes', help: 'Request body bytes held or promised (maxInflightBytes)', registers: [this.registry] });
  private readonly children = new Map<string, { count: Counter.Internal; dur: Histogram.Internal<'route' | 'method' | 'status'> }>();

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    // The event-loop lag histogram samples every 100 ms, not prom-client's 10 ms: at 10 ms its
    // timer was the largest single source of an idle node's wake-ups (bench:scale idle).
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'kv_', eventLoopMonitoringPrecision: LAG_SAMPLE_MS });
  }

  /** Hot path: child metrics are cached per label set instead of resolved per request. */
  observeHttp(route: string, method: string, status: number, seconds: number): void {
    const id = `${route} ${method} ${status}`;
    let c = this.children.get(id);
    if (!c) {
      const labels = { route, method, status: String(status) };
      c = { count: this.httpRequests.labels(labels), dur: this.httpDuration.labels(labels) };
      this.children.set(id, c);
    }
    c.count.inc();
    c.dur.observe(seconds);
  }
}
