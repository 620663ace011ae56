/**
 * Validation of Raft messages arriving from the network. A peer's bytes are never
 * trusted: anything malformed becomes KV_FRAME_INVALID here, before it reaches the
 * core, so a bad frame cannot crash a node. The returned message is a fresh object
 * holding only the known fields.
 */
import { KvError } from '../../errors.ts';
import { NODE_ID_RE } from '../hlc.ts';
import type {
  ConfEntryData, Entry, EntryKind, RaftConfig, RaftMessage, RaftMessageType, Snapshot,
} from './types.ts';

/**
 * Entries in one append message. The sender caps batches at maxEntriesPerAppend
 * (default 64); this wider bound only rejects frames no honest peer would build.
 */
export const MAX_ENTRIES_PER_MESSAGE = 4096;
/** Voters are at most 5 (DESIGN §6); learners are every other node of the cluster. */
export const MAX_CONFIG_MEMBERS = 1024;

const TYPES: ReadonlySet<string> = new Set<RaftMessageType>([
  'preVote', 'vote', 'preVoteResp', 'voteResp', 'append', 'appendResp', 'heartbeat',
  'heartbeatResp', 'snapshot',
]);
const KINDS: ReadonlySet<string> = new Set<EntryKind>(['normal', 'conf', 'noop']);
const CHANGE_TYPES: ReadonlySet<string> = new Set(['addVoter', 'addLearner', 'remove']);

function bad(message: string): never {
  throw new KvError('KV_FRAME_INVALID', `invalid raft message: ${message}`);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function nat(o: Record<string, unknown>, field: string): number {
  const v = o[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(`${field} must be a non-negative integer`);
  return v;
}

function bool(o: Record<string, unknown>, field: string): boolean {
  const v = o[field];
  if (typeof v !== 'boolean') bad(`${field} must be a boolean`);
  return v;
}

export function isNodeId(x: unknown): x is string {
  return typeof x === 'string' && NODE_ID_RE.test(x);
}

function nodeId(o: Record<string, unknown>, field: string): string {
  const v = o[field];
  if (!isNodeId(v)) bad(`${field} must be a node id`);
  return v;
}

export function validateConfig(x: unknown): RaftConfig {
  if (!isObject(x)) bad('config must be an object');
  const { voters, learners } = x;
  if (!Array.isArray(voters) || !Array.isArray(learners)) bad('config needs voters and learners arrays');
  if (voters.length + learners.length > MAX_CONFIG_MEMBERS) bad('config has too many members');
  const seen = new Set<string>();
  for (const id of [...voters, ...learners]) {
    if (!isNodeId(id)) bad('config member must be a node id');
    if (seen.has(id)) bad(`config lists ${id} twice`);
    seen.add(id);
  }
  return { voters: [...voters] as string[], learners: [...learners] as string[] };
}

function validateConfData(x: unknown): ConfEntryData {
  if (!isObject(x)) bad('conf entry data must be an object');
  const config = validateConfig(x.config);
  if (x.change === null) return { change: null, config };
  const c = x.change;
  if (!isObject(c) || typeof c.type !== 'string' || !CHANGE_TYPES.has(c.type)) bad('conf change type');
  return { change: { type: c.type as 'addVoter' | 'addLearner' | 'remove', id: nodeId(c, 'id') }, config };
}

function validateEntry(x: unknown): Entry {
  if (!isObject(x)) bad('entry must be an object');
  const term = nat(x, 'term');
  const index = nat(x, 'index');
  if (term < 1 || index < 1) bad('entry term and index start at 1');
  if (typeof x.kind !== 'string' || !KINDS.has(x.kind)) bad('entry kind');
  const kind = x.kind as EntryKind;
  const data = kind === 'conf' ? validateConfData(x.data) : kind === 'noop' ? null : x.data;
  return { term, index, kind, data };
}

export function validateSnapshot(x: unknown): Snapshot {
  if (!isObject(x)) bad('snapshot must be an object');
  const index = nat(x, 'index');
  const term = nat(x, 'term');
  if (index < 1 || term < 1) bad('snapshot index and term start at 1');
  return { index, term, config: validateConfig(x.config), data: x.data };
}

/** Throws KvError('KV_FRAME_INVALID') unless `x` is a well-formed Raft message. */
export function validateRaftMessage(x: unknown): RaftMessage {
  if (!isObject(x)) bad('not an object');
  const type = x.type;
  if (typeof type !== 'string' || !TYPES.has(type)) bad(`unknown type ${String(type).slice(0, 32)}`);
  const from = nodeId(x, 'from');
  const to = nodeId(x, 'to');
  if (from === to) bad('from equals to');
  const term = nat(x, 'term');
  const base = { from, to, term };
  switch (type as RaftMessageType) {
    case 'preVote':
    case 'vote': {
      if (term < 1) bad('vote term starts at 1');
      return { ...base, type: type as 'preVote' | 'vote', lastIndex: nat(x, 'lastIndex'), lastTerm: nat(x, 'lastTerm') };
    }
    case 'preVoteResp':
    case 'voteResp':
      return { ...base, type: type as 'preVoteResp' | 'voteResp', reject: bool(x, 'reject') };
    case 'append': {
      if (term < 1) bad('append term starts at 1');
      const prevIndex = nat(x, 'prevIndex');
      const prevTerm = nat(x, 'prevTerm');
      const commit = nat(x, 'commit');
      if (!Array.isArray(x.entries)) bad('entries must be an array');
      if (x.entries.length > MAX_ENTRIES_PER_MESSAGE) bad('too many entries');
      if (prevTerm > term) bad('prevTerm above term');
      const entries: Entry[] = [];
      let lastTerm = prevTerm;
      for (const raw of x.entries as unknown[]) {
        const e = validateEntry(raw);
        // Contiguous and term-monotone, as any leader's log is; anything else would let
        // a peer plant a log that breaks the log-matching property.
        if (e.index !== prevIndex + 1 + entries.length) bad('entries not contiguous');
        if (e.term < lastTerm || e.term > term) bad('entry terms out of order');
        lastTerm = e.term;
        entries.push(e);
      }
      return { ...base, type: 'append', prevIndex, prevTerm, entries, commit };
    }
    case 'appendResp':
      return {
        ...base, type: 'appendResp', reject: bool(x, 'reject'), index: nat(x, 'index'),
        hintIndex: nat(x, 'hintIndex'), hintTerm: nat(x, 'hintTerm'),
      };
    case 'heartbeat':
      if (term < 1) bad('heartbeat term starts at 1');
      return { ...base, type: 'heartbeat', commit: nat(x, 'commit') };
    case 'heartbeatResp':
      return { ...base, type: 'heartbeatResp' };
    case 'snapshot': {
      if (term < 1) bad('snapshot term starts at 1');
      const snapshot = validateSnapshot(x.snapshot);
      if (snapshot.term > term) bad('snapshot term above message term');
      return { ...base, type: 'snapshot', snapshot };
    }
  }
}
