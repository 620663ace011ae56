/**
 * The composition root of one node: it builds the parts and wires them, nothing else (the
 * rules live in the modules that own them). start() runs in this order and stop() undoes
 * it in reverse:
 *   credentials → LevelDB → identity (bootstrap / join / resume / replace) → record store,
 *   durable clock, partition fence → peer transport → gossip → membership (+ Raft) →
 *   replica, hints, anti-entropy, coordinator, Paxos, listing → HTTP (+ peer upgrades)
 *   listening → background membership steps (lib/node/lifecycle.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { KvError } from '../errors.ts';
import { Hlc, decodeTs, encodeTs, type Timestamp } from '../core/hlc.ts';
import { h64, partitionOf, replicasOf } from '../core/partitioner.ts';
import { DEFAULT_MERKLE_SHAPE } from '../core/merkle.ts';
import { Topology, validateTopologySnapshot } from '../core/topology.ts';
import { levelOptions, parseHostPort, type Config } from '../config.ts';
import { ApiServer } from '../api/server.ts';
import { Metrics } from '../api/metrics.ts';
import { authFromConfig } from '../api/tokens.ts';
import { SUBLEVELS, type Backend } from '../storage/backend.ts';
import { LevelBackend } from '../storage/level-backend.ts';
import { MerkleIndex } from '../storage/merkle-index.ts';
import { RaftStore } from '../storage/raft-store.ts';
import { RecordStore } from '../storage/record-store.ts';
import { checkListenable } from '../net/free-port.ts';
import { readTlsFiles, type TlsFiles } from '../net/tls.ts';
import { WsTransport } from '../net/ws-transport.ts';
import { AntiEntropy } from './anti-entropy.ts';
import { CasCoordinator } from './cas.ts';
import { DurableClock, markLeaseMs } from './clock.ts';
import { NodeClusterService } from './cluster-service.ts';
import { Coordinator } from './coordinator.ts';
import { PartitionFence, decodeFence, encodeFence } from './fence.ts';
import { Gossip } from './gossip.ts';
import { HintStore, topologyHintDelegate } from './hints.ts';
import { loadIdentity, type Identity } from './identity.ts';
import { Lifecycle } from './lifecycle.ts';
import { Lister } from './list.ts';
import { Membership } from './membership.ts';
import { Operations } from './operations.ts';
import { PaxosReplica, paxosRetentionMs } from './paxos-replica.ts';
import { PeerGuard, versionGuard } from './peer-guard.ts';
import { Replica } from './replica.ts';
import { StatsService } from './stats.ts';
import type { Logger } from './log.ts';

/** Meta-sublevel key of the saved partition fence. */
const FENCE_KEY = 'fence';
/** How long stop() waits for background membership steps to notice it (a forwarded admin request may wait longer). */
const BACKGROUND_STOP_WAIT_MS = 1000;

/** The partition fence, restored from its saved state and saved after every change. */
async function openFence(backend: Backend, sync: boolean): Promise<PartitionFence> {
  const fence = new PartitionFence({
    save: (state) => backend.batch([{ type: 'put', sub: SUBLEVELS.meta, key: FENCE_KEY, value: encodeFence(state) }], sync),
  });
  const saved = await backend.get(SUBLEVELS.meta, FENCE_KEY);
  if (saved !== undefined) fence.restore(decodeFence(saved));
  return fence;
}

/** What openDisk() opened. */
interface Disk {
  backend: LevelBackend;
  raftStore: RaftStore;
  /** No Raft state on disk yet: a first start. */
  fresh: boolean;
  identity: Identity;
  meta: Identity['meta'];
  index: MerkleIndex;
  store: RecordStore;
  clock: DurableClock;
  fence: PartitionFence;
}

/** What openPeers() built: the peer side and the views of membership the data path reads. */
interface Peers {
  transport: WsTransport;
  gossip: Gossip;
  membership: Membership;
  topology: () => Topology;
  isAlive: (id: string) => boolean;
  versions: ReturnType<typeof versionGuard>;
  waitForEpoch: (epoch: number, deadlineMs: number) => Promise<void>;
}

/** What openDataPath() built. */
interface DataPath {
  hints: HintStore | undefined;
  antiEntropy: AntiEntropy;
  coordinator: Coordinator;
  paxos: PaxosReplica;
  cas: CasCoordinator;
  lister: Lister;
}

export class KvNode {
  readonly metrics = new Metrics();
  readonly hlc: Hlc;
  readonly operations = new Operations();
  /** What start() opened, closed in reverse order by stop(). */
  private readonly closers: Array<() => unknown> = [];
  private api: ApiServer | undefined;
  private serving = false;
  private stopped = false;
  private background: Promise<void> | undefined;
  private hlcLast: Timestamp | undefined;
  private hlcLastText = '';

