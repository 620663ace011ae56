/**
 * Merkle anti-entropy exchange between two replicas of one partition (DESIGN.md §9).
 *
 * Pure and message-driven, like the Raft and SWIM cores: a validated message goes in,
 * the next message to send and the keys to push/pull come out. The runtime shell reads
 * segments from storage, moves the records, and carries the messages.
 *
 * Protocol (A initiates, B responds; each arrow is one message):
 *
 *   A → B  mt-root   A's shape and root.                      B compares the root.
 *   B → A  mt-nodes  B's children of the differing root.      A compares them.
 *   A → B  mt-nodes  A's children of the differing branches.  B compares ... and so on,
 *                    one level per message, until a side has compared the leaves and
 *                    knows the differing segments D. That side (the "lister") then:
 *   L → C  mt-keys   its (key, version) entries for a batch of D, in (segment, key) order.
 *   C → L  mt-diff   C merges them with its own entries over the same key ranges:
 *                    `give` = C has newer or L lacks (C pushes), `want` = L has newer or
 *                    C lacks (C pulls). C may stop early at `resume` to bound its reply.
 *   ...    mt-keys / mt-diff until D is exhausted.
 *   any    mt-end    nothing (more) to do: roots equal, no differing node, or shapes differ.
 *
 * Two identical replicas exchange only mt-root and mt-end. Otherwise traffic grows with
 * the divergence d (keys whose presence or version differ), not with the data size: each
 * differing key costs at most `width` hashes per level of its path, plus the entries of
 * its segment. Every step reports its share of the push/pull lists, so the shell can move
 * records batch by batch; newer-version-wins at the receiver makes that safe even while
 * the trees keep changing underneath (a key missed that way is caught next exchange).
 *
 * Wire encoding: plain objects (msgpackr maps). Hashes travel as a Uint8Array of
 * 8-byte big-endian words (msgpack bin: 8 B per hash, vs 17 for hex strings); entries as
 * [key, version] pairs. Key ranges use JS string order (UTF-16 code units) on both sides;
 * the core sorts what the segment source returns, so storage order does not matter.
 */
import { KvError, assert } from '../errors.ts';
import { isVersion, type Version } from './hlc.ts';
import { MERKLE_SEGMENTS_MAX, MERKLE_WIDTH_MAX, type MerkleTree } from './merkle.ts';

export type MerkleEntry = readonly [key: string, version: Version];

/**
 * A segment's (key, version) entries, any order, tombstones included. Backed in storage
 * by an index (partition, segment, key) → version written in the record's batch, so a
 * read costs one segment, not a partition scan. Called only for segments named by
 * `segmentsToRead(msg)` just before `receive(msg)`.
 */
export type SegmentSource = (segment: number) => Iterable<MerkleEntry>;

export interface MerkleRootMsg {
  readonly t: 'mt-root';
  readonly partition: number;
  readonly segments: number;
  readonly width: number;
  /** 8 bytes. */
  readonly root: Uint8Array;
}

export interface MerkleNodesMsg {
  readonly t: 'mt-nodes';
  readonly partition: number;
  /** Level of the nodes carried (1..depth); `parents` are indices at level - 1. */
  readonly level: number;
  /** Strictly ascending. */
  readonly parents: readonly number[];
  /** width hashes per parent, in parent then child order: 8 × width × parents.length bytes. */
  readonly hashes: Uint8Array;
}

export interface MerkleChunk {
  readonly segment: number;
  /** Exclusive lower key bound; null = from the segment's first key. Only the first chunk may set it. */
  readonly after: string | null;
  /** Inclusive upper key bound, equal to the last entry's key; null = to the segment's end. Only the last chunk may set it. */
  readonly upTo: string | null;
  /** The lister's entries in (after, upTo], strictly ascending by key. */
  readonly entries: readonly MerkleEntry[];
}

export interface MerkleKeysMsg {
  readonly t: 'mt-keys';
  readonly partition: number;
  /** Segments strictly ascending: one contiguous stretch of (segment, key) space. */
  readonly chunks: readonly MerkleChunk[];
  /** No differing segment follows this batch. */
  readonly last: boolean;
}

export interface MerkleResume {
  readonly segment: number;
  readonly after: string | null;
}

