/**
 * Transcript environment for the Merkle anti-entropy exchange (lib/core/merkle-exchange.ts)
 * between replicas of one partition. Replicas are the simulation's (merkle-sim.ts): a
 * record map, the in-place tree and the segment index, written together as storage
 * does, with the sim's pure 64-bit hash so segment numbers and hashes are the same on
 * every machine. `exchange` runs one whole exchange message by message, over msgpack and
 * the frame validator as on the wire, and moves records as each step says.
 *
 * Versions are written as small integers: `3` is the HLC version of wall time
 * BASE_WALL_MS + 3 at node n1, so a larger number is a newer write.
 *
 * Commands:
 *   merkle-config segments= width= max-segments= max-keys= partition=
 *                                   shape and limits, pinned by the transcript (required first)
 *   add-replicas NAME...            empty replicas
 *   write NAME...                   the records of the input lines, "KEY VERSION [del]",
 *                                   on each replica named
 *   fill NAME... prefix=P count=N v=V
 *                                   keys P01..PN at version V (del=true for tombstones)
 *   forget NAME KEY...              the replica never got these keys
 *   show NAME                       root, and records by segment
 *   exchange A B                    A initiates, B responds; every message, read and move
 */
import { pack, unpack } from 'msgpackr';
import { makeVersion, parseVersion, type Version } from '../../lib/core/hlc.ts';
import {
  MerkleExchange, decodeHashAt, validateMerkleMessage,
  type ExchangeStep, type MerkleChunk, type MerkleEntry, type MerkleExchangeLimits, type MerkleMessage,
} from '../../lib/core/merkle-exchange.ts';
import type { MerkleShape } from '../../lib/core/merkle.ts';
import { SimReplica, simHash64 } from './merkle-sim.ts';
import { NodeEnv, type Directive } from './transcript-runner.ts';

const BASE_WALL_MS = 1_700_000_000_000;
const VERSION_NODE = 'n1';
/** Far above any exchange of a transcript; a runaway exchange is a finding, not a hang. */
const MESSAGES_MAX = 10_000;

interface InFlight {
  readonly from: SimReplica;
  readonly to: SimReplica;
  readonly msg: MerkleMessage;
}

interface Pinned {
  readonly shape: MerkleShape;
  readonly limits: MerkleExchangeLimits;
  readonly partition: number;
}

const version = (n: number): Version => makeVersion({ wall: BASE_WALL_MS + n, logical: 0 }, VERSION_NODE);
const label = (v: Version): number => parseVersion(v).ts.wall - BASE_WALL_MS;
const fmtEntries = (es: readonly MerkleEntry[]): string => `(${es.map(([k, v]) => `${k}@${label(v)}`).join(' ')})`;
const hex = (h: bigint, digits: number): string => h.toString(16).padStart(16, '0').slice(0, digits);

function fmtChunk(c: MerkleChunk): string {
  return `seg ${c.segment} (${c.after ?? 'start'}..${c.upTo ?? 'end'}] ${fmtEntries(c.entries)}`;
}

/** A message on one line, chunks of mt-keys below it; node hashes by their first 8 hex digits. */
function fmtMessage(m: MerkleMessage): string[] {
  switch (m.t) {
    case 'mt-root':
      return [`mt-root segments=${m.segments} width=${m.width} root=${hex(decodeHashAt(m.root, 0), 16)}`];
    case 'mt-nodes': {
      const width = m.hashes.length / 8 / m.parents.length;
      const groups = m.parents.map((p, i) =>
        `${p}:(${Array.from({ length: width }, (_, j) => hex(decodeHashAt(m.hashes, i * width + j), 8)).join(' ')})`);
      return [`mt-nodes level=${m.level} ${groups.join(' ')}`];
    }
    case 'mt-keys':
      return [`mt-keys last=${m.last}`, ...m.chunks.map((c) => `  ${fmtChunk(c)}`)];
    case 'mt-diff': {
      const resume = m.resume === null ? '-' : `seg ${m.resume.segment} after ${m.resume.after ?? 'start'}`;
      return [`mt-diff give=${fmtEntries(m.give)} want=${fmtEntries(m.want)} resume=${resume}`];
    }
    case 'mt-end':
      return [`mt-end ${m.reason}`];
  }
}

export class MerkleTranscriptEnv extends NodeEnv<SimReplica> {
  #pinned: Pinned | null = null;

  protected handle(d: Directive): void {
    switch (d.cmd) {
      case 'merkle-config': this.#setConfig(d); break;
      case 'add-replicas': this.#addReplicas(d); break;
      case 'write': this.#write(d); break;
      case 'fill': this.#fill(d); break;
      case 'forget': this.#forget(d); break;
      case 'show': this.#show(d); break;
      case 'exchange': this.#exchange(d); break;
      default: d.fail('unknown command');
    }
  }

