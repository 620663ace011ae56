/**
 * The composition root of one node. start() runs in this order and stop() undoes it
 * in reverse:
 *   data dir → LevelDB → identity (bootstrap / join / resume) → record store →
 *   peer transport → membership + Raft → liveness → replica, hints, coordinator →
 *   HTTP (+ peer upgrade) listening → background work (create / finish joining).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Gauge } from 'prom-client';
import { KvError } from '../errors.ts';
import { Hlc, decodeTs, encodeTs, type Timestamp } from '../core/hlc.ts';
import { partitionOf, replicasOf } from '../core/partitioner.ts';
import { DEFAULT_MERKLE_SHAPE } from '../core/merkle.ts';
import { parseHostPort, type Config } from '../config.ts';
import { ApiServer } from '../api/server.ts';
import { Metrics } from '../api/metrics.ts';
import type { ClusterService } from '../api/service.ts';
import { LevelBackend } from '../storage/level-backend.ts';
import { RecordStore } from '../storage/record-store.ts';
import { RaftStore } from '../storage/raft-store.ts';
import { WsTransport } from '../net/ws-transport.ts';
import { Membership } from './membership.ts';
import { RaftRuntime } from './raft-runtime.ts';
import { Replica } from './replica.ts';
import { Operations, progressLogger } from './operations.ts';
import { checkRemovable, removeDeadNode, type RemoveNodeDeps } from './removenode.ts';
import { DurableClock, markLeaseMs } from './clock.ts';
import { HintStore } from './hints.ts';
import { Coordinator } from './coordinator.ts';
import { CasCoordinator } from './cas.ts';
import { PaxosReplica, paxosRetentionMs } from './paxos-replica.ts';
import { Lister } from './list.ts';
import { PartitionFence, decodeFence, encodeFence } from './fence.ts';
import { JoinSeed, loadJoinAnswer, requestJoin, saveJoinAnswer } from './join.ts';
import { PeerGuard, versionGuard } from './peer-guard.ts';
import { authFromConfig, type TokenStore } from '../api/tokens.ts';
import { readTlsFiles, type TlsFiles } from '../net/tls.ts';
import { Gossip } from './gossip.ts';
import { AntiEntropy } from './anti-entropy.ts';
import { StatsService } from './stats.ts';
import { discoverCluster, refuseLostMember } from './discovery.ts';
import { MerkleIndex } from '../storage/merkle-index.ts';
import { SUBLEVELS } from '../storage/backend.ts';
import { h64 } from '../core/partitioner.ts';
import { readMeta, writeMeta, type NodeMeta } from './meta.ts';
import type { Logger } from './log.ts';
import { Topology, validateTopologySnapshot } from '../core/topology.ts';

/** Liveness as the data path sees it; gossip provides it. */
export interface Liveness {
  isAlive(id: string): boolean;
  view(id: string): { liveness: 'alive' | 'suspect' | 'dead'; incarnation: number; lastHeardMs: number | null };
  setMembers(ids: string[]): void;
  stop(): void;
}


/** Meta-sublevel key of the saved partition fence. */
const FENCE_KEY = 'fence';

export class KvNode {
  readonly metrics = new Metrics();
  readonly hlc: Hlc;
  private backend: LevelBackend | undefined;
  store: RecordStore | undefined;
  private transport: WsTransport | undefined;
  membership: Membership | undefined;
  private raft: RaftRuntime | undefined;
  private liveness: Liveness | undefined;
  private hints: HintStore | undefined;
  private index: MerkleIndex | undefined;
  antiEntropy: AntiEntropy | undefined;
  private paxos: PaxosReplica | undefined;
  private cas: CasCoordinator | undefined;
  private api: ApiServer | undefined;
  private meta: NodeMeta | undefined;
  private fence = new PartitionFence();
  readonly operations = new Operations();
  private serving = false;
  private stopped = false;
  private background: Promise<void> | undefined;
  private tls: TlsFiles | undefined;
  private tokens: TokenStore | undefined;
  private joinAnswer: { epoch: number; members: { id: string; addr: string }[] } | undefined;

  private hlcLast: Timestamp | undefined;
  private hlcLastText = '';

