/**
 * Real network partitions for `kv chaos`, built with `ip` alone (root only).
 *
 * Layout: node i runs in its own network namespace `kvc-<run>-<i>` with one end of a
 * veth pair; the other end is enslaved to a bridge in the root namespace. The root
 * namespace holds the first address of a private /24 on that bridge, so the chaos
 * clients (which stay in the root namespace) reach every node directly.
 *
 * Partitions are blackhole routes inside the node namespaces: for a split {A | B},
 * every namespace of A gets `blackhole <b>/32` for each node b of B and vice versa.
 * Packets between the sides are dropped by the sender's kernel, in both directions;
 * established peer sockets stall and new ones fail, which is what a cut cable looks
 * like to the store. Clients in the root namespace still reach both sides, so a
 * coordinator on the minority side is exercised (it must answer honestly) instead of
 * being merely unreachable. iptables and tc are not needed, so this works wherever
 * `ip netns` does.
 *
 * Every name carries the run id, so concurrent runs never touch each other's devices,
 * and `destroy()` removes everything it created (deleting a namespace deletes its veth
 * end, which deletes the peer in the root namespace).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';

const run = promisify(execFile);

/** Node i gets host FIRST_HOST + i of the /24 (.1 is the root namespace). */
const FIRST_HOST = 10;
/** Namespaces one network can hold: hosts .10 to .254 of its /24. */
export const MAX_NETNS_NODES = 254 - FIRST_HOST + 1;

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args, { timeout: 10_000 });
  return stdout;
}

/** Whether partitions can be built here: root, and `ip netns add` works. */
export async function netnsAvailable(): Promise<{ ok: boolean; why?: string }> {
  if (process.getuid?.() !== 0) return { ok: false, why: 'not running as root' };
  const probe = `kvc-probe-${process.pid}-${randomBytes(2).toString('hex')}`;
  try {
    await ip('netns', 'add', probe);
  } catch (err) {
    return { ok: false, why: `ip netns add failed: ${(err as Error).message.split('\n')[0]}` };
  }
  await ip('netns', 'del', probe).catch(() => undefined);
  return { ok: true };
}

export class NetnsNetwork {
  readonly runId: string;
  /** Address (no port) of node i (0-based) inside its namespace. */
  readonly nodeAddrs: string[] = [];
  readonly hostAddr: string;
  private readonly bridge: string;
  private readonly subnet: string;
  private created: string[] = [];
  private bridgeCreated = false;
  /** Blackhole routes currently installed: namespace → destination addresses. */
  private blocked = new Map<string, Set<string>>();

  private constructor(private count: number, runId: string, subnet: string) {
    this.runId = runId;
    this.subnet = subnet;
    this.bridge = `kvc${runId}br`;
    this.hostAddr = `${subnet}.1`;
    for (let i = 0; i < count; i++) this.nodeAddrs.push(`${subnet}.${FIRST_HOST + i}`);
  }

  /** Namespaces built so far (nodes that joined during the run included). */
  get size(): number {
    return this.count;
  }