  constructor(readonly config: Config, private readonly log: Logger) {
    this.hlc = new Hlc({ maxClockSkewMs: config.maxClockSkewMs });
  }

  /** The HLC's latest timestamp as wire text, encoded once per change. */
  private hlcText(): string {
    const ts = this.hlc.peek();
    if (ts !== this.hlcLast) {
      this.hlcLast = ts;
      this.hlcLastText = encodeTs(ts);
    }
    return this.hlcLastText;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    const log = this.log;
    const tls = readTlsFiles(cfg);
    const { auth, store: tokens } = authFromConfig(cfg, log);
    if (tokens) this.closers.push(() => tokens.stop());
    const { host, port } = parseHostPort(cfg.listen);
    // Before a join can add this node to the cluster: a port already taken ends the start here.
    await checkListenable(host, port);

    const disk = await this.openDisk(tls?.ca);
    const peers = this.openPeers(disk, tls);
    const data = await this.openDataPath(disk, peers);
    const { meta, identity, raftStore, fresh, fence } = disk;
    const { transport, gossip, membership: m } = peers;
    const { antiEntropy, paxos } = data;

    const cluster = new NodeClusterService({
      selfId: cfg.id, clusterId: meta.clusterId, secret: cfg.secret, membership: m, liveness: gossip, store: disk.store, index: disk.index,
      antiEntropy, operations: this.operations, transport, log, serving: () => this.serving,
    });
    const stats = new StatsService({
      selfId: cfg.id, advertise: cfg.advertise, dataDir: cfg.data, transport, metrics: this.metrics,
      clusterId: () => meta.clusterId, topology: peers.topology, raft: () => m.raft.status(),
      liveness: (id) => gossip.view(id).liveness, partitionKeyCount: (p) => disk.store.partitionKeyCount(p),
      hints: () => (data.hints ? { pending: data.hints.pending(), stats: data.hints.stats } : undefined),
      antiEntropy: () => ({ ...antiEntropy.progress, lastWalkDoneMs: antiEntropy.lastWalkDoneMs }), clusterView: () => cluster.view(),
    });
    this.api = new ApiServer({
      kv: data.coordinator, cas: data.cas, list: data.lister, cluster, metrics: this.metrics, limits: cfg, log,
      auth, metricsOpen: cfg.metricsOpen, clusterId: meta.clusterId, ...(tls ? { tls } : {}),
      onUpgrade: (req, socket, head) => transport.handleUpgrade(req, socket, head),
      stats: () => stats.gather(),
    });

    const lifecycle = new Lifecycle({ config: cfg, meta, membership: m, antiEntropy, cas: data.cas, operations: this.operations, log, stopped: () => this.stopped });
    m.on('change', (t) => {
      const known = new Map(t.activeMembers().filter((x) => x.id !== cfg.id).map((x) => [x.id, x.addr]));
      for (const p of identity.initialPeers) if (!t.member(p.id)) known.set(p.id, p.addr);
      transport.setPeers(known);
      // A removed node is cut off: the admission hook refuses what it sends, and its link goes.
      for (const x of t.memberList()) if (x.state === 'removed' && x.id !== cfg.id) transport.disconnect(x.id);
      gossip.setMembers(t.activeMembers().map((x) => x.id));
      fence.update(t);
      fence.flushed().catch((err: unknown) => log.error({ err }, 'saving the partition fence failed'));
      void antiEntropy.onTopology(t);
      if (t.member(cfg.id)?.state === 'leaving' && this.serving) void lifecycle.leave();
    });

    await m.start(await raftStore.load(), fresh && meta.bootstrapped ? { voters: [cfg.id], learners: [] } : undefined);
    await this.api.listen(host, port);
    gossip.start();
    antiEntropy.start();
    paxos.start();
    this.serving = true;
    log.info({ listen: cfg.listen, data: cfg.data, clusterId: meta.clusterId, fsync: cfg.fsync, tls: tls !== undefined, auth: auth.open ? 'open' : 'tokens' }, 'node serving');
    if (identity.initialPeers.length > 0) transport.setPeers(new Map(identity.initialPeers.map((x) => [x.id, x.addr])));
    this.background = lifecycle.finishStart().catch((err: unknown) => {
      if (!this.stopped) log.error({ err }, 'could not finish joining the cluster');
    });
  }

