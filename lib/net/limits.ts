/**
 * Every queue, buffer, timer and retry of the peer transport has a limit here, with the
 * reason for its default. `validateLimits` fails fast on combinations that cannot work,
 * so a bad config is a startup error rather than a mystery under load.
 */
import { KvError } from '../errors.ts';

const SECOND = 1000;
const KiB = 1024;
const MiB = 1024 * KiB;

export interface TransportLimits {
  /**
   * Largest WebSocket message accepted or produced (ws `maxPayload`); a bigger inbound
   * message closes the connection with 1009. Default 2 MiB + 64 KiB: one maximum value
   * (1 MiB by default) with its key, version and envelope fits with 2x headroom for a
   * raised value limit, while one peer can never make us buffer an unbounded message.
   */
  maxFrameBytes: number;
  /**
   * Envelopes coalesced into one WebSocket message. Default 256 KiB: beyond a few tens of
   * KiB per write the syscall cost is already amortised; larger batches only add
   * head-of-line latency for the small Raft/SWIM messages queued behind them.
   */
  maxBatchBytes: number;
  /**
   * Envelopes per WebSocket message, checked on both sides. Default 1024: a tick's worth
   * of small replication acks; also bounds the array a peer can make us decode.
   */
  maxBatchEnvelopes: number;
  /**
   * Requests awaiting a response from one peer. Default 4096: far above what a healthy
   * peer has outstanding (thousands of writes/s times a few ms of latency), so reaching
   * it means the peer is stuck and callers should fail fast instead of piling up.
   */
  maxPendingRequestsPerPeer: number;
  /**
   * Requests from one peer whose handlers are still running. Default 4096, mirroring the
   * sender's pending limit: an honest peer never exceeds it, a misbehaving one gets
   * KV_TOO_MANY_REQUESTS instead of unbounded concurrent work here.
   */
  maxInboundRequestsPerPeer: number;
  /**
   * Bytes queued for one peer (our batch queue plus ws `bufferedAmount`). Beyond it sends
   * fail fast with KV_UNAVAILABLE. Default 16 MiB: about eight maximum frames, enough
   * to ride out a burst of large writes to a slow peer; a stuck peer costs at most this.
   */
  maxBufferedBytesPerPeer: number;
  /**
   * Time for the whole connect + challenge-response handshake. Default 5 s: a healthy
   * handshake is two round trips (well under 100 ms even cross-region); a silent or
   * slow socket must not hold a handshake slot longer.
   */
  handshakeTimeoutMs: number;
  /**
   * Unauthenticated sockets in the handshake at once. A new upgrade beyond it closes the
   * oldest pending one instead of being refused: an honest dialer finishes its handshake in
   * two round trips (milliseconds), so it is never the oldest, while half-open sockets held
   * by a flood are; authenticated links are never counted or touched. Default 64: a
   * cluster's simultaneous reconnects fit; a flood does not pin memory.
   */
  maxPendingHandshakes: number;
  /**
   * The same cap per remote address (oldest from that address closed first). Default 8:
   * one host runs one node, which dials each peer once; a single flooding host cannot
   * take the whole pool.
   */
  maxPendingHandshakesPerAddress: number;
  /**
   * Default per-request timeout. Default 5 s: above any healthy round trip including a
   * synced LevelDB write, below common HTTP client timeouts, so the client request that
   * waits on it still gets an honest "unknown" answer.
   */
  defaultRequestTimeoutMs: number;
  /** First reconnect delay. Default 100 ms: a restarted peer is usually back within it. */
  reconnectBaseMs: number;
  /**
   * Cap of the exponential reconnect delay (full jitter in [delay/2, delay]). Default 5 s:
   * a dead peer costs one failed dial per ~5 s, and a recovered one is found within that.
   * Dialling continues as long as the peer is declared (setPeers/connect): the cap bounds
   * the rate, membership bounds the duration.
   */
  reconnectMaxMs: number;
  /**
   * WebSocket ping interval; a connection that answered nothing for two intervals is
   * terminated. Default 5 s: finds half-open TCP connections (peer paused or partitioned
   * without FIN) within 10 s, at negligible cost; SWIM does the fast failure detection.
   */
  pingIntervalMs: number;
  /**
   * Wait for the peer's close frame before destroying the socket. Default 1 s: a
   * misbehaving peer must not hold a socket open through ws's 30 s default.
   */
  closeGraceMs: number;
}

export const DEFAULT_TRANSPORT_LIMITS: Readonly<TransportLimits> = Object.freeze({
  maxFrameBytes: 2 * MiB + 64 * KiB,
  maxBatchBytes: 256 * KiB,
  maxBatchEnvelopes: 1024,
  maxPendingRequestsPerPeer: 4096,
  maxInboundRequestsPerPeer: 4096,
  maxBufferedBytesPerPeer: 16 * MiB,
  handshakeTimeoutMs: 5 * SECOND,
  maxPendingHandshakes: 64,
  maxPendingHandshakesPerAddress: 8,
  defaultRequestTimeoutMs: 5 * SECOND,
  reconnectBaseMs: 100,
  reconnectMaxMs: 5 * SECOND,
  pingIntervalMs: 5 * SECOND,
  closeGraceMs: 1 * SECOND,
});

/** Bytes of the msgpack array header that wraps a batch (0xdc + uint16). */
export const BATCH_HEADER_BYTES_MAX = 3;

/** Defaults merged with overrides, then checked; throws KV_CONFIG on a bad combination. */
export function resolveLimits(overrides: Partial<TransportLimits> = {}): TransportLimits {
  const limits: TransportLimits = { ...DEFAULT_TRANSPORT_LIMITS, ...overrides };
  validateLimits(limits);
  return limits;
}

export function validateLimits(l: TransportLimits): void {
  for (const [name, value] of Object.entries(l)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new KvError('KV_CONFIG', `transport limit ${name} must be a positive integer, got ${String(value)}`);
    }
  }
  const bad = (msg: string): never => {
    throw new KvError('KV_CONFIG', `transport limits: ${msg}`);
  };
  // Small frames could not even carry the handshake or an error response.
  if (l.maxFrameBytes < 4 * KiB) bad('maxFrameBytes must be at least 4096');
  if (l.maxBatchBytes > l.maxFrameBytes) bad('maxBatchBytes must not exceed maxFrameBytes');
  // The batch header encodes the count as uint16.
  if (l.maxBatchEnvelopes > 0xffff) bad('maxBatchEnvelopes must be at most 65535');
  if (l.maxBufferedBytesPerPeer < l.maxFrameBytes) bad('maxBufferedBytesPerPeer must hold at least one frame');
  if (l.reconnectMaxMs < l.reconnectBaseMs) bad('reconnectMaxMs must be at least reconnectBaseMs');
}
