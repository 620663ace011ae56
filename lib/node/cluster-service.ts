/**
 * The cluster and admin side of the HTTP API (lib/api/service.ts ClusterService) for one
 * node: its views of the cluster (/cluster, /cluster/ring, /cluster/partitions,
 * /cluster/records/:key), the admin actions (decommission, removenode, repair, scrub), the
 * join handshake's seed side, and its long operations.
 */
import { KvError } from '../errors.ts';
import { replicasOf } from '../core/partitioner.ts';
import type { ClusterService } from '../api/service.ts';
import type { RecordStore } from '../storage/record-store.ts';
import type { MerkleIndex } from '../storage/merkle-index.ts';
import type { Transport } from '../net/transport.ts';
import type { AntiEntropy } from './anti-entropy.ts';
import { JoinSeed } from './join.ts';
import type { Liveness } from './liveness.ts';
import type { Membership } from './membership.ts';
import { progressLogger, type Operations } from './operations.ts';
import { checkRemovable, removeDeadNode, type RemoveNodeDeps } from './removenode.ts';
import type { Logger } from './log.ts';

export interface ClusterServiceDeps {
  selfId: string;
  clusterId: string;
  secret: string;
  membership: Membership;
  liveness: Liveness;
  store: RecordStore;
  index: MerkleIndex;
  antiEntropy: AntiEntropy;
  operations: Operations;
  transport: Transport;
  log: Logger;
  /** The node serves (HTTP listening, not stopping). */
  serving: () => boolean;
}

/** 10 ms between partitions: a full scrub of 1024 partitions yields the loop ~100 times a second. */
const SCRUB_PAUSE_MS = 10;

export class NodeClusterService implements ClusterService {
  private readonly seed: JoinSeed;

  constructor(private readonly d: ClusterServiceDeps) {
    // Tickets only once this node is in a created cluster.
    this.seed = new JoinSeed({ selfId: d.selfId, secret: d.secret, clusterId: () => (d.membership.epoch > 0 ? d.clusterId : '') });
  }

  ready(): boolean {
    return this.d.serving() && this.d.membership.topology.member(this.d.selfId) !== undefined;
  }

  async cluster(): Promise<unknown> {
    return this.view();
  }

  /** /cluster: this node's view of the topology, Raft and every member's liveness. */
  view(): unknown {
    const t = this.d.membership.topology;
    const st = this.d.membership.raft.status();
    return {
      id: this.d.selfId,
      clusterId: this.d.clusterId,
      epoch: t.epoch,
      ringChecksum: t.epoch === 0 ? '' : t.table('current').checksum,
      partitions: t.partitions,
      n: t.n,
      raft: { role: st.role, term: st.term, leader: st.leader, commit: st.commit, voters: st.voters, learners: st.learners },
      members: t.activeMembers().map((m) => {
        // lastHeardMs: wall-clock ms when this node last heard from the member (itself: now).
        const v = m.id === this.d.selfId ? { ...this.d.liveness.view(m.id), lastHeardMs: Date.now() } : this.d.liveness.view(m.id);
        return { id: m.id, addr: m.addr, state: m.state, liveness: v.liveness, incarnation: v.incarnation, lastHeardMs: v.lastHeardMs };
      }),
    };
  }

  async ring(): Promise<unknown> {
    const t = this.d.membership.topology;
    const table = t.epoch === 0 ? undefined : t.table('current');
    return {
      epoch: t.epoch, checksum: table?.checksum ?? '', partitions: t.partitions, n: t.n,
      table: table ? table.preference.map((pref, p) => ({ partition: p, replicas: replicasOf(table, p), fallbacks: pref.slice(t.n) })) : [],
    };
  }

  async partitions(): Promise<unknown> {
    const t = this.d.membership.topology;
    const out: { partition: number; replicas: readonly string[]; keys: number; merkleRoot: string }[] = [];
    if (t.epoch > 0) {
      const table = t.table('current');
      for (let p = 0; p < t.partitions; p++) {
        const replicas = replicasOf(table, p);
        const keys = await this.d.store.partitionKeyCount(p);
        if (replicas.includes(this.d.selfId) || keys > 0) out.push({ partition: p, replicas, keys, merkleRoot: await this.d.index.root(p) });
      }
    }
    return { id: this.d.selfId, epoch: t.epoch, antiEntropy: this.d.antiEntropy.progress, partitions: out };
  }

  async decommission(id: string): Promise<unknown> {
    return this.d.membership.admin({ kind: 'decommission', id });
  }

  async scrub(): Promise<unknown> {
    return this.d.operations.run('scrub', this.d.selfId, (op) => this.d.antiEntropy.scrub(SCRUB_PAUSE_MS, op));
  }

  async removenode(id: string): Promise<unknown> {
    const running = this.d.operations.running('removenode', id);
    if (running) return running.view;
    const deps = this.removeNodeDeps();
    checkRemovable(deps, id);
    const op = this.d.operations.start('removenode', id, progressLogger(this.d.log, `removenode ${id}`));
    removeDeadNode(deps, id, op).then(() => op.finish(), (err: unknown) => {
      op.fail(err);
      this.d.log.error({ err, id }, 'removenode failed; the member stays leaving: run removenode again');
    });
    return op.view;
  }

  private removeNodeDeps(): RemoveNodeDeps {
    const { membership, antiEntropy } = this.d;
    return {
      selfId: this.d.selfId, topology: () => membership.topology, isAlive: (id) => this.d.liveness.isAlive(id),
      propose: (cmd) => membership.admin({ kind: 'cmd', cmd }),
      exchangeHere: async (p, peer) => { const r = await antiEntropy.exchange(p, peer, { bulk: 'pull' }); return r.pushed + r.pulled; },
      transport: this.d.transport, log: this.d.log.child({ c: 'removenode' }),
    };
  }

  async repair(): Promise<unknown> {
    const op = this.d.operations.running('repair') ?? this.d.operations.start('repair', this.d.selfId, progressLogger(this.d.log, 'repair walk (partitions)'));
    return this.d.antiEntropy.repairNow(op).view;
  }

  async operations(): Promise<unknown> {
    return { id: this.d.selfId, operations: this.d.operations.list() };
  }

  async localRecord(key: string): Promise<unknown> {
    const rec = await this.d.store.get(key);
    if (!rec) throw new KvError('KV_NOT_FOUND', 'this node holds no record of the key');
    return {
      id: this.d.selfId, key, version: rec.version, tombstone: rec.value === null, bytes: rec.value?.length ?? 0,
      ...(rec.expiresAt === undefined ? {} : { expiresAt: rec.expiresAt, expired: rec.expiresAt <= Date.now() }),
    };
  }

  async joinChallenge(body: unknown): Promise<unknown> {
    return this.seed.challenge(body);
  }

  async join(body: unknown): Promise<unknown> {
    const { id, addr, replace } = this.seed.verify(body);
    return this.d.membership.admin(replace ? { kind: 'join', id, addr, replace } : { kind: 'join', id, addr });
  }
}
