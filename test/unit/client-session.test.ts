/**
 * The client's side of sessions: the token a client sends back, a session kept across
 * processes (the CLI's session file), and a session meeting another cluster.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientSession } from '../../lib/client/session.ts';
import { sessionKeyHash } from '../../lib/core/session.ts';
import { MAX_SESSIONS, loadSession, saveSession } from '../../lib/cli/session-file.ts';

/** A version at `ms` (wall-clock milliseconds) from node `id`. */
function v(ms: number, id = 'n1'): string {
  return `${ms.toString(16).padStart(12, '0')}0000:${id}`;
}

/** The token a server answers with after the client observed `version` of `key`. */
function token(key: string, version: string, max = version): string {
  return `${max},${sessionKeyHash(key)}:${version}`;
}

describe('ClientSession', () => {
  it('sends the highest version with the key\'s own entry, and names its cluster once known', () => {
    const s = new ClientSession();
    expect(s.headers('a')).to.equal(undefined);
    s.update('a', token('a', v(1000)));
    expect(s.headers('a')).to.deep.equal({ 'x-kv-session': token('a', v(1000)) });
    s.update('b', token('b', v(2000)), 'c1');
    expect(s.headers('a')).to.deep.equal({ 'x-kv-session': `${v(2000)},${sessionKeyHash('a')}:${v(1000)}`, 'x-kv-session-cluster': 'c1' });
    expect(s.headers('zzz')).to.deep.equal({ 'x-kv-session': v(2000), 'x-kv-session-cluster': 'c1' });
  });

  it('never goes back on a key: an older entry in a later answer does not replace a newer one', () => {
    const s = new ClientSession();
    s.update('a', token('a', v(2000)), 'c1');
    s.update('a', token('a', v(1000), v(2000)), 'c1');
    expect(s.header('a')).to.equal(token('a', v(2000)));
  });

  it('starts over when an answer comes from another cluster', () => {
    const s = new ClientSession();
    s.update('a', token('a', v(5000)), 'c1');
    s.update('b', token('b', v(1000)), 'c2');
    expect(s.cluster).to.equal('c2');
    expect(s.headers('a')).to.deep.equal({ 'x-kv-session': v(1000), 'x-kv-session-cluster': 'c2' });
  });

  it('round-trips through plain data and merges a kept session key by key, the newer version winning', () => {
    const s = new ClientSession();
    s.update('a', token('a', v(1000)), 'c1');
    s.update('b', token('b', v(3000)), 'c1');
    const kept = s.toState();
    expect(kept?.cluster).to.equal('c1');
    const t = new ClientSession();
    t.update('a', token('a', v(2000)), 'c1');
    t.merge(kept as NonNullable<typeof kept>);
    expect(t.header('a')).to.equal(`${v(3000)},${sessionKeyHash('a')}:${v(2000)}`);
    expect(t.header('b')).to.equal(token('b', v(3000)));
    t.merge({ cluster: 'c2', max: v(9000), keys: [] });
    expect(t.highest, 'a session of another cluster is not merged in').to.equal(v(3000));
  });

  it('skips whatever is malformed in a kept session instead of sending it', () => {
    const s = new ClientSession();
    s.merge({ cluster: 'c1', max: 'not a version', keys: [] });
    expect(s.toState()).to.equal(undefined);
    s.merge({ cluster: 'c1', max: v(1000), keys: [['a', 'junk'], ['b', `${sessionKeyHash('b')}:${v(5000)}`], ['c', `${sessionKeyHash('c')}:${v(900)}`], 7 as never] });
    expect(s.header('a')).to.equal(v(1000));
    expect(s.header('b'), 'an entry above the session\'s highest version').to.equal(v(1000));
    expect(s.header('c')).to.equal(`${v(1000)},${sessionKeyHash('c')}:${v(900)}`);
  });

  it('remembers a bounded number of keys, dropping the least recently used', () => {
    const s = new ClientSession(3);
    for (const k of ['a', 'b', 'c', 'd']) s.update(k, token(k, v(1000)), 'c1');
    expect(s.header('a')).to.equal(v(1000));
    expect(s.toState()?.keys.map(([k]) => k)).to.deep.equal(['b', 'c', 'd']);
  });
});

describe('the CLI session file', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kv-session-file-'));
    file = join(dir, 'state', 'sessions.json');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('continues the session of the cluster a node answered for, in a file only its owner can read', () => {
    const first = loadSession(file, ['h:1']);
    first.update('a', token('a', v(1000)), 'c1');
    saveSession(file, ['h:1'], first);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    const other = loadSession(file, ['h:9']);
    other.update('x', token('x', v(7000)), 'c2');
    saveSession(file, ['h:9'], other);
    expect(loadSession(file, ['h:1']).headers('a')).to.deep.equal({ 'x-kv-session': token('a', v(1000)), 'x-kv-session-cluster': 'c1' });
    expect(loadSession(file, ['h:9']).header('x')).to.equal(token('x', v(7000)));
    expect(loadSession(file, ['h:2']).cluster, 'an unknown address continues the most recent session').to.equal('c2');
  });

  it('merges two invocations that finish together instead of losing one', () => {
    const a = loadSession(file, ['h:1']);
    const b = loadSession(file, ['h:2']);
    a.update('ka', token('ka', v(1000)), 'c1');
    b.update('kb', token('kb', v(2000)), 'c1');
    saveSession(file, ['h:1'], a);
    saveSession(file, ['h:2'], b);
    const got = loadSession(file, ['h:1']);
    expect(got.header('ka')).to.equal(`${v(2000)},${sessionKeyHash('ka')}:${v(1000)}`);
    expect(got.header('kb')).to.equal(token('kb', v(2000)));
  });

  it('keeps a bounded number of clusters, and starts over from a torn or foreign file', () => {
    for (let i = 0; i < MAX_SESSIONS + 3; i++) {
      const s = loadSession(file, [`h:${i}`]);
      s.update('k', token('k', v(1000 + i)), `c${i}`);
      saveSession(file, [`h:${i}`], s);
    }
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { sessions: { cluster: string }[] };
    expect(kept.sessions.map((s) => s.cluster)).to.deep.equal(Array.from({ length: MAX_SESSIONS }, (_, i) => `c${i + 3}`));
    writeFileSync(file, '{"v":1,"sessions":[{"cluster":');
    expect(loadSession(file, ['h:5']).highest).to.equal(undefined);
    writeFileSync(file, JSON.stringify({ v: 1, sessions: [{ cluster: 'c1', max: 'junk', keys: 'no' }], addresses: [['h:1', 'c1']] }));
    expect(loadSession(file, ['h:1']).highest).to.equal(undefined);
  });

  it('keeps nothing before an answer named the cluster', () => {
    const s = loadSession(file, ['h:1']);
    s.update('a', token('a', v(1000)));
    saveSession(file, ['h:1'], s);
    expect(() => statSync(file)).to.throw();
  });
});
