/**
 * Everything both transports share, above "an authenticated link to peer X that carries
 * byte frames": handler registry, per-peer send queues and batching, request/response
 * bookkeeping with timeouts and limits, inbound validation and dispatch, stats, events.
 * Subclasses own connection lifecycle and call adoptLink / linkDown / receiveFrame.
 *
 * Invariants: a peer has at most one current link; a pending request is in exactly one
 * peer's `pending` map until settled; a queued envelope is sent only on the current link.
 */
import { KvError, ERROR_STATUS, assert, isKvError } from '../errors.ts';
import type { ErrorCode, Outcome } from '../errors.ts';
import { encodeTs } from '../core/hlc.ts';
import { FrameCodec, FrameError, MESSAGE_TYPE_RE, decodeBatch, joinBatch } from './frame.ts';
import type { Envelope, EnvelopeKind, ErrorPayload } from './frame.ts';
import { BATCH_HEADER_BYTES_MAX, resolveLimits } from './limits.ts';
import type { TransportLimits } from './limits.ts';
import { emptyStats, silentLogger } from './transport.ts';
import { Settle } from './settle.ts';
import type {
  Handler, RequestOptions, Transport, TransportEvent, TransportHooks, TransportLogger, TransportStats,
} from './transport.ts';

/** One authenticated connection to a peer, as seen by the shared layer. */
export interface Link {
  readonly peerId: string;
  /** Hands one batched frame to the wire. Must not throw. */
  sendFrame(frame: Buffer): void;
  /** Bytes handed to sendFrame but not yet written out (ws bufferedAmount). */
  bufferedBytes(): number;
  /** Starts closing; the subclass calls linkDown once it is gone. */
  close(code: number, reason: string): void;
}

interface Pending {
  readonly id: number;
  readonly type: string;
  readonly peer: PeerState;
  /** Settles once: the answer, the timeout or the caller's abort (lib/net/settle.ts). */
  readonly done: Settle<unknown>;
  /** The link the request went out on; null while still queued. */
  link: Link | null;
}

interface QueueItem {
  readonly buf: Buffer;
  readonly pending: Pending | null;
}

interface PeerState {
  readonly id: string;
  link: Link | null;
  queue: QueueItem[];
  queuedBytes: number;
  readonly pending: Map<number, Pending>;
  /** Inbound requests whose handler has not finished. */
  inbound: number;
  dirty: boolean;
}

export interface BaseTransportOptions extends TransportHooks {
  readonly selfId: string;
  readonly limits?: Partial<TransportLimits>;
  readonly logger?: TransportLogger;
}

/**
 * Used only when no HLC is wired in (tests, benches): wall-clock time, cached per
 * millisecond because formatting showed up in profiles of pipelined requests.
 */
let lastHlcMs = -1;
let lastHlc = '';
const defaultHlcNow = (): string => {
  const now = Date.now();
  if (now !== lastHlcMs) {
    lastHlcMs = now;
    lastHlc = encodeTs({ wall: now, logical: 0 });
  }
  return lastHlc;
};

/** A refused peer is logged at most once per interval (with the count since): a flood cannot flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;
/** Peers tracked for that throttle; the map is reset beyond it (authenticated peers are few). */
const REFUSAL_LOG_PEERS_MAX = 1024;

export abstract class BaseTransport implements Transport {
  readonly selfId: string;
  protected readonly limits: TransportLimits;
  protected readonly log: TransportLogger;
  protected readonly counters: TransportStats = emptyStats();
  protected closed = false;

  private readonly codec = new FrameCodec();
  private readonly handlers = new Map<string, Handler>();
  private readonly peers = new Map<string, PeerState>();
  private readonly listeners: Record<TransportEvent, Set<(peer: string) => void>> = {
    'peer-up': new Set(), 'peer-down': new Set(),
  };
  private readonly dirtyPeers: PeerState[] = [];
  private flushScheduled = false;
  private nextRequestId = 1;
  private readonly getEpoch: () => number;
  private readonly hlcNow: () => string;
  private readonly onEnvelope: ((env: Envelope) => void) | undefined;
  private readonly admit: ((env: Envelope) => string | null) | undefined;
  /** Per peer: when a refusal was last logged and how many since (one line per peer per interval). */
  private readonly refusalLog = new Map<string, { atMs: number; suppressed: number }>();
  /** Types already checked against MESSAGE_TYPE_RE, so the hot path skips the regex. */
  private readonly validTypes = new Set<string>();
  private readonly knowsType = (type: string): boolean => this.handlers.has(type);
  private readonly flushAll = (): void => this.flushDirty();

