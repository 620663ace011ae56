/** Pure pieces of the security layer: tokens file parsing and roles, snapshot validation, version bounds on read answers. */
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { hashToken, newToken, parseTokensFile, roleAllows, tokenLine } from '../../lib/api/tokens.ts';
import { Topology, validateTopologySnapshot } from '../../lib/core/topology.ts';
import { Metrics } from '../../lib/api/metrics.ts';
import { PeerGuard, versionGuard } from '../../lib/node/peer-guard.ts';
import { JoinSeed, signJoin } from '../../lib/node/join.ts';
import type { Envelope } from '../../lib/net/transport.ts';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findToken } from '../../lib/cli/client-cmds.ts';

describe('security guards (unit)', () => {
  it('parses token lines, names the first bad line, and nests roles', () => {
    const t = newToken();
    const entries = parseTokensFile(`# comment\n\n${tokenLine(t, 'write', 'app')}\n`, 'f');
    expect(entries).to.have.length(1);
    expect(entries[0]?.hash.equals(hashToken(t))).to.equal(true);
    expect(() => parseTokensFile('admin sha256:abc\n', 'f')).to.throw(KvError, /f:1/);
    expect(() => parseTokensFile(`${tokenLine(t, 'read')}\nroot ${tokenLine(t, 'read').split(' ')[1]}\n`, 'f')).to.throw(KvError, /f:2/);
    expect(roleAllows('admin', 'write')).to.equal(true);
    expect(roleAllows('write', 'read')).to.equal(true);
    expect(roleAllows('read', 'write')).to.equal(false);
    expect(roleAllows('write', 'admin')).to.equal(false);
  });

  it('validates topology snapshots before they become state', () => {
    const t = new Topology();
    t.apply({ op: 'create', clusterId: 'c', partitions: 8, n: 3, vnodes: 16, id: 'a', addr: '127.0.0.1:1' });
    t.apply({ op: 'add', id: 'b', addr: '127.0.0.1:2' });
    expect(Topology.fromSnapshot(t.snapshot()).table().checksum).to.equal(t.table().checksum);
    expect(validateTopologySnapshot(new Topology().snapshot()).epoch).to.equal(0);
    const bad: unknown[] = [null, 'x', [], { ...t.snapshot(), partitions: 3 }, { ...t.snapshot(), epoch: 1 },
      { ...t.snapshot(), members: [{ id: 'a', addr: 'nope', state: 'normal' }] }, { ...t.snapshot(), members: [...t.snapshot().members, t.snapshot().members[0]] },
      { ...t.snapshot(), members: [{ id: 'a', addr: '127.0.0.1:1', state: 'boss' }] }, { ...t.snapshot(), clusterId: '' }, { ...t.snapshot(), n: 99 }];
    for (const s of bad) expect(() => Topology.fromSnapshot(s), JSON.stringify(s)).to.throw(KvError, /invalid topology snapshot/);
  });

  it('refuses read answers with far-future versions and counts them; admits members and a joiner\'s answer peers', () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const t = new Topology();
    t.apply({ op: 'create', clusterId: 'c', partitions: 8, n: 3, vnodes: 16, id: 'a', addr: '127.0.0.1:1' });
    let answer: { epoch: number; members: { id: string }[] } | undefined;
    let topo = new Topology();
    const guard = new PeerGuard({ topology: () => topo, joinAnswer: () => answer, versions: versionGuard(10_000, metrics, () => 1_000_000), metrics });
    const env = (from: string, kind: Envelope['kind'] = 'msg', payload: unknown = null): Envelope => ({ kind, type: kind === 'res' ? 'rep.get' : 'raft', id: kind === 'msg' ? 0 : 1, from, epoch: 0, hlc: '0000000000000000', payload });
    expect(guard.admit(env('a'))).to.match(/not a member/);
    answer = { epoch: 1, members: [{ id: 'a' }] };
    expect(guard.admit(env('a'))).to.equal(null);
    expect(guard.admit(env('x'))).to.match(/not a member/);
    topo = t;
    answer = undefined;
    expect(guard.admit(env('a'))).to.equal(null);
    t.apply({ op: 'add', id: 'b', addr: '127.0.0.1:2' });
    t.apply({ op: 'remove', id: 'b' });
    expect(guard.admit(env('b'))).to.match(/removed/);
    const ok = `${(1_000_000 + 5000).toString(16).padStart(12, '0')}0000:a`;
    const ahead = `${(1_000_000 + 20_000).toString(16).padStart(12, '0')}0000:a`;
    guard.inspect(env('a', 'res', [ok, Buffer.from('v')]));
    guard.inspect(env('a', 'res', null));
    expect(() => guard.inspect(env('a', 'res', [ahead, Buffer.from('v')]))).to.throw(KvError, /ahead/);
  });

  it('join tickets are single-use, bound to id, address and seed, and expire', () => {
    let now = 1_000_000;
    const seed = new JoinSeed({ selfId: 's1', secret: 'secret-0123456789abcdef', clusterId: () => 'cid', now: () => now });
    const nj = Buffer.alloc(32, 1);
    const ch = seed.challenge({ id: 'j', addr: '127.0.0.1:5', nonce: nj.toString('hex') });
    const { clusterId, join } = signJoin('secret-0123456789abcdef', 'j', '127.0.0.1:5', nj, ch);
    expect(clusterId).to.equal('cid');
    expect(() => signJoin('secret-0123456789abcdef', 'j', '127.0.0.1:5', Buffer.alloc(32, 2), ch), 'answered another nonce').to.throw(KvError);
    now += 61_000;
    expect(() => seed.verify(join)).to.throw(KvError, /expired/);
    now -= 61_000;
    expect(() => seed.verify({ ...join, addr: '127.0.0.1:6' })).to.throw(KvError, /not a ticket/);
    expect(seed.verify(join)).to.deep.equal({ id: 'j', addr: '127.0.0.1:5' });
    expect(() => seed.verify(join)).to.throw(KvError, /already used/);
  });

  it('the CLI takes --token, then KV_TOKEN, then ./data/admin.token, the file only for loopback nodes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kv-cli-token-'));
    const cwd = process.cwd();
    try {
      mkdirSync(join(dir, 'data'));
      writeFileSync(join(dir, 'data', 'admin.token'), 'kv_local\n');
      process.chdir(dir);
      expect(findToken({ token: 'kv_flag' }, ['127.0.0.1:7001'], { KV_TOKEN: 'kv_env' })).to.equal('kv_flag');
      expect(findToken({}, ['127.0.0.1:7001'], { KV_TOKEN: 'kv_env' })).to.equal('kv_env');
      expect(findToken({}, ['127.0.0.1:7001', 'localhost:7002'], {})).to.equal('kv_local');
      expect(findToken({}, ['127.0.0.1:7001', '10.0.0.2:7001'], {})).to.equal(undefined);
    } finally {
      process.chdir(cwd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
