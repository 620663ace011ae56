/**
 * The composition root of one node: config → storage → clock → services → HTTP.
 * start() and stop() run in a documented order; stop() undoes start() in reverse.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { KvError } from '../errors.ts';
import { Hlc } from '../core/hlc.ts';
import { partitionOf } from '../core/partitioner.ts';
import { parseHostPort, type Config } from '../config.ts';
import { ApiServer } from '../api/server.ts';
import { Metrics } from '../api/metrics.ts';
import type { ClusterService } from '../api/service.ts';
import { LevelBackend } from '../storage/level-backend.ts';
import { RecordStore } from '../storage/record-store.ts';
import { LocalKv } from './local-kv.ts';
import { readMeta, writeMeta, type NodeMeta } from './meta.ts';
import type { Logger } from './log.ts';

export class KvNode {
  readonly metrics = new Metrics();
  readonly hlc: Hlc;
  private backend: LevelBackend | undefined;
  private store: RecordStore | undefined;
  private api: ApiServer | undefined;
  private meta: NodeMeta | undefined;
  private serving = false;

  constructor(readonly config: Config, private readonly log: Logger) {
    this.hlc = new Hlc({ maxClockSkewMs: config.maxClockSkewMs });
  }

  /** Order: data dir → LevelDB → identity → record store → HTTP listener. */
  async start(): Promise<void> {
    const cfg = this.config;
    mkdirSync(cfg.data, { recursive: true });
    this.backend = new LevelBackend(join(cfg.data, 'db'));
    await this.backend.open();
    this.meta = await this.loadIdentity(this.backend);
    const q = cfg.partitions;
    this.store = new RecordStore({ backend: this.backend, partitionOf: (k) => partitionOf(k, q), sync: cfg.fsync });
    await this.store.open();
    const kv = new LocalKv(cfg.id, cfg.n, this.store, this.hlc);
    this.api = new ApiServer({ kv, cluster: this.clusterService(), metrics: this.metrics, limits: cfg, log: this.log });
    const { host, port } = parseHostPort(cfg.listen);
    await this.api.listen(host, port);
    this.serving = true;
    this.log.info({ listen: cfg.listen, data: cfg.data, clusterId: this.meta.clusterId, fsync: cfg.fsync }, 'node serving');
  }

  private async loadIdentity(backend: LevelBackend): Promise<NodeMeta> {
    const cfg = this.config;
    const existing = await readMeta(backend);
    if (existing) {
      if (existing.id !== cfg.id) {
        throw new KvError('KV_CONFIG', `data dir ${cfg.data} belongs to node "${existing.id}", not "${cfg.id}"`);
      }
      if (cfg.bootstrap || cfg.join.length > 0) this.log.warn('data dir is already initialized: --bootstrap/--join ignored, resuming');
      return existing;
    }
    if (!cfg.bootstrap && cfg.join.length === 0) {
      throw new KvError('KV_CONFIG', `data dir ${cfg.data} is fresh: pass --bootstrap to create a cluster or --join HOST:PORT to join one`);
    }
    const meta: NodeMeta = { id: cfg.id, clusterId: randomUUID(), createdAt: Date.now() };
    await writeMeta(backend, meta);
    return meta;
  }

  private clusterService(): ClusterService {
    const notYet = async (): Promise<never> => {
      throw new KvError('KV_UNAVAILABLE', 'membership changes need a multi-node cluster');
    };
    return {
      ready: () => this.serving,
      cluster: async () => ({
        id: this.config.id,
        clusterId: this.meta?.clusterId,
        epoch: 1,
        ringChecksum: '',
        raft: { role: 'leader', term: 1, leader: this.config.id },
        members: [{ id: this.config.id, addr: this.config.advertise, state: 'normal', liveness: 'alive', incarnation: 0 }],
      }),
      ring: async () => ({ epoch: 1, partitions: this.config.partitions, n: this.config.n, table: [] }),
      partitions: async () => ({ id: this.config.id, partitions: [] }),
      decommission: notYet,
      join: notYet,
    };
  }

  /** Order: stop accepting HTTP → drain writes and close the store → LevelDB. */
  async stop(): Promise<void> {
    this.serving = false;
    await this.api?.close();
    await this.store?.close();
    this.log.info('node stopped');
  }
}