  protected constructor(opts: BaseTransportOptions) {
    this.selfId = opts.selfId;
    this.limits = resolveLimits(opts.limits);
    this.log = opts.logger ?? silentLogger;
    this.getEpoch = opts.getEpoch ?? (() => 0);
    this.hlcNow = opts.hlcNow ?? defaultHlcNow;
    this.onEnvelope = opts.onEnvelope;
    this.admit = opts.admit;
  }

  // ---- public API -------------------------------------------------------------------

  handle(type: string, handler: Handler): void {
    this.checkType(type);
    assert(!this.handlers.has(type), `handler for ${type} registered twice`);
    this.handlers.set(type, handler);
  }

  send(to: string, type: string, payload: unknown): boolean {
    this.checkType(type);
    const peer = this.peers.get(to);
    if (this.closed || peer === undefined || peer.link === null) return this.dropSend();
    let buf: Buffer;
    try {
      buf = this.codec.encode('msg', type, 0, this.selfId, this.getEpoch(), this.hlcNow(), payload);
    } catch (err) {
      this.log.warn({ err, type, to }, 'message payload not encodable');
      return this.dropSend();
    }
    if (this.refusal(peer, buf.length) !== null) return this.dropSend();
    this.enqueue(peer, buf, null);
    return true;
  }

  request<T = unknown>(to: string, type: string, payload: unknown, opts: RequestOptions = {}): Promise<T> {
    this.checkType(type);
    const timeoutMs = opts.timeoutMs ?? this.limits.defaultRequestTimeoutMs;
    assert(Number.isFinite(timeoutMs) && timeoutMs > 0, 'request timeoutMs must be a positive number');
    if (this.closed) return Promise.reject(new KvError('KV_CLOSED', 'transport is closed', { outcome: 'failed' }));
    const peer = this.peers.get(to);
    if (peer === undefined || peer.link === null) {
      return Promise.reject(new KvError('KV_UNAVAILABLE', `peer ${to} is not connected`, {
        outcome: 'failed', details: { peer: to, maybeDelivered: false },
      }));
    }
    if (peer.pending.size >= this.limits.maxPendingRequestsPerPeer) {
      return Promise.reject(new KvError('KV_TOO_MANY_REQUESTS',
        `${peer.pending.size} requests pending to ${to} (limit ${this.limits.maxPendingRequestsPerPeer})`, {
          outcome: 'failed', details: { peer: to, maybeDelivered: false },
        }));
    }
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextRequestId++;
    let buf: Buffer;
    try {
      buf = this.codec.encode('req', type, id, this.selfId, this.getEpoch(), this.hlcNow(), payload);
    } catch (err) {
      return Promise.reject(new KvError('KV_INVALID_ARGUMENT', `request payload not encodable: ${(err as Error).message}`, {
        cause: err, outcome: 'failed',
      }));
    }
    const refusal = this.refusal(peer, buf.length);
    if (refusal !== null) return Promise.reject(refusal);

    let p: Pending | undefined;
    const done = new Settle<unknown>({
      timeoutMs, signal,
      onTimeout: () => {
        this.counters.requestTimeouts++;
        const sent = p?.link != null;
        this.settle(p as Pending, new KvError('KV_TIMEOUT', `request ${type} to ${to} timed out after ${timeoutMs} ms`, {
          outcome: sent ? 'unknown' : 'failed', details: { peer: to, type, maybeDelivered: sent },
        }), undefined);
      },
      onAbort: (_s, reason) => this.settle(p as Pending, reason, undefined),
    });
    p = { id, type, peer, done, link: null };
    peer.pending.set(id, p);
    this.counters.requestsSent++;
    this.enqueue(peer, buf, p);
    return done.promise as Promise<T>;
  }

