/**
 * Transcript environment for the SWIM + Lifeguard core (lib/core/swim): one Swim per
 * node on a virtual clock. Time moves only by `run`, which ticks every running node each
 * step and then delivers what they sent, and what that provoked, at the same instant
 * (a LAN round trip is far below a tick). So every probe, relay, notice and refutation
 * appears in the transcript at the millisecond it happened.
 *
 * Commands:
 *   swim-config probe-interval= probe-timeout= indirect-checks= suspicion-mult=
 *               suspicion-max-mult= suspicion-confirmations= retransmit-mult=
 *               awareness-max= max-piggyback= lag-threshold= tick-gap-max=
 *               max-pending-relays=
 *                                   every field, pinned by the transcript (required
 *                                   first), so changed defaults never rewrite it
 *   add-nodes ID... seed=N          new members; every node's member list is all nodes
 *   run ms=N [step=100] [log=all|events]
 *                                   advance the clock; log=events prints liveness changes
 *                                   and epoch notices only, and counts the messages
 *   crash ID... / restart ID seed=N a crashed node neither ticks nor receives; a restart
 *                                   starts it afresh (incarnation 0, nothing remembered)
 *   cut ID... / cut-link A B / heal [ID...]
 *                                   messages over a cut link are lost
 *   link-down A B / link-up A B     A's transport reports its connection to B closed
 *                                   (as a killed process's kernel does at once) or
 *                                   open again; cuts and crashes never report it
 *   report-lag ID ms=N              event-loop lag measured by ID's runtime
 *   set-epoch ID epoch=N            ID's committed Raft epoch
 *   swim-state [ID...]              incarnation, health, probe and view of each node
 */
import { seededRng } from '../../lib/core/rng.ts';
import {
  Swim, validateSwimMessage, type SwimConfig, type SwimMessage, type SwimOutput, type SwimUpdate,
} from '../../lib/core/swim/index.ts';
import { Cuts, NodeEnv, type Directive } from './transcript-runner.ts';

/** Transcript argument of each config field; a field added to SwimConfig must be added here. */
const CONFIG_ARGS: Readonly<Record<keyof SwimConfig, string>> = Object.freeze({
  probeIntervalMs: 'probe-interval',
  probeTimeoutMs: 'probe-timeout',
  indirectChecks: 'indirect-checks',
  suspicionMult: 'suspicion-mult',
  suspicionMaxTimeoutMult: 'suspicion-max-mult',
  suspicionConfirmations: 'suspicion-confirmations',
  retransmitMult: 'retransmit-mult',
  awarenessMax: 'awareness-max',
  maxPiggyback: 'max-piggyback',
  lagThresholdMs: 'lag-threshold',
  tickGapMaxMs: 'tick-gap-max',
  maxPendingRelays: 'max-pending-relays',
});

/** A message storm (every message provoking more) is a finding, not a hang. */
const MESSAGES_PER_STEP_MAX = 10_000;

interface EnvNode {
  swim: Swim;
  crashed: boolean;
}

interface InFlight {
  readonly from: string;
  readonly to: string;
  readonly msg: SwimMessage;
}

function fmtUpdate(u: SwimUpdate): string {
  return `${u.id}:${u.liveness}/${u.incarnation}${u.from === undefined ? '' : `<${u.from}`}`;
}

function fmtMessage(from: string, to: string, m: SwimMessage): string {
  const extra = m.type === 'ping-req' ? ` target=${m.target} timeout=${m.timeoutMs}` : '';
  const epoch = m.epoch === 0 ? '' : ` epoch=${m.epoch}`;
  return `${from}->${to} ${m.type} seq=${m.seq}${extra}${epoch} [${m.updates.map(fmtUpdate).join(' ')}]`;
}

export class SwimTranscriptEnv extends NodeEnv<EnvNode> {
  #config: SwimConfig | null = null;
  readonly #cuts = new Cuts();
  #nowMs = 0;
  #queue: InFlight[] = [];