  #setConfig(d: Directive): void {
    this.#pinned = {
      shape: { segments: d.int('segments'), width: d.int('width') },
      limits: { maxSegmentsPerRound: d.int('max-segments'), maxKeysPerMessage: d.int('max-keys') },
      partition: d.int('partition'),
    };
    d.done();
  }

  #addReplicas(d: Directive): void {
    const names = d.positional(1);
    d.done();
    const pinned = this.#pinned ?? d.fail('merkle-config must come first: shape and limits are pinned by the transcript');
    for (const name of names) {
      if (this.nodes.has(name)) d.fail(`replica ${name} exists`);
      this.nodes.set(name, new SimReplica(name, simHash64, pinned.shape));
    }
  }

  #write(d: Directive): void {
    const replicas = this.idsOnly(d).map((n) => this.node(d, n));
    if (d.input.length === 0) d.fail('needs input lines "KEY VERSION [del]"');
    for (const line of d.input) {
      const [key, v, del, extra] = line.trim().split(/\s+/);
      const n = Number(v);
      if (key === undefined || !Number.isSafeInteger(n) || n < 0 || (del !== undefined && del !== 'del') || extra !== undefined) {
        d.fail(`bad record line "${line}": want KEY VERSION [del]`);
      }
      for (const r of replicas) r.write(key, { version: version(n), deleted: del === 'del' });
    }
  }

  #fill(d: Directive): void {
    const replicas = this.ids(d).map((n) => this.node(d, n));
    const prefix = d.str('prefix');
    const count = d.int('count');
    const v = d.int('v');
    const deleted = d.str('del', 'false') === 'true';
    d.done();
    const digits = Math.max(2, String(count).length);
    for (let i = 1; i <= count; i++) {
      const key = `${prefix}${String(i).padStart(digits, '0')}`;
      for (const r of replicas) r.write(key, { version: version(v), deleted });
    }
  }

  #forget(d: Directive): void {
    const [name, ...keys] = d.positional(2);
    d.done();
    const r = this.node(d, name as string);
    for (const key of keys) {
      if (!r.records.has(key)) d.fail(`${name} holds no ${key}`);
      r.forget(key);
    }
  }

  #show(d: Directive): void {
    const [name] = this.idsOnly(d, 1, 1);
    const r = this.node(d, name as string);
    this.print(`root=${hex(r.tree.root(), 16)} records=${r.records.size}`);
    const bySegment = new Map<number, string[]>();
    for (const key of [...r.records.keys()].sort()) {
      const rec = r.records.get(key) as { version: Version; deleted: boolean };
      const seg = r.tree.segmentOf(key);
      const list = bySegment.get(seg) ?? [];
      list.push(`${key}@${label(rec.version)}${rec.deleted ? ' del' : ''}`);
      bySegment.set(seg, list);
    }
    for (const seg of [...bySegment.keys()].sort((x, y) => x - y)) this.print(`seg ${seg}: ${(bySegment.get(seg) as string[]).join(', ')}`);
  }

  #exchange(d: Directive): void {
    const [aName, bName] = this.idsOnly(d, 2, 2) as [string, string];
    const { limits, partition } = this.#pinned as Pinned;
    const a = this.node(d, aName);
    const b = this.node(d, bName);
    const { session: sa, send } = MerkleExchange.initiate(a.tree, partition, limits);
    let sb: MerkleExchange | null = null;
    let inflight: InFlight | null = { from: a, to: b, msg: send };
    for (let sent = 0; inflight !== null; sent++) {
      if (sent >= MESSAGES_MAX) d.fail(`no end after ${MESSAGES_MAX} messages`);
      const { from, to }: InFlight = inflight;
      const [head, ...rest] = fmtMessage(inflight.msg);
      this.print(`${from.name}->${to.name} ${head}`);
      for (const line of rest) this.print(line);
      const msg = validateMerkleMessage(unpack(pack(inflight.msg)));
      const session: MerkleExchange = to === a ? sa : (sb ??= MerkleExchange.respond(b.tree, msg.partition, limits));
      const reads = session.segmentsToRead(msg);
      const step: ExchangeStep = session.receive(msg, to.source);
      this.#move(step, to, from, reads);
      this.print(`  ${to.name}: ${session.state}${session.outcome === null ? '' : ` (${session.outcome})`}`);
      inflight = step.send === null ? null : { from: to, to: from, msg: step.send };
    }
    for (const [r, s] of [[a, sa], [b, sb]] as const) {
      const st = s?.stats;
      this.print(`${r.name}: outcome=${s?.outcome ?? '-'} sent=${st?.messagesSent ?? 0} received=${st?.messagesReceived ?? 0} ` +
        `differing-segments=${st?.segmentsDiffering ?? 0} pushed=${st?.pushed ?? 0} pulled=${st?.pulled ?? 0}`);
    }
    const same = a.tree.root() === b.tree.root();
    this.print(same ? `roots equal: ${hex(a.tree.root(), 16)}` : `roots differ: ${hex(a.tree.root(), 16)} ${hex(b.tree.root(), 16)}`);
  }

  /** Newer version wins at the receiver, as the runtime's record apply does. */
  #move(step: ExchangeStep, self: SimReplica, peer: SimReplica, reads: readonly number[]): void {
    if (reads.length > 0) this.print(`  ${self.name} reads segments (${reads.join(' ')})`);
    if (step.push.length > 0) this.print(`  ${self.name} pushes ${fmtEntries(step.push)}`);
    if (step.pull.length > 0) this.print(`  ${self.name} pulls ${fmtEntries(step.pull)}`);
    for (const [key] of step.push) peer.applyIfNewer(key, self.records.get(key));
    for (const [key] of step.pull) self.applyIfNewer(key, peer.records.get(key));
  }
}