  /** The HLC's latest timestamp as wire text, encoded once per change. */
  private hlcText(): string {
    const ts = this.hlc.peek();
    if (ts !== this.hlcLast) {
      this.hlcLast = ts;
      this.hlcLastText = encodeTs(ts);
    }
    return this.hlcLastText;
  }

  constructor(readonly config: Config, private readonly log: Logger) {
    this.hlc = new Hlc({ maxClockSkewMs: config.maxClockSkewMs });
  }

  async start(): Promise<void> {
    const cfg = this.config;
    this.tls = readTlsFiles(cfg);
    const { auth, store: tokens } = authFromConfig(cfg, this.log);
    this.tokens = tokens;
    mkdirSync(cfg.data, { recursive: true });
    this.backend = new LevelBackend(join(cfg.data, 'db'));
    await this.backend.open();
    const raftStore = new RaftStore(this.backend);
    const fresh = await raftStore.isEmpty();
    this.meta = await this.loadIdentity(this.backend, fresh);
    const q = this.meta.partitions;
    this.index = new MerkleIndex(this.backend, h64, DEFAULT_MERKLE_SHAPE);
    this.store = new RecordStore({ backend: this.backend, partitions: q, segments: DEFAULT_MERKLE_SHAPE.segments, sync: cfg.fsync, index: this.index });
    await this.store.open();
    // Before anything stamps or sends a timestamp: the HLC resumes above what it issued before a restart.
    const clock = new DurableClock({ hlc: this.hlc, backend: this.backend, leaseMs: markLeaseMs(cfg.maxClockSkewMs) });
    await clock.open();
    const backend = this.backend;
    this.fence = new PartitionFence({
      save: (state) => backend.batch([{ type: 'put', sub: SUBLEVELS.meta, key: FENCE_KEY, value: encodeFence(state) }], cfg.fsync),
    });
    const savedFence = await backend.get(SUBLEVELS.meta, FENCE_KEY);
    if (savedFence !== undefined) this.fence.restore(decodeFence(savedFence));

    this.joinAnswer ??= loadJoinAnswer(cfg.data);
    const versions = versionGuard(cfg.maxClockSkewMs, this.metrics);
    const guard = new PeerGuard({ topology: () => this.membership?.topology ?? new Topology(), joinAnswer: () => this.joinAnswer, versions, metrics: this.metrics });
    const transport = new WsTransport({
      selfId: cfg.id, clusterId: this.meta.clusterId, secret: cfg.secret, logger: this.log.child({ c: 'net' }),
      getEpoch: () => this.membership?.epoch ?? 0,
      // Envelopes carry the clock's latest value (the receive rule merges the max); only versions need a fresh tick.
      hlcNow: () => this.hlcText(),
      ...(this.tls ? { tls: this.tls } : {}),
      admit: guard.admit,
      onEnvelope: (env) => {
        guard.inspect(env);
        // Fixed-width hex: string order is timestamp order, and most envelopes are not ahead of us.
        if (env.hlc <= this.hlcText()) return;
        try {
          this.hlc.update(decodeTs(env.hlc), Date.now());
        } catch (err) {
          this.metrics.clockSkewRejected.inc();
          throw err;
        }
      },
    });
    this.transport = transport;
    const gossip = new Gossip(cfg.id, transport, {
      probeIntervalMs: cfg.swimProbeIntervalMs, probeTimeoutMs: cfg.swimProbeTimeoutMs, indirectChecks: cfg.swimIndirectChecks,
      suspicionMult: cfg.swimSuspicionMult, suspicionMaxTimeoutMult: cfg.swimSuspicionMaxTimeoutMult, retransmitMult: cfg.swimRetransmitMult,
    }, this.metrics, this.log.child({ c: 'gossip' }), () => this.membership?.epoch ?? 0,
    (epoch, from) => this.log.info({ epoch, from, local: this.membership?.epoch }, 'a peer knows a newer epoch; Raft replication will bring it'));
    this.liveness = gossip;
    const isAlive = (id: string): boolean => this.liveness?.isAlive(id) ?? false;
    const membership = new Membership(cfg.id, transport, this.log.child({ c: 'membership' }), isAlive, cfg.deadVoterMs,
      (id) => gossip.view(id).lastHeardMs !== null);
    this.membership = membership;
    membership.on('change', (t) => this.onTopology(t));
    const raft = new RaftRuntime({
      id: cfg.id, transport, store: raftStore, log: this.log.child({ c: 'raft' }),
      apply: membership.applyEntry, restore: membership.restoreSnapshot, snapshotData: membership.snapshotData,
      onFatal: () => { process.exitCode = 70; void this.stop().finally(() => process.exit(70)); },
      validateSnapshot: (data) => {
        const snap = validateTopologySnapshot(data);
        if (snap.epoch > 0 && snap.clusterId !== this.meta?.clusterId) throw new KvError('KV_INVALID_ARGUMENT', `snapshot of another cluster (${snap.clusterId})`);
      },
      onRefused: (reason) => this.metrics.peerRefused.labels({ reason }).inc(),
    });
    this.raft = raft;
    membership.attach(raft);

    const replica = new Replica({
      store: this.store, fence: this.fence, maxKeyBytes: cfg.maxKeyBytes, maxValueBytes: cfg.maxValueBytes, maxClockSkewMs: cfg.maxClockSkewMs,
      onVersionRefused: () => this.metrics.versionsRefused.labels({ source: 'replica' }).inc(),
      serving: () => membership.topology.member(cfg.id)?.state !== 'replacing',
    });
    replica.register(transport);
    if (cfg.hintedHandoff) {
      // A hint must never outlive tombstone GC: replaying an old value after its tombstone was purged would
      // resurrect it. Ages count from the record's version time, with room for a slow request and skewed clocks.
      const hintLimits = {
        ...cfg, versionGuard: versions,
        hintsMaxAgeMs: Math.max(0, Math.min(cfg.hintsMaxAgeMs, cfg.tombstoneGraceMs - cfg.requestTimeoutMs - cfg.maxClockSkewMs)),
      };
      const owns = (target: string, key: string): boolean => {
        const t = membership.topology;
        if (t.epoch === 0) return true;
        const p = partitionOf(key, t.partitions);
        return replicasOf(t.table('current'), p).includes(target) || replicasOf(t.table('future'), p).includes(target);
      };
      const isMember = (id: string): boolean => { const m = membership.topology.member(id); return m !== undefined && m.state !== 'removed'; };
      this.hints = new HintStore(this.backend, transport, hintLimits, this.log.child({ c: 'hints' }), isAlive, () => membership.epoch, owns, isMember);
      await this.hints.open();
      const hints = this.hints;
      const r = this.metrics.registry;
      new Gauge({ name: 'kv_hints_pending', help: 'Hints kept on this node for down replicas', registers: [r],
        collect() { this.set(hints.pending()); } });
      const counter = new Gauge({ name: 'kv_hints_by_fate', help: 'Hints by fate since start: stored, delivered, dropped (over a bound), expired',
        labelNames: ['fate'] as const, registers: [r],
        collect() { for (const [fate, n] of Object.entries(hints.stats)) counter.labels({ fate }).set(n); } });
    }
    this.antiEntropy = new AntiEntropy({
      selfId: cfg.id, store: this.store, index: this.index, transport, metrics: this.metrics, log: this.log.child({ c: 'ae' }),
      topology: () => membership.topology, isAlive, fence: this.fence, intervalMs: cfg.antiEntropyIntervalMs, tombstoneGraceMs: cfg.tombstoneGraceMs,
      maxKeyBytes: cfg.maxKeyBytes, maxValueBytes: cfg.maxValueBytes, versions,
    });
    await this.antiEntropy.open();
    const coordinator = new Coordinator({
      selfId: cfg.id, replica, transport, clock, hints: this.hints,
      log: this.log.child({ c: 'coord' }), topology: () => membership.topology, catchUp: (e, deadline) => this.catchUp(e, deadline),
      liveness: { isAlive, isSuspect: (id) => gossip.view(id).liveness === 'suspect' },
      defaults: { w: cfg.w, r: cfg.r }, requestTimeoutMs: cfg.requestTimeoutMs, readRepair: cfg.readRepair, maxClockSkewMs: cfg.maxClockSkewMs,
      onVersionRefused: (source) => this.metrics.versionsRefused.labels({ source }).inc(),
    });
    // Conditional writes (Paxos acceptor + proposer) and listing.
    const owns = (key: string): boolean => {
      const t = membership.topology;
      const p = partitionOf(key, t.partitions);
      // A replacement lost the dead member's acceptor state: it takes no part in Paxos until it is normal.
      if (t.member(cfg.id)?.state === 'replacing') return false;
      return t.epoch > 0 && (replicasOf(t.table('current'), p).includes(cfg.id) || replicasOf(t.table('future'), p).includes(cfg.id));
    };
    const store = this.store;
    const limits = { maxKeyBytes: cfg.maxKeyBytes, maxValueBytes: cfg.maxValueBytes };
    this.paxos = new PaxosReplica({
      backend: this.backend, replica, fence: this.fence, partitionOf: (key) => store.locate(key).partition, owns, epoch: () => membership.epoch,
      sync: cfg.fsync, limits, maxClockSkewMs: cfg.maxClockSkewMs, retentionMs: paxosRetentionMs(cfg), log: this.log.child({ c: 'paxos' }),
    });
    this.paxos.register(transport);
    const cas = new CasCoordinator({
      selfId: cfg.id, transport, acceptor: this.paxos, clock, hints: this.hints, log: this.log.child({ c: 'cas' }),
      topology: () => membership.topology, catchUp: (e, deadline) => this.catchUp(e, deadline), isAlive,
      requestTimeoutMs: cfg.requestTimeoutMs, maxClockSkewMs: cfg.maxClockSkewMs, limits, registry: this.metrics.registry,
    });
    this.paxos.setFinisher((key) => cas.serialGet(key, {}));
    this.cas = cas;
    const lister = new Lister({
      selfId: cfg.id, transport, store, fence: this.fence, topology: () => membership.topology, catchUp: (e, deadline) => this.catchUp(e, deadline),
      isAlive, defaultR: cfg.r, maxKeyBytes: cfg.maxKeyBytes, requestTimeoutMs: cfg.requestTimeoutMs,
    });
    lister.register(transport);
    const ae = this.antiEntropy;
    const stats = new StatsService({
      selfId: cfg.id, advertise: cfg.advertise, dataDir: cfg.data, transport, metrics: this.metrics,
      clusterId: () => this.meta?.clusterId ?? '', topology: () => membership.topology, raft: () => raft.status(),
      liveness: (id) => gossip.view(id).liveness, partitionKeyCount: (p) => (this.store as RecordStore).partitionKeyCount(p),
      hints: () => (this.hints ? { pending: this.hints.pending(), stats: this.hints.stats } : undefined),
      antiEntropy: () => ({ ...ae.progress, lastWalkDoneMs: ae.lastWalkDoneMs }), clusterView: () => this.clusterView(),
    });
    this.api = new ApiServer({
      kv: coordinator, cas, list: lister, cluster: this.clusterService(), metrics: this.metrics, limits: cfg, log: this.log,
      auth, metricsOpen: cfg.metricsOpen, ...(this.tls ? { tls: this.tls } : {}),
      onUpgrade: (req, socket, head) => transport.handleUpgrade(req, socket, head),
      stats: () => stats.gather(),
    });

    const persisted = await raftStore.load();
    await raft.start(persisted, fresh && this.meta.bootstrapped ? { voters: [cfg.id], learners: [] } : undefined);
    const { host, port } = parseHostPort(cfg.listen);
    await this.api.listen(host, port);
    gossip.start();
    this.antiEntropy.start();
    this.paxos.start();
    this.serving = true;
    this.log.info({ listen: cfg.listen, data: cfg.data, clusterId: this.meta.clusterId, fsync: cfg.fsync, tls: this.tls !== undefined, auth: auth.open ? 'open' : 'tokens' }, 'node serving');
    this.background = this.finishStart().catch((err: unknown) => {
      if (!this.stopped) this.log.error({ err }, 'could not finish joining the cluster');
    });
  }

