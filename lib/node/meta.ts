/**
 * Small facts a node keeps about itself in the meta sublevel: its id and the cluster
 * it belongs to. A data dir belongs to one node id forever.
 */
import { Packr } from 'msgpackr';
import { KvError } from '../errors.ts';
import { SUBLEVELS, type Backend } from '../storage/backend.ts';

export interface NodeMeta {
  id: string;
  clusterId: string;
  /** Q of the cluster (fixed at bootstrap; the store's key layout depends on it). */
  partitions: number;
  /** This node created the cluster (it proposes the create entry once it leads). */
  bootstrapped: boolean;
  createdAt: number;
}

const packr = new Packr({ useRecords: false });
const KEY = 'node';

export async function readMeta(backend: Backend): Promise<NodeMeta | undefined> {
  const buf = await backend.get(SUBLEVELS.meta, KEY);
  if (!buf) return undefined;
  const m = packr.unpack(buf) as NodeMeta;
  if (typeof m?.id !== 'string' || typeof m.clusterId !== 'string') throw new KvError('KV_INTERNAL', 'corrupt node meta record');
  return m;
}

export async function writeMeta(backend: Backend, meta: NodeMeta): Promise<void> {
  await backend.batch([{ type: 'put', sub: SUBLEVELS.meta, key: KEY, value: packr.pack(meta) }], true);
}
