/**
 * TLS on real `kv node` processes: three nodes with certificates of one CA serve HTTPS and
 * replicate over mutual-TLS peer links; a client that does not trust the CA is refused, and
 * so is a peer whose certificate comes from another CA (or that has none), even with the
 * cluster secret.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { KvClient } from '../../lib/client/client.ts';
import { WsTransport } from '../../lib/net/ws-transport.ts';
import { makeCa, makeNodeCert, type CertFiles } from '../../lib/cli/local-credentials.ts';
import { cleanupAll, freePort, KV_BIN, spawnNode, tempDir, type NodeProc } from '../helpers/proc.ts';
import { pollUntil, FatalPollError } from '../helpers/poll.ts';
import { skipMissingBinary } from '../helpers/skip.ts';
import { TEST_SECRET } from './helpers.ts';

describe('security: TLS for clients and peers (real processes)', function () {
  this.timeout(90_000);
  let dir: string;
  let ca: CertFiles;
  let nodeCert: CertFiles;
  let other: { ca: CertFiles; cert: CertFiles };
  const nodes: NodeProc[] = [];
  let client: KvClient;

  const tlsArgs = (): string[] => ['--tls-cert', nodeCert.cert, '--tls-key', nodeCert.key, '--tls-ca', ca.cert, '--partitions', '64'];
  const caPem = (): Buffer => readFileSync(ca.cert);

  async function healthy(p: NodeProc): Promise<void> {
    const c = new KvClient({ nodes: [p.addr], ca: caPem(), timeoutMs: 2000 });
    try {
      await pollUntil(async () => {
        if (p.child.exitCode !== null) throw new FatalPollError(`${p.id} exited:\n${p.output().slice(-2000)}`);
        await c.request('GET', '/health', undefined);
        return true;
      }, { timeoutMs: 30_000, what: `${p.id} healthy over HTTPS` });
    } finally {
      c.close();
    }
  }

  before(async function () {
    if (spawnSync('openssl', ['version']).status !== 0) skipMissingBinary(this, 'openssl', 'certificates for the TLS tests are made with openssl');
    dir = tempDir('kv-sec-tls-');
    ca = makeCa(join(dir, 'pki'), 'ca', 'test-cluster-ca');
    nodeCert = makeNodeCert(join(dir, 'pki'), ca, 'node', ['127.0.0.1']);
    const otherCa = makeCa(join(dir, 'other'), 'ca', 'someone-else-ca');
    other = { ca: otherCa, cert: makeNodeCert(join(dir, 'other'), otherCa, 'intruder', ['127.0.0.1']) };
    const first = spawnNode({ id: 't1', port: await freePort(), dataDir: join(dir, 't1'), args: ['--bootstrap', ...tlsArgs()] });
    nodes.push(first);
    await healthy(first);
    for (const id of ['t2', 't3']) {
      const p = spawnNode({ id, port: await freePort(), dataDir: join(dir, id), args: ['--join', first.addr, ...tlsArgs()] });
      nodes.push(p);
      await healthy(p);
    }
    client = new KvClient({ nodes: nodes.map((p) => p.addr), ca: caPem() });
  });

  after(async () => {
    client?.close();
    await cleanupAll();
  });

  it('works end to end over HTTPS and mutual-TLS peer links (3 nodes)', async () => {
    await pollUntil(async () => {
      const v = await client.json<{ members: { state: string; liveness: string }[] }>('GET', '/cluster', undefined, nodes[2]?.addr);
      return v.members.filter((m) => m.state === 'normal' && m.liveness === 'alive').length === 3;
    }, { timeoutMs: 60_000, what: 'three normal, alive members' });
    await client.put('tls-key', 'over tls', { w: 'all', node: nodes[0]?.addr });
    const got = await client.get('tls-key', { r: 'all', node: nodes[2]?.addr });
    expect(got?.value.toString()).to.equal('over tls');
  });

  it('refuses a client that does not trust the cluster CA, and plain HTTP', async () => {
    const stranger = new KvClient({ nodes: [nodes[0]!.addr], ca: readFileSync(other.ca.cert) });
    try {
      const err = await stranger.get('tls-key').then(() => undefined, (e: NodeJS.ErrnoException) => e);
      expect(err?.code).to.be.oneOf(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY']);
    } finally {
      stranger.close();
    }
    const plain = new KvClient({ nodes: [nodes[0]!.addr], timeoutMs: 3000 });
    try {
      expect(await plain.get('tls-key').then(() => 'answered', () => 'refused')).to.equal('refused');
    } finally {
      plain.close();
    }
  });

  it('refuses a peer with a certificate from another CA, or none, even with the secret', async () => {
    const clusterId = (await client.json<{ clusterId: string }>('GET', '/cluster', undefined, nodes[0]?.addr)).clusterId;
    const before = (nodes[0] as NodeProc).output().split('without a certificate of the cluster CA').length;
    const attempts = [
      new WsTransport({ selfId: 'intruder', clusterId, secret: TEST_SECRET, tls: { cert: readFileSync(other.cert.cert), key: readFileSync(other.cert.key), ca: caPem() } }),
      new WsTransport({ selfId: 'intruder2', clusterId, secret: TEST_SECRET, tls: { cert: '', key: '', ca: caPem() } }),
    ];
    try {
      for (const t of attempts) t.connect('t1', nodes[0]!.addr);
      await pollUntil(() => attempts.every((t) => t.stats().dialAttempts >= 2), { what: 'intruders dialled twice' });
      expect(attempts.some((t) => t.isConnected('t1'))).to.equal(false);
      await pollUntil(() => (nodes[0] as NodeProc).output().split('without a certificate of the cluster CA').length > before, { what: 'refusal logged' });
    } finally {
      await Promise.all(attempts.map((t) => t.close()));
    }
    expect((await client.get('tls-key'))?.value.toString()).to.equal('over tls');
  });

  it('kv start --tls makes a CA and node certificates, and the CLI works with --ca and no token flag', async () => {
    const cwd = tempDir('kv-sec-start-tls-');
    const port = await freePort();
    const start = spawn(process.execPath, [KV_BIN, 'start', '--nodes', '1', '--base-port', String(port), '--tls'], { cwd, env: { ...process.env, KV_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise((r) => start.once('exit', r));
    const kv = (args: string[]): { status: number | null; out: string; err: string } => {
      const r = spawnSync(process.execPath, [KV_BIN, ...args, '--node', `127.0.0.1:${port}`], { cwd, env: { ...process.env, KV_TOKEN: '' } });
      return { status: r.status, out: r.stdout.toString(), err: r.stderr.toString() };
    };
    try {
      const caFile = join(cwd, 'data', 'tls', 'ca.pem');
      await pollUntil(async () => {
        if (start.exitCode !== null) throw new FatalPollError('kv start exited');
        const c = new KvClient({ nodes: [`127.0.0.1:${port}`], ca: readFileSync(caFile), timeoutMs: 2000 });
        try { await c.request('GET', '/health', undefined); } finally { c.close(); }
        return true;
      }, { timeoutMs: 40_000, what: 'kv start --tls healthy' });
      expect(kv(['put', 'greeting', 'hello', '--ca', caFile]).status).to.equal(0);
      expect(kv(['get', 'greeting', '--ca', caFile]).out).to.equal('hello');
      const noCa = kv(['get', 'greeting']);
      expect(noCa.status).to.equal(1);
      expect(noCa.err).to.not.include('    at ');
    } finally {
      start.kill('SIGTERM');
      await exited;
    }
  });
});