export interface MerkleDiffMsg {
  readonly t: 'mt-diff';
  readonly partition: number;
  /** Entries the sender pushes to the receiver (sender's versions). */
  readonly give: readonly MerkleEntry[];
  /** Keys the sender pulls from the receiver (receiver's versions, as listed). */
  readonly want: readonly MerkleEntry[];
  /** null: the whole batch was compared. Otherwise compared only up to (segment, after]. */
  readonly resume: MerkleResume | null;
}

export type MerkleEndReason = 'in-sync' | 'converged' | 'shape-mismatch';

export interface MerkleEndMsg {
  readonly t: 'mt-end';
  readonly partition: number;
  readonly reason: MerkleEndReason;
}

export type MerkleMessage = MerkleRootMsg | MerkleNodesMsg | MerkleKeysMsg | MerkleDiffMsg | MerkleEndMsg;

export interface MerkleExchangeLimits {
  /**
   * Differing segments listed per mt-keys message (one round trip). 64 keeps one round
   * at ~640 entries for ~10 keys per segment, and the shell's segment reads per round
   * bounded.
   */
  readonly maxSegmentsPerRound: number;
  /**
   * Entries per mt-keys (all chunks) and per mt-diff (give + want). An entry is at most
   * ~1.1 KiB (1 KiB key + version), so 512 keeps a message under ~600 KiB even with
   * maximum-size keys; typical entries of ~60 B make it ~30 KiB.
   */
  readonly maxKeysPerMessage: number;
}

export const DEFAULT_MERKLE_EXCHANGE_LIMITS: MerkleExchangeLimits = Object.freeze({
  maxSegmentsPerRound: 64,
  maxKeysPerMessage: 512,
});

/**
 * What a receiver accepts, whatever the sender's configured limits: sanity caps so a
 * bad frame cannot make us allocate or loop without bound. A peer must configure its
 * limits below these.
 */
export const MERKLE_WIRE_LIMITS = Object.freeze({
  partitionMax: 2 ** 31 - 1,
  /** One full level of the largest tree. */
  nodesMax: MERKLE_SEGMENTS_MAX,
  chunksMax: 4096,
  entriesMax: 65536,
  /** Characters; the node's key-size limit (1 KiB by default) is enforced by storage. */
  keyCharsMax: 65536,
});

export function validateExchangeLimits(limits: MerkleExchangeLimits): MerkleExchangeLimits {
  const { maxSegmentsPerRound, maxKeysPerMessage } = limits;
  if (!Number.isSafeInteger(maxSegmentsPerRound) || maxSegmentsPerRound < 1 || maxSegmentsPerRound > MERKLE_WIRE_LIMITS.chunksMax) {
    throw new KvError('KV_CONFIG', `maxSegmentsPerRound must be an integer in [1, ${MERKLE_WIRE_LIMITS.chunksMax}]`);
  }
  if (!Number.isSafeInteger(maxKeysPerMessage) || maxKeysPerMessage < 1 || maxKeysPerMessage > MERKLE_WIRE_LIMITS.entriesMax) {
    throw new KvError('KV_CONFIG', `maxKeysPerMessage must be an integer in [1, ${MERKLE_WIRE_LIMITS.entriesMax}]`);
  }
  return limits;
}

// ---------------------------------------------------------------------------------------
// Validation of inbound frames
// ---------------------------------------------------------------------------------------

function invalid(message: string): never {
  throw new KvError('KV_FRAME_INVALID', `invalid merkle message: ${message}`);
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function checkInt(x: unknown, what: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) invalid(`${what} must be an integer in [${min}, ${max}]`);
  return x;
}

function checkKey(x: unknown, what: string): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > MERKLE_WIRE_LIMITS.keyCharsMax) invalid(`${what} must be a non-empty string`);
  return x;
}

function checkEntries(x: unknown, what: string, budget: { left: number }, ascending: boolean): MerkleEntry[] {
  if (!Array.isArray(x)) invalid(`${what} must be an array`);
  budget.left -= x.length;
  if (budget.left < 0) invalid(`more than ${MERKLE_WIRE_LIMITS.entriesMax} entries`);
  let prev: string | null = null;
  for (const e of x) {
    if (!Array.isArray(e) || e.length !== 2) invalid(`${what} entries must be [key, version]`);
    const key = checkKey(e[0], `${what} key`);
    if (!isVersion(e[1])) invalid(`${what} version is malformed`);
    if (ascending && prev !== null && !(prev < key)) invalid(`${what} keys must be strictly ascending`);
    prev = key;
  }
  return x as MerkleEntry[];
}

