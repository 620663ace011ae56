/**
 * The topology state machine that the Raft log drives (DESIGN.md §6). Pure and
 * deterministic: every node applying the same committed commands holds the same
 * state and therefore computes the same partition table for the same epoch.
 *
 * Member states: joining → normal → leaving → removed, and normal → replacing → normal
 * when a new process takes over a dead member's id (same ring positions, empty data).
 * Normal, leaving and replacing members own partitions (`current` ring); `future` is the
 * ring once pending changes finish (normal + joining + replacing). Data moves from current
 * to future owners before a change completes; writes go to both in the meantime. A
 * replacing member receives writes but serves no reads until it has streamed its data.
 */
import { KvError } from '../errors.ts';
import { NODE_ID_RE } from './hlc.ts';
import { buildPartitionTable, type PartitionTable } from './partitioner.ts';

export type MemberState = 'joining' | 'normal' | 'leaving' | 'replacing' | 'removed';

export interface Member {
  readonly id: string;
  readonly addr: string;
  readonly state: MemberState;
}

export type TopologyCommand =
  | { op: 'create'; clusterId: string; partitions: number; n: number; vnodes: number; id: string; addr: string }
  | { op: 'add'; id: string; addr: string }
  | { op: 'normal'; id: string }
  | { op: 'leave'; id: string }
  | { op: 'remove'; id: string }
  | { op: 'address'; id: string; addr: string }
  /** A new process (fresh data, maybe a new address) takes over member `id`'s place in the ring. */
  | { op: 'replace'; id: string; addr: string };

export interface TopologySnapshot {
  clusterId: string;
  partitions: number;
  n: number;
  vnodes: number;
  epoch: number;
  members: Member[];
}

const ADDR_RE = /^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

/** Validate a command from the log or the network (it must never crash a node). */
export function validateTopologyCommand(x: unknown): TopologyCommand {
  const bad = (why: string): never => { throw new KvError('KV_INVALID_ARGUMENT', `invalid topology command: ${why}`); };
  if (typeof x !== 'object' || x === null) return bad('not an object');
  const c = x as Record<string, unknown>;
  const id = (): string => (typeof c['id'] === 'string' && NODE_ID_RE.test(c['id']) ? c['id'] : bad('bad id'));
  const addr = (): string => (typeof c['addr'] === 'string' && ADDR_RE.test(c['addr']) ? c['addr'] : bad('bad addr'));
  const int = (k: string, min: number, max: number): number => {
    const v = c[k];
    return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : bad(`bad ${k}`);
  };
  switch (c['op']) {
    case 'create': {
      const partitions = int('partitions', 1, 65536);
      if ((partitions & (partitions - 1)) !== 0) bad('partitions must be a power of two');
      if (typeof c['clusterId'] !== 'string' || c['clusterId'].length === 0 || c['clusterId'].length > 64) bad('bad clusterId');
      return { op: 'create', clusterId: c['clusterId'] as string, partitions, n: int('n', 1, 7), vnodes: int('vnodes', 1, 4096), id: id(), addr: addr() };
    }
    case 'add': return { op: 'add', id: id(), addr: addr() };
    case 'address': return { op: 'address', id: id(), addr: addr() };
    case 'replace': return { op: 'replace', id: id(), addr: addr() };
    case 'normal': case 'leave': case 'remove': return { op: c['op'], id: id() };
    default: return bad(`unknown op ${String(c['op']).slice(0, 20)}`);
  }
}

const MEMBER_STATES: readonly MemberState[] = ['joining', 'normal', 'leaving', 'removed'];
/** Members a snapshot may list (removed ones included): far above any cluster this design serves. */
const SNAPSHOT_MEMBERS_MAX = 10_000;

/**
 * Validate a topology snapshot from a peer's Raft snapshot or from disk before it touches
 * state: the schema, every member, and what the log rules imply (an epoch counts every
 * committed change, so it is at least the number of members; Q a power of two).
 * Throws KV_INVALID_ARGUMENT naming the first problem.
 */
