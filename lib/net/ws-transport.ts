/**
 * Peer transport over WebSockets (`ws`), upgraded on the node's own HTTP port at /_peer.
 *
 * Connection lifecycle:
 *   dial or accept → challenge-response (auth.ts) within handshakeTimeoutMs → open
 *   → frames (frame.ts) until either side closes or pings go unanswered.
 *
 * One connection per peer pair. When both nodes dial each other, both keep the
 * connection dialled by the lower node id and close the other with 4000; both sides
 * apply the same rule to the same pair of connections, so they agree without talking.
 * A new connection dialled by the same node as the current one replaces it: that node
 * evidently gave up on the old one (typically it restarted).
 *
 * Dialling is declared with connect()/setPeers(); a declared peer without a connection is
 * redialled with capped exponential backoff and jitter. Any authenticated node may dial
 * in (a joining node is not yet declared anywhere); what it may send is the admission
 * hook's call (BaseTransport `admit`).
 *
 * With `tls`, peers dial wss:// and check the acceptor's certificate against the cluster
 * CA, and the acceptor takes a peer upgrade only from a socket whose client certificate
 * verified against the same CA (mutual TLS); the HMAC handshake runs inside as before.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { Packr } from 'msgpackr';
import WebSocket, { WebSocketServer } from 'ws';
import { KvError, assert } from '../errors.ts';
import { NODE_ID_RE } from '../core/hlc.ts';
import { BaseTransport } from './base-transport.ts';
import type { BaseTransportOptions, Link } from './base-transport.ts';
import { HANDSHAKE_MAX_BYTES, SECRET_MIN_BYTES, computeMac, fromWire, macEquals, newNonce, toWire } from './auth.ts';
import type { AuthConfig, HandshakeMessage } from './auth.ts';
import { CloseCode } from './frame.ts';

export const PEER_PATH = '/_peer';
/** RFC 6455 caps a close reason at 123 bytes. */
const CLOSE_REASON_MAX_BYTES = 123;

export interface WsTransportOptions extends BaseTransportOptions {
  readonly clusterId: string;
  /** Shared cluster secret, at least 16 bytes. */
  readonly secret: string | Buffer;
  /** Upgrade path; default /_peer. */
  readonly path?: string;
  /** Jitter source in [0, 1); default Math.random (this is a runtime shell, not a core). */
  readonly random?: () => number;
  /** Mutual TLS: dial wss:// with this certificate, verify both sides against `ca`. */
  readonly tls?: { cert: string | Buffer; key: string | Buffer; ca: string | Buffer };
}

type ConnState = 'challenge' | 'auth' | 'welcome' | 'open' | 'closed';

/** One WebSocket, from TCP connect through handshake to close. */
class WsConn implements Link {
  peerId: string;
  /** Which node dialled this connection; drives the duplicate tie-break. */
  dialerId = '';
  state: ConnState;
  /** Set by any inbound traffic, cleared by each ping round. */
  alive = true;
  closing = false;
  /** Became the peer's current link at some point (a duplicate that lost never does). */
  adopted = false;
  /** Remote address of an accepted socket (handshake caps per address). */
  remote = '';
  nonceA: Buffer | null = null;
  nonceD: Buffer | null = null;
  handshakeTimer: NodeJS.Timeout | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  readonly closedPromise: Promise<void>;
  private markClosed!: () => void;
  private corked = false;

  constructor(readonly ws: WebSocket, readonly dialed: boolean, expectedPeer: string, private readonly graceMs: number) {
    this.peerId = expectedPeer;
    this.state = dialed ? 'challenge' : 'auth';
    this.closedPromise = new Promise((resolve) => { this.markClosed = resolve; });
  }

  /**
   * Frames sent in one turn of the event loop leave in one socket write: the first send
   * corks the socket and a next-tick callback uncorks it (ws's own cork per frame nests
   * inside). Under load a node answers many requests per turn, and one `writev` per frame
   * was the largest single cost in the GET profile (bench/profile.md).
   */
  sendFrame(frame: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const socket = (this.ws as unknown as { _socket?: Duplex })._socket;
    if (socket && !this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => { this.corked = false; socket.uncork(); });
    }
    this.ws.send(frame, { binary: true });
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    if (this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate();
      return;
    }
    this.ws.close(code, truncateReason(reason));
    // ws waits up to 30 s for the peer's close frame; a misbehaving peer gets much less.
    this.graceTimer = setTimeout(() => this.ws.terminate(), this.graceMs);
    this.graceTimer.unref();
  }

  onClosed(): void {
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.graceTimer);
    this.markClosed();
  }
}

