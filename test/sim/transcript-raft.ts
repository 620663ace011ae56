/**
 * Transcript environment for the Raft core (lib/core/raft): RaftNodes in one process,
 * driven only by the commands of a transcript. Nothing happens between commands: no
 * clock, no background delivery. Messages wait in one queue until a command delivers
 * or drops them, so a transcript says exactly which message reached whom and when.
 *
 * Commands (ids are node ids; `...` = one or more):
 *   raft-config election= heartbeat= max-append= max-inflight= max-uncommitted= max-committed=
 *                                   every option, pinned by the transcript (required first)
 *   add-nodes ID... seed=N [bootstrap=(ID,...)] [learners=(ID,...)]
 *                                   new nodes; those in bootstrap start from that
 *                                   configuration as entry 1, the others start empty
 *   tick ID... [count=1]            ticks each node count times
 *   campaign ID                     ticks ID until its election timer fires
 *   propose ID DATA                 a normal entry on ID
 *   conf-change ID addVoter|addLearner|remove TARGET
 *   process-ready ID...             handles each node's Ready: prints it, applies it,
 *                                   queues its messages
 *   deliver-msgs ID...              steps every queued message addressed to ID
 *   drop-msgs ID...                 discards them
 *   stabilize [ID...]               Ready handling and delivery among ID (default all)
 *                                   until nothing moves
 *   cut ID... / heal [ID...]        a message from or to a node that is cut off when it
 *                                   is sent or delivered is lost; heal alone heals all
 *   compact ID index=N              snapshot ID's applied state at N and drop the log up to N
 *   raft-state                      one line per node
 *   raft-log ID                     ID's snapshot and log
 *   status ID                       the leader's progress of each peer
 *
 * A line "ID is ROLE term=T lead=L" is printed whenever a node's role, term or leader
 * changes, under the input that changed it.
 */
import { RaftNode, type RaftNodeOptions } from '../../lib/core/raft/node.ts';
import { validateRaftMessage } from '../../lib/core/raft/validate.ts';
import type { ConfChange, ConfEntryData, Entry, RaftConfig, RaftMessage, Ready, Snapshot } from '../../lib/core/raft/types.ts';
import { seededRng } from '../../lib/core/rng.ts';
import { Cuts, NodeEnv, type Directive } from './transcript-runner.ts';

type PinnedOptions = Omit<RaftNodeOptions, 'id' | 'rng'>;

/** The application state machine of a transcript: the normal entries applied, in order. */
interface AppliedValue {
  readonly index: number;
  readonly value: string;
}

interface EnvNode {
  readonly raft: RaftNode;
  applied: AppliedValue[];
  /** Role, term and leader as last printed. */
  seen: string;
}

/** Bounds a stabilize that would never settle (a livelock is a finding, not a hang). */
const STABILIZE_ROUNDS_MAX = 10_000;

/** Marks a message the network loses: sender or recipient cut off when sent or delivered. */
const LOST = ' (lost: cut off)';

const CHANGE_TYPES: ReadonlySet<string> = new Set(['addVoter', 'addLearner', 'remove']);

const list = (ids: readonly string[]): string => `(${ids.join(',')})`;

export function fmtConfig(c: RaftConfig): string {
  return `voters=${list(c.voters)} learners=${list(c.learners)}`;
}

export function fmtEntry(e: Entry): string {
  const head = `${e.term}/${e.index}`;
  switch (e.kind) {
    case 'noop':
      return `${head} noop`;
    case 'conf': {
      const d = e.data as ConfEntryData;
      const what = d.change === null ? 'bootstrap' : `${d.change.type} ${d.change.id}`;
      return `${head} conf ${what} ${fmtConfig(d.config)}`;
    }
    case 'normal':
      return `${head} ${JSON.stringify(e.data)}`;
  }
}

function fmtSnapshot(s: Snapshot): string {
  const values = (s.data as { values?: AppliedValue[] } | null)?.values ?? [];
  return `${s.term}/${s.index} ${fmtConfig(s.config)} values=${list(values.map((v) => v.value))}`;
}

export function fmtMessage(m: RaftMessage): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'preVote':
    case 'vote':
      return `${head} log=${m.lastTerm}/${m.lastIndex}`;
    case 'preVoteResp':
    case 'voteResp':
      return `${head} ${m.reject ? 'rejected' : 'granted'}`;
    case 'append': {
      const entries = m.entries.length === 0 ? '' : ` entries=[${m.entries.map(fmtEntry).join(', ')}]`;
      return `${head} prev=${m.prevTerm}/${m.prevIndex} commit=${m.commit}${entries}`;
    }
    case 'appendResp':
      return m.reject ? `${head} rejected index=${m.index} hint=${m.hintTerm}/${m.hintIndex}` : `${head} index=${m.index}`;
    case 'heartbeat':
      return `${head} commit=${m.commit}`;
    case 'heartbeatResp':
      return head;
    case 'snapshot':
      return `${head} snapshot=${fmtSnapshot(m.snapshot)}`;
  }
}

