/**
 * The HTTP API (DESIGN.md §10) on node:http, or node:https with TLS. Client KV routes,
 * cluster/admin routes, /health and /metrics. Every error is `{"error":{"code","message"}}`
 * with the status from lib/errors.ts; the node never dies from a request.
 *
 * Who may do what (README "Security"): every route but /health and the join handshake needs
 * a bearer token of the route's role (ROUTE_ROLES), unless the node runs open.
 *
 * Bounded resources: open client sockets (maxConnections), requests in flight
 * (maxInflightRequests), body bytes held or promised (maxInflightBytes), body idle time
 * (bodyIdleTimeoutMs), one scrub at a time. Upgrades are the peer transport's at its path;
 * any other upgrade is destroyed at once, so a stray socket never outlives its request.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { KvError, isKvError } from '../errors.ts';
import { parseQuorum } from '../core/quorum.ts';
import { parseSession, type SessionToken } from '../core/session.ts';
import type { Metrics } from './metrics.ts';
import type { CasService, ClusterService, KvService, ListService, ReadAnswer, WriteOptions } from './service.ts';
import { parseCondition, parseListQuery, parseTtl } from './kv-params.ts';
import { matchRoute, roleFor } from './routes.ts';
import { serveAsset } from './static-files.ts';
import { OPEN_AUTH, type Authenticator, type Role } from './tokens.ts';

export interface ApiLimits {
  maxKeyBytes: number;
  maxValueBytes: number;
  maxUrlBytes: number;
  maxHeaderBytes: number;
  httpRequestTimeoutMs: number;
  maxInflightRequests: number;
  maxConnections: number;
  maxInflightBytes: number;
  bodyIdleTimeoutMs: number;
}

export interface ApiTls {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

export interface ApiDeps {
  kv: KvService;
  cluster: ClusterService;
  metrics: Metrics;
  limits: ApiLimits;
  log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
  /** Every member's numbers, gathered through this node (GET /cluster/stats; lib/node/stats.ts). */
  stats?: () => Promise<unknown>;
  /** Who may call which route. Default: open (tests and embedded use). */
  auth?: Authenticator;
  /** Serve /metrics without a token. */
  metricsOpen?: boolean;
  /** HTTPS with client certificates requested (verified by the peer transport for peer upgrades). */
  tls?: ApiTls;
  /** Takes an upgrade for the peer path; false = not ours (the socket is destroyed). */
  onUpgrade?: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => boolean;
  /** Conditional writes (If-Match / If-None-Match) and serial reads (lib/node/cas.ts). */
  cas?: CasService;
  /** GET /kv?prefix=&limit=&cursor= (lib/node/list.ts). */
  list?: ListService;
  /** This node's cluster: answers carrying a session say it (X-Kv-Cluster), and a session of
   *  another cluster (X-Kv-Session-Cluster) is ignored. */
  clusterId?: string;
}

/** TLS handshake deadline for client and peer sockets. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Retry hint on 503 KV_OVERLOADED: load sheds within a second or two. */
const RETRY_AFTER_S = '1';

/** Admin request bodies are tiny JSON documents. */
const MAX_ADMIN_BODY_BYTES = 64 * 1024;

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function errorBody(err: KvError): unknown {
  return err.toJSON();
}

export function decodeKey(raw: string, maxKeyBytes: number): string {
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    // decodeURIComponent also rejects encoded bytes that are not UTF-8 (lone surrogates included).
    throw new KvError('KV_INVALID_KEY', 'key is not valid percent-encoded UTF-8');
  }
  if (key.length === 0) throw new KvError('KV_INVALID_KEY', 'key must not be empty');
  const bytes = Buffer.byteLength(key);
  if (bytes > maxKeyBytes) throw new KvError('KV_INVALID_KEY', `key is ${bytes} bytes; the limit is ${maxKeyBytes}`);
  return key;
}

function parseQuery(qs: string): Map<string, string> {
  const out = new Map<string, string>();
  if (qs === '') return out;
  for (const part of qs.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    try {
      out.set(decodeURIComponent(name), decodeURIComponent(value.replace(/\+/g, ' ')));
    } catch {
      throw new KvError('KV_INVALID_ARGUMENT', 'query string is not valid percent-encoding');
    }
  }
  return out;
}

