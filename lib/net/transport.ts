/**
 * The narrow interface every node-to-node component (Raft, SWIM, replication, hints,
 * anti-entropy) talks to. Two implementations: WsTransport (real sockets) and
 * MemoryTransport (one process, for tests and simulations).
 */
import type { Envelope } from './frame.ts';

export type { Envelope, EnvelopeKind, ErrorPayload } from './frame.ts';

/**
 * Handles one message type. For a request, the return value (or resolved value) is the
 * response payload; a thrown KvError reaches the caller with the same code; any other
 * throw reaches it as KV_INTERNAL. For a one-way message the return value is ignored and
 * a throw is logged and counted (handlerErrors).
 */
export type Handler = (from: string, payload: unknown, env: Envelope) => unknown;

export interface RequestOptions {
  /** Defaults to limits.defaultRequestTimeoutMs. */
  timeoutMs?: number;
  /** Aborting rejects the request with `signal.reason` (like fetch); a late response is dropped. */
  signal?: AbortSignal;
}

export type TransportEvent = 'peer-up' | 'peer-down';

export interface TransportStats {
  /** WebSocket messages (batches) and bytes sent/received, after authentication. */
  framesOut: number;
  framesIn: number;
  bytesOut: number;
  bytesIn: number;
  envelopesOut: number;
  envelopesIn: number;
  requestsSent: number;
  /** Requests rejected with KV_TIMEOUT. */
  requestTimeouts: number;
  /** Responses that arrived after their request timed out or was aborted. */
  lateResponses: number;
  /** send() calls that returned false: peer down, over the byte limit, or too large. */
  sendsDropped: number;
  /** Responses not sent because the connection was gone or over its byte limit. */
  responsesDropped: number;
  handlerErrors: number;
  /** Envelopes rejected because onEnvelope threw (clock skew and the like). */
  envelopesRejected: number;
  /** Messages and requests refused by the admission hook (sender not a member). */
  envelopesForbidden: number;
  /** Unauthenticated handshakes closed to make room (per-address or total cap reached). */
  handshakesEvicted: number;
  authFailures: number;
  /** Connections closed for a malformed (4002), unknown-type (4003) or oversized (1009) frame. */
  invalidFrames: number;
  connectionsOpened: number;
  connectionsClosed: number;
  dialAttempts: number;
}

export function emptyStats(): TransportStats {
  return {
    framesOut: 0, framesIn: 0, bytesOut: 0, bytesIn: 0, envelopesOut: 0, envelopesIn: 0,
    requestsSent: 0, requestTimeouts: 0, lateResponses: 0, sendsDropped: 0, responsesDropped: 0,
    handlerErrors: 0, envelopesRejected: 0, envelopesForbidden: 0, handshakesEvicted: 0, authFailures: 0, invalidFrames: 0,
    connectionsOpened: 0, connectionsClosed: 0, dialAttempts: 0,
  };
}

export interface Transport {
  readonly selfId: string;
  /** Registers the handler of one message type; registering a type twice is a bug. */
  handle(type: string, handler: Handler): void;
  /**
   * One-way, fire-and-forget, batched with everything else sent to `to` in this tick.
   * Returns false (and counts it) when the message was dropped without being queued:
   * peer not connected, over the buffered-bytes limit, too large, or transport closed.
   */
  send(to: string, type: string, payload: unknown): boolean;
  /**
   * Resolves with the handler's response. Rejects with KvError:
   *   KV_UNAVAILABLE        not connected / over buffered bytes (nothing sent, outcome 'failed'),
   *                         or the connection dropped after sending (details.maybeDelivered,
   *                         outcome 'unknown')
   *   KV_TIMEOUT            no response in time (outcome 'unknown')
   *   KV_TOO_MANY_REQUESTS  pending limit for this peer reached (nothing sent)
   *   KV_FRAME_TOO_LARGE    the encoded request exceeds maxFrameBytes (nothing sent)
   *   KV_CLOSED             the transport was closed
   *   any code              the remote handler threw a KvError with that code (details.remote)
   */
  request<T = unknown>(to: string, type: string, payload: unknown, opts?: RequestOptions): Promise<T>;
  isConnected(peer: string): boolean;
  /** Ids of the peers with an authenticated connection. */
  connectedPeers(): string[];
  /** Subscribes; returns the unsubscribe function. */
  on(event: TransportEvent, listener: (peer: string) => void): () => void;
  stats(): TransportStats;
  /** Closes every connection and rejects pending requests with KV_CLOSED. Idempotent. */
  close(): Promise<void>;
}

/** Stamps on every outgoing envelope and the observer of every incoming one. */
export interface TransportHooks {
  /** Current topology epoch of this node. */
  getEpoch?: () => number;
  /** HLC send rule: a fresh timestamp, 16 lowercase hex chars (encodeTs). */
  hlcNow?: () => string;
  /**
   * Sees every validated inbound envelope before dispatch (merge the remote HLC, learn
   * the peer's epoch). Throwing rejects the envelope: a request gets an error response
   * with the KvError's code, a message is dropped and counted, a response rejects the
   * pending request with the error (maybeDelivered: the peer did run it).
   */
  onEnvelope?: (env: Envelope) => void;
  /**
   * Admission of every inbound message and request (not responses: those answer our own
   * requests), before anything else sees it: returns why the sender may not send it, or
   * null. Refused → a request gets KV_FORBIDDEN, a message is dropped; both are counted
   * (envelopesForbidden) and logged with the peer id (throttled per peer).
   */
  admit?: (env: Envelope) => string | null;
}

/** Structural subset of pino's logger, so any pino child logger fits. */
export interface TransportLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: TransportLogger = {
  debug() {}, info() {}, warn() {}, error() {},
};
