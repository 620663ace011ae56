/**
 * Who this node is, decided once per data dir: resume from the saved identity, or on a
 * fresh dir bootstrap a new cluster, join one (`--join`, or `--seeds` discovery), or take
 * over a dead member's place (`--replace`). A data dir belongs to one node id forever.
 */
import { randomUUID } from 'node:crypto';
import { KvError } from '../errors.ts';
import type { Config } from '../config.ts';
import type { Backend } from '../storage/backend.ts';
import { discoverCluster, refuseLostMember } from './discovery.ts';
import { loadJoinAnswer, requestJoin, saveJoinAnswer } from './join.ts';
import { readMeta, writeMeta, type NodeMeta } from './meta.ts';
import type { Logger } from './log.ts';

export interface Identity {
  meta: NodeMeta;
  /** The members a joiner was told about (admitted as peers until its topology catches up). */
  joinAnswer: { epoch: number; members: { id: string; addr: string }[] } | undefined;
  /** Peers to dial before the committed topology names them (a fresh joiner). */
  initialPeers: { id: string; addr: string }[];
}

export async function loadIdentity(cfg: Config, backend: Backend, raftFresh: boolean, log: Logger, ca: string | Buffer | undefined): Promise<Identity> {
  const existing = await readMeta(backend);
  if (existing) {
    if (existing.id !== cfg.id) throw new KvError('KV_CONFIG', `data dir ${cfg.data} belongs to node "${existing.id}", not "${cfg.id}"`);
    if ((cfg.bootstrap || cfg.join.length > 0) && !raftFresh) log.warn('data dir is already initialized: --bootstrap/--join ignored, resuming');
    return { meta: existing, joinAnswer: loadJoinAnswer(cfg.data), initialPeers: [] };
  }
  const found = cfg.seeds.length > 0 ? await discoverCluster({ ...cfg, timeoutMs: cfg.discoveryTimeoutMs, log }) : undefined;
  let id: Identity;
  if (cfg.bootstrap || found?.mode === 'bootstrap') {
    id = { meta: { id: cfg.id, clusterId: randomUUID(), partitions: cfg.partitions, bootstrapped: true, createdAt: Date.now() }, joinAnswer: undefined, initialPeers: [] };
  } else if (cfg.join.length > 0 || found?.mode === 'join') {
    const replace = cfg.replace !== '';
    const answer = await requestJoin(found?.mode === 'join' ? found.seeds : cfg.join, cfg.secret, cfg.id, cfg.advertise, log,
      { ...(ca !== undefined ? { ca } : {}), replace });
    if (found && !replace) refuseLostMember(answer, cfg.id);
    saveJoinAnswer(cfg.data, answer);
    id = {
      meta: { id: cfg.id, clusterId: answer.clusterId, partitions: answer.partitions, bootstrapped: false, createdAt: Date.now() },
      joinAnswer: answer,
      initialPeers: answer.members.filter((m) => m.id !== cfg.id),
    };
  } else {
    throw new KvError('KV_CONFIG', `data dir ${cfg.data} is fresh: pass --bootstrap to create a cluster, --join HOST:PORT to join one, or --seeds to find it`);
  }
  await writeMeta(backend, id.meta);
  return id;
}
