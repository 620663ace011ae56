/**
 * A typed client for the HTTP API. It spreads requests over the nodes it knows
 * (round robin) and fails over to the next node only when a request could not have
 * reached the server (connection refused/reset before sending), so a retried write
 * is never one that may already have been applied.
 */
import http from 'node:http';
import https from 'node:https';
import { KvError, type ErrorCode, type Outcome } from '../errors.ts';
import { ClientSession } from './session.ts';

export interface ClientOptions {
  /** HOST:PORT of one or more nodes. */
  nodes: string[];
  /** Bearer token sent as `Authorization: Bearer <token>` (README "Security"). */
  token?: string;
  /** PEM of the cluster CA: speak HTTPS and trust only certificates it signed (the CLI's --ca). */
  ca?: string | Buffer;
  /** Per-request deadline. Default 10 s (above the server's 5 s quorum deadline, so the server answers first). */
  timeoutMs?: number;
  /** Sockets kept per node. Default 64. */
  maxSockets?: number;
  /** Keep a session token (X-Kv-Session) so this client reads its own writes through any node. Default true;
   *  a ClientSession continues that session (e.g. one kept across processes). */
  session?: boolean | ClientSession;
}

export interface WriteParams {
  w?: string | number; sloppy?: boolean; node?: string;
  /** Conditional write: only if the current value has this version (If-Match). Fails with KV_PRECONDITION_FAILED otherwise. */
  ifMatch?: string;
  /** Conditional PUT: only if the key has no live value (If-None-Match: *). */
  ifNoneMatch?: boolean;
  /** PUT only: seconds until the value expires (?ttl=). */
  ttl?: number;
}
export interface ReadParams {
  r?: string | number; node?: string;
  /** Linearizable read through Paxos (?serial=true): sees every acknowledged conditional write. */
  serial?: boolean;
}
export interface ListParams { limit?: number; cursor?: string; r?: string | number; node?: string }

export interface Versioned { version: string }
export interface ReadValue {
  value: Buffer; version: string;
  /** Wall-clock ms at which the value expires (X-Kv-Expires), for values written with a TTL. */
  expiresAt?: number;
}
export interface ListPage { keys: { key: string; version: string }[]; cursor: string | null }

/** A request the server answered with an error body. */
export class KvClientError extends KvError {
  constructor(code: ErrorCode, message: string, readonly httpStatus: number, outcome?: Outcome, readonly session?: string,
    /** KV_PRECONDITION_FAILED: the current value's version (undefined when the key has no live value). */
    readonly currentVersion?: string,
    /** The answering node's cluster (X-Kv-Cluster), sent with session tokens. */
    readonly cluster?: string) {
    super(code, message, outcome === undefined ? {} : { outcome });
  }
}

const RETRYABLE_CONNECT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

export class KvClient {
  private readonly nodes: string[];
  private readonly agent: http.Agent;
  private readonly timeoutMs: number;
  private readonly token: string | undefined;
  private readonly proto: typeof http | typeof https;
  private next = 0;
  /** This client's session (undefined when sessions are off). */
  readonly session: ClientSession | undefined;

  constructor(opts: ClientOptions) {
    if (opts.nodes.length === 0) throw new KvError('KV_INVALID_ARGUMENT', 'client needs at least one node');
    this.nodes = [...opts.nodes];
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.token = opts.token;
    const agentOpts = { keepAlive: true, maxSockets: opts.maxSockets ?? 64 };
    this.proto = opts.ca !== undefined ? https : http;
    this.agent = opts.ca !== undefined ? new https.Agent({ ...agentOpts, ca: opts.ca }) : new http.Agent(agentOpts);
    this.session = opts.session === false ? undefined : opts.session instanceof ClientSession ? opts.session : new ClientSession();
  }

  close(): void {
    this.agent.destroy();
  }

  /** With `ifMatch` / `ifNoneMatch` a conditional write (Paxos); a false condition throws KV_PRECONDITION_FAILED. */
  async put(key: string, value: Buffer | string, p: WriteParams = {}): Promise<Versioned> {
    const res = await this.keyRequest(key, 'PUT', kvPath(key, { w: p.w, sloppy: p.sloppy, ttl: p.ttl }), typeof value === 'string' ? Buffer.from(value) : value, p.node, conditionHeaders(p));
    return JSON.parse(res.body.toString()) as Versioned;
  }

  async del(key: string, p: WriteParams = {}): Promise<Versioned> {
    const res = await this.keyRequest(key, 'DELETE', kvPath(key, { w: p.w, sloppy: p.sloppy }), undefined, p.node, conditionHeaders(p));
    return JSON.parse(res.body.toString()) as Versioned;
  }

