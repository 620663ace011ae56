/** Node-to-node transport: the Transport interface, its ws and in-memory implementations. */
export type {
  Envelope, EnvelopeKind, ErrorPayload, Handler, RequestOptions, Transport, TransportEvent, TransportHooks,
  TransportLogger, TransportStats,
} from './transport.ts';
export { emptyStats, silentLogger } from './transport.ts';
export { CloseCode, MESSAGE_TYPE_RE } from './frame.ts';
export { DEFAULT_TRANSPORT_LIMITS, resolveLimits, validateLimits } from './limits.ts';
export type { TransportLimits } from './limits.ts';
export { WsTransport, PEER_PATH } from './ws-transport.ts';
export type { WsTransportOptions } from './ws-transport.ts';
export { MemoryNetwork, MemoryTransport } from './memory-transport.ts';
export type { BaseTransportOptions } from './base-transport.ts';
