/**
 * SWIM wire messages. Plain objects of strings, numbers and arrays so any framing
 * (msgpackr on the peer socket) carries them; validateSwimMessage is the gate every
 * message from the network passes before it reaches the core.
 */
import { KvError } from '../../errors.ts';
import { NODE_ID_RE } from '../hlc.ts';
import { MAX_UPDATES_PER_MESSAGE } from './config.ts';
import type { Liveness } from './state.ts';

/**
 * Incarnations only grow by refutations; 2^48 refutations will not happen, and the
 * cap keeps `incarnation + 1` an exact integer however a peer misbehaves.
 */
export const MAX_INCARNATION = 2 ** 48;
/** Sequence numbers wrap below 2^32 (see Swim.nextSeq). */
export const MAX_SEQ = 2 ** 32 - 1;
/** A relayed probe waits at most a minute; a longer ask is malformed, not patient. */
export const MAX_RELAY_TIMEOUT_MS = 60_000;

export interface SwimUpdate {
  readonly id: string;
  readonly liveness: Liveness;
  readonly incarnation: number;
  /** For suspect: the accuser, so independent confirmations can be counted. */
  readonly from?: string;
}

interface Base {
  /** Matches an ack or nack to its ping or ping-req. */
  readonly seq: number;
  /** Sender's committed Raft epoch, so a lagging node learns to catch up. */
  readonly epoch: number;
  readonly updates: readonly SwimUpdate[];
}

export interface PingMsg extends Base {
  readonly type: 'ping';
}
export interface AckMsg extends Base {
  readonly type: 'ack';
}
/** Lifeguard: "I asked the target and have no answer yet", sent by an indirect prober. */
export interface NackMsg extends Base {
  readonly type: 'nack';
}
export interface PingReqMsg extends Base {
  readonly type: 'ping-req';
  readonly target: string;
  /** After this long without the target's ack, the relay answers nack. */
  readonly timeoutMs: number;
}

/**
 * A verdict of the sender's own (a suspicion, a confirmation, a death, a refutation)
 * pushed to every member at once instead of waiting for the piggyback to carry it:
 * one-way, nothing answers it. `seq` is 0.
 */
export interface GossipMsg extends Base {
  readonly type: 'gossip';
}

export type SwimMessage = PingMsg | AckMsg | NackMsg | PingReqMsg | GossipMsg;

function bad(message: string): never {
  throw new KvError('KV_FRAME_INVALID', `invalid swim message: ${message}`);
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

function int(x: unknown, field: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
    bad(`${field} must be an integer in [${min}, ${max}]`);
  }
  return x;
}

function nodeId(x: unknown, field: string): string {
  if (typeof x !== 'string' || !NODE_ID_RE.test(x)) bad(`${field} must be a node id`);
  return x;
}

function update(x: unknown, i: number): SwimUpdate {
  const f = `updates[${i}]`;
  if (!isPlainObject(x)) bad(`${f} must be an object`);
  const id = nodeId(x.id, `${f}.id`);
  const liveness = x.liveness;
  if (liveness !== 'alive' && liveness !== 'suspect' && liveness !== 'dead') bad(`${f}.liveness must be alive, suspect or dead`);
  const incarnation = int(x.incarnation, `${f}.incarnation`, 0, MAX_INCARNATION);
  if (liveness === 'suspect') return { id, liveness, incarnation, from: nodeId(x.from, `${f}.from`) };
  if (x.from !== undefined) nodeId(x.from, `${f}.from`);
  return { id, liveness, incarnation };
}

/**
 * Checks a message that came off the network and returns a fresh copy holding only
 * the known fields (nothing the sender smuggled in reaches the core).
 */
export function validateSwimMessage(x: unknown): SwimMessage {
  if (!isPlainObject(x)) bad('not an object');
  const type = x.type;
  if (type !== 'ping' && type !== 'ack' && type !== 'nack' && type !== 'ping-req' && type !== 'gossip') bad('unknown type');
  const seq = int(x.seq, 'seq', 0, MAX_SEQ);
  const epoch = int(x.epoch, 'epoch', 0, Number.MAX_SAFE_INTEGER);
  if (!Array.isArray(x.updates)) bad('updates must be an array');
  if (x.updates.length > MAX_UPDATES_PER_MESSAGE) bad(`more than ${MAX_UPDATES_PER_MESSAGE} updates`);
  const updates = x.updates.map(update);
  if (type === 'ping-req') {
    const target = nodeId(x.target, 'target');
    const timeoutMs = int(x.timeoutMs, 'timeoutMs', 1, MAX_RELAY_TIMEOUT_MS);
    return { type, seq, epoch, updates, target, timeoutMs };
  }
  return { type, seq, epoch, updates };
}