  isConnected(peer: string): boolean {
    return this.peers.get(peer)?.link != null;
  }

  connectedPeers(): string[] {
    const out: string[] = [];
    for (const p of this.peers.values()) if (p.link !== null) out.push(p.id);
    return out;
  }

  on(event: TransportEvent, listener: (peer: string) => void): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  abstract close(): Promise<void>;

  // ---- for subclasses ---------------------------------------------------------------

  /** The current link to a peer, if any. */
  protected currentLink(peerId: string): Link | null {
    return this.peers.get(peerId)?.link ?? null;
  }

  /**
   * Makes `link` the peer's current link. A previous link's sent requests reject as
   * maybe-delivered (the subclass closes it); queued envelopes move to the new link.
   */
  protected adoptLink(link: Link): void {
    assert(link.peerId !== this.selfId, 'link to self');
    let peer = this.peers.get(link.peerId);
    if (peer === undefined) {
      peer = { id: link.peerId, link: null, queue: [], queuedBytes: 0, pending: new Map(), inbound: 0, dirty: false };
      this.peers.set(link.peerId, peer);
    }
    const old = peer.link;
    peer.link = link;
    this.counters.connectionsOpened++;
    if (old !== null) {
      this.rejectSentOn(peer, old);
    } else {
      this.emit('peer-up', peer.id);
    }
  }

  /** The subclass reports a link gone. A no-op for links that were already replaced. */
  protected linkDown(link: Link, reason: string): void {
    const peer = this.peers.get(link.peerId);
    if (peer === undefined) return;
    this.counters.connectionsClosed++;
    if (peer.link !== link) {
      this.rejectSentOn(peer, link);
      return;
    }
    peer.link = null;
    this.rejectSentOn(peer, link);
    // Whatever is still queued never left this node: those requests failed cleanly.
    for (const item of peer.queue) {
      if (item.pending !== null) {
        this.settle(item.pending, new KvError('KV_UNAVAILABLE', `connection to ${peer.id} lost before sending: ${reason}`, {
          outcome: 'failed', details: { peer: peer.id, maybeDelivered: false },
        }), undefined);
      }
    }
    peer.queue = [];
    peer.queuedBytes = 0;
    this.emit('peer-down', peer.id);
  }

  /** One inbound WebSocket message from an authenticated link. */
  protected receiveFrame(link: Link, data: Buffer): void {
    const peer = this.peers.get(link.peerId);
    // A replaced link's frames are ignored: the sender sees that link close and treats
    // its requests as maybe-delivered, which stays true.
    if (peer === undefined || peer.link !== link) return;
    this.counters.framesIn++;
    this.counters.bytesIn += data.length;
    let envs: Envelope[];
    try {
      envs = decodeBatch(this.codec, data, {
        peerId: peer.id, maxBatchEnvelopes: this.limits.maxBatchEnvelopes, knowsType: this.knowsType,
      });
    } catch (err) {
      assert(err instanceof FrameError, `unexpected decode failure: ${String(err)}`);
      this.counters.invalidFrames++;
      this.log.warn({ peer: peer.id, code: err.closeCode, reason: err.message }, 'closing peer connection: invalid frame');
      link.close(err.closeCode, err.message);
      return;
    }
    this.counters.envelopesIn += envs.length;
    for (const env of envs) this.dispatch(peer, link, env);
  }

  /** Rejects every pending request and drops every queue (transport shutdown). */
  protected closeBase(): void {
    this.closed = true;
    for (const peer of this.peers.values()) {
      for (const p of [...peer.pending.values()]) {
        this.settle(p, new KvError('KV_CLOSED', 'transport closed', {
          outcome: p.link === null ? 'failed' : 'unknown',
          details: { peer: peer.id, maybeDelivered: p.link !== null },
        }), undefined);
      }
      peer.queue = [];
      peer.queuedBytes = 0;
    }
  }

  // ---- sending ----------------------------------------------------------------------