export class RaftTranscriptEnv extends NodeEnv<EnvNode> {
  #options: PinnedOptions | null = null;
  /** Sent and not yet delivered or dropped, in send order. */
  #queue: RaftMessage[] = [];
  readonly #cuts = new Cuts();

  protected handle(d: Directive): void {
    switch (d.cmd) {
      case 'raft-config': this.#config(d); break;
      case 'add-nodes': this.#addNodes(d); break;
      case 'tick': this.#tick(d); break;
      case 'campaign': this.#campaign(d); break;
      case 'propose': this.#propose(d); break;
      case 'conf-change': this.#confChange(d); break;
      case 'process-ready': for (const id of this.idsOnly(d)) this.#processReady(id); break;
      case 'deliver-msgs': for (const id of this.idsOnly(d)) this.#deliver(id); break;
      case 'drop-msgs': for (const id of this.idsOnly(d)) this.#drop(id); break;
      case 'stabilize': this.#stabilize(d); break;
      case 'cut': this.#cuts.cutNodes(this.idsOnly(d)); break;
      case 'heal': this.#cuts.heal(this.idsOnly(d, 0)); break;
      case 'compact': this.#compact(d); break;
      case 'raft-state': d.done(); this.#raftState(); break;
      case 'raft-log': this.#raftLog(d); break;
      case 'status': this.#status(d); break;
      default: d.fail('unknown command');
    }
  }

  // ------------------------------------------------------------------------ commands

