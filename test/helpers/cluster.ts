/**
 * A cluster of real `kv node` processes on loopback for integration tests: node 1
 * bootstraps, the others join through it. Every process, port and dir is cleaned up by
 * `stop()` (call it in an after hook).
 */
import { join } from 'node:path';
import { KvClient } from '../../lib/client/client.ts';
import { pollUntil } from './poll.ts';
import { freePort, kill, removeDir, spawnNode, tempDir, waitHealthy, type NodeProc } from './proc.ts';

export interface ClusterView {
  id: string;
  epoch: number;
  ringChecksum: string;
  raft: { role: string; term: number; leader: string | null; voters: string[]; learners: string[] };
  members: { id: string; addr: string; state: string; liveness: string; incarnation: number }[];
}

export class TestCluster {
  readonly nodes = new Map<string, NodeProc>();
  readonly ports = new Map<string, number>();
  readonly root = tempDir('kv-cluster-');
  private readonly clients: KvClient[] = [];

  /** A bearer token for view() and client(), for nodes started with a tokens file. */
  token: string | undefined;

  constructor(private readonly extraArgs: string[] = [], private readonly env: Record<string, string> = {}) {}

  static async start(n: number, opts: { args?: string[]; env?: Record<string, string>; token?: string } = {}): Promise<TestCluster> {
    const c = new TestCluster(opts.args, opts.env);
    c.token = opts.token;
    await c.add('n1', { bootstrap: true });
    for (let i = 2; i <= n; i++) await c.add(`n${i}`);
    await c.waitConverged(n);
    return c;
  }

  addr(id: string): string {
    return `127.0.0.1:${this.ports.get(id)}`;
  }

  addrs(): string[] {
    return [...this.nodes.values()].map((p) => p.addr);
  }

  /** Start a fresh node that bootstraps or joins through a running member. */
  async add(id: string, opts: { bootstrap?: boolean; args?: string[]; healthyTimeoutMs?: number } = {}): Promise<NodeProc> {
    const port = await freePort();
    this.ports.set(id, port);
    const seed = [...this.nodes.values()].filter((p) => p.child.exitCode === null && p.child.signalCode === null).map((p) => p.addr);
    const role = opts.bootstrap ? ['--bootstrap'] : ['--join', seed.join(',')];
    const p = spawnNode({ id, port, dataDir: join(this.root, id), args: [...role, ...this.extraArgs, ...(opts.args ?? [])], env: this.env });
    this.nodes.set(id, p);
    await waitHealthy(p, opts.healthyTimeoutMs ?? 60_000);
    return p;
  }

  /** Restart a stopped node from its data dir. */
  async restart(id: string, opts: { waitHealthy?: boolean } = {}): Promise<NodeProc> {
    const port = this.ports.get(id) as number;
    const p = spawnNode({ id, port, dataDir: join(this.root, id), args: this.extraArgs, env: this.env });
    this.nodes.set(id, p);
    if (opts.waitHealthy !== false) await waitHealthy(p, 60_000);
    return p;
  }

  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.nodes.get(id);
    if (p) await kill(p, signal);
  }

  signal(id: string, signal: NodeJS.Signals): void {
    this.nodes.get(id)?.child.kill(signal);
  }

  client(ids?: string[]): KvClient {
    const c = new KvClient({ nodes: (ids ?? [...this.nodes.keys()]).map((id) => this.addr(id)), ...(this.token ? { token: this.token } : {}) });
    this.clients.push(c);
    return c;
  }

  async view(id: string): Promise<ClusterView> {
    const res = await fetch(`http://${this.addr(id)}/cluster`, this.token ? { headers: { authorization: `Bearer ${this.token}` } } : {});
    if (!res.ok) throw new Error(`/cluster on ${id}: ${res.status}`);
    return (await res.json()) as ClusterView;
  }

  running(): string[] {
    return [...this.nodes.entries()].filter(([, p]) => p.child.exitCode === null && p.child.signalCode === null).map(([id]) => id);
  }

  /** Every running node reports `members` normal members, the same epoch and ring checksum. */
  async waitConverged(members: number, timeoutMs = 60_000): Promise<ClusterView[]> {
    return pollUntil(async () => {
      const views = await Promise.all(this.running().map((id) => this.view(id)));
      const v0 = views[0] as ClusterView;
      const ok = views.every((v) => v.epoch === v0.epoch && v.ringChecksum === v0.ringChecksum &&
        v.members.filter((m) => m.state === 'normal').length === members);
      return ok ? views : undefined;
    }, { timeoutMs, what: `${members} normal members on every node with one epoch and ring` });
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await Promise.all([...this.nodes.values()].map((p) => kill(p, 'SIGKILL')));
    removeDir(this.root);
  }
}