  private checkType(type: string): void {
    if (this.validTypes.has(type)) return;
    assert(typeof type === 'string' && MESSAGE_TYPE_RE.test(type), `invalid message type ${String(type)}`);
    this.validTypes.add(type);
  }

  private dropSend(): false {
    this.counters.sendsDropped++;
    return false;
  }

  /** Why an envelope of `bytes` cannot be queued for `peer` now, or null if it can. */
  private refusal(peer: PeerState, bytes: number): KvError | null {
    if (bytes + BATCH_HEADER_BYTES_MAX > this.limits.maxFrameBytes) {
      return new KvError('KV_FRAME_TOO_LARGE', `envelope of ${bytes} bytes exceeds the ${this.limits.maxFrameBytes} byte frame limit`, {
        outcome: 'failed', details: { peer: peer.id, maybeDelivered: false },
      });
    }
    const link = peer.link;
    const buffered = peer.queuedBytes + (link === null ? 0 : link.bufferedBytes());
    if (buffered + bytes > this.limits.maxBufferedBytesPerPeer) {
      return new KvError('KV_UNAVAILABLE', `${buffered} bytes already buffered for ${peer.id} (limit ${this.limits.maxBufferedBytesPerPeer})`, {
        outcome: 'failed', details: { peer: peer.id, maybeDelivered: false, backpressure: true },
      });
    }
    return null;
  }

  private enqueue(peer: PeerState, buf: Buffer, pending: Pending | null): void {
    peer.queue.push({ buf, pending });
    peer.queuedBytes += buf.length;
    if (!peer.dirty) {
      peer.dirty = true;
      this.dirtyPeers.push(peer);
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate rather than a microtask: everything sent during this turn of the
      // event loop, including from promise continuations, lands in the same batch.
      setImmediate(this.flushAll);
    }
  }

  private flushDirty(): void {
    this.flushScheduled = false;
    const peers = this.dirtyPeers.splice(0);
    for (const peer of peers) {
      peer.dirty = false;
      this.flushPeer(peer);
    }
  }

  private flushPeer(peer: PeerState): void {
    const link = peer.link;
    const queue = peer.queue;
    peer.queue = [];
    peer.queuedBytes = 0;
    if (queue.length === 0) return;
    if (link === null) {
      // linkDown empties the queue, so this is only reachable through a bug; fail cleanly.
      for (const item of queue) {
        if (item.pending !== null) {
          this.settle(item.pending, new KvError('KV_UNAVAILABLE', `peer ${peer.id} is not connected`, {
            outcome: 'failed', details: { peer: peer.id, maybeDelivered: false },
          }), undefined);
        }
      }
      return;
    }
    const { maxBatchBytes, maxBatchEnvelopes } = this.limits;
    let parts: Buffer[] = [];
    let sent: Pending[] = [];
    let bytes = 0;
    const emitBatch = (): void => {
      const frame = joinBatch(parts, bytes);
      for (const p of sent) p.link = link;
      this.counters.framesOut++;
      this.counters.bytesOut += frame.length;
      this.counters.envelopesOut += parts.length;
      link.sendFrame(frame);
      parts = [];
      sent = [];
      bytes = 0;
    };
    for (const item of queue) {
      // A request that timed out or was aborted before leaving is not sent at all.
      if (item.pending !== null && item.pending.done.settled) continue;
      if (parts.length > 0 && (parts.length >= maxBatchEnvelopes || bytes + item.buf.length > maxBatchBytes)) emitBatch();
      parts.push(item.buf);
      bytes += item.buf.length;
      if (item.pending !== null) sent.push(item.pending);
    }
    if (parts.length > 0) emitBatch();
  }

  // ---- receiving --------------------------------------------------------------------