function checkAscending(xs: readonly number[], what: string): void {
  for (let i = 1; i < xs.length; i++) {
    if (!((xs[i - 1] as number) < (xs[i] as number))) invalid(`${what} must be strictly ascending`);
  }
}

const END_REASONS: ReadonlySet<string> = new Set<MerkleEndReason>(['in-sync', 'converged', 'shape-mismatch']);

/**
 * Structural check of an inbound frame's body. Returns it typed, or throws
 * KvError('KV_FRAME_INVALID'). Checks that need the local tree (shape, index ranges,
 * protocol state) happen in `MerkleExchange.receive`, with the same error code.
 */
export function validateMerkleMessage(x: unknown): MerkleMessage {
  if (!isPlainObject(x)) invalid('not an object');
  const partition = checkInt(x.partition, 'partition', 0, MERKLE_WIRE_LIMITS.partitionMax);
  switch (x.t) {
    case 'mt-root': {
      checkInt(x.segments, 'segments', 1, MERKLE_SEGMENTS_MAX);
      checkInt(x.width, 'width', 2, MERKLE_WIDTH_MAX);
      if (!(x.root instanceof Uint8Array) || x.root.length !== 8) invalid('root must be 8 bytes');
      return { t: 'mt-root', partition, segments: x.segments as number, width: x.width as number, root: x.root };
    }
    case 'mt-nodes': {
      const level = checkInt(x.level, 'level', 1, Math.log2(MERKLE_SEGMENTS_MAX));
      if (!Array.isArray(x.parents) || x.parents.length === 0 || x.parents.length > MERKLE_WIRE_LIMITS.nodesMax) {
        invalid('parents must be a non-empty array');
      }
      for (const p of x.parents) checkInt(p, 'parent', 0, MERKLE_WIRE_LIMITS.nodesMax - 1);
      checkAscending(x.parents as number[], 'parents');
      const hashes = x.hashes;
      if (!(hashes instanceof Uint8Array) || hashes.length === 0 || hashes.length % (8 * x.parents.length) !== 0 ||
        hashes.length / 8 > MERKLE_WIRE_LIMITS.nodesMax) {
        invalid('hashes must hold 8 bytes per child of each parent');
      }
      return { t: 'mt-nodes', partition, level, parents: x.parents as number[], hashes };
    }
    case 'mt-keys': {
      if (typeof x.last !== 'boolean') invalid('last must be a boolean');
      const chunks = x.chunks;
      if (!Array.isArray(chunks) || chunks.length === 0 || chunks.length > MERKLE_WIRE_LIMITS.chunksMax) {
        invalid(`chunks must be a non-empty array of at most ${MERKLE_WIRE_LIMITS.chunksMax}`);
      }
      const budget = { left: MERKLE_WIRE_LIMITS.entriesMax };
      let prevSegment = -1;
      chunks.forEach((c: unknown, i: number) => {
        if (!isPlainObject(c)) invalid('chunk must be an object');
        const segment = checkInt(c.segment, 'chunk segment', 0, MERKLE_WIRE_LIMITS.nodesMax - 1);
        if (segment <= prevSegment) invalid('chunk segments must be strictly ascending');
        prevSegment = segment;
        const after = c.after === null ? null : checkKey(c.after, 'chunk after');
        const upTo = c.upTo === null ? null : checkKey(c.upTo, 'chunk upTo');
        if (after !== null && i !== 0) invalid('only the first chunk may start mid-segment');
        if (upTo !== null && i !== chunks.length - 1) invalid('only the last chunk may end mid-segment');
        const entries = checkEntries(c.entries, 'chunk', budget, true);
        const first = entries[0];
        const lastEntry = entries[entries.length - 1];
        if (after !== null && first !== undefined && !(first[0] > after)) invalid('chunk entries must lie after `after`');
        if (upTo !== null && (lastEntry === undefined || lastEntry[0] !== upTo)) invalid('chunk upTo must be its last key');
      });
      return { t: 'mt-keys', partition, chunks: chunks as MerkleChunk[], last: x.last };
    }
    case 'mt-diff': {
      const budget = { left: MERKLE_WIRE_LIMITS.entriesMax };
      const give = checkEntries(x.give, 'give', budget, false);
      const want = checkEntries(x.want, 'want', budget, false);
      let resume: MerkleResume | null = null;
      if (x.resume !== null) {
        if (!isPlainObject(x.resume)) invalid('resume must be null or an object');
        const segment = checkInt(x.resume.segment, 'resume segment', 0, MERKLE_WIRE_LIMITS.nodesMax - 1);
        const after = x.resume.after === null ? null : checkKey(x.resume.after, 'resume after');
        resume = { segment, after };
      }
      return { t: 'mt-diff', partition, give, want, resume };
    }
    case 'mt-end': {
      if (typeof x.reason !== 'string' || !END_REASONS.has(x.reason)) invalid('unknown end reason');
      return { t: 'mt-end', partition, reason: x.reason as MerkleEndReason };
    }
    default:
      return invalid(`unknown type ${JSON.stringify(String(x.t)).slice(0, 40)}`);
  }
}