  protected handle(d: Directive): void {
    switch (d.cmd) {
      case 'swim-config': this.#setConfig(d); break;
      case 'add-nodes': this.#addNodes(d); break;
      case 'run': this.#run(d); break;
      case 'crash': for (const id of this.idsOnly(d)) this.node(d, id).crashed = true; break;
      case 'restart': this.#restart(d); break;
      case 'cut': this.#cuts.cutNodes(this.idsOnly(d)); break;
      case 'cut-link': {
        const [a, b] = this.idsOnly(d, 2, 2);
        this.#cuts.cutLink(a as string, b as string);
        break;
      }
      case 'heal': this.#cuts.heal(this.idsOnly(d, 0)); break;
      case 'link-down':
      case 'link-up': this.#link(d); break;
      case 'report-lag': this.#reportLag(d); break;
      case 'set-epoch': this.#setEpoch(d); break;
      case 'swim-state': this.#state(d); break;
      default: d.fail('unknown command');
    }
  }

  // ------------------------------------------------------------------------ commands

  #setConfig(d: Directive): void {
    const config = {} as Record<keyof SwimConfig, number>;
    for (const [field, arg] of Object.entries(CONFIG_ARGS) as Array<[keyof SwimConfig, string]>) config[field] = d.int(arg);
    d.done();
    this.#config = config;
  }

  #newSwim(d: Directive, id: string, seed: number): Swim {
    const config = this.#config ?? d.fail('swim-config must come first: every field is pinned by the transcript');
    return new Swim(config, id, seededRng(seed));
  }

  #addNodes(d: Directive): void {
    const ids = d.positional(1);
    const seed = d.int('seed');
    d.done();
    ids.forEach((id, i) => {
      if (this.nodes.has(id)) d.fail(`node ${id} exists`);
      this.nodes.set(id, { swim: this.#newSwim(d, id, seed + i), crashed: false });
    });
    const all = [...this.nodes.keys()];
    for (const n of this.nodes.values()) n.swim.setMembers(all, this.#nowMs);
    this.print(`members (${all.join(',')}) at t=${this.#nowMs}`);
  }

  #restart(d: Directive): void {
    const [id] = this.ids(d, 1, 1);
    const seed = d.int('seed');
    d.done();
    const node = this.node(d, id as string);
    node.swim = this.#newSwim(d, id as string, seed);
    node.swim.setMembers([...this.nodes.keys()], this.#nowMs);
    node.crashed = false;
  }

  #run(d: Directive): void {
    const ms = d.int('ms');
    const step = d.int('step', 100);
    const log = d.str('log', 'all');
    d.done();
    if (step < 1 || ms < step || ms % step !== 0) d.fail('ms must be a positive multiple of step');
    if (log !== 'all' && log !== 'events') d.fail('log must be all or events');
    let messages = 0;
    const end = this.#nowMs + ms;
    while (this.#nowMs < end) {
      this.#nowMs += step;
      for (const [id, n] of this.nodes) {
        if (!n.crashed) this.#collect(id, n.swim.tick(this.#nowMs), 'tick');
      }
      messages += this.#deliver(d, log);
    }
    if (log === 'events') this.print(`(${messages} messages until t=${this.#nowMs})`);
  }

  /** Delivers what is in flight, and what that provokes, at the current instant; returns the count. */
  #deliver(d: Directive, log: string): number {
    let messages = 0;
    for (let delivered = 0; this.#queue.length > 0; delivered++) {
      if (delivered >= MESSAGES_PER_STEP_MAX) d.fail(`more than ${MESSAGES_PER_STEP_MAX} messages at t=${this.#nowMs}`);
      const m = this.#queue.shift() as InFlight;
      messages++;
      const to = this.nodes.get(m.to);
      const lost = this.#cuts.isCut(m.from, m.to) ? ' (lost: cut off)' : to === undefined || to.crashed ? ' (lost: crashed)' : '';
      if (log === 'all') this.#at(`${fmtMessage(m.from, m.to, m.msg)}${lost}`);
      if (lost !== '' || to === undefined) continue;
      // What the runtime does to every frame off the wire, so the core's own output is held to it too.
      this.#collect(m.to, to.swim.receive(m.from, validateSwimMessage(m.msg), this.#nowMs), `from ${m.from}`);
    }
    return messages;
  }

  #link(d: Directive): void {
    const [a, b] = this.idsOnly(d, 2, 2) as [string, string];
    const node = this.node(d, a);
    this.node(d, b);
    if (node.crashed) d.fail(`${a} is crashed`);
    this.#collect(a, d.cmd === 'link-down' ? node.swim.linkDown(b, this.#nowMs) : node.swim.linkUp(b, this.#nowMs), d.cmd);
    this.#deliver(d, 'all');
  }

  #reportLag(d: Directive): void {
    const [id] = this.ids(d, 1, 1);
    const lagMs = d.int('ms');
    d.done();
    const swim = this.node(d, id as string).swim;
    const before = swim.healthScore;
    swim.reportLag(lagMs);
    this.print(`${id} health ${before} -> ${swim.healthScore}`);
  }

  #setEpoch(d: Directive): void {
    const [id] = this.ids(d, 1, 1);
    const epoch = d.int('epoch');
    d.done();
    this.node(d, id as string).swim.setLocalEpoch(epoch);
  }

  #state(d: Directive): void {
    const ids = this.idsOnly(d, 0);
    for (const id of ids.length > 0 ? ids : [...this.nodes.keys()]) {
      const { swim, crashed } = this.nodes.get(id) as EnvNode;
      const p = swim.probe();
      const probe = p === null ? 'none'
        : `${p.target} seq=${p.seq} timeout-at=${p.timeoutAtMs} deadline=${p.deadlineMs} ` +
          `relays=(${p.indirect?.join(',') ?? ''}) nacks=(${p.nacks.join(',')})`;
      this.print(`${id}${crashed ? ' (crashed)' : ''}: incarnation=${swim.incarnation} health=${swim.healthScore} ` +
        `epoch=${swim.epoch} next-probe=${swim.nextProbeAtMs ?? '-'} probe=${probe}`);
      for (const lp of swim.linkProbes()) {
        this.print(`  link probe ${lp.target} seq=${lp.seq} deadline=${lp.deadlineMs} relays=(${lp.indirect?.join(',') ?? ''}) nacks=(${lp.nacks.join(',')})`);
      }
      const view = swim.members().filter((m) => m.id !== id).sort((a, b) => (a.id < b.id ? -1 : 1));
      for (const m of view) {
        const s = swim.suspicion(m.id);
        const suspicion = s === undefined ? ''
          : ` accuser=${s.accuser} confirmations=${s.confirmations}/${s.wanted} dead-at=${s.deadlineMs}`;
        this.print(`  ${m.id} ${m.liveness}/${m.incarnation} heard=${m.lastHeardMs ?? '-'}${suspicion}`);
      }
    }
  }

  // ------------------------------------------------------------------------ mechanics

  /** `cause`: the input that produced `out`, a tick (own probe or timer) or a message. */
  #collect(id: string, out: SwimOutput, cause: string): void {
    for (const e of out.events) this.#at(`${id} sees ${e.id} ${e.type}/${e.incarnation} (${cause})`);
    if (out.epochBehind !== undefined) this.#at(`${id} is behind: epoch ${out.epochBehind.epoch} at ${out.epochBehind.from}`);
    for (const o of out.messages) this.#queue.push({ from: id, to: o.to, msg: o.msg });
  }

  #at(line: string): void {
    this.print(`t=${this.#nowMs} ${line}`);
  }
}