const WRITE_PARAMS = new Set(['w', 'sloppy', 'ttl']);
const READ_PARAMS = new Set(['r', 'serial']);
const LIST_PARAMS = new Set(['prefix', 'limit', 'cursor', 'r']);

function checkParams(q: Map<string, string>, allowed: Set<string>): void {
  for (const name of q.keys()) {
    if (!allowed.has(name)) throw new KvError('KV_INVALID_ARGUMENT', `unknown parameter "${name.slice(0, 40)}"`);
  }
}

function parseBool(name: string, raw: string | undefined): boolean | undefined {
  if (raw === undefined) return undefined;
  if (raw === 'true' || raw === '1' || raw === '') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new KvError('KV_INVALID_ARGUMENT', `${name} must be true or false`);
}

/**
 * After refusing a body we keep reading (and dropping) the rest of it up to this many
 * bytes, so the client receives our 413 instead of a TCP reset, and the connection stays
 * usable. A larger upload is cut off. 8 MiB drains in milliseconds on a LAN.
 */
const DRAIN_MAX_BYTES = 8 * 1024 * 1024;

function drain(req: http.IncomingMessage, already: number): void {
  let drained = already;
  req.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > DRAIN_MAX_BYTES) req.socket.destroy();
  });
  req.resume();
}

/** Read the body, refusing (413) as soon as it passes the cap: nothing past the cap is buffered.
 *  A body silent for `idleMs` is refused (408) and its connection closed. */
function readBody(req: http.IncomingMessage, max: number, idleMs: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) {
    if (Number(declared) <= DRAIN_MAX_BYTES) drain(req, 0);
    return Promise.reject(new KvError('KV_VALUE_TOO_LARGE', `body is ${declared} bytes; the limit is ${max}`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        finish(new KvError('KV_REQUEST_TIMEOUT', `request body sent nothing for ${idleMs} ms`));
      }, idleMs);
    };
    const finish = (err: Error | null, buf?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      req.removeListener('data', onData);
      if (err) reject(err);
      else resolve(buf as Buffer);
    };
    const onData = (chunk: Buffer): void => {
      arm();
      size += chunk.length;
      if (size > max) {
        chunks.length = 0;
        finish(new KvError('KV_VALUE_TOO_LARGE', `body exceeds the limit of ${max} bytes`));
        drain(req, size);
        return;
      }
      chunks.push(chunk);
    };
    arm();
    req.on('data', onData);
    req.once('end', () => finish(null, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)));
    req.once('error', (err) => finish(new KvError('KV_INVALID_ARGUMENT', `request body aborted: ${err.message}`)));
    req.once('aborted', () => finish(new KvError('KV_INVALID_ARGUMENT', 'request body aborted')));
  });
}

export class ApiServer {
  readonly server: http.Server;
  private inflight = 0;
  private inflightBytes = 0;
  private readonly auth: Authenticator;
  /** Client sockets (not yet upgraded to a peer link): counted for maxConnections, cut at shutdown. */
  private readonly sockets = new Set<Duplex>();
  private scrubbing = false;
  private closing = false;

  constructor(private readonly deps: ApiDeps) {
    const { limits } = deps;
    this.auth = deps.auth ?? OPEN_AUTH;
    const opts: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderBytes,
      requestTimeout: limits.httpRequestTimeoutMs,
      headersTimeout: Math.min(limits.httpRequestTimeoutMs, 60_000),
      // Keep-alive longer than typical client pools' idle timeout avoids racing a reused socket's close.
      keepAliveTimeout: 65_000,
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.handle(req, res);
    // Client certificates are requested but not required here: clients use tokens; the peer
    // transport requires a verified certificate for the peer path (mutual TLS between nodes).
    this.server = deps.tls
      ? https.createServer({
        ...opts, cert: deps.tls.cert, key: deps.tls.key, ca: deps.tls.ca, requestCert: true, rejectUnauthorized: false,
        // A TLS handshake takes milliseconds; a socket that never finishes one must not wait out the 120 s default.
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      }, handler)
      : http.createServer(opts, handler);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(err, socket));
    this.server.on(deps.tls ? 'secureConnection' : 'connection', (socket: Socket) => this.onConnection(socket));
    if (deps.tls) this.server.on('tlsClientError', (_err: Error, socket: Duplex) => socket.destroy());
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  /** Open client sockets now (peer links not counted). */
  get connections(): number {
    return this.sockets.size;
  }