// ---------------------------------------------------------------------------------------
// Hash vectors
// ---------------------------------------------------------------------------------------

export function encodeHash(h: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, h);
  return out;
}

export function decodeHashAt(bytes: Uint8Array, index: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(index * 8);
}

// ---------------------------------------------------------------------------------------
// Encoded size
// ---------------------------------------------------------------------------------------

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3; // BMP char, or a lone surrogate encoded as U+FFFD
  }
  return n;
}

function lengthHeader(n: number, fix: number): number {
  return n < fix ? 1 : n < 0x10000 ? 3 : 5;
}

function msgpackSize(v: unknown): number {
  if (v === null || typeof v === 'boolean') return 1;
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5;
    if (Number.isInteger(v) && v < 0 && v >= -0x80000000) return v >= -0x20 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : 5;
    return 9;
  }
  if (typeof v === 'string') {
    const n = utf8Length(v);
    return n + (n < 0x20 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
  }
  if (v instanceof Uint8Array) return v.length + (v.length < 0x100 ? 2 : v.length < 0x10000 ? 3 : 5);
  if (Array.isArray(v)) {
    let n = lengthHeader(v.length, 16);
    for (const item of v) n += msgpackSize(item);
    return n;
  }
  assert(isPlainObject(v), 'encodedSize: unsupported value');
  const keys = Object.keys(v);
  // msgpackr writes every map with a map16 header unless `variableMapSize` is set.
  let n = keys.length < 0x10000 ? 3 : 5;
  for (const k of keys) n += msgpackSize(k) + msgpackSize(v[k]);
  return n;
}

/**
 * Bytes of `msg` as msgpackr's default `pack` writes it (plain maps, no records, map16
 * headers): exact for the shapes this module builds, and an upper bound for packers
 * with `variableMapSize`. The envelope around it is not counted.
 */
export function encodedSize(msg: MerkleMessage): number {
  return msgpackSize(msg);
}

// ---------------------------------------------------------------------------------------
// The exchange state machine
// ---------------------------------------------------------------------------------------

export interface ExchangeStep {
  /** The next message for the peer, or null when this side has nothing more to send. */
  readonly send: MerkleMessage | null;
  /** Records to send to the peer (this side's versions). */
  readonly push: readonly MerkleEntry[];
  /** Records to fetch from the peer (the peer's versions, as listed; the peer may hold newer). */
  readonly pull: readonly MerkleEntry[];
  /** The exchange is over for this side: no more messages will be sent or accepted. */
  readonly done: boolean;
}

export type ExchangeOutcome = 'in-sync' | 'repaired' | 'converged' | 'shape-mismatch';

export interface ExchangeStats {
  messagesSent: number;
  messagesReceived: number;
  /** Differing segments found (only on the side that compared the leaves). */
  segmentsDiffering: number;
  pushed: number;
  pulled: number;
}

/** What a side waits for next (see the protocol at the top of this file). */
export type ExchangePhase = 'await-root' | 'await-descent' | 'await-keys' | 'await-diff' | 'done';

/** A point in (index into D, key) space; `after` null = before the segment's first key. */
interface Cursor {
  readonly idx: number;
  readonly after: string | null;
}

function cursorLess(a: Cursor, b: Cursor): boolean {
  if (a.idx !== b.idx) return a.idx < b.idx;
  if (a.after === b.after) return false;
  if (a.after === null) return true;
  if (b.after === null) return false;
  return a.after < b.after;
}

function byKey(a: MerkleEntry, b: MerkleEntry): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