export function validateTopologySnapshot(x: unknown): TopologySnapshot {
  const bad = (why: string): never => { throw new KvError('KV_INVALID_ARGUMENT', `invalid topology snapshot: ${why}`); };
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return bad('not an object');
  const s = x as Record<string, unknown>;
  const int = (k: string, min: number, max: number): number => {
    const v = s[k];
    return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : bad(`bad ${k}`);
  };
  const epoch = int('epoch', 0, Number.MAX_SAFE_INTEGER);
  const clusterId = s['clusterId'];
  if (typeof clusterId !== 'string' || clusterId.length > 64) bad('bad clusterId');
  const members = s['members'];
  if (!Array.isArray(members) || members.length > SNAPSHOT_MEMBERS_MAX) return bad('members must be an array');
  if (epoch === 0) {
    // The state before `create`: nothing in it.
    if (clusterId !== '' || members.length > 0) bad('epoch 0 holds no cluster');
    return { clusterId: '', partitions: 0, n: 0, vnodes: 0, epoch: 0, members: [] };
  }
  if (clusterId === '') bad('bad clusterId');
  const partitions = int('partitions', 1, 65536);
  if ((partitions & (partitions - 1)) !== 0) bad('partitions must be a power of two');
  const n = int('n', 1, 7);
  const vnodes = int('vnodes', 1, 4096);
  if (members.length === 0) bad('a created cluster has members');
  if (epoch < members.length) bad(`epoch ${epoch} is below the ${members.length} members it must have added`);
  const seen = new Set<string>();
  const out: Member[] = members.map((m: unknown) => {
    if (typeof m !== 'object' || m === null) return bad('member is not an object');
    const { id, addr, state } = m as Record<string, unknown>;
    if (typeof id !== 'string' || !NODE_ID_RE.test(id)) bad('bad member id');
    if (typeof addr !== 'string' || !ADDR_RE.test(addr)) bad(`bad addr of ${String(id)}`);
    if (!MEMBER_STATES.includes(state as MemberState)) bad(`bad state of ${String(id)}`);
    if (seen.has(id as string)) bad(`member ${String(id)} listed twice`);
    seen.add(id as string);
    return { id: id as string, addr: addr as string, state: state as MemberState };
  });
  return { clusterId: clusterId as string, partitions, n, vnodes, epoch, members: out };
}

export class Topology {
  clusterId = '';
  partitions = 0;
  n = 0;
  vnodes = 0;
  /** Number of committed topology changes; 0 before the cluster is created. */
  epoch = 0;
  private readonly members = new Map<string, Member>();
  private tables: { current: PartitionTable; future: PartitionTable } | undefined;

  /** Builds the state a snapshot holds; throws KV_INVALID_ARGUMENT (and builds nothing) if it is not valid. */
  static fromSnapshot(raw: unknown): Topology {
    const s = validateTopologySnapshot(raw);
    const t = new Topology();
    t.clusterId = s.clusterId;
    t.partitions = s.partitions;
    t.n = s.n;
    t.vnodes = s.vnodes;
    t.epoch = s.epoch;
    for (const m of s.members) t.members.set(m.id, { id: m.id, addr: m.addr, state: m.state });
    return t;
  }

  snapshot(): TopologySnapshot {
    return { clusterId: this.clusterId, partitions: this.partitions, n: this.n, vnodes: this.vnodes, epoch: this.epoch, members: this.memberList() };
  }

  /** Members whose ownership change is in progress (joining, leaving or being replaced). */
  changesInProgress(): Member[] {
    return this.activeMembers().filter((m) => m.state === 'joining' || m.state === 'leaving' || m.state === 'replacing');
  }

  /**
   * The changes in progress that `cmd` would overlap, if it starts an ownership change (a new
   * member joining, a member leaving) while another one runs. One at a time, like Cassandra's
   * consistent range movement: a joining node copies the partitions of the future table, and a
   * second change would alter that table under it, so it would become an owner of partitions it
   * never received.
   */
  busyWith(cmd: TopologyCommand): Member[] | undefined {
    if (!('id' in cmd)) return undefined;
    const state = this.members.get(cmd.id)?.state ?? 'removed';
    const starts = (cmd.op === 'add' && state === 'removed') || cmd.op === 'leave' || (cmd.op === 'replace' && state === 'normal');
    if (!starts) return undefined;
    const busy = this.changesInProgress();
    return busy.length > 0 ? busy : undefined;
  }

