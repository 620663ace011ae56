/**
 * Envelope codec. Pure: bytes in, envelopes out (or a close code), no sockets, so tests
 * feed it bytes directly.
 *
 * Wire format of one WebSocket message: a msgpack array of envelopes. Each envelope is a
 * positional 7-tuple (smaller and faster than a map):
 *
 *   [kind, type, id, from, epoch, hlc, payload]
 *
 *   kind    0 message (one-way) | 1 request | 2 response | 3 error response
 *   type    message type, e.g. 'raft', 'swim', 'rep.put' (responses repeat the request's)
 *   id      request id: 0 for messages, >= 1 for request/response/error
 *   from    sender node id; must equal the id authenticated in the handshake
 *   epoch   sender's topology epoch (non-negative integer)
 *   hlc     sender's HLC timestamp, 16 lowercase hex chars (lib/core/hlc.ts encodeTs)
 *   payload anything msgpack carries; for kind 3 an ErrorPayload
 *
 * Envelopes are encoded one by one when queued (so their exact size is known for the
 * byte limits) and a batch is the array header followed by the encoded envelopes, which
 * is itself a valid msgpack array.
 */
import { Packr } from 'msgpackr';
import { NODE_ID_RE } from '../core/hlc.ts';

export type EnvelopeKind = 'msg' | 'req' | 'res' | 'err';

export interface Envelope {
  readonly kind: EnvelopeKind;
  readonly type: string;
  /** Request id; 0 for one-way messages. */
  readonly id: number;
  readonly from: string;
  readonly epoch: number;
  readonly hlc: string;
  readonly payload: unknown;
}

/** Payload of an error response: the handler's KvError code, message and details. */
export interface ErrorPayload {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

/** WebSocket close codes used by the transport (4000-4999 is the application range). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  /** Sent by ws itself when a message exceeds maxPayload. */
  TOO_BIG: 1009,
  /** The peer already has a preferred connection to us (simultaneous dial tie-break). */
  DUPLICATE: 4000,
  /** Handshake failed or timed out: wrong secret, cluster id, node id or protocol. */
  AUTH_FAILED: 4001,
  /** Undecodable or malformed frame/envelope. */
  FRAME_INVALID: 4002,
  /** One-way message of a type this node has no handler for. */
  UNKNOWN_TYPE: 4003,
  /** No pong or frame for two ping intervals. */
  UNRESPONSIVE: 4004,
} as const;

const KIND_TO_WIRE: Record<EnvelopeKind, number> = { msg: 0, req: 1, res: 2, err: 3 };
const WIRE_TO_KIND: readonly EnvelopeKind[] = ['msg', 'req', 'res', 'err'];

/** Message types: short, lowercase, dotted; they become metric labels and log fields. */
export const MESSAGE_TYPE_RE = /^[a-z][a-z0-9._-]{0,63}$/;
const HLC_RE = /^[0-9a-f]{16}$/;
/** Error payload strings are capped so a peer cannot make us log megabytes. */
const ERROR_CODE_MAX_CHARS = 64;
const ERROR_MESSAGE_MAX_CHARS = 4096;

/**
 * One codec instance per transport. `useRecords: false` keeps the format plain msgpack
 * (no shared structure state between peers, which a reconnect would lose).
 */
export class FrameCodec {
  private readonly packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number' });

  /**
   * Encodes one envelope. The returned buffer is a view into msgpackr's scratch space;
   * msgpackr never writes over a region it handed out, so it may be queued as is.
   */
  encode(kind: EnvelopeKind, type: string, id: number, from: string, epoch: number, hlc: string, payload: unknown): Buffer {
    return this.packr.pack([KIND_TO_WIRE[kind], type, id, from, epoch, hlc, payload]);
  }

  decode(data: Buffer): unknown {
    return this.packr.unpack(data);
  }
}

/** msgpack array header for a batch of `count` envelopes. */
export function batchHeader(count: number): Buffer {
  if (count < 16) return Buffer.from([0x90 | count]);
  return Buffer.from([0xdc, count >> 8, count & 0xff]);
}