  /** undefined when the key does not exist. */
  async get(key: string, p: ReadParams = {}): Promise<ReadValue | undefined> {
    try {
      const res = await this.keyRequest(key, 'GET', kvPath(key, { r: p.r, serial: p.serial }), undefined, p.node);
      const expires = res.headers['x-kv-expires'];
      return { value: res.body, version: String(res.headers['x-kv-version']), ...(typeof expires === 'string' ? { expiresAt: Number(expires) } : {}) };
    } catch (err) {
      if (err instanceof KvClientError && err.code === 'KV_NOT_FOUND') return undefined;
      throw err;
    }
  }

  /** One page of keys with their versions (GET /kv); pass the returned cursor back for the next. */
  async list(prefix = '', p: ListParams = {}): Promise<ListPage> {
    const qs = Object.entries({ prefix, limit: p.limit, cursor: p.cursor, r: p.r }).filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&');
    const res = await this.request('GET', `/kv?${qs}`, undefined, p.node);
    return JSON.parse(res.body.toString()) as ListPage;
  }

  /** Every key under `prefix`, following cursors page by page. */
  async *listAll(prefix = '', p: Omit<ListParams, 'cursor'> = {}): AsyncGenerator<{ key: string; version: string }> {
    let cursor: string | undefined;
    do {
      const page = await this.list(prefix, { ...p, ...(cursor === undefined ? {} : { cursor }) });
      yield* page.keys;
      cursor = page.cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** A request about one key, carrying and updating this client's session. */
  private async keyRequest(key: string, method: string, path: string, body: Buffer | undefined, node: string | undefined, extra: Record<string, string> = {}):
    Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    const session = this.session?.headers(key);
    try {
      const res = await this.request(method, path, body, node, session === undefined ? extra : { ...extra, ...session });
      this.session?.update(key, res.headers['x-kv-session'] as string | undefined, res.headers['x-kv-cluster'] as string | undefined);
      return res;
    } catch (err) {
      if (err instanceof KvClientError) this.session?.update(key, err.session, err.cluster);
      throw err;
    }
  }

  async json<T = unknown>(method: string, path: string, body?: unknown, node?: string): Promise<T> {
    const res = await this.request(method, path, body === undefined ? undefined : Buffer.from(JSON.stringify(body)), node);
    return JSON.parse(res.body.toString()) as T;
  }

  /** One HTTP exchange; tries the next node when the connection could not be made. */
  async request(method: string, path: string, body: Buffer | undefined, node?: string, headers?: Record<string, string>):
    Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    const order = node ? [node] : this.rotation();
    let lastErr: unknown;
    for (const target of order) {
      try {
        return await this.once(target, method, path, body, headers);
      } catch (err) {
        lastErr = err;
        if (!RETRYABLE_CONNECT.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
    }
    throw new KvError('KV_UNAVAILABLE', `no node reachable (${order.join(', ')}): ${(lastErr as Error)?.message}`, { cause: lastErr, outcome: 'failed' });
  }

  private rotation(): string[] {
    const start = this.next++ % this.nodes.length;
    return [...this.nodes.slice(start), ...this.nodes.slice(0, start)];
  }

  private once(node: string, method: string, path: string, body: Buffer | undefined, extra: Record<string, string> | undefined):
    Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    const i = node.lastIndexOf(':');
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...(body ? { 'content-length': body.length, 'content-type': 'application/octet-stream' } : {}), ...extra };
      if (this.token !== undefined) headers['authorization'] = `Bearer ${this.token}`;
      const req = this.proto.request({
        host: node.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(node.slice(i + 1)), method, path, agent: this.agent,
        headers,
        timeout: this.timeoutMs,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve({ status, headers: res.headers, body: buf });
          let err: KvClientError;
          try {
            const e = (JSON.parse(buf.toString()) as { error: { code: ErrorCode; message: string; outcome?: Outcome; version?: string } }).error;
            err = new KvClientError(e.code, e.message, status, e.outcome, res.headers['x-kv-session'] as string | undefined, e.version,
              res.headers['x-kv-cluster'] as string | undefined);
          } catch {
            err = new KvClientError('KV_INTERNAL', `HTTP ${status}: ${buf.toString().slice(0, 200)}`, status);
          }
          reject(err);
        });
      });
      req.on('timeout', () => req.destroy(new KvError('KV_TIMEOUT', `no answer from ${node} within ${this.timeoutMs} ms`, { outcome: 'unknown' })));
      req.on('error', reject);
      req.end(body);
    });
  }
}

function conditionHeaders(p: WriteParams): Record<string, string> {
  if (p.ifMatch !== undefined) return { 'if-match': p.ifMatch };
  return p.ifNoneMatch === true ? { 'if-none-match': '*' } : {};
}

function kvPath(key: string, params: Record<string, string | number | boolean | undefined>): string {
  const qs = Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&');
  return `/kv/${encodeURIComponent(key)}${qs ? `?${qs}` : ''}`;
}
