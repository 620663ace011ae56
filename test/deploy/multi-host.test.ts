/**
 * The Kubernetes start-up path on real hosts: three `kv node` processes, each in its own
 * network namespace (lib/chaos/netns.ts), started with the StatefulSet's own environment
 * (deploy/statefulset.yaml, pod name and namespace filled in as the kubelet does). They reach
 * each other only by the names the headless Service would give them, resolved through
 * per-namespace hosts files (`ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts).
 * No address is given by hand and no pod is told to bootstrap or join.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { NetnsNetwork, netnsAvailable } from '../../lib/chaos/netns.ts';
import { pollUntil } from '../helpers/poll.ts';
import { KV_BIN } from '../helpers/proc.ts';
import { skipMissingBinary } from '../helpers/skip.ts';
import { find, podEnv } from './manifests.ts';

const NAMESPACE = 'kv';
const PODS = 3;
const SECRET = 'multi-host-test-secret-0123456789';

interface Pod { name: string; child: ChildProcess; out: () => string; exited: Promise<number | null> }

describe('multi-host start-up as in Kubernetes (network namespaces, names like the headless Service)', function () {
  this.timeout(300_000);
  const sts = find('StatefulSet');
  const service: string = sts.spec.serviceName;
  const port: number = sts.spec.template.spec.containers[0].ports[0].containerPort;
  const podName = (i: number): string => `${sts.metadata.name}-${i}`;
  const dnsName = (i: number): string => `${podName(i)}.${service}.${NAMESPACE}.svc.cluster.local`;

  let net: NetnsNetwork | undefined;
  let why: string | undefined;
  let root = '';
  const hostsDirs: string[] = [];
  const pods = new Map<number, Pod>();

  const cleanupSync = (): void => {
    for (const p of pods.values()) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    net?.destroySync();
    for (const d of hostsDirs) rmSync(d, { recursive: true, force: true });
    if (root) rmSync(root, { recursive: true, force: true });
  };

  before(async () => {
    const can = await netnsAvailable();
    if (!can.ok) { why = can.why; return; }
    process.once('exit', cleanupSync);
    root = mkdtempSync(join(tmpdir(), 'kv-multihost-'));
    net = await NetnsNetwork.create(PODS);
    // What cluster DNS would answer for the headless Service's pod names, in every namespace.
    const lines = ['127.0.0.1 localhost', '::1 localhost'];
    for (let i = 0; i < PODS; i++) lines.push(`${net.nodeAddrs[i]} ${dnsName(i)} ${podName(i)}.${service}`);
    for (let i = 0; i < PODS; i++) {
      const dir = `/etc/netns/${net.nsName(i)}`;
      mkdirSync(dir, { recursive: true });
      hostsDirs.push(dir);
      writeFileSync(join(dir, 'hosts'), `${lines.join('\n')}\n`);
    }
  });

  beforeEach(function () {
    if (why) skipMissingBinary(this, 'ip netns', why);
  });

  after(async () => {
    await Promise.all([...pods.values()].map((p) => stop(p)));
    await net?.destroy();
    cleanupSync();
    process.removeListener('exit', cleanupSync);
  });

  function start(i: number, extraEnv: Record<string, string> = {}): Pod {
    const n = net as NetnsNetwork;
    const env: Record<string, string> = {};
    // Only what the pod spec sets: nothing of this shell's KV_* settings leaks in.
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KV_') && v !== undefined) env[k] = v;
    Object.assign(env, podEnv(podName(i), NAMESPACE, { 'kv-cluster-secret': { secret: SECRET } }));
    // The test's own stand-ins: a temp dir for the volume, and no tokens file (no Secret
    // mounted here): client auth off, explicitly, as a node off loopback needs.
    env['KV_DATA'] = join(root, podName(i));
    delete env['KV_TOKENS_FILE'];
    delete env['KV_PRESTOP_TOKEN_FILE'];
    env['KV_AUTH'] = 'none';
    env['KV_LOG_LEVEL'] = 'info';
    Object.assign(env, extraEnv);
    const child = spawn('ip', ['netns', 'exec', n.nsName(i), process.execPath, KV_BIN, 'node'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (b: Buffer): void => { out = (out + b.toString()).slice(-(1 << 20)); };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const pod = { name: podName(i), child, out: () => out, exited };
    pods.set(i, pod);
    return pod;
  }

  async function stop(p: Pod | undefined): Promise<void> {
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** The client side stays in the root namespace and talks to pod IPs, as a client Service would. */
  async function view(i: number): Promise<{ clusterId: string; epoch: number; members: { id: string; addr: string; state: string }[] }> {
    const res = await fetch(`http://${(net as NetnsNetwork).nodeAddrs[i]}:${port}/cluster`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) throw new Error(`${podName(i)} /cluster: ${res.status}`);
    return (await res.json()) as { clusterId: string; epoch: number; members: { id: string; addr: string; state: string }[] };
  }

  async function formed(indexes: number[]): Promise<string> {
    return pollUntil(async () => {
      for (const i of indexes) {
        const p = pods.get(i);
        if (p && p.child.exitCode !== null) throw new Error(`${p.name} exited ${p.child.exitCode}:\n${p.out().slice(-3000)}`);
      }
      const views = await Promise.all(indexes.map(view));
      const ids = new Set(views.map((v) => v.clusterId));
      const ok = ids.size === 1 && views.every((v) => v.members.length === PODS && v.members.every((m) => m.state === 'normal'));
      return ok ? (views[0]?.clusterId as string) : undefined;
    }, { timeoutMs: 180_000, intervalMs: 500, what: 'one cluster of three normal members on every pod' });
  }

  it('starts the pods in any order; they find each other by name and form one cluster that only the first seed created', async () => {
    for (const i of [2, 1, 0]) start(i);
    const clusterId = await formed([0, 1, 2]);
    const v = await view(1);
    expect(v.members.map((m) => [m.id, m.addr]).sort()).to.deep.equal([0, 1, 2].map((i) => [podName(i), `${dnsName(i)}:${port}`]));
    expect(clusterId).to.match(/^[0-9a-f-]{36}$/);
    expect(pods.get(0)?.out()).to.include('creating it');
    for (const i of [1, 2]) {
      expect(pods.get(i)?.out(), podName(i)).to.include('joining it');
      expect(pods.get(i)?.out(), podName(i)).to.not.include('creating it');
    }
    // Data flows between the hosts: written through one pod, read back through another at r=all.
    const base = (i: number): string => `http://${(net as NetnsNetwork).nodeAddrs[i]}:${port}`;
    const put = await fetch(`${base(1)}/kv/multi-host?w=all`, { method: 'PUT', body: 'across namespaces' });
    expect(put.status).to.equal(200);
    const got = await fetch(`${base(2)}/kv/multi-host?r=all`);
    expect(await got.text()).to.equal('across namespaces');
  });

  it('restarts a pod from its volume: it resumes, with no discovery', async () => {
    const before = (await view(0)).clusterId;
    await stop(pods.get(1));
    const p = start(1);
    expect(await formed([0, 1, 2])).to.equal(before);
    expect(p.out()).to.not.include('discovery');
  });

  it('never creates a second cluster when the first seed lost its volume: it finds the others and is refused as a lost member', async () => {
    const before = (await view(1)).clusterId;
    await stop(pods.get(0));
    rmSync(join(root, podName(0)), { recursive: true, force: true });
    const p = start(0);
    const code = await p.exited;
    expect(code, p.out().slice(-3000)).to.not.equal(0);
    expect(p.out()).to.include('already a normal member');
    expect(p.out()).to.not.include('creating it');
    for (const i of [1, 2]) expect((await view(i)).clusterId).to.equal(before);
  });

  it('a fresh first seed whose peers cannot be reached waits and gives up at its deadline instead of creating a cluster', async () => {
    for (const i of [0, 1, 2]) await stop(pods.get(i));
    rmSync(join(root, podName(0)), { recursive: true, force: true });
    const p = start(0, { KV_DISCOVERY_TIMEOUT_MS: '4000' });
    const code = await p.exited;
    expect(code).to.not.equal(0);
    expect(p.out()).to.include('discovery found no cluster');
    expect(p.out()).to.not.include('creating it');
  });
});
