/**
 * Client and admin authentication on real `kv node` processes: every route without a
 * token, with an unknown token and with a token of too low a role; tokens reloaded on
 * change (a malformed file keeps the old ones); protected mode and the development secret
 * refused off loopback; `kv start` then the CLI with no token flag.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { newToken, tokenLine } from '../../lib/api/tokens.ts';
import { cleanupAll, freePort, KV_BIN, runKv, spawnNode, tempDir, waitHealthy, type NodeProc } from '../helpers/proc.ts';
import { pollUntil } from '../helpers/poll.ts';
import { bearer, errCode, raw, tokensFile } from './helpers.ts';

/** Every route with the role it needs; null = open. */
const ROUTES: { method: string; path: string; role: 'read' | 'write' | 'admin' | null; body?: string }[] = [
  { method: 'GET', path: '/health', role: null },
  { method: 'GET', path: '/metrics', role: 'read' },
  { method: 'GET', path: '/kv/k1', role: 'read' },
  { method: 'HEAD', path: '/kv/k1', role: 'read' },
  { method: 'PUT', path: '/kv/k1', role: 'write', body: 'v' },
  { method: 'DELETE', path: '/kv/k2', role: 'write' },
  { method: 'GET', path: '/cluster', role: 'read' },
  { method: 'GET', path: '/cluster/ring', role: 'read' },
  { method: 'GET', path: '/cluster/partitions', role: 'read' },
  { method: 'GET', path: '/cluster/records/k1', role: 'read' },
  { method: 'POST', path: '/cluster/scrub', role: 'admin' },
  { method: 'POST', path: '/cluster/decommission', role: 'admin', body: '{"id":"nobody"}' },
];
const BELOW: Record<string, 'read' | 'write' | undefined> = { read: undefined, write: 'read', admin: 'write' };

