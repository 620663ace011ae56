/**
 * A node's own membership steps after it serves: create the cluster (a bootstrapping
 * node, once it leads), say where it is now (a node resumed on a new address), stream its
 * partitions and turn `normal` (joining, replacing), and stream them away and leave
 * (leaving, also when a restart finds it mid-decommission). Every wait is on the committed
 * topology (Membership.waitFor), never a poll of a timer.
 */
import type { Config } from '../config.ts';
import type { AntiEntropy } from './anti-entropy.ts';
import type { CasCoordinator } from './cas.ts';
import type { Membership } from './membership.ts';
import type { NodeMeta } from './meta.ts';
import { progressLogger, type Operations } from './operations.ts';
import type { Logger } from './log.ts';

export interface LifecycleDeps {
  config: Config;
  meta: NodeMeta;
  membership: Membership;
  antiEntropy: AntiEntropy;
  cas: CasCoordinator;
  operations: Operations;
  log: Logger;
  stopped: () => boolean;
}

/** How often a bootstrapping node looks whether it leads yet (Raft elects within ~1-2 s). */
const LEADERSHIP_POLL_MS = 50;

export class Lifecycle {
  private leaving = false;

  constructor(private readonly d: LifecycleDeps) {}

  /** Background steps after serving: create the cluster (bootstrap) or become normal (join, replace). */
  async finishStart(): Promise<void> {
    const { config: cfg, membership, meta } = this.d;
    if (meta.bootstrapped && membership.epoch === 0) {
      while (membership.raft.status().role !== 'leader') {
        if (this.d.stopped()) return;
        await new Promise((r) => setTimeout(r, LEADERSHIP_POLL_MS));
      }
      if (membership.epoch === 0) {
        await membership.raft.propose({ op: 'create', clusterId: meta.clusterId, partitions: meta.partitions, n: cfg.n, vnodes: cfg.vnodes, id: cfg.id, addr: cfg.advertise });
      }
    }
    await membership.waitFor((t) => t.member(cfg.id) !== undefined, Infinity, this.d.stopped);
    const me = membership.topology.member(cfg.id);
    // A node resumed on a new address (moved to another machine with its data) says where it is now.
    if (me && me.addr !== cfg.advertise && me.state !== 'removed') {
      await membership.admin({ kind: 'cmd', cmd: { op: 'address', id: cfg.id, addr: cfg.advertise } });
      this.d.log.info({ addr: cfg.advertise, was: me.addr }, 'advertised address changed');
    }
    const state = membership.topology.member(cfg.id)?.state;
    if (state === 'joining' || state === 'replacing') {
      // Pull our partitions from their current owners before reads may come here.
      const kind = state === 'joining' ? 'join' : 'replace';
      const started = Date.now();
      const r = await this.d.operations.run(kind, cfg.id, (op) => this.d.antiEntropy.stream(kind, this.d.stopped, op),
        progressLogger(this.d.log, `${kind} streaming (partitions)`));
      this.d.log.info({ partitions: r.partitions, records: r.moved, ms: Date.now() - started }, `${kind} streaming done`);
      await this.settleCas(kind);
      await membership.admin({ kind: 'cmd', cmd: { op: 'normal', id: cfg.id } });
      this.d.log.info({ epoch: membership.epoch }, state === 'joining' ? 'joined the cluster as a normal member' : 'replaced the dead member: serving as a normal member');
    }
    // A restart in the middle of a decommission picks the streaming up again.
    if (membership.topology.member(cfg.id)?.state === 'leaving') void this.leave();
  }

  /** A leaving node streams its partitions to their future owners, then asks to be removed. */
  async leave(): Promise<void> {
    if (this.leaving) return;
    this.leaving = true;
    const { config: cfg, membership } = this.d;
    try {
      const started = Date.now();
      const r = await this.d.operations.run('decommission', cfg.id, (op) => this.d.antiEntropy.stream('leave', this.d.stopped, op),
        progressLogger(this.d.log, 'leave streaming (partitions)'));
      this.d.log.info({ partitions: r.partitions, records: r.moved, ms: Date.now() - started }, 'leave streaming done');
      await this.settleCas('leave');
      await membership.admin({ kind: 'cmd', cmd: { op: 'remove', id: cfg.id } });
      this.d.log.info('decommissioned: removed from the cluster');
    } catch (err) {
      if (!this.d.stopped()) this.d.log.error({ err }, 'leaving failed; will retry');
      this.leaving = false;
    }
  }

  /** Conditional writes left half done on the old owners are finished before the new owners decide alone. */
  private async settleCas(kind: 'join' | 'leave' | 'replace'): Promise<void> {
    const r = await this.d.cas.settleOwnershipChange(kind, this.d.stopped);
    if (r.keys > 0) this.d.log.info({ ...r, kind }, 'settled conditional writes in progress on the old owners');
  }
}