  private async loadIdentity(backend: LevelBackend, raftFresh: boolean): Promise<NodeMeta> {
    const cfg = this.config;
    const existing = await readMeta(backend);
    if (existing) {
      if (existing.id !== cfg.id) throw new KvError('KV_CONFIG', `data dir ${cfg.data} belongs to node "${existing.id}", not "${cfg.id}"`);
      if ((cfg.bootstrap || cfg.join.length > 0) && !raftFresh) this.log.warn('data dir is already initialized: --bootstrap/--join ignored, resuming');
      return existing;
    }
    const found = cfg.seeds.length > 0 ? await discoverCluster({ ...cfg, timeoutMs: cfg.discoveryTimeoutMs, log: this.log }) : undefined;
    let meta: NodeMeta;
    if (cfg.bootstrap || found?.mode === 'bootstrap') {
      meta = { id: cfg.id, clusterId: randomUUID(), partitions: cfg.partitions, bootstrapped: true, createdAt: Date.now() };
    } else if (cfg.join.length > 0 || found?.mode === 'join') {
      const replace = cfg.replace !== '';
      const answer = await requestJoin(found?.mode === 'join' ? found.seeds : cfg.join, cfg.secret, cfg.id, cfg.advertise, this.log,
        { ...(this.tls ? { ca: this.tls.ca } : {}), replace });
      if (found && !replace) refuseLostMember(answer, cfg.id);
      saveJoinAnswer(cfg.data, answer);
      this.joinAnswer = answer;
      meta = { id: cfg.id, clusterId: answer.clusterId, partitions: answer.partitions, bootstrapped: false, createdAt: Date.now() };
      this.initialPeers = answer.members.filter((m) => m.id !== cfg.id);
    } else {
      throw new KvError('KV_CONFIG', `data dir ${cfg.data} is fresh: pass --bootstrap to create a cluster, --join HOST:PORT to join one, or --seeds to find it`);
    }
    await writeMeta(backend, meta);
    return meta;
  }