  private dispatch(peer: PeerState, link: Link, env: Envelope): void {
    if (this.admit !== undefined && (env.kind === 'msg' || env.kind === 'req')) {
      const why = this.admit(env);
      if (why !== null) {
        this.forbidden(peer, env, why);
        return;
      }
    }
    if (this.onEnvelope !== undefined) {
      try {
        this.onEnvelope(env);
      } catch (err) {
        this.counters.envelopesRejected++;
        this.rejectEnvelope(peer, env, err);
        return;
      }
    }
    switch (env.kind) {
      case 'msg': {
        const handler = this.handlers.get(env.type);
        assert(handler !== undefined, 'decodeBatch admits only known message types');
        try {
          const r = handler(env.from, env.payload, env);
          if (isThenable(r)) r.then(undefined, (err: unknown) => this.handlerFailed(env, err));
        } catch (err) {
          this.handlerFailed(env, err);
        }
        return;
      }
      case 'req':
        this.serveRequest(peer, link, env);
        return;
      case 'res':
      case 'err': {
        const p = peer.pending.get(env.id);
        if (p === undefined) {
          this.counters.lateResponses++;
          return;
        }
        if (env.kind === 'res') this.settle(p, undefined, env.payload);
        else this.settle(p, remoteError(env.payload as ErrorPayload, peer.id), undefined);
        return;
      }
    }
  }

  private forbidden(peer: PeerState, env: Envelope, why: string): void {
    this.counters.envelopesForbidden++;
    const now = Date.now();
    const seen = this.refusalLog.get(peer.id);
    if (seen === undefined || now - seen.atMs >= REFUSAL_LOG_INTERVAL_MS) {
      if (this.refusalLog.size >= REFUSAL_LOG_PEERS_MAX) this.refusalLog.clear();
      this.refusalLog.set(peer.id, { atMs: now, suppressed: 0 });
      this.log.warn({ peer: peer.id, type: env.type, kind: env.kind, why, suppressed: seen?.suppressed ?? 0 }, 'peer message refused');
    } else {
      seen.suppressed++;
    }
    if (env.kind === 'req') this.respond(peer, env, 'err', { code: 'KV_FORBIDDEN', message: `refused: ${why}` });
  }

  private rejectEnvelope(peer: PeerState, env: Envelope, err: unknown): void {
    const kv = toKvError(err);
    this.log.warn({ peer: peer.id, type: env.type, kind: env.kind, code: kv.code, err: kv.message }, 'envelope rejected');
    if (env.kind === 'req') {
      this.respond(peer, env, 'err', errorPayload(kv));
    } else if (env.kind === 'res' || env.kind === 'err') {
      const p = peer.pending.get(env.id);
      if (p !== undefined) {
        // The peer ran the request; only its answer was refused here.
        this.settle(p, new KvError(kv.code, kv.message, {
          cause: err, outcome: 'unknown', details: { ...kv.details, peer: peer.id, maybeDelivered: true },
        }), undefined);
      }
    }
  }

  private serveRequest(peer: PeerState, link: Link, env: Envelope): void {
    const handler = this.handlers.get(env.type);
    if (handler === undefined) {
      // Requests get an answer rather than a closed connection: the caller is waiting,
      // and closing would turn a clear "unsupported" into a maybe-delivered failure.
      this.respond(peer, env, 'err', {
        code: 'KV_INVALID_ARGUMENT', message: `no handler for request type ${env.type}`, details: { unknownType: env.type },
      });
      return;
    }
    if (peer.inbound >= this.limits.maxInboundRequestsPerPeer) {
      this.respond(peer, env, 'err', {
        code: 'KV_TOO_MANY_REQUESTS', message: `${peer.inbound} requests from ${peer.id} in progress`,
      });
      return;
    }
    peer.inbound++;
    let r: unknown;
    try {
      r = handler(env.from, env.payload, env);
    } catch (err) {
      peer.inbound--;
      this.respondFailure(peer, link, env, err);
      return;
    }
    if (isThenable(r)) {
      r.then(
        (value) => { peer.inbound--; this.respondIfCurrent(peer, link, env, 'res', value); },
        (err: unknown) => { peer.inbound--; this.respondFailure(peer, link, env, err); },
      );
    } else {
      peer.inbound--;
      this.respond(peer, env, 'res', r);
    }
  }