describe('security: client and admin authentication (real processes)', function () {
  this.timeout(60_000);
  let node: NodeProc;
  let dir: string;
  let tokens: { file: string; tokens: Record<'read' | 'write' | 'admin', string> };

  before(async () => {
    dir = tempDir('kv-sec-auth-');
    tokens = tokensFile(dir);
    node = spawnNode({ id: 'a1', port: await freePort(), dataDir: join(dir, 'a1'), args: ['--bootstrap', '--tokens-file', tokens.file, '--partitions', '64'] });
    await waitHealthy(node);
    const put = await raw(node.addr, 'PUT', '/kv/k1', { body: 'v1', headers: bearer(tokens.tokens.write) });
    expect(put.status).to.equal(200);
  });

  after(cleanupAll);

  for (const r of ROUTES) {
    it(`${r.method} ${r.path}: ${r.role === null ? 'open' : `401 without or with an unknown token${BELOW[r.role] ? `, 403 with ${BELOW[r.role]}` : ''}, served with ${r.role}`}`, async () => {
      const opts = r.body === undefined ? {} : { body: r.body };
      if (r.role === null) {
        expect((await raw(node.addr, r.method, r.path, opts)).status).to.equal(200);
        return;
      }
      const none = await raw(node.addr, r.method, r.path, opts);
      expect(none.status).to.equal(401);
      if (r.method !== 'HEAD') expect(errCode(none)).to.equal('KV_UNAUTHORIZED');
      expect(none.headers['www-authenticate']).to.match(/^Bearer/);
      const unknown = await raw(node.addr, r.method, r.path, { ...opts, headers: bearer(newToken()) });
      expect(unknown.status).to.equal(401);
      const malformed = await raw(node.addr, r.method, r.path, { ...opts, headers: { authorization: `Basic ${tokens.tokens.admin}` } });
      expect(malformed.status).to.equal(401);
      const below = BELOW[r.role];
      if (below) {
        const weak = await raw(node.addr, r.method, r.path, { ...opts, headers: bearer(tokens.tokens[below]) });
        expect(weak.status).to.equal(403);
        if (r.method !== 'HEAD') expect(errCode(weak)).to.equal('KV_FORBIDDEN');
      }
      const ok = await raw(node.addr, r.method, r.path, { ...opts, headers: bearer(tokens.tokens[r.role]) });
      expect([401, 403]).to.not.include(ok.status);
      // Decommission of an unknown member is refused for what it asks, not for who asks.
      if (r.path !== '/cluster/decommission') expect(ok.status).to.equal(200);
      // Higher roles imply lower ones.
      expect([401, 403]).to.not.include((await raw(node.addr, r.method, r.path, { ...opts, headers: bearer(tokens.tokens.admin) })).status);
    });
  }

  it('left the data intact through every refused request', async () => {
    const got = await raw(node.addr, 'GET', '/kv/k1', { headers: bearer(tokens.tokens.read) });
    expect(got.status).to.equal(200);
    expect(got.body.toString()).to.equal('v');
  });

  it('picks up a token added to the file without a restart, and keeps the old tokens when the file is malformed', async () => {
    const fresh = newToken();
    appendFileSync(tokens.file, `${tokenLine(fresh, 'read', 'added')}\n`);
    await pollUntil(async () => (await raw(node.addr, 'GET', '/kv/k1', { headers: bearer(fresh) })).status === 200, { timeoutMs: 15_000, what: 'new token accepted' });
    const before = readFileSync(tokens.file, 'utf8');
    writeFileSync(tokens.file, `${before}this line is not a token line\n`);
    await pollUntil(() => node.output().includes('tokens file not reloaded'), { timeoutMs: 15_000, what: 'reload failure logged' });
    expect((await raw(node.addr, 'GET', '/kv/k1', { headers: bearer(fresh) })).status).to.equal(200);
    expect((await raw(node.addr, 'GET', '/kv/k1', { headers: bearer(tokens.tokens.read) })).status).to.equal(200);
    // Removing a line revokes that token.
    writeFileSync(tokens.file, before.split('\n').filter((l) => !l.endsWith(' added')).join('\n'));
    await pollUntil(async () => (await raw(node.addr, 'GET', '/kv/k1', { headers: bearer(fresh) })).status === 401, { timeoutMs: 15_000, what: 'removed token refused' });
    expect((await raw(node.addr, 'GET', '/kv/k1', { headers: bearer(tokens.tokens.read) })).status).to.equal(200);
  });

  it('the CLI without a token gets 401 from a node with a tokens file, and works with --token or KV_TOKEN', async () => {
    const cwd = tempDir('kv-sec-cwd-');
    expect((await raw(node.addr, 'PUT', '/kv/k-cli', { body: 'cli', headers: bearer(tokens.tokens.write) })).status).to.equal(200);
    const denied = await runKv(['get', 'k-cli', '--node', node.addr], { cwd });
    expect(denied.code).to.equal(1);
    expect(denied.stderr).to.include('KV_UNAUTHORIZED');
    const withFlag = await runKv(['get', 'k-cli', '--node', node.addr, '--token', tokens.tokens.read], { cwd });
    expect(withFlag.stdout).to.equal('cli');
    const withEnv = await runKv(['put', 'k3', 'x', '--node', node.addr], { cwd, env: { KV_TOKEN: tokens.tokens.write } });
    expect(withEnv.code).to.equal(0);
    const readOnly = await runKv(['put', 'k3', 'y', '--node', node.addr], { cwd, env: { KV_TOKEN: tokens.tokens.read } });
    expect(readOnly.stderr).to.include('KV_FORBIDDEN');
  });

  it('kv token appends a hashed line that a running node accepts', async () => {
    const made = await runKv(['token', '--role', 'admin', '--label', 'ops', '--tokens-file', tokens.file]);
    expect(made.code).to.equal(0);
    const token = made.stdout.trim();
    expect(readFileSync(tokens.file, 'utf8')).to.not.include(token);
    await pollUntil(async () => (await raw(node.addr, 'GET', '/cluster', { headers: bearer(token) })).status === 200, { timeoutMs: 15_000, what: 'kv token accepted' });
  });
});

