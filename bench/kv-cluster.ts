/**
 * kv clusters for the benches that TestCluster (test/helpers/cluster.ts, plain HTTP only)
 * cannot start: nodes serving HTTPS (`--tls-cert/--tls-key/--tls-ca`) are polled through
 * KvClient with the bench's CA. The nodes are spawnNode's, so test/helpers/proc.ts kills
 * them when the bench exits; `cleanupAll()` there stops them earlier.
 */
import { join } from 'node:path';
import { KvClient } from '../lib/client/client.ts';
import { freePort, spawnNode, type NodeProc } from '../test/helpers/proc.ts';
import { pollUntil } from '../test/helpers/poll.ts';

export interface BenchClusterOptions {
  /** Parent of the nodes' data dirs. */
  dir: string;
  /** Node ids are `<name>1`..`<name><size>`. */
  name: string;
  size?: number;
  /** Flags for every node (tokens file, TLS, settings under test). */
  args?: string[];
  /** The CA of nodes started with --tls-*: the cluster is then polled over HTTPS. */
  ca?: Buffer;
  /** A bearer token for the polls, for nodes started with a tokens file. */
  token?: string;
}

/** Starts the nodes one by one (the first bootstraps); resolves once the first sees every one normal and alive. */
export async function startBenchCluster(o: BenchClusterOptions): Promise<NodeProc[]> {
  const size = o.size ?? 3;
  const client = (addr: string, timeoutMs?: number): KvClient => new KvClient({ nodes: [addr], ...(timeoutMs ? { timeoutMs } : {}),
    ...(o.ca ? { ca: o.ca } : {}), ...(o.token ? { token: o.token } : {}) });
  const nodes: NodeProc[] = [];
  for (let i = 1; i <= size; i++) {
    const role = i === 1 ? ['--bootstrap'] : ['--join', (nodes[0] as NodeProc).addr];
    const p = spawnNode({ id: `${o.name}${i}`, port: await freePort(), dataDir: join(o.dir, `${o.name}${i}`), args: [...role, ...(o.args ?? [])], env: { KV_LOG_LEVEL: 'warn' } });
    nodes.push(p);
    const c = client(p.addr, 2000);
    await pollUntil(() => c.request('GET', '/health', undefined).then(() => true), { timeoutMs: 60_000, what: `${p.id} healthy` }).finally(() => c.close());
  }
  const c = client((nodes[0] as NodeProc).addr);
  await pollUntil(async () => (await c.json<{ members: { state: string; liveness: string }[] }>('GET', '/cluster')).members
    .filter((m) => m.state === 'normal' && m.liveness === 'alive').length === size, { timeoutMs: 60_000, what: `${o.name} converged` }).finally(() => c.close());
  return nodes;
}
