/**
 * Start-up discovery's two judgements (lib/node/discovery.ts): what a seed's answer proves,
 * and when a joined node is a member whose data was lost. The whole path with real processes
 * is test/deploy/multi-host.test.ts.
 */
import { hkdfSync } from 'node:crypto';
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { classifyAnswer, freshProof, refuseLostMember } from '../../lib/node/discovery.ts';
import { loadConfig } from '../../lib/config.ts';

const key = (secret: string): Buffer => Buffer.from(hkdfSync('sha256', Buffer.from(secret), Buffer.alloc(0), 'kv-discovery-fresh/1', 32));
const K = key('discovery-test-secret-0123');
const SEED = 'kv-1.kv-peers.kv.svc.cluster.local:7001';
const NONCE = 'ab'.repeat(16);

function freshBody(o: { id?: string; addr?: string; proof?: string } = {}): unknown {
  const id = o.id ?? 'kv-1';
  const addr = o.addr ?? SEED;
  return { error: { code: 'KV_UNAVAILABLE', message: 'fresh', discovery: { id, addr, proof: o.proof ?? freshProof(K, id, addr, NONCE) } } };
}

describe('start-up discovery', () => {
  it('takes a 200 from a seed as a member serving a cluster', () => {
    expect(classifyAnswer(K, SEED, NONCE, 200, { status: 'ok' }, 'kv-0')).to.deep.equal({ kind: 'member' });
  });

  it('takes a seed as fresh only with a proof over its id, its address and this nonce, made with the cluster secret', () => {
    expect(classifyAnswer(K, SEED, NONCE, 503, freshBody(), 'kv-0')).to.deep.equal({ kind: 'fresh', id: 'kv-1' });
    const other = (body: unknown, nonce = NONCE, status = 503, self = 'kv-0'): string => classifyAnswer(K, SEED, nonce, status, body, self).kind;
    // Another secret, an old answer (other nonce), another address, a forged id, a bad proof, a member starting up.
    expect(other(freshBody({ proof: freshProof(key('another-secret-0123456789'), 'kv-1', SEED, NONCE) }))).to.equal('other');
    expect(other(freshBody(), 'cd'.repeat(16))).to.equal('other');
    expect(other(freshBody({ addr: 'kv-2.kv-peers.kv.svc.cluster.local:7001' }))).to.equal('other');
    expect(other(freshBody({ id: 'kv-9', proof: freshProof(K, 'kv-1', SEED, NONCE) }))).to.equal('other');
    expect(other(freshBody({ proof: 'zz' }))).to.equal('other');
    expect(other(freshBody({ id: 'bad id!' }))).to.equal('other');
    expect(other({ error: { code: 'KV_UNAVAILABLE', message: 'node is starting' } })).to.equal('other');
    expect(other(freshBody(), NONCE, 500)).to.equal('other');
    expect(other(null, NONCE, 401)).to.equal('other');
    // A seed answering with this node's own id is a misconfiguration, not a fresh peer.
    expect(other(freshBody(), NONCE, 503, 'kv-1')).to.equal('other');
  });

  it('refuses a node that joins as an existing full member (its data was lost), not one still joining', () => {
    const answer = (state: string) => ({ clusterId: 'c', partitions: 8, epoch: 4, members: [{ id: 'kv-0', addr: 'a:1', state }, { id: 'kv-1', addr: 'b:1', state: 'normal' }] });
    expect(() => refuseLostMember(answer('normal'), 'kv-0')).to.throw(KvError, /already a normal member .* data was lost/);
    expect(() => refuseLostMember(answer('leaving'), 'kv-0')).to.throw(KvError, /already a leaving member/);
    expect(() => refuseLostMember(answer('joining'), 'kv-0')).to.not.throw();
    expect(() => refuseLostMember(answer('normal'), 'kv-5')).to.not.throw();
  });

  it('takes its settings from the environment, as a pod spec gives them, and refuses contradictions', () => {
    const env = { KV_SEEDS: 'kv-0.p:7001,kv-1.p:7001', KV_SEED_BOOTSTRAP: 'true', KV_ID: 'kv-0', KV_ADVERTISE: 'kv-0.p:7001', KV_SECRET: 'pod-secret-0123456789', KV_AUTH: 'none' };
    const cfg = loadConfig({ env });
    expect(cfg.seeds).to.deep.equal(['kv-0.p:7001', 'kv-1.p:7001']);
    expect(cfg.seedBootstrap).to.equal(true);
    expect(cfg.discoveryTimeoutMs).to.equal(600_000);
    expect(() => loadConfig({ env, flags: { bootstrap: true } })).to.throw(KvError, /seeds/);
    expect(() => loadConfig({ env, flags: { join: '127.0.0.1:7001' } })).to.throw(KvError, /seeds/);
    expect(() => loadConfig({ env: { KV_SEED_BOOTSTRAP: 'true' } })).to.throw(KvError, /seedBootstrap/);
    expect(() => loadConfig({ env: { KV_SEEDS: 'no-port' } })).to.throw(KvError, /seeds/);
  });
});