  #config(d: Directive): void {
    this.#options = {
      electionTicks: d.int('election'),
      heartbeatTicks: d.int('heartbeat'),
      maxEntriesPerAppend: d.int('max-append'),
      maxInflight: d.int('max-inflight'),
      maxUncommittedEntries: d.int('max-uncommitted'),
      maxCommittedPerReady: d.int('max-committed'),
    };
    d.done();
  }

  #addNodes(d: Directive): void {
    const options = this.#options ?? d.fail('raft-config must come first: every option is pinned by the transcript');
    const ids = d.positional(1);
    const seed = d.int('seed');
    const voters = d.list('bootstrap', []);
    const learners = d.list('learners', []);
    d.done();
    ids.forEach((id, i) => {
      if (this.nodes.has(id)) d.fail(`node ${id} exists`);
      const raft = new RaftNode({ id, rng: seededRng(seed + i), ...options });
      if (voters.includes(id)) raft.bootstrap({ voters, learners });
      const node: EnvNode = { raft, applied: [], seen: '' };
      node.seen = this.#stateLine(node);
      this.nodes.set(id, node);
      this.print(voters.includes(id) ? `${id} bootstrapped: ${fmtEntry(raft.entries(1)[0] as Entry)}` : `${id} starts empty`);
    });
  }

  #tick(d: Directive): void {
    const ids = this.ids(d);
    const count = d.int('count', 1);
    d.done();
    for (const id of ids) {
      const node = this.node(d, id);
      for (let i = 0; i < count; i++) {
        node.raft.tick();
        this.#note(id, node);
      }
    }
  }

  #campaign(d: Directive): void {
    const [id] = this.idsOnly(d, 1, 1);
    const node = this.node(d, id as string);
    if (node.raft.role === 'leader' || !node.raft.isVoter) d.fail(`${id} is ${node.raft.role}: it does not campaign`);
    const { elapsedTicks, timeoutTicks } = node.raft.electionTimer;
    const ticks = Math.max(1, timeoutTicks - elapsedTicks);
    for (let i = 0; i < ticks; i++) node.raft.tick();
    this.print(`${id} campaigns after ${ticks} tick(s)`);
    this.#note(id as string, node);
  }

  #propose(d: Directive): void {
    const [id, data] = d.positional(2);
    d.done();
    const node = this.node(d, id as string);
    this.print(`index ${node.raft.propose(data)}`);
    this.#note(id as string, node);
  }

  #confChange(d: Directive): void {
    const [id, type, target] = d.positional(3);
    d.done();
    if (!CHANGE_TYPES.has(type as string)) d.fail(`unknown change ${type}`);
    const node = this.node(d, id as string);
    const change = { type, id: target } as ConfChange;
    this.print(`index ${node.raft.proposeConfChange(change)}`);
    this.#note(id as string, node);
  }

  #stabilize(d: Directive): void {
    const ids = d.positional();
    d.done();
    const set = ids.length > 0 ? ids : [...this.nodes.keys()];
    for (const id of set) this.node(d, id);
    for (let round = 0; round < STABILIZE_ROUNDS_MAX; round++) {
      let moved = false;
      for (const id of set) {
        if (!(this.nodes.get(id) as EnvNode).raft.hasReady()) continue;
        this.#processReady(id);
        moved = true;
      }
      for (const id of set) {
        if (!this.#queue.some((m) => m.to === id)) continue;
        this.#deliver(id);
        moved = true;
      }
      if (!moved) return;
    }
    d.fail(`no fixed point after ${STABILIZE_ROUNDS_MAX} rounds`);
  }

  #compact(d: Directive): void {
    const [id] = this.ids(d, 1, 1);
    const index = d.int('index');
    d.done();
    const node = this.node(d, id as string);
    const values = node.applied.filter((v) => v.index <= index);
    const snap = node.raft.compact(index, { values });
    this.print(`${id} compacted: snapshot ${fmtSnapshot(snap)}`);
  }

  #raftState(): void {
    for (const [id, n] of this.nodes) {
      const r = n.raft;
      this.print(`${id}: ${r.role} term=${r.term} lead=${r.leader ?? '-'} vote=${r.votedFor ?? '-'} commit=${r.commitIndex} ` +
        `applied=${r.appliedIndex} last=${r.lastTerm}/${r.lastIndex} snap=${r.termAt(r.snapshotIndex) ?? 0}/${r.snapshotIndex} ` +
        `${fmtConfig(r.config)}`);
    }
  }

  #raftLog(d: Directive): void {
    const [id] = this.idsOnly(d, 1, 1);
    const r = this.node(d, id as string).raft;
    if (r.snapshotIndex > 0) this.print(`snapshot ${r.termAt(r.snapshotIndex)}/${r.snapshotIndex}`);
    const entries = r.lastIndex > r.snapshotIndex ? r.entries(r.snapshotIndex + 1) : [];
    if (entries.length === 0 && r.snapshotIndex === 0) this.print('empty');
    for (const e of entries) this.print(fmtEntry(e));
  }

  #status(d: Directive): void {
    const [id] = this.idsOnly(d, 1, 1);
    const progress = this.node(d, id as string).raft.progress();
    if (progress.length === 0) this.print(`${id} is not leader`);
    for (const p of progress) {
      this.print(`${p.id}: ${p.state} match=${p.match} next=${p.next}${p.recentActive ? ' active' : ''}`);
    }
  }

  // ------------------------------------------------------------------------ mechanics

  #processReady(id: string): void {
    const node = this.nodes.get(id) as EnvNode;
    if (!node.raft.hasReady()) return;
    const rd = node.raft.ready();
    this.print(`> ${id} handling Ready`);
    this.#printReady(rd);
    // The order types.ts prescribes: persist (nothing to do: the node keeps its log),
    // send, apply, advance.
    this.#queue.push(...rd.messages.filter((m) => !this.#isCut(m)));
    if (rd.snapshot !== undefined) {
      node.applied = [...((rd.snapshot.data as { values: AppliedValue[] }).values)];
    }
    for (const e of rd.committed) {
      if (e.kind === 'normal') node.applied.push({ index: e.index, value: String(e.data) });
    }
    node.raft.advance();
  }

  #printReady(rd: Ready): void {
    const lines: string[] = [];
    if (rd.hardState !== undefined) {
      const hs = rd.hardState;
      lines.push(`HardState term=${hs.term} vote=${hs.vote ?? '-'} commit=${hs.commit}`);
    }
    if (rd.snapshot !== undefined) lines.push(`Snapshot ${fmtSnapshot(rd.snapshot)}`);
    const section = (title: string, items: string[]): void => {
      if (items.length === 0) return;
      lines.push(`${title}:`, ...items.map((s) => `  ${s}`));
    };
    section('Entries', rd.entries.map(fmtEntry));
    section('Committed', rd.committed.map(fmtEntry));
    section('Messages', rd.messages.map((m) => `${fmtMessage(m)}${this.#isCut(m) ? LOST : ''}`));
    for (const l of lines) this.print(`  ${l}`);
  }

  #deliver(id: string): void {
    const mine = this.#take(id);
    if (mine.length === 0) return;
    this.print(`> ${id} receiving messages`);
    for (const m of mine) {
      if (this.#isCut(m)) {
        this.print(`  ${fmtMessage(m)}${LOST}`);
        continue;
      }
      this.print(`  ${fmtMessage(m)}`);
      const node = this.nodes.get(m.to);
      if (node === undefined) continue;
      // What the runtime does to every frame off the wire, so the core's own output is held to it too.
      node.raft.step(validateRaftMessage(m));
      this.#note(m.to, node, '    ');
    }
  }

  #drop(id: string): void {
    const mine = this.#take(id);
    if (mine.length === 0) return;
    this.print(`> ${id} dropping messages`);
    for (const m of mine) this.print(`  ${fmtMessage(m)}`);
  }

  #isCut(m: RaftMessage): boolean {
    return this.#cuts.isCut(m.from, m.to);
  }

  #take(id: string): RaftMessage[] {
    const mine = this.#queue.filter((m) => m.to === id);
    this.#queue = this.#queue.filter((m) => m.to !== id);
    return mine;
  }

  #stateLine(n: EnvNode): string {
    return `${n.raft.role} term=${n.raft.term} lead=${n.raft.leader ?? '-'}`;
  }

  #note(id: string, n: EnvNode, indent = ''): void {
    const now = this.#stateLine(n);
    if (now === n.seen) return;
    n.seen = now;
    this.print(`${indent}${id} is ${now}`);
  }
}