  private initialPeers: { id: string; addr: string }[] = [];

  /** Background steps after serving: create the cluster (bootstrap) or become normal (join). */
  private async finishStart(): Promise<void> {
    const cfg = this.config;
    const membership = this.membership as Membership;
    const raft = this.raft as RaftRuntime;
    if (this.initialPeers.length > 0) (this.transport as WsTransport).setPeers(new Map(this.initialPeers.map((m) => [m.id, m.addr])));
    if (this.meta?.bootstrapped && membership.epoch === 0) {
      await this.until(() => raft.status().role === 'leader', 'leadership of the new cluster');
      if (membership.epoch === 0) {
        await raft.propose({ op: 'create', clusterId: this.meta.clusterId, partitions: this.meta.partitions, n: cfg.n, vnodes: cfg.vnodes, id: cfg.id, addr: cfg.advertise });
      }
    }
    await this.until(() => membership.topology.member(cfg.id) !== undefined, 'this node in the committed membership');
    const me = membership.topology.member(cfg.id);
    // A node resumed on a new address (moved to another machine with its data) says where it is now.
    if (me && me.addr !== cfg.advertise && me.state !== 'removed') {
      await membership.admin({ kind: 'cmd', cmd: { op: 'address', id: cfg.id, addr: cfg.advertise } });
      this.log.info({ addr: cfg.advertise, was: me.addr }, 'advertised address changed');
    }
    const state = membership.topology.member(cfg.id)?.state;
    if (state === 'joining' || state === 'replacing') {
      // Pull our partitions from their current owners before reads may come here.
      const kind = state === 'joining' ? 'join' : 'replace';
      const started = Date.now();
      const r = await this.operations.run(kind, cfg.id, (op) => (this.antiEntropy as AntiEntropy).stream(kind, () => this.stopped, op),
        progressLogger(this.log, `${kind} streaming (partitions)`));
      this.log.info({ partitions: r.partitions, records: r.moved, ms: Date.now() - started }, `${kind} streaming done`);
      await this.settleCas(kind);
      await membership.admin({ kind: 'cmd', cmd: { op: 'normal', id: cfg.id } });
      this.log.info({ epoch: membership.epoch }, state === 'joining' ? 'joined the cluster as a normal member' : 'replaced the dead member: serving as a normal member');
    }
    // A restart in the middle of a decommission picks the streaming up again.
    if (membership.topology.member(cfg.id)?.state === 'leaving') void this.leave();
  }