  private respondFailure(peer: PeerState, link: Link, env: Envelope, err: unknown): void {
    this.handlerFailed(env, err);
    this.respondIfCurrent(peer, link, env, 'err', errorPayload(toKvError(err)));
  }

  /** Answers only on the link the request came in on: on any other the caller has given up. */
  private respondIfCurrent(peer: PeerState, link: Link, env: Envelope, kind: 'res' | 'err', payload: unknown): void {
    if (peer.link !== link || this.closed) {
      this.counters.responsesDropped++;
      return;
    }
    this.respond(peer, env, kind, payload);
  }

  private respond(peer: PeerState, env: Envelope, kind: EnvelopeKind, payload: unknown): void {
    if (peer.link === null || this.closed) {
      this.counters.responsesDropped++;
      return;
    }
    let buf: Buffer;
    try {
      buf = this.codec.encode(kind, env.type, env.id, this.selfId, this.getEpoch(), this.hlcNow(), payload);
    } catch (err) {
      this.log.error({ err, type: env.type }, 'response payload not encodable');
      buf = this.codec.encode('err', env.type, env.id, this.selfId, this.getEpoch(), this.hlcNow(),
        { code: 'KV_INTERNAL', message: 'response not encodable' } satisfies ErrorPayload);
    }
    let refusal = this.refusal(peer, buf.length);
    if (refusal?.code === 'KV_FRAME_TOO_LARGE') {
      buf = this.codec.encode('err', env.type, env.id, this.selfId, this.getEpoch(), this.hlcNow(),
        errorPayload(refusal));
      refusal = this.refusal(peer, buf.length);
    }
    if (refusal !== null) {
      // Over the byte limit the caller times out with outcome unknown, which is the truth.
      this.counters.responsesDropped++;
      return;
    }
    this.enqueue(peer, buf, null);
  }

  private handlerFailed(env: Envelope, err: unknown): void {
    this.counters.handlerErrors++;
    if (isKvError(err)) {
      this.log.debug({ type: env.type, from: env.from, code: err.code, err: err.message }, 'handler failed');
    } else {
      this.log.error({ type: env.type, from: env.from, err }, 'handler threw');
    }
  }

  // ---- settling ---------------------------------------------------------------------

  private settle(p: Pending, err: unknown, value: unknown): void {
    if (p.done.settled) return;
    p.peer.pending.delete(p.id);
    if (err !== undefined) p.done.reject(err);
    else p.done.resolve(value);
  }

  private rejectSentOn(peer: PeerState, link: Link): void {
    for (const p of [...peer.pending.values()]) {
      if (p.link !== link) continue;
      this.settle(p, new KvError('KV_UNAVAILABLE', `connection to ${peer.id} lost with request ${p.type} in flight`, {
        outcome: 'unknown', details: { peer: peer.id, type: p.type, maybeDelivered: true },
      }), undefined);
    }
  }

  private emit(event: TransportEvent, peer: string): void {
    for (const listener of this.listeners[event]) {
      try {
        listener(peer);
      } catch (err) {
        this.log.error({ err, event, peer }, 'transport event listener threw');
      }
    }
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function toKvError(err: unknown): KvError {
  if (err instanceof KvError) return err;
  return new KvError('KV_INTERNAL', 'internal error in peer message handler', { cause: err });
}

function errorPayload(err: KvError): ErrorPayload & { outcome?: Outcome } {
  const p: ErrorPayload & { outcome?: Outcome } = { code: err.code, message: err.message };
  if (err.details !== undefined) p.details = err.details;
  if (err.outcome !== undefined) p.outcome = err.outcome;
  return p;
}

function remoteError(p: ErrorPayload & { outcome?: unknown }, peer: string): KvError {
  const code: ErrorCode = Object.hasOwn(ERROR_STATUS, p.code) ? (p.code as ErrorCode) : 'KV_INTERNAL';
  const outcome = p.outcome === 'failed' || p.outcome === 'unknown' ? p.outcome : undefined;
  return new KvError(code, p.message, {
    ...(outcome === undefined ? {} : { outcome }),
    details: { ...p.details, remote: true, peer, ...(code === p.code ? {} : { remoteCode: p.code }) },
  });
}