interface DialState {
  addr: string;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  conn: WsConn | null;
}

export class WsTransport extends BaseTransport {
  private readonly auth: AuthConfig;
  private readonly path: string;
  private readonly random: () => number;
  private readonly wss: WebSocketServer;
  private readonly hsCodec = new Packr({ useRecords: false, moreTypes: false });
  private readonly conns = new Set<WsConn>();
  private readonly dials = new Map<string, DialState>();
  private readonly detachers = new Set<() => void>();
  /** Accepted sockets still in the handshake, oldest first (the eviction order). */
  private readonly pendingAccepts = new Set<WsConn>();
  private readonly tls: WsTransportOptions['tls'];
  private readonly pingTimer: NodeJS.Timeout;
  private closePromise: Promise<void> | null = null;

  constructor(opts: WsTransportOptions) {
    super(opts);
    if (!NODE_ID_RE.test(opts.selfId)) throw new KvError('KV_CONFIG', `invalid node id ${opts.selfId}`);
    if (typeof opts.clusterId !== 'string' || opts.clusterId.length === 0) {
      throw new KvError('KV_CONFIG', 'cluster id must be a non-empty string');
    }
    const secret = typeof opts.secret === 'string' ? Buffer.from(opts.secret) : Buffer.from(opts.secret);
    if (secret.length < SECRET_MIN_BYTES) {
      throw new KvError('KV_CONFIG', `cluster secret must be at least ${SECRET_MIN_BYTES} bytes`);
    }
    this.auth = { clusterId: opts.clusterId, secret };
    this.path = opts.path ?? PEER_PATH;
    this.random = opts.random ?? Math.random;
    this.tls = opts.tls;
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: this.limits.maxFrameBytes,
    });
    this.pingTimer = setInterval(() => this.pingRound(), this.limits.pingIntervalMs);
    this.pingTimer.unref();
  }

  // ---- accepting --------------------------------------------------------------------

  /** Handles upgrades to the peer path on `server`; other paths are left alone. Returns a detach function. */
  attach(server: Server): () => void {
    const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      this.handleUpgrade(req, socket, head);
    };
    server.on('upgrade', listener);
    const detach = (): void => {
      server.off('upgrade', listener);
      this.detachers.delete(detach);
    };
    this.detachers.add(detach);
    return detach;
  }

  /** Takes an HTTP upgrade if it is for the peer path; returns false (untouched) otherwise. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = req.url ?? '';
    if (url !== this.path && !url.startsWith(`${this.path}?`)) return false;
    socket.on('error', () => {});
    const remote = req.socket.remoteAddress ?? '?';
    if (this.closed) {
      socket.destroy();
      return true;
    }
    if (this.tls !== undefined && (req.socket as TLSSocket).authorized !== true) {
      this.counters.authFailures++;
      this.log.warn({ remote, why: (req.socket as TLSSocket).authorizationError ?? 'no client certificate' }, 'peer upgrade without a certificate of the cluster CA refused');
      socket.destroy();
      return true;
    }
    // Counted from accept(): ws answers a malformed upgrade itself and never calls back,
    // and a slot taken here would then leak.
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, remote));
    return true;
  }

  /** Closes the oldest pending handshakes from `remote`, then overall, until a new one fits. */
  private makeRoom(remote: string): void {
    const evict = (conn: WsConn): void => {
      this.pendingAccepts.delete(conn);
      this.counters.handshakesEvicted++;
      conn.closing = true;
      conn.ws.terminate();
    };
    let fromRemote = 0;
    for (const c of this.pendingAccepts) if (c.remote === remote) fromRemote++;
    for (const c of [...this.pendingAccepts]) {
      if (fromRemote < this.limits.maxPendingHandshakesPerAddress) break;
      if (c.remote === remote) { evict(c); fromRemote--; }
    }
    for (const c of [...this.pendingAccepts]) {
      if (this.pendingAccepts.size < this.limits.maxPendingHandshakes) break;
      evict(c);
    }
  }

  private accept(ws: WebSocket, remote: string): void {
    const conn = new WsConn(ws, false, '', this.limits.closeGraceMs);
    conn.remote = remote;
    this.makeRoom(remote);
    this.pendingAccepts.add(conn);
    this.track(conn, remote);
    if (this.closed) {
      conn.close(CloseCode.GOING_AWAY, 'shutting down');
      return;
    }
    conn.nonceA = newNonce();
    this.sendHandshake(conn, { t: 'challenge', nonce: conn.nonceA });
  }

  // ---- dialling ---------------------------------------------------------------------

  /** Declares a peer to keep a connection to (address "host:port") and dials it now. */
  connect(peerId: string, addr: string): void {
    assert(NODE_ID_RE.test(peerId), `invalid peer id ${peerId}`);
    assert(peerId !== this.selfId, 'cannot connect to self');
    assert(/^[^\s/]+:\d{1,5}$/.test(addr), `invalid peer address ${addr}`);
    if (this.closed) return;
    const d = this.dials.get(peerId);
    if (d === undefined) {
      this.dials.set(peerId, { addr, attempt: 0, timer: undefined, conn: null });
    } else if (d.addr !== addr) {
      d.addr = addr;
      d.attempt = 0;
    }
    this.scheduleDial(peerId, true);
  }

  /**
   * Replaces the set of declared peers. Peers no longer declared are not dialled again;
   * their existing connections stay (they may be dialling us), use disconnect() to drop.
   */
  setPeers(peers: ReadonlyMap<string, string> | Readonly<Record<string, string>>): void {
    const entries = peers instanceof Map ? [...peers.entries()] : Object.entries(peers);
    const wanted = new Set<string>();
    for (const [id, addr] of entries) {
      if (id === this.selfId) continue;
      wanted.add(id);
      this.connect(id, addr);
    }
    for (const id of [...this.dials.keys()]) if (!wanted.has(id)) this.undeclare(id);
  }

  /** Stops dialling `peerId` and closes any connection to it. */
  disconnect(peerId: string): void {
    const d = this.dials.get(peerId);
    this.undeclare(peerId);
    d?.conn?.close(CloseCode.NORMAL, 'disconnected');
    for (const conn of this.conns) {
      if (conn.peerId === peerId) conn.close(CloseCode.NORMAL, 'disconnected');
    }
  }

  private undeclare(peerId: string): void {
    const d = this.dials.get(peerId);
    if (d === undefined) return;
    clearTimeout(d.timer);
    this.dials.delete(peerId);
  }

  private scheduleDial(peerId: string, now: boolean): void {
    const d = this.dials.get(peerId);
    if (this.closed || d === undefined || d.timer !== undefined || d.conn !== null) return;
    if (this.currentLink(peerId) !== null) return;
    const capped = Math.min(this.limits.reconnectMaxMs, this.limits.reconnectBaseMs * 2 ** Math.min(d.attempt, 30));
    // Full jitter over the upper half: spreads a cluster's redials after a shared fault.
    const delay = now ? 0 : Math.round(capped / 2 + (this.random() * capped) / 2);
    if (!now) d.attempt++;
    d.timer = setTimeout(() => {
      d.timer = undefined;
      this.dial(peerId, d);
    }, delay);
    d.timer.unref();
  }

  private dial(peerId: string, d: DialState): void {
    if (this.closed || this.dials.get(peerId) !== d || this.currentLink(peerId) !== null) return;
    this.counters.dialAttempts++;
    const tls = this.tls;
    const ws = new WebSocket(`${tls ? 'wss' : 'ws'}://${d.addr}${this.path}`, {
      ...(tls ? { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: true } : {}),
      perMessageDeflate: false,
      maxPayload: this.limits.maxFrameBytes,
      handshakeTimeout: this.limits.handshakeTimeoutMs,
      followRedirects: false,
      // RFC 6455 client masking protects browser-era proxies from attacker-chosen bytes;
      // a link between authenticated cluster nodes has neither, and an all-zero mask lets
      // ws skip an XOR pass over every payload on both ends (~10% of CPU in bench/transport.ts).
      generateMask: (mask: Buffer) => { mask.fill(0); },
    });
    const conn = new WsConn(ws, true, peerId, this.limits.closeGraceMs);
    d.conn = conn;
    this.track(conn, d.addr);
  }

  // ---- per-socket plumbing ----------------------------------------------------------

  private track(conn: WsConn, remote: string): void {
    const ws = conn.ws;
    this.conns.add(conn);
    conn.handshakeTimer = setTimeout(() => this.authFailed(conn, remote, 'handshake timed out'), this.limits.handshakeTimeoutMs);
    ws.on('message', (data: WebSocket.RawData) => {
      if (conn.closing) return;
      conn.alive = true;
      const buf = toBuffer(data);
      if (conn.state === 'open') this.receiveFrame(conn, buf);
      else this.onHandshake(conn, remote, buf);
    });
    ws.on('pong', () => { conn.alive = true; });
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.counters.invalidFrames++;
      this.log.debug({ peer: conn.peerId || remote, err: err.message, code: err.code }, 'peer socket error');
    });
    ws.on('close', (code: number, reason: Buffer) => this.onSocketClose(conn, remote, code, reason.toString()));
  }

  private onSocketClose(conn: WsConn, remote: string, code: number, reason: string): void {
    const wasOpen = conn.state === 'open';
    const inHandshake = !wasOpen && conn.state !== 'closed';
    const wasAdopted = conn.adopted;
    conn.onClosed();
    this.conns.delete(conn);
    if (inHandshake && !conn.dialed) this.pendingAccepts.delete(conn);
    if (wasAdopted) {
      this.log.info({ peer: conn.peerId, code, reason }, 'peer connection closed');
      this.linkDown(conn, `closed ${code}${reason ? ` ${reason}` : ''}`);
    } else if (conn.dialed && code === CloseCode.AUTH_FAILED) {
      this.log.warn({ peer: conn.peerId, addr: remote }, 'peer refused our authentication (secret, cluster id or node id mismatch)');
    } else if (conn.dialed) {
      this.log.debug({ peer: conn.peerId, addr: remote, code, reason }, 'dial failed');
    }
    if (conn.dialed) {
      const d = this.dials.get(conn.peerId);
      if (d !== undefined && d.conn === conn) d.conn = null;
    }
    if (conn.peerId !== '') this.scheduleDial(conn.peerId, false);
  }

  private sendHandshake(conn: WsConn, m: HandshakeMessage): void {
    conn.ws.send(this.hsCodec.pack(toWire(m)), { binary: true });
  }

  private authFailed(conn: WsConn, remote: string, why: string): void {
    if (conn.closing || conn.state === 'open' || conn.state === 'closed') return;
    this.counters.authFailures++;
    this.log.warn({ remote, peer: conn.peerId || undefined, why }, 'peer authentication failed');
    // The reason is deliberately generic: an unauthenticated socket learns nothing.
    conn.close(CloseCode.AUTH_FAILED, 'authentication failed');
  }

  private onHandshake(conn: WsConn, remote: string, data: Buffer): void {
    let m: HandshakeMessage | null = null;
    if (data.length <= HANDSHAKE_MAX_BYTES) {
      try {
        m = fromWire(this.hsCodec.unpack(data));
      } catch {
        m = null;
      }
    }
    if (m === null) return this.authFailed(conn, remote, 'malformed handshake message');

    if (conn.state === 'challenge' && m.t === 'challenge') {
      // Dialer: prove knowledge of the secret for this exact acceptor and nonce pair.
      conn.nonceA = m.nonce;
      conn.nonceD = newNonce();
      const mac = computeMac(this.auth, 'dialer', this.selfId, conn.peerId, conn.nonceA, conn.nonceD);
      conn.state = 'welcome';
      this.sendHandshake(conn, { t: 'auth', dialerId: this.selfId, acceptorId: conn.peerId, nonce: conn.nonceD, mac });
      return;
    }
    if (conn.state === 'auth' && m.t === 'auth') {
      // Acceptor: check the dialer before revealing anything.
      assert(conn.nonceA !== null, 'acceptor nonce set before the challenge was sent');
      if (m.acceptorId !== this.selfId) return this.authFailed(conn, remote, `dialer expected node ${m.acceptorId}`);
      if (m.dialerId === this.selfId) return this.authFailed(conn, remote, 'dialer claims our own id');
      const expected = computeMac(this.auth, 'dialer', m.dialerId, this.selfId, conn.nonceA, m.nonce);
      if (!macEquals(m.mac, expected)) return this.authFailed(conn, remote, `bad MAC from ${m.dialerId}`);
      conn.peerId = m.dialerId;
      conn.dialerId = m.dialerId;
      conn.nonceD = m.nonce;
      const existing = this.currentLink(m.dialerId);
      if (existing instanceof WsConn && this.keepExisting(existing, conn)) {
        // Refuse before the welcome, so the dialer never adopts a connection we drop.
        clearTimeout(conn.handshakeTimer);
        conn.close(CloseCode.DUPLICATE, 'duplicate connection');
        return;
      }
      const mac = computeMac(this.auth, 'acceptor', m.dialerId, this.selfId, conn.nonceA, m.nonce);
      this.sendHandshake(conn, { t: 'welcome', acceptorId: this.selfId, mac });
      this.established(conn);
      return;
    }
    if (conn.state === 'welcome' && m.t === 'welcome') {
      assert(conn.nonceA !== null && conn.nonceD !== null, 'dialer nonces set before the welcome');
      const expected = computeMac(this.auth, 'acceptor', this.selfId, conn.peerId, conn.nonceA, conn.nonceD);
      if (m.acceptorId !== conn.peerId || !macEquals(m.mac, expected)) {
        return this.authFailed(conn, remote, `bad welcome from ${conn.peerId}`);
      }
      conn.dialerId = this.selfId;
      this.established(conn);
      return;
    }
    this.authFailed(conn, remote, `unexpected handshake message ${m.t} in state ${conn.state}`);
  }

  /** Tie-break between the current connection to a peer and a newly authenticated one. */
  private keepExisting(existing: WsConn, candidate: WsConn): boolean {
    if (existing.dialerId === candidate.dialerId) return false;
    const lower = this.selfId < candidate.peerId ? this.selfId : candidate.peerId;
    return existing.dialerId === lower;
  }

  private established(conn: WsConn): void {
    clearTimeout(conn.handshakeTimer);
    if (!conn.dialed) this.pendingAccepts.delete(conn);
    conn.state = 'open';
    conn.nonceA = null;
    conn.nonceD = null;
    const d = this.dials.get(conn.peerId);
    if (d !== undefined) d.attempt = 0;
    const existing = this.currentLink(conn.peerId);
    if (existing instanceof WsConn && existing !== conn) {
      if (this.keepExisting(existing, conn)) {
        conn.close(CloseCode.DUPLICATE, 'duplicate connection');
        return;
      }
      conn.adopted = true;
      this.adoptLink(conn);
      existing.close(CloseCode.DUPLICATE, 'replaced by preferred connection');
    } else {
      conn.adopted = true;
      this.adoptLink(conn);
    }
    this.log.info({ peer: conn.peerId, dialed: conn.dialed }, 'peer connection authenticated');
  }

  private pingRound(): void {
    for (const conn of this.conns) {
      if (conn.state !== 'open' || conn.closing) continue;
      if (!conn.alive) {
        this.log.warn({ peer: conn.peerId }, 'peer connection unresponsive, terminating');
        conn.closing = true;
        conn.ws.terminate();
        continue;
      }
      conn.alive = false;
      conn.ws.ping();
    }
  }

  // ---- shutdown ---------------------------------------------------------------------

  /** Closes every connection (1001) and rejects pending requests with KV_CLOSED. */
  close(): Promise<void> {
    if (this.closePromise !== null) return this.closePromise;
    this.closeBase();
    clearInterval(this.pingTimer);
    for (const detach of [...this.detachers]) detach();
    for (const id of [...this.dials.keys()]) this.undeclare(id);
    const waits: Promise<void>[] = [];
    for (const conn of this.conns) {
      conn.close(CloseCode.GOING_AWAY, 'shutting down');
      waits.push(conn.closedPromise);
    }
    this.closePromise = Promise.all(waits).then(() => {
      this.wss.close();
    });
    return this.closePromise;
  }
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function truncateReason(reason: string): string {
  const b = Buffer.from(reason);
  if (b.length <= CLOSE_REASON_MAX_BYTES) return reason;
  return b.subarray(0, CLOSE_REASON_MAX_BYTES).toString().replace(/\uFFFD$/, '');
}