  private leaving = false;

  /** A leaving node streams its partitions to their future owners, then asks to be removed. */
  private async leave(): Promise<void> {
    if (this.leaving) return;
    this.leaving = true;
    try {
      const started = Date.now();
      const r = await this.operations.run('decommission', this.config.id, (op) => (this.antiEntropy as AntiEntropy).stream('leave', () => this.stopped, op),
        progressLogger(this.log, 'leave streaming (partitions)'));
      this.log.info({ partitions: r.partitions, records: r.moved, ms: Date.now() - started }, 'leave streaming done');
      await this.settleCas('leave');
      await this.m.admin({ kind: 'cmd', cmd: { op: 'remove', id: this.config.id } });
      this.log.info('decommissioned: removed from the cluster');
    } catch (err) {
      if (!this.stopped) this.log.error({ err }, 'leaving failed; will retry');
      this.leaving = false;
    }
  }

  /** Conditional writes left half done on the old owners are finished before the new owners decide alone. */
  private async settleCas(kind: 'join' | 'leave' | 'replace'): Promise<void> {
    const r = await (this.cas as CasCoordinator).settleOwnershipChange(kind, () => this.stopped);
    if (r.keys > 0) this.log.info({ ...r, kind }, 'settled conditional writes in progress on the old owners');
  }