  private onConnection(socket: Socket | TLSSocket): void {
    if (this.closing || this.sockets.size >= this.deps.limits.maxConnections) {
      this.deps.metrics.connectionsRefused.labels({ reason: 'max-connections' }).inc();
      socket.on('error', () => {});
      const body = JSON.stringify({ error: { code: 'KV_OVERLOADED', message: `more than ${this.deps.limits.maxConnections} open connections; retry later` } });
      socket.end(`HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: ${RETRY_AFTER_S}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    // The socket leaves the HTTP layer either way: a peer link is the transport's, anything else dies now.
    this.sockets.delete(socket);
    if (!this.closing && this.deps.onUpgrade?.(req, socket, head) === true) return;
    this.deps.metrics.connectionsRefused.labels({ reason: 'stray-upgrade' }).inc();
    socket.destroy();
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable || (err.code === 'ECONNRESET')) {
      socket.destroy();
      return;
    }
    const [status, code, message] =
      err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'KV_HEADERS_TOO_LARGE', 'request headers too large'] :
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'KV_TIMEOUT', 'request timed out'] :
      [400, 'KV_INVALID_ARGUMENT', `malformed HTTP request (${err.code ?? 'parse error'})`];
    const body = JSON.stringify({ error: { code, message } });
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    this.deps.metrics.httpErrors.labels({ code }).inc();
  }

  /**
   * Body bytes this request may still bring: its declared length, or for a body of unknown
   * length the route's cap (it may send that much before we refuse it).
   */
  private bodyReservation(req: http.IncomingMessage, cap: number): number {
    const declared = req.headers['content-length'];
    if (declared !== undefined) {
      const n = Number(declared);
      return Number.isFinite(n) && n > 0 ? Math.min(n, cap) : 0;
    }
    return req.headers['transfer-encoding'] !== undefined ? cap : 0;
  }

  private reserve(req: http.IncomingMessage, res: http.ServerResponse, cap: number): void {
    const bytes = this.bodyReservation(req, cap);
    if (bytes === 0) return;
    if (this.inflightBytes + bytes > this.deps.limits.maxInflightBytes) {
      throw new KvError('KV_OVERLOADED', `request bodies in flight would exceed ${this.deps.limits.maxInflightBytes} bytes; retry later`);
    }
    this.inflightBytes += bytes;
    this.deps.metrics.inflightBytes.set(this.inflightBytes);
    // Held until the answer is out: the value stays in memory while it is replicated.
    res.once('close', () => {
      this.inflightBytes -= bytes;
      this.deps.metrics.inflightBytes.set(this.inflightBytes);
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = performance.now();
    let route = 'unknown';
    this.inflight++;
    this.deps.metrics.inflight.set(this.inflight);
    try {
      const url = req.url ?? '/';
      if (Buffer.byteLength(url) > this.deps.limits.maxUrlBytes) {
        throw new KvError('KV_URI_TOO_LONG', `URL longer than ${this.deps.limits.maxUrlBytes} bytes`);
      }
      const qi = url.indexOf('?');
      const path = qi < 0 ? url : url.slice(0, qi);
      const query = qi < 0 ? '' : url.slice(qi + 1);
      // Only what the route table (routes.ts) lists is served; its labels are the metrics' route label.
      const matched = matchRoute(path);
      route = matched?.spec.label ?? 'other';
      if (!matched) throw new KvError('KV_NOT_FOUND', `no route for ${path.slice(0, 100)}`);
      if (!matched.spec.methods.includes(req.method ?? '')) {
        throw new KvError('KV_METHOD_NOT_ALLOWED', `method ${req.method} is not allowed on ${matched.spec.path} (${matched.spec.methods.join(', ')})`);
      }
      const method = req.method ?? '';
      const role = roleFor(matched.spec, method, this.deps.metricsOpen === true);
      if (role !== null) this.auth.check(req.headers.authorization, role);
      if (path.startsWith('/kv/') || path === '/kv') {
        if (this.inflight > this.deps.limits.maxInflightRequests) {
          throw new KvError('KV_TOO_MANY_REQUESTS', 'too many requests in flight; retry later');
        }
        this.reserve(req, res, method === 'PUT' ? this.deps.limits.maxValueBytes : MAX_ADMIN_BODY_BYTES);
        if (path === '/kv') await this.handleList(req, res, parseQuery(query));
        else await this.handleKv(req, res, path.slice(4), parseQuery(query));
      } else {
        this.reserve(req, res, MAX_ADMIN_BODY_BYTES);
        await this.handleOther(req, res, path);
      }
    } catch (err) {
      this.sendError(req, res, err);
    } finally {
      this.inflight--;
      this.deps.metrics.inflight.set(this.inflight);
      this.deps.metrics.observeHttp(route, req.method ?? '', res.statusCode, (performance.now() - started) / 1000);
    }
  }

  private sendError(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
    let kv: KvError;
    if (isKvError(err)) kv = err;
    else {
      this.deps.log.error({ err, method: req.method, url: req.url?.slice(0, 200) }, 'request failed');
      kv = new KvError('KV_INTERNAL', 'internal error');
    }
    this.deps.metrics.httpErrors.labels({ code: kv.code }).inc();
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    if (kv.code === 'KV_OVERLOADED' || kv.code === 'KV_BUSY') headers['retry-after'] = RETRY_AFTER_S;
    if (kv.code === 'KV_UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="kv"';
    if (kv.code === 'KV_REQUEST_TIMEOUT') {
      // The client stalled mid-body: what it sends next cannot be parsed as a request, so the connection ends.
      this.deps.metrics.connectionsRefused.labels({ reason: 'body-timeout' }).inc();
      headers['connection'] = 'close';
      res.once('finish', () => req.socket.destroy());
    } else if (!req.complete && req.listenerCount('data') === 0) {
      // An unread body (refused before reading, e.g. a bad key) would otherwise be parsed as the
      // next request: drain it (bounded) so the client reads our answer and the connection lives on.
      drain(req, 0);
    }
    sendJson(res, kv.status, errorBody(kv), headers);
  }

  private async handleKv(req: http.IncomingMessage, res: http.ServerResponse, rawKey: string, q: Map<string, string>): Promise<void> {
    const { kv, limits } = this.deps;
    const method = req.method;
    if (method !== 'GET' && method !== 'PUT' && method !== 'DELETE' && method !== 'HEAD') {
      throw new KvError('KV_METHOD_NOT_ALLOWED', `method ${method} is not allowed on /kv/:key (GET, PUT, DELETE)`);
    }
    const key = decodeKey(rawKey, limits.maxKeyBytes);
    const n = kv.replicationFactor();
    // No abort signal per request: an AbortController and its listener cost ~2.5 % of a node's
    // CPU under load, and a request whose client went away ends at its deadline anyway.
    const session = this.sessionOf(req);
    if (method === 'GET' || method === 'HEAD') {
      checkParams(q, READ_PARAMS);
      const rRaw = q.get('r');
      const serial = parseBool('serial', q.get('serial')) === true;
      if (serial && rRaw !== undefined) throw new KvError('KV_INVALID_ARGUMENT', 'r does not apply to serial reads (they read a majority through Paxos)');
      const got: ReadAnswer = serial ? await this.casService().serialGet(key, session ? { session } : {})
        : await kv.get(key, { ...(rRaw === undefined ? {} : { r: parseQuorum('r', rRaw, n) }), ...(session ? { session } : {}) });
      if (got.session !== undefined) for (const [h, v] of Object.entries(this.sessionHeaders(got.session))) res.setHeader(h, v);
      if (got.value === undefined) throw new KvError('KV_NOT_FOUND', 'key not found');
      const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'content-length': got.value.length, 'x-kv-version': got.version ?? '' };
      // X-Kv-Expires: the record's expiry as wall-clock milliseconds since the Unix epoch.
      if (got.expiresAt !== undefined) headers['x-kv-expires'] = String(got.expiresAt);
      res.writeHead(200, headers);
      res.end(method === 'HEAD' ? undefined : got.value);
      return;
    }
    checkParams(q, WRITE_PARAMS);
    const condition = parseCondition(method, req.headers['if-match'], req.headers['if-none-match']);
    const ttlMs = parseTtl(q.get('ttl'));
    if (ttlMs !== undefined && method !== 'PUT') throw new KvError('KV_INVALID_ARGUMENT', 'ttl is for PUT');
    if (condition !== undefined) {
      if (q.has('w') || parseBool('sloppy', q.get('sloppy')) === true) throw new KvError('KV_INVALID_ARGUMENT', 'w and sloppy do not apply to conditional writes (Paxos needs a majority of the replicas)');
      const cas = this.casService();
      const body = method === 'PUT' ? await readBody(req, limits.maxValueBytes, limits.bodyIdleTimeoutMs) : (await readBody(req, MAX_ADMIN_BODY_BYTES, limits.bodyIdleTimeoutMs), null);
      const done = await cas.casWrite(key, body, { condition, ...(session ? { session } : {}), ...(ttlMs === undefined ? {} : { ttlMs }) });
      const headers: Record<string, string> = this.sessionHeaders(done.session);
      if (done.applied) {
        sendJson(res, 200, { version: done.version }, { ...headers, 'x-kv-version': done.version });
        return;
      }
      const err = new KvError('KV_PRECONDITION_FAILED', done.current === undefined ? 'the condition is false: the key has no live value'
        : `the condition is false: the current version is ${done.current}`, done.current === undefined ? {} : { details: { version: done.current } });
      if (done.current !== undefined) headers['x-kv-version'] = done.current;
      this.deps.metrics.httpErrors.labels({ code: err.code }).inc();
      sendJson(res, err.status, errorBody(err), headers);
      return;
    }
    const wRaw = q.get('w');
    const opts: WriteOptions = {};
    if (wRaw !== undefined) opts.w = parseQuorum('w', wRaw, n);
    const sloppy = parseBool('sloppy', q.get('sloppy'));
    if (sloppy !== undefined) opts.sloppy = sloppy;
    if (session) opts.session = session;
    if (ttlMs !== undefined) opts.ttlMs = ttlMs;
    // A DELETE body is meaningless; drain it (bounded) so the connection stays usable.
    const value = method === 'PUT' ? await readBody(req, limits.maxValueBytes, limits.bodyIdleTimeoutMs) : (await readBody(req, MAX_ADMIN_BODY_BYTES, limits.bodyIdleTimeoutMs), null);
    const done = value === null ? await kv.del(key, opts) : await kv.put(key, value, opts);
    const headers: Record<string, string> = { 'x-kv-version': done.version, ...this.sessionHeaders(done.session) };
    sendJson(res, 200, { version: done.version }, headers);
  }

  /** The request's session (X-Kv-Session), unless it names another cluster (X-Kv-Session-Cluster): then it is not ours to honour. */
  private sessionOf(req: http.IncomingMessage): SessionToken | undefined {
    const raw = req.headers['x-kv-session'];
    if (typeof raw !== 'string' || raw === '') return undefined;
    const cluster = req.headers['x-kv-session-cluster'];
    if (typeof cluster === 'string' && this.deps.clusterId !== undefined && cluster !== this.deps.clusterId) return undefined;
    return parseSession(raw);
  }

  /** X-Kv-Session and, with it, X-Kv-Cluster (whose session it is). */
  private sessionHeaders(token: string | undefined): Record<string, string> {
    if (token === undefined) return {};
    return this.deps.clusterId === undefined ? { 'x-kv-session': token } : { 'x-kv-session': token, 'x-kv-cluster': this.deps.clusterId };
  }

  private casService(): CasService {
    if (!this.deps.cas) throw new KvError('KV_UNAVAILABLE', 'node is starting');
    return this.deps.cas;
  }

  /** GET /kv?prefix=&limit=&cursor=: one page of keys with their versions (JSON). */
  private async handleList(req: http.IncomingMessage, res: http.ServerResponse, q: Map<string, string>): Promise<void> {
    if (req.method !== 'GET') throw new KvError('KV_METHOD_NOT_ALLOWED', `method ${req.method} is not allowed on /kv (GET)`);
    checkParams(q, LIST_PARAMS);
    if (!this.deps.list) throw new KvError('KV_UNAVAILABLE', 'node is starting');
    const opts = parseListQuery(q, this.deps.kv.replicationFactor(), this.deps.limits.maxKeyBytes);
    sendJson(res, 200, await this.deps.list.list(opts));
  }


  private async handleOther(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    const { cluster, metrics } = this.deps;
    const method = req.method ?? '';
    const only = (m: string): void => {
      if (method !== m) throw new KvError('KV_METHOD_NOT_ALLOWED', `method ${method} is not allowed on ${path} (${m})`);
    };
    if (path.startsWith('/cluster/records/')) {
      only('GET');
      sendJson(res, 200, await cluster.localRecord(decodeKey(path.slice('/cluster/records/'.length), this.deps.limits.maxKeyBytes)));
      return;
    }
    switch (path) {
      case '/health':
        only('GET');
        if (!cluster.ready()) throw new KvError('KV_UNAVAILABLE', 'node is starting');
        sendJson(res, 200, { status: 'ok' });
        return;
      case '/metrics': {
        only('GET');
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
        return;
      }
      case '/cluster':
        only('GET');
        sendJson(res, 200, await cluster.cluster());
        return;
      case '/cluster/ring':
        only('GET');
        sendJson(res, 200, await cluster.ring());
        return;
      case '/cluster/partitions':
        only('GET');
        sendJson(res, 200, await cluster.partitions());
        return;
      case '/cluster/decommission': {
        only('POST');
        const body = await readJson(req, this.deps.limits.bodyIdleTimeoutMs);
        const id = (body as { id?: unknown } | null)?.id;
        if (typeof id !== 'string' || id === '') throw new KvError('KV_INVALID_ARGUMENT', 'body must be {"id": "<node id>"}');
        sendJson(res, 200, await cluster.decommission(id));
        return;
      }
      case '/cluster/removenode': {
        only('POST');
        const id = (await readJson(req, this.deps.limits.bodyIdleTimeoutMs) as { id?: unknown } | null)?.id;
        if (typeof id !== 'string' || id === '') throw new KvError('KV_INVALID_ARGUMENT', 'body must be {"id": "<node id>"}');
        sendJson(res, 202, await cluster.removenode(id));
        return;
      }
      case '/cluster/repair':
        only('POST');
        await readJson(req, this.deps.limits.bodyIdleTimeoutMs);
        sendJson(res, 202, await cluster.repair());
        return;
      case '/cluster/operations':
        only('GET');
        sendJson(res, 200, await cluster.operations());
        return;
      case '/cluster/scrub': {
        only('POST');
        // A scrub reads every record of the node; two at once only double the load for the same answer.
        if (this.scrubbing) throw new KvError('KV_BUSY', 'a scrub is already running on this node; retry when it finished');
        this.scrubbing = true;
        try {
          sendJson(res, 200, await cluster.scrub());
        } finally {
          this.scrubbing = false;
        }
        return;
      }
      case '/cluster/join/challenge': {
        only('POST');
        sendJson(res, 200, await cluster.joinChallenge(await readJson(req, this.deps.limits.bodyIdleTimeoutMs)));
        return;
      }
      case '/cluster/join': {
        only('POST');
        sendJson(res, 200, await cluster.join(await readJson(req, this.deps.limits.bodyIdleTimeoutMs)));
        return;
      }
      case '/cluster/stats':
        if (!this.deps.stats) throw new KvError('KV_UNAVAILABLE', 'node is starting');
        sendJson(res, 200, await this.deps.stats());
        return;
      default:
        // The dashboard and the API description: fixed files, served without a token (they hold no data).
        if (path === '/ui' || path === '/openapi.json' || path.startsWith('/ui/')) return serveAsset(path, req, res);
        throw new KvError('KV_NOT_FOUND', `no route for ${path.slice(0, 100)}`);
    }
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.removeListener('error', reject);
        resolve();
      });
    });
  }

  /**
   * Stop accepting, close idle keep-alive sockets, let requests in flight finish for up to
   * `graceMs`, then cut every client socket still open (slow bodies, busy keep-alive). Resolves
   * without waiting for the server's own 'close': upgraded peer sockets are the transport's to end.
   */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true;
    this.server.close();
    this.server.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}

async function readJson(req: http.IncomingMessage, idleMs: number): Promise<unknown> {
  const buf = await readBody(req, MAX_ADMIN_BODY_BYTES, idleMs);
  if (buf.length === 0) return null;
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new KvError('KV_INVALID_ARGUMENT', 'body is not valid JSON');
  }
}