  /** Why `cmd` cannot apply now, or undefined if it can. Leaders check before proposing. */
  reject(cmd: TopologyCommand): string | undefined {
    const m = 'id' in cmd ? this.members.get(cmd.id) : undefined;
    if (cmd.op === 'create') return this.epoch === 0 ? undefined : 'cluster already created';
    if (this.epoch === 0) return 'cluster not created yet';
    const busy = this.busyWith(cmd);
    if (busy) return `another ownership change is in progress (${busy.map((x) => `${x.id} ${x.state}`).join(', ')})`;
    switch (cmd.op) {
      case 'add': return m && m.state !== 'removed' ? `${cmd.id} is already a member (${m.state})` : undefined;
      case 'address': return m && m.state !== 'removed' ? undefined : `${cmd.id} is not a member`;
      case 'normal': return m?.state === 'joining' || m?.state === 'replacing' ? undefined : `${cmd.id} is not joining or being replaced`;
      case 'replace': return m?.state === 'normal' ? undefined : `${cmd.id} is not a normal member`;
      case 'leave': {
        if (m?.state !== 'normal') return `${cmd.id} is not a normal member`;
        const owners = this.memberList().filter((x) => x.state === 'normal').length;
        return owners <= 1 ? 'the last normal member cannot leave' : undefined;
      }
      case 'remove': return m && m.state !== 'removed' ? undefined : `${cmd.id} is not a member`;
    }
  }

  /** Apply a committed command. Returns false (and changes nothing) if it does not apply. */
  apply(cmd: TopologyCommand): boolean {
    if (this.reject(cmd) !== undefined) return false;
    switch (cmd.op) {
      case 'create':
        this.clusterId = cmd.clusterId;
        this.partitions = cmd.partitions;
        this.n = cmd.n;
        this.vnodes = cmd.vnodes;
        this.members.set(cmd.id, { id: cmd.id, addr: cmd.addr, state: 'normal' });
        break;
      case 'add': this.members.set(cmd.id, { id: cmd.id, addr: cmd.addr, state: 'joining' }); break;
      case 'address': this.set(cmd.id, { addr: cmd.addr }); break;
      case 'normal': this.set(cmd.id, { state: 'normal' }); break;
      case 'leave': this.set(cmd.id, { state: 'leaving' }); break;
      case 'remove': this.set(cmd.id, { state: 'removed' }); break;
      case 'replace': this.set(cmd.id, { state: 'replacing', addr: cmd.addr }); break;
    }
    this.epoch++;
    this.tables = undefined;
    return true;
  }

  private set(id: string, patch: Partial<Member>): void {
    const m = this.members.get(id);
    if (m) this.members.set(id, { ...m, ...patch });
  }

  member(id: string): Member | undefined {
    return this.members.get(id);
  }

  /** Every member ever added, removed ones included, sorted by id. */
  memberList(): Member[] {
    return [...this.members.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Members that are part of the cluster now (not removed). */
  activeMembers(): Member[] {
    return this.memberList().filter((m) => m.state !== 'removed');
  }

  /** Partition tables for this epoch, computed once per epoch. */
  table(which: 'current' | 'future' = 'current'): PartitionTable {
    if (!this.tables) {
      const spec = (states: MemberState[]) => ({
        members: this.memberList().filter((m) => states.includes(m.state)).map((m) => m.id),
        partitions: this.partitions, n: this.n, vnodes: this.vnodes,
      });
      const current = buildPartitionTable(spec(['normal', 'leaving', 'replacing']));
      const hasPending = this.memberList().some((m) => m.state === 'joining' || m.state === 'leaving');
      this.tables = { current, future: hasPending ? buildPartitionTable(spec(['normal', 'joining', 'replacing'])) : current };
    }
    return this.tables[which];
  }
}