  private async until(cond: () => boolean, what: string): Promise<void> {
    while (!cond()) {
      if (this.stopped) throw new KvError('KV_CLOSED', `stopped while waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private onTopology(t: Topology): void {
    const peers = new Map(t.activeMembers().filter((m) => m.id !== this.config.id).map((m) => [m.id, m.addr]));
    for (const p of this.initialPeers) if (!t.member(p.id)) peers.set(p.id, p.addr);
    this.transport?.setPeers(peers);
    // A removed node is cut off: the admission hook refuses what it sends, and its link goes.
    for (const m of t.memberList()) if (m.state === 'removed' && m.id !== this.config.id) this.transport?.disconnect(m.id);
    this.liveness?.setMembers(t.activeMembers().map((m) => m.id));
    this.fence.update(t);
    this.fence.flushed().catch((err: unknown) => this.log.error({ err }, 'saving the partition fence failed'));
    void this.antiEntropy?.onTopology(t);
    if (t.member(this.config.id)?.state === 'leaving' && this.serving) void this.leave();
  }

  /** Wait (bounded) until the local topology reaches `epoch`: Raft delivers it. */
  private async catchUp(epoch: number, deadlineMs: number): Promise<void> {
    const deadline = Math.min(Date.now() + 2000, deadlineMs);
    while ((this.membership?.epoch ?? 0) < epoch && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  private clusterService(): ClusterService {
    return {
      ready: () => this.serving && (this.membership?.topology.member(this.config.id) !== undefined),
      cluster: async () => this.clusterView(),
      ring: async () => {
        const t = this.m.topology;
        const table = t.epoch === 0 ? undefined : t.table('current');
        return {
          epoch: t.epoch, checksum: table?.checksum ?? '', partitions: t.partitions, n: t.n,
          table: table ? table.preference.map((pref, p) => ({ partition: p, replicas: replicasOf(table, p), fallbacks: pref.slice(t.n) })) : [],
        };
      },
      partitions: async () => {
        const t = this.m.topology;
        const out: { partition: number; replicas: readonly string[]; keys: number; merkleRoot: string }[] = [];
        if (t.epoch > 0) {
          const table = t.table('current');
          for (let p = 0; p < t.partitions; p++) {
            const replicas = replicasOf(table, p);
            const keys = await (this.store as RecordStore).partitionKeyCount(p);
            if (replicas.includes(this.config.id) || keys > 0) {
              out.push({ partition: p, replicas, keys, merkleRoot: await (this.index as MerkleIndex).root(p) });
            }
          }
        }
        const ae = this.antiEntropy?.progress;
        return { id: this.config.id, epoch: t.epoch, antiEntropy: ae, partitions: out };
      },
      decommission: async (id) => this.m.admin({ kind: 'decommission', id }),
      // 10 ms between partitions: a full scrub of 1024 partitions yields the loop ~100 times a second.
      scrub: async () => this.operations.run('scrub', this.config.id, (op) => (this.antiEntropy as AntiEntropy).scrub(10, op)),
      removenode: async (id) => {
        const running = this.operations.running('removenode', id);
        if (running) return running.view;
        const deps = this.removeNodeDeps();
        checkRemovable(deps, id);
        const op = this.operations.start('removenode', id, progressLogger(this.log, `removenode ${id}`));
        removeDeadNode(deps, id, op).then(() => op.finish(), (err: unknown) => {
          op.fail(err);
          this.log.error({ err, id }, 'removenode failed; the member stays leaving: run removenode again');
        });
        return op.view;
      },
      repair: async () => {
        const op = this.operations.running('repair') ?? this.operations.start('repair', this.config.id, progressLogger(this.log, 'repair walk (partitions)'));
        return (this.antiEntropy as AntiEntropy).repairNow(op).view;
      },
      operations: async () => ({ id: this.config.id, operations: this.operations.list() }),
      localRecord: async (key) => {
        const rec = await (this.store as RecordStore).get(key);
        if (!rec) throw new KvError('KV_NOT_FOUND', 'this node holds no record of the key');
        return { id: this.config.id, key, version: rec.version, tombstone: rec.value === null, bytes: rec.value?.length ?? 0,
          ...(rec.expiresAt === undefined ? {} : { expiresAt: rec.expiresAt, expired: rec.expiresAt <= Date.now() }) };
      },
      joinChallenge: async (body) => this.seed.challenge(body),
      join: async (body) => {
        const { id, addr, replace } = this.seed.verify(body);
        return this.m.admin(replace ? { kind: 'join', id, addr, replace } : { kind: 'join', id, addr });
      },
    };
  }

  private removeNodeDeps(): RemoveNodeDeps {
    const ae = this.antiEntropy as AntiEntropy;
    return {
      selfId: this.config.id, topology: () => this.m.topology, isAlive: (id) => this.liveness?.isAlive(id) ?? false,
      propose: (cmd) => this.m.admin({ kind: 'cmd', cmd }),
      exchangeHere: async (p, peer) => { const r = await ae.exchange(p, peer, { bulk: 'pull' }); return r.pushed + r.pulled; },
      transport: this.transport as WsTransport, log: this.log.child({ c: 'removenode' }),
    };
  }

  private seedState: JoinSeed | undefined;
  /** The seed side of joins: tickets only once this node is in a created cluster. */
  private get seed(): JoinSeed {
    this.seedState ??= new JoinSeed({
      selfId: this.config.id, secret: this.config.secret,
      clusterId: () => ((this.membership?.epoch ?? 0) > 0 ? this.meta?.clusterId ?? '' : ''),
    });
    return this.seedState;
  }

  private get m(): Membership {
    if (!this.membership) throw new KvError('KV_UNAVAILABLE', 'node is starting');
    return this.membership;
  }

  clusterView(): unknown {
    const t = this.m.topology;
    const st = (this.raft as RaftRuntime).status();
    return {
      id: this.config.id,
      clusterId: this.meta?.clusterId,
      epoch: t.epoch,
      ringChecksum: t.epoch === 0 ? '' : t.table('current').checksum,
      partitions: t.partitions,
      n: t.n,
      raft: { role: st.role, term: st.term, leader: st.leader, commit: st.commit, voters: st.voters, learners: st.learners },
      members: t.activeMembers().map((m) => {
        // lastHeardMs: wall-clock ms when this node last heard from the member (itself: now).
        const v = m.id === this.config.id ? { ...(this.liveness as Liveness).view(m.id), lastHeardMs: Date.now() } : (this.liveness as Liveness).view(m.id);
        return { id: m.id, addr: m.addr, state: m.state, liveness: v.liveness, incarnation: v.incarnation, lastHeardMs: v.lastHeardMs };
      }),
    };
  }

  /**
   * Stops within about `graceMs` plus a second: requests in flight get up to `graceMs`, then
   * every client socket is cut, and the peer links close (1 s grace each) without waiting
   * for the HTTP server: upgraded peer sockets keep a server open until they end, which is
   * why stopping the server first once left nodes "shutting down" for as long as peers lived.
   */
  async stop(graceMs = 2000): Promise<void> {
    this.stopped = true;
    this.serving = false;
    await this.api?.close(graceMs);
    this.membership?.stop();
    this.raft?.stop();
    this.liveness?.stop();
    this.hints?.stop();
    this.antiEntropy?.stop();
    this.tokens?.stop();
    this.paxos?.stop();
    await this.transport?.close();
    // Background steps see `stopped` at their next turn; a forwarded admin request may wait longer.
    await Promise.race([this.background, new Promise((r) => setTimeout(r, 1000).unref())]);
    await this.store?.close();
    this.log.info('node stopped');
  }
}