  /** LevelDB, the node's identity (bootstrap / join / resume / replace), the record store, the durable clock, the partition fence. */
  private async openDisk(ca: TlsFiles['ca'] | undefined): Promise<Disk> {
    const cfg = this.config;
    mkdirSync(cfg.data, { recursive: true });
    const backend = new LevelBackend(join(cfg.data, 'db'), levelOptions(cfg));
    await backend.open();
    this.closers.push(() => backend.close());
    const raftStore = new RaftStore(backend);
    const fresh = await raftStore.isEmpty();
    const identity = await loadIdentity(cfg, backend, fresh, this.log, ca);
    const { meta } = identity;
    const index = new MerkleIndex(backend, h64, DEFAULT_MERKLE_SHAPE);
    const store = new RecordStore({ backend, partitions: meta.partitions, segments: DEFAULT_MERKLE_SHAPE.segments, sync: cfg.fsync, index, versionCacheSize: cfg.versionCacheKeys });
    await store.open();
    // Queued writes drain before LevelDB closes; background steps get a moment to see `stopped` first.
    this.closers.push(async () => {
      await Promise.race([this.background, new Promise((r) => setTimeout(r, BACKGROUND_STOP_WAIT_MS).unref())]);
      await store.close();
    });
    // Before anything stamps or sends a timestamp: the HLC resumes above what it issued before a restart.
    const clock = new DurableClock({ hlc: this.hlc, backend, leaseMs: markLeaseMs(cfg.maxClockSkewMs) });
    await clock.open();
    const fence = await openFence(backend, cfg.fsync);
    return { backend, raftStore, fresh, identity, meta, index, store, clock, fence };
  }