describe('security: protected mode and the development secret (real processes)', function () {
  this.timeout(60_000);
  after(cleanupAll);

  async function refusal(args: string[], env: Record<string, string> = {}): Promise<string> {
    const p = spawnNode({ id: 'p1', port: await freePort(), dataDir: tempDir('kv-sec-pm-'), args: ['--bootstrap', ...args], env });
    const code = await p.exited;
    expect(code).to.not.equal(0);
    return p.output();
  }

  it('refuses to start on a non-loopback address without a tokens file, naming the options', async () => {
    const out = await refusal(['--advertise', '10.255.255.1:7001']);
    expect(out).to.include('--tokens-file').and.include('--auth none');
  });

  it('refuses the built-in development secret on a non-loopback address, naming --secret', async () => {
    const out = await refusal(['--advertise', '10.255.255.1:7001', '--auth', 'none'], { KV_SECRET: 'kv-development-secret' });
    expect(out).to.include('development secret').and.include('--secret');
  });

  it('serves without tokens on loopback and says that it is open', async () => {
    const p = spawnNode({ id: 'p2', port: await freePort(), dataDir: tempDir('kv-sec-pm-'), args: ['--bootstrap'], env: { KV_LOG_LEVEL: 'info' } });
    await waitHealthy(p);
    expect((await raw(p.addr, 'PUT', '/kv/x', { body: 'y' })).status).to.equal(200);
    expect(p.output()).to.include('serving clients without credentials, on loopback addresses only');
  });

  it('--metrics-open serves /metrics without a token while every other route still needs one', async () => {
    const d = tempDir('kv-sec-pm-');
    const { file } = tokensFile(d);
    const p = spawnNode({ id: 'p4', port: await freePort(), dataDir: join(d, 'p4'), args: ['--bootstrap', '--tokens-file', file, '--metrics-open'] });
    await waitHealthy(p);
    const m = await raw(p.addr, 'GET', '/metrics');
    expect(m.status).to.equal(200);
    expect(m.body.toString()).to.include('kv_http_requests_total');
    expect((await raw(p.addr, 'GET', '/cluster')).status).to.equal(401);
    expect((await raw(p.addr, 'GET', '/kv/x')).status).to.equal(401);
  });

  it('starts off loopback with --auth none and a real secret, logging that authentication is off', async () => {
    const port = await freePort();
    const p = spawnNode({ id: 'p3', port, dataDir: tempDir('kv-sec-pm-'), args: ['--bootstrap', '--advertise', `10.255.255.1:${port}`, '--auth', 'none'], env: { KV_LOG_LEVEL: 'info' } });
    await waitHealthy(p);
    expect(p.output()).to.include('client authentication is off');
  });

  it('kv start, then kv put/get with no token flag, from the same directory', async () => {
    const cwd = tempDir('kv-sec-start-');
    const port = await freePort();
    const start = spawn(process.execPath, [KV_BIN, 'start', '--nodes', '1', '--base-port', String(port)], { cwd, env: { ...process.env, KV_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    start.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    const exited = new Promise((r) => start.once('exit', r));
    try {
      const addr = `127.0.0.1:${port}`;
      await pollUntil(async () => (await raw(addr, 'GET', '/health')).status === 200, { timeoutMs: 30_000, what: 'kv start healthy' });
      expect(out).to.include('admin.token');
      expect((await raw(addr, 'GET', '/kv/greeting')).status, 'kv start runs with auth').to.equal(401);
      const put = await runKv(['put', 'greeting', 'hello', '--node', addr], { cwd });
      expect(put.code, put.stderr).to.equal(0);
      const get = await runKv(['get', 'greeting', '--node', addr], { cwd });
      expect(get.stdout).to.equal('hello');
      for (const f of ['admin.token', 'client.token']) {
        expect(statSync(join(cwd, 'data', f)).mode & 0o777, f).to.equal(0o600);
        expect(readFileSync(join(cwd, 'data', f), 'utf8').trim().split('\n')).to.have.length(1);
      }
    } finally {
      start.kill('SIGTERM');
      await exited;
    }
  });
});