  /** A network for `size` nodes in a /24 of 10.200.0.0/13 that no local interface uses. */
  static async create(size: number): Promise<NetnsNetwork> {
    const used = await ip('-o', '-4', 'addr');
    let subnet = '';
    for (let tries = 0; tries < 100 && subnet === ''; tries++) {
      const b = randomBytes(2);
      const candidate = `10.${200 + ((b[0] as number) % 8)}.${b[1] as number}`;
      if (!used.includes(` ${candidate}.`)) subnet = candidate;
    }
    if (subnet === '') throw new Error('no free 10.200.0.0/13 subnet for the chaos network');
    const net = new NetnsNetwork(size, randomBytes(2).toString('hex'), subnet);
    try {
      await net.build();
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  nsName(i: number): string {
    return `kvc-${this.runId}-${i + 1}`;
  }

  private async build(): Promise<void> {
    await ip('link', 'add', this.bridge, 'type', 'bridge');
    this.bridgeCreated = true;
    await ip('addr', 'add', `${this.hostAddr}/24`, 'dev', this.bridge);
    await ip('link', 'set', this.bridge, 'up');
    for (let i = 0; i < this.count; i++) await this.buildNamespace(i);
  }

  private async buildNamespace(i: number): Promise<void> {
    const ns = this.nsName(i);
    const host = this.hostVeth(i);
    const peer = `kvc${this.runId}n${i + 1}`;
    await ip('netns', 'add', ns);
    this.created.push(ns);
    await ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
    await ip('link', 'set', peer, 'netns', ns);
    await ip('link', 'set', host, 'master', this.bridge);
    await ip('link', 'set', host, 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    await ip('-n', ns, 'addr', 'add', `${this.nodeAddrs[i]}/24`, 'dev', peer);
    await ip('-n', ns, 'link', 'set', peer, 'up');
  }

  /** One more namespace on the bridge, for a node joining during the run; returns its index. */
  async addNode(): Promise<number> {
    if (this.count >= MAX_NETNS_NODES) throw new Error(`the chaos network holds at most ${MAX_NETNS_NODES} nodes`);
    const i = this.count++;
    this.nodeAddrs.push(`${this.subnet}.${FIRST_HOST + i}`);
    await this.buildNamespace(i);
    return i;
  }

  private hostVeth(i: number): string {
    return `kvc${this.runId}h${i + 1}`;
  }

  /** The command prefix that runs a program inside node i's namespace. */
  execPrefix(i: number): string[] {
    return ['ip', 'netns', 'exec', this.nsName(i)];
  }

  /**
   * Cut every link between the two sides (node indexes). Links within a side and to
   * the root namespace stay up. Replaces any partition in force.
   */
  async partition(sideA: readonly number[], sideB: readonly number[]): Promise<void> {
    await this.heal();
    const pairs: Array<[number, number]> = [];
    for (const a of sideA) for (const b of sideB) pairs.push([a, b], [b, a]);
    for (const [from, to] of pairs) {
      const ns = this.nsName(from);
      const dst = this.nodeAddrs[to] as string;
      await ip('-n', ns, 'route', 'add', 'blackhole', `${dst}/32`);
      let set = this.blocked.get(ns);
      if (set === undefined) this.blocked.set(ns, (set = new Set()));
      set.add(dst);
    }
  }

  /** Remove every blackhole route this network installed. */
  async heal(): Promise<void> {
    const blocked = this.blocked;
    this.blocked = new Map();
    for (const [ns, dsts] of blocked) {
      for (const dst of dsts) await ip('-n', ns, 'route', 'del', 'blackhole', `${dst}/32`).catch(() => undefined);
    }
  }

  get partitioned(): boolean {
    return this.blocked.size > 0;
  }

  /** Remove namespaces, veths and the bridge. Safe to call twice and after a partial build. */
  async destroy(): Promise<void> {
    this.blocked.clear();
    const names = this.created;
    this.created = [];
    for (const ns of names) await ip('netns', 'del', ns).catch(() => undefined);
    // A deleted namespace lives on while anything references it (orphaned TCP sockets
    // retrying towards a blackholed peer can, for minutes), and with it the veth pair:
    // deleting the host end removes both now.
    for (let i = 0; i < this.count; i++) await ip('link', 'del', this.hostVeth(i)).catch(() => undefined);
    if (this.bridgeCreated) {
      this.bridgeCreated = false;
      await ip('link', 'del', this.bridge).catch(() => undefined);
    }
  }

  /** Synchronous last-resort cleanup for process exit handlers. */
  destroySync(): void {
    for (const ns of this.created) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    for (let i = 0; i < this.count; i++) {
      try { execFileSync('ip', ['link', 'del', this.hostVeth(i)], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    this.created = [];
    if (this.bridgeCreated) {
      try { execFileSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' }); } catch { /* already gone */ }
      this.bridgeCreated = false;
    }
  }
}