  /** The peer transport (admission, version guard, HLC merge), gossip, and membership with its Raft group. */
  private openPeers(disk: Disk, tls: TlsFiles | undefined): Peers {
    const cfg = this.config;
    const log = this.log;
    const { meta, identity } = disk;
    // The transport and gossip are built before membership, which needs the transport: until then the topology is empty.
    let membership: Membership | undefined;
    const topology = (): Topology => membership?.topology ?? new Topology();
    const versions = versionGuard(cfg.maxClockSkewMs, this.metrics);
    const guard = new PeerGuard({ topology, joinAnswer: () => identity.joinAnswer, versions, metrics: this.metrics });
    const transport = new WsTransport({
      selfId: cfg.id, clusterId: meta.clusterId, secret: cfg.secret, logger: log.child({ c: 'net' }),
      getEpoch: () => topology().epoch,
      // Envelopes carry the clock's latest value (the receive rule merges the max); only versions need a fresh tick.
      hlcNow: () => this.hlcText(),
      ...(tls ? { tls } : {}),
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
    this.closers.push(() => transport.close());

    const gossip = new Gossip({
      selfId: cfg.id, transport, metrics: this.metrics, log: log.child({ c: 'gossip' }),
      config: {
        probeIntervalMs: cfg.swimProbeIntervalMs, probeTimeoutMs: cfg.swimProbeTimeoutMs, indirectChecks: cfg.swimIndirectChecks,
        suspicionMult: cfg.swimSuspicionMult, suspicionMaxTimeoutMult: cfg.swimSuspicionMaxTimeoutMult, retransmitMult: cfg.swimRetransmitMult,
      },
      epoch: () => topology().epoch,
      onEpochBehind: (epoch, from) => log.info({ epoch, from, local: topology().epoch }, 'a peer knows a newer epoch; Raft replication will bring it'),
    });
    this.closers.push(() => gossip.stop());
    const isAlive = (id: string): boolean => gossip.isAlive(id);

    const m = new Membership({
      selfId: cfg.id, transport, log: log.child({ c: 'membership' }), deadVoterMs: cfg.deadVoterMs,
      liveness: { isAlive, heardFrom: (id) => gossip.view(id).lastHeardMs !== null },
      raft: {
        store: disk.raftStore, log: log.child({ c: 'raft' }),
        onFatal: () => { process.exitCode = 70; void this.stop().finally(() => process.exit(70)); },
        validateSnapshot: (data) => {
          const snap = validateTopologySnapshot(data);
          if (snap.epoch > 0 && snap.clusterId !== meta.clusterId) throw new KvError('KV_INVALID_ARGUMENT', `snapshot of another cluster (${snap.clusterId})`);
        },
        onRefused: (reason) => this.metrics.peerRefused.labels({ reason }).inc(),
      },
    });
    membership = m;
    this.closers.push(() => m.stop());
    return { transport, gossip, membership: m, topology, isAlive, versions, waitForEpoch: (epoch, deadlineMs) => m.waitForEpoch(epoch, deadlineMs) };
  }

  /** Replica, hints, anti-entropy and the coordinator; Paxos (acceptor + proposer) for conditional writes; listing. */
  private async openDataPath(disk: Disk, peers: Peers): Promise<DataPath> {
    const cfg = this.config;
    const log = this.log;
    const { backend, store, index, fence, clock } = disk;
    const { transport, gossip, membership: m, topology, isAlive, versions, waitForEpoch } = peers;
    const replica = new Replica({
      store, fence, maxKeyBytes: cfg.maxKeyBytes, maxValueBytes: cfg.maxValueBytes, maxClockSkewMs: cfg.maxClockSkewMs,
      onVersionRefused: () => this.metrics.versionsRefused.labels({ source: 'replica' }).inc(),
      serving: () => m.topology.member(cfg.id)?.state !== 'replacing',
    });
    replica.register(transport);
    let hints: HintStore | undefined;
    if (cfg.hintedHandoff) {
      hints = new HintStore({
        backend, transport, log: log.child({ c: 'hints' }), registry: this.metrics.registry, cluster: topologyHintDelegate(topology, isAlive),
        // A hint must never outlive tombstone GC: replaying an old value after its tombstone was purged would resurrect
        // it. Ages count from the record's version time, with room for a slow request and skewed clocks.
        limits: { ...cfg, versionGuard: versions, hintsMaxAgeMs: Math.max(0, Math.min(cfg.hintsMaxAgeMs, cfg.tombstoneGraceMs - cfg.requestTimeoutMs - cfg.maxClockSkewMs)) },
      });
      await hints.open();
      const h = hints;
      this.closers.push(() => h.stop());
    }
    const antiEntropy = new AntiEntropy({
      selfId: cfg.id, store, index, transport, metrics: this.metrics, log: log.child({ c: 'ae' }),
      topology, isAlive, fence, intervalMs: cfg.antiEntropyIntervalMs, tombstoneGraceMs: cfg.tombstoneGraceMs,
      maxKeyBytes: cfg.maxKeyBytes, maxValueBytes: cfg.maxValueBytes, versions, writeQuorum: cfg.w,
      streamMaxPartitions: cfg.streamMaxPartitions, streamLagTargetMs: cfg.streamLagTargetMs,
    });
    await antiEntropy.open();
    this.closers.push(() => antiEntropy.stop());
    const coordinator = new Coordinator({
      selfId: cfg.id, replica, transport, clock, hints, log: log.child({ c: 'coord' }), topology, catchUp: waitForEpoch,
      liveness: { isAlive, isSuspect: (id) => gossip.view(id).liveness === 'suspect' },
      defaults: { w: cfg.w, r: cfg.r }, requestTimeoutMs: cfg.requestTimeoutMs, readRepair: cfg.readRepair, maxClockSkewMs: cfg.maxClockSkewMs,
      onVersionRefused: (source) => this.metrics.versionsRefused.labels({ source }).inc(),
      onReadRepair: (n, mode) => this.metrics.readRepairs.labels({ mode }).inc(n),
    });

    const limits = { maxKeyBytes: cfg.maxKeyBytes, maxValueBytes: cfg.maxValueBytes };
    const paxos = new PaxosReplica({
      backend, replica, fence, partitionOf: (key) => store.locate(key).partition, epoch: () => m.epoch,
      owns: (key) => {
        const t = m.topology;
        // A replacement lost the dead member's acceptor state: it takes no part in Paxos until it is normal.
        if (t.epoch === 0 || t.member(cfg.id)?.state === 'replacing') return false;
        const p = partitionOf(key, t.partitions);
        return replicasOf(t.table('current'), p).includes(cfg.id) || replicasOf(t.table('future'), p).includes(cfg.id);
      },
      sync: cfg.fsync, limits, maxClockSkewMs: cfg.maxClockSkewMs, retentionMs: paxosRetentionMs(cfg), log: log.child({ c: 'paxos' }),
    });
    paxos.register(transport);
    this.closers.push(() => paxos.stop());
    const cas = new CasCoordinator({
      selfId: cfg.id, transport, acceptor: paxos, clock, hints, log: log.child({ c: 'cas' }), topology, catchUp: waitForEpoch, isAlive,
      requestTimeoutMs: cfg.requestTimeoutMs, maxClockSkewMs: cfg.maxClockSkewMs, limits, registry: this.metrics.registry,
    });
    paxos.setFinisher((key) => cas.serialGet(key, {}));
    const lister = new Lister({
      selfId: cfg.id, transport, store, fence, topology, catchUp: waitForEpoch,
      isAlive, defaultR: cfg.r, maxKeyBytes: cfg.maxKeyBytes, requestTimeoutMs: cfg.requestTimeoutMs,
    });
    lister.register(transport);
    return { hints, antiEntropy, coordinator, paxos, cas, lister };
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
    for (const close of this.closers.splice(0).reverse()) await close();
    this.log.info('node stopped');
  }
}