/** A segment's entries sorted by key, in the range (after, upTo]. */
function readRange(source: SegmentSource, segment: number, after: string | null, upTo: string | null): MerkleEntry[] {
  const all = Array.from(source(segment)).sort(byKey);
  for (let i = 1; i < all.length; i++) {
    assert((all[i - 1] as MerkleEntry)[0] !== (all[i] as MerkleEntry)[0], `segment ${segment} source returned a key twice`);
  }
  if (after === null && upTo === null) return all;
  return all.filter(([k]) => (after === null || k > after) && (upTo === null || k <= upTo));
}

type Plan =
  | { kind: 'send-end'; reason: MerkleEndReason }
  | { kind: 'descend'; level: number; differing: number[] }
  | { kind: 'compare-keys'; msg: MerkleKeysMsg }
  | { kind: 'next-batch'; cursor: Cursor; msg: MerkleDiffMsg }
  | { kind: 'peer-ended'; reason: MerkleEndReason };

/**
 * One side of one exchange. `MerkleExchange.initiate` for the side that starts,
 * `MerkleExchange.respond` for the side that received mt-root. For each inbound message:
 * validate it (`validateMerkleMessage`), read `segmentsToRead(msg)` from storage, then
 * `receive(msg, source)`; send `step.send`, move `step.push` / `step.pull`.
 */
export class MerkleExchange {
  readonly role: 'initiator' | 'responder';
  readonly partition: number;
  private readonly tree: MerkleTree;
  private readonly limits: MerkleExchangeLimits;
  private phase: ExchangePhase;
  /** Level and indices of the nodes whose hashes we sent last (the peer may only descend into these). */
  private sentLevel = 0;
  private offered: ReadonlySet<number> = new Set([0]);
  /** Lister only: differing segments, ascending, and the batch in flight. */
  private differing: number[] = [];
  private batchStart: Cursor = { idx: 0, after: null };
  private batchEnd: Cursor = { idx: 0, after: null };
  private batchSegments: ReadonlyMap<number, number> = new Map();
  private result: ExchangeOutcome | null = null;
  readonly stats: ExchangeStats = { messagesSent: 0, messagesReceived: 0, segmentsDiffering: 0, pushed: 0, pulled: 0 };

  private constructor(role: 'initiator' | 'responder', tree: MerkleTree, partition: number, limits: MerkleExchangeLimits) {
    assert(Number.isInteger(partition) && partition >= 0 && partition <= MERKLE_WIRE_LIMITS.partitionMax, 'partition out of range');
    this.role = role;
    this.tree = tree;
    this.partition = partition;
    this.limits = validateExchangeLimits(limits);
    this.phase = role === 'initiator' ? 'await-descent' : 'await-root';
  }

  static initiate(tree: MerkleTree, partition: number,
    limits: MerkleExchangeLimits = DEFAULT_MERKLE_EXCHANGE_LIMITS): { session: MerkleExchange; send: MerkleRootMsg } {
    const session = new MerkleExchange('initiator', tree, partition, limits);
    session.stats.messagesSent++;
    const send: MerkleRootMsg = {
      t: 'mt-root', partition, segments: tree.segments, width: tree.width, root: encodeHash(tree.root()),
    };
    return { session, send };
  }

  static respond(tree: MerkleTree, partition: number,
    limits: MerkleExchangeLimits = DEFAULT_MERKLE_EXCHANGE_LIMITS): MerkleExchange {
    return new MerkleExchange('responder', tree, partition, limits);
  }

  get done(): boolean {
    return this.phase === 'done';
  }

  /** What this side waits for next (diagnostics and transcripts). */
  get state(): ExchangePhase {
    return this.phase;
  }

  /** How the exchange ended; null while it runs. */
  get outcome(): ExchangeOutcome | null {
    return this.result;
  }

  /** Segments `receive(msg)` may read (at most maxSegmentsPerRound), so the shell can load them first. */
  segmentsToRead(msg: MerkleMessage): number[] {
    const plan = this.plan(msg);
    switch (plan.kind) {
      case 'descend':
        return plan.level === this.tree.depth ? plan.differing.slice(0, this.limits.maxSegmentsPerRound) : [];
      case 'compare-keys':
        return plan.msg.chunks.map((c) => c.segment);
      case 'next-batch':
        return this.differing.slice(plan.cursor.idx, plan.cursor.idx + this.limits.maxSegmentsPerRound);
      default:
        return [];
    }
  }