/** Concatenates encoded envelopes into one WebSocket message. */
export function joinBatch(parts: readonly Buffer[], bytes: number): Buffer {
  const header = batchHeader(parts.length);
  const out = Buffer.allocUnsafe(header.length + bytes);
  header.copy(out, 0);
  let offset = header.length;
  for (const part of parts) {
    part.copy(out, offset);
    offset += part.length;
  }
  return out;
}

export class FrameError extends Error {
  constructor(readonly closeCode: number, message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export interface DecodeOptions {
  /** Node id authenticated in the handshake; every envelope must claim it. */
  readonly peerId: string;
  readonly maxBatchEnvelopes: number;
  /** Whether a one-way message of this type has a handler (unknown → close 4003). */
  readonly knowsType: (type: string) => boolean;
}

/**
 * Decodes and validates a whole batch before any of it is dispatched: a batch is
 * accepted or rejected as a unit, so a bad frame never half-applies.
 */
export function decodeBatch(codec: FrameCodec, data: Buffer, opts: DecodeOptions): Envelope[] {
  let value: unknown;
  try {
    value = codec.decode(data);
  } catch (err) {
    throw new FrameError(CloseCode.FRAME_INVALID, `undecodable frame: ${(err as Error).message.slice(0, 80)}`);
  }
  if (!Array.isArray(value)) throw new FrameError(CloseCode.FRAME_INVALID, 'frame is not a batch array');
  if (value.length === 0 || value.length > opts.maxBatchEnvelopes) {
    throw new FrameError(CloseCode.FRAME_INVALID, `batch of ${value.length} envelopes (1..${opts.maxBatchEnvelopes})`);
  }
  const out: Envelope[] = new Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const env = validateEnvelope(value[i], opts.peerId);
    if (env.kind === 'msg' && !opts.knowsType(env.type)) {
      throw new FrameError(CloseCode.UNKNOWN_TYPE, `unknown message type ${env.type}`);
    }
    out[i] = env;
  }
  return out;
}

function invalid(msg: string): never {
  throw new FrameError(CloseCode.FRAME_INVALID, msg);
}

export function validateEnvelope(raw: unknown, peerId: string): Envelope {
  if (!Array.isArray(raw) || raw.length !== 7) invalid('envelope is not a 7-tuple');
  const [k, type, id, from, epoch, hlc, payload] = raw as unknown[];
  const kind = typeof k === 'number' ? WIRE_TO_KIND[k] : undefined;
  if (kind === undefined) invalid('bad envelope kind');
  if (typeof type !== 'string' || !MESSAGE_TYPE_RE.test(type)) invalid('bad envelope type');
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) invalid('bad request id');
  if ((kind === 'msg') !== (id === 0)) invalid('request id must be 0 exactly for one-way messages');
  if (typeof from !== 'string' || !NODE_ID_RE.test(from)) invalid('bad sender id');
  if (from !== peerId) invalid('sender id differs from the authenticated peer');
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) invalid('bad epoch');
  if (typeof hlc !== 'string' || !HLC_RE.test(hlc)) invalid('bad hlc');
  if (kind === 'err') validateErrorPayload(payload);
  return { kind, type, id, from, epoch, hlc, payload };
}

function validateErrorPayload(p: unknown): asserts p is ErrorPayload {
  if (typeof p !== 'object' || p === null || Array.isArray(p)) invalid('error payload is not a map');
  const { code, message, details } = p as Record<string, unknown>;
  if (typeof code !== 'string' || code.length === 0 || code.length > ERROR_CODE_MAX_CHARS) invalid('bad error code');
  if (typeof message !== 'string' || message.length > ERROR_MESSAGE_MAX_CHARS) invalid('bad error message');
  if (details !== undefined && (typeof details !== 'object' || details === null || Array.isArray(details))) {
    invalid('bad error details');
  }
}