  receive(msg: MerkleMessage, source: SegmentSource): ExchangeStep {
    const plan = this.plan(msg);
    this.stats.messagesReceived++;
    switch (plan.kind) {
      case 'peer-ended':
        this.finish(plan.reason);
        return { send: null, push: [], pull: [], done: true };
      case 'send-end':
        return this.end(plan.reason);
      case 'descend':
        return this.descend(plan.level, plan.differing, source);
      case 'compare-keys':
        return this.compareKeys(plan.msg, source);
      case 'next-batch': {
        const step = this.credit(plan.msg.want, plan.msg.give);
        if (plan.cursor.idx >= this.differing.length) {
          this.finish('repaired');
          return { ...step, send: null, done: true };
        }
        return { ...step, send: this.sendBatch(plan.cursor, source), done: false };
      }
    }
  }

  /** Validate `msg` against the local tree and protocol state, and decide; no mutation. */
  private plan(msg: MerkleMessage): Plan {
    if (msg.partition !== this.partition) invalid(`partition ${msg.partition}, expected ${this.partition}`);
    const unexpected = (): never => invalid(`unexpected ${msg.t} while ${this.phase}`);
    const depth = this.tree.depth;
    switch (msg.t) {
      case 'mt-root': {
        if (this.phase !== 'await-root') unexpected();
        if (msg.segments !== this.tree.segments || msg.width !== this.tree.width) return { kind: 'send-end', reason: 'shape-mismatch' };
        const differing = decodeHashAt(msg.root, 0) === this.tree.root() ? [] : [0];
        if (differing.length === 0) return { kind: 'send-end', reason: 'in-sync' };
        return { kind: 'descend', level: 0, differing };
      }
      case 'mt-nodes': {
        if (this.phase !== 'await-descent' || msg.level !== this.sentLevel + 1 || msg.level > depth) unexpected();
        const width = this.tree.width;
        if (msg.hashes.length !== 8 * width * msg.parents.length) invalid(`expected ${width} hashes per parent`);
        const differing: number[] = [];
        msg.parents.forEach((parent, p) => {
          if (!this.offered.has(parent)) invalid(`node ${parent} at level ${this.sentLevel} was not offered`);
          for (let j = 0; j < width; j++) {
            const index = parent * width + j;
            if (decodeHashAt(msg.hashes, p * width + j) !== this.tree.node(msg.level, index)) differing.push(index);
          }
        });
        if (differing.length === 0) return { kind: 'send-end', reason: 'converged' };
        return { kind: 'descend', level: msg.level, differing };
      }
      case 'mt-keys': {
        const first = this.phase === 'await-descent' && this.sentLevel === depth;
        if (!first && this.phase !== 'await-keys') unexpected();
        for (const c of msg.chunks) {
          if (!this.offered.has(c.segment)) invalid(`segment ${c.segment} was not offered`);
        }
        return { kind: 'compare-keys', msg };
      }
      case 'mt-diff': {
        if (this.phase !== 'await-diff') unexpected();
        if (msg.resume === null) return { kind: 'next-batch', cursor: this.batchEnd, msg };
        const idx = this.batchSegments.get(msg.resume.segment);
        if (idx === undefined) invalid(`resume segment ${msg.resume.segment} is not in the batch`);
        const cursor: Cursor = { idx, after: msg.resume.after };
        // Strict progress is what bounds the number of rounds.
        if (!cursorLess(this.batchStart, cursor) || cursorLess(this.batchEnd, cursor)) invalid('resume point outside the batch');
        return { kind: 'next-batch', cursor, msg };
      }
      case 'mt-end': {
        if (this.phase !== 'await-descent') unexpected();
        return { kind: 'peer-ended', reason: msg.reason };
      }
    }
  }

  private descend(level: number, differing: number[], source: SegmentSource): ExchangeStep {
    const tree = this.tree;
    if (level === tree.depth) {
      this.differing = differing;
      this.stats.segmentsDiffering = differing.length;
      return { send: this.sendBatch({ idx: 0, after: null }, source), push: [], pull: [], done: false };
    }
    const width = tree.width;
    const hashes = new Uint8Array(8 * width * differing.length);
    const view = new DataView(hashes.buffer);
    const offered = new Set<number>();
    differing.forEach((parent, p) => {
      for (let j = 0; j < width; j++) {
        const index = parent * width + j;
        offered.add(index);
        view.setBigUint64(8 * (p * width + j), tree.node(level + 1, index));
      }
    });
    this.sentLevel = level + 1;
    this.offered = offered;
    this.phase = 'await-descent';
    this.stats.messagesSent++;
    return {
      send: { t: 'mt-nodes', partition: this.partition, level: level + 1, parents: differing, hashes },
      push: [], pull: [], done: false,
    };
  }

  /** Lister: entries from `start` on, up to maxKeysPerMessage entries and maxSegmentsPerRound segments. */
  private sendBatch(start: Cursor, source: SegmentSource): MerkleKeysMsg {
    const chunks: MerkleChunk[] = [];
    const segments = new Map<number, number>();
    let budget = this.limits.maxKeysPerMessage;
    let idx = start.idx;
    let after = start.after;
    while (idx < this.differing.length && chunks.length < this.limits.maxSegmentsPerRound) {
      const segment = this.differing[idx] as number;
      const entries = readRange(source, segment, after, null);
      segments.set(segment, idx);
      if (entries.length <= budget) {
        chunks.push({ segment, after, upTo: null, entries });
        budget -= entries.length;
        idx++;
        after = null;
        continue;
      }
      if (budget > 0) {
        const taken = entries.slice(0, budget);
        const upTo = (taken[taken.length - 1] as MerkleEntry)[0];
        chunks.push({ segment, after, upTo, entries: taken });
        after = upTo;
      } else {
        segments.delete(segment);
      }
      break;
    }
    assert(chunks.length > 0, 'a batch always makes progress');
    this.batchStart = start;
    this.batchEnd = { idx, after };
    this.batchSegments = segments;
    this.phase = 'await-diff';
    this.stats.messagesSent++;
    return { t: 'mt-keys', partition: this.partition, chunks, last: idx >= this.differing.length };
  }

  /** Comparer: merge the lister's entries with ours over the same key ranges. */
  private compareKeys(msg: MerkleKeysMsg, source: SegmentSource): ExchangeStep {
    const give: MerkleEntry[] = [];
    const want: MerkleEntry[] = [];
    const max = this.limits.maxKeysPerMessage;
    let resume: MerkleResume | null = null;
    outer: for (const chunk of msg.chunks) {
      const mine = readRange(source, chunk.segment, chunk.after, chunk.upTo);
      const theirs = chunk.entries;
      let i = 0;
      let j = 0;
      let lastKey = chunk.after;
      while (i < mine.length || j < theirs.length) {
        const m = mine[i];
        const t = theirs[j];
        const key = m === undefined ? (t as MerkleEntry)[0] : t === undefined ? m[0] : m[0] < t[0] ? m[0] : t[0];
        const mv = m !== undefined && m[0] === key ? m[1] : null;
        const tv = t !== undefined && t[0] === key ? t[1] : null;
        // Versions order as plain strings (hlc.ts); equal versions are the same write.
        const mineNewer = mv !== null && (tv === null || mv > tv);
        const theirsNewer = tv !== null && (mv === null || tv > mv);
        if (mineNewer || theirsNewer) {
          if (give.length + want.length >= max) {
            resume = { segment: chunk.segment, after: lastKey };
            break outer;
          }
          if (mineNewer) give.push([key, mv as Version]);
          else want.push([key, tv as Version]);
        }
        lastKey = key;
        if (mv !== null) i++;
        if (tv !== null) j++;
      }
    }
    const done = msg.last && resume === null;
    this.phase = done ? 'done' : 'await-keys';
    if (done) this.result = 'repaired';
    this.stats.messagesSent++;
    const step = this.credit(give, want);
    return { ...step, send: { t: 'mt-diff', partition: this.partition, give, want, resume }, done };
  }

  private credit(push: readonly MerkleEntry[], pull: readonly MerkleEntry[]): ExchangeStep {
    this.stats.pushed += push.length;
    this.stats.pulled += pull.length;
    return { send: null, push, pull, done: false };
  }

  private end(reason: MerkleEndReason): ExchangeStep {
    this.finish(reason);
    this.stats.messagesSent++;
    return { send: { t: 'mt-end', partition: this.partition, reason }, push: [], pull: [], done: true };
  }

  private finish(outcome: ExchangeOutcome): void {
    this.phase = 'done';
    this.result = outcome;
  }
}
