/**
 * `kv start`: a local cluster in the foreground. Node i (1-based) is `n<i>`, listens on
 * base-port + i - 1 and keeps its data in <data>/n<i>. The first start bootstraps n1
 * and joins the others through it; later starts resume every node from its data dir.
 * A secret is generated once and kept in <data>/cluster.secret. Ctrl-C stops all.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { KvError } from '../errors.ts';
import { intFlag, type ParsedArgs } from './args.ts';
import { localClusterArgs } from './local-credentials.ts';
import { KvClient } from '../client/client.ts';

const KV_BIN = fileURLToPath(new URL('../../bin/kv.js', import.meta.url));

function clusterSecret(dataDir: string): string {
  const file = join(dataDir, 'cluster.secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const secret = randomBytes(24).toString('hex');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}

/** pino JSON line → `[n1] INFO message key=value`. */
function formatLine(id: string, line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const level = ({ 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' } as Record<number, string>)[o['level'] as number] ?? 'LOG';
    const { level: _l, time: _t, pid: _p, hostname: _h, node: _n, name: _name, msg, ...rest } = o;
    const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
    return `[${id}] ${level.padEnd(5)} ${String(msg ?? '')}${extra ? `  ${extra}` : ''}`;
  } catch {
    return `[${id}] ${line}`;
  }
}

export async function startCommand(args: ParsedArgs): Promise<number> {
  const nodes = intFlag(args, 'nodes', 3, 1, 64);
  const basePort = intFlag(args, 'base-port', 7001, 1, 65535 - 64);
  const dataDir = resolve(typeof args.flags['data'] === 'string' ? args.flags['data'] : './data');
  const host = typeof args.flags['host'] === 'string' ? args.flags['host'] : '127.0.0.1';
  mkdirSync(dataDir, { recursive: true });
  const secret = clusterSecret(dataDir);
  const seed = `${host}:${basePort}`;
  const passthrough = Object.entries(args.flags)
    .filter(([k]) => !['nodes', 'base-port', 'data', 'host', 'tls'].includes(k))
    .flatMap(([k, v]) => (v === true ? [`--${k}`] : [`--${k}`, String(v)]));

  // Tokens always (auth is on), certificates with --tls: made once in the data dir, reused after.
  const creds = localClusterArgs(dataDir, { tls: args.flags['tls'] === true, nodes: Array.from({ length: nodes }, (_, i) => ({ id: `n${i + 1}`, host })) });
  for (const line of creds.notes) process.stdout.write(`${line}\n`);
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('stopping the cluster...\n');
    for (const c of children.values()) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);

  const exited: Promise<number>[] = [];
  for (let i = 1; i <= nodes; i++) {
    const id = `n${i}`;
    const listen = `${host}:${basePort + i - 1}`;
    const dir = join(dataDir, id);
    const fresh = !existsSync(join(dir, 'db'));
    const role = !fresh ? [] : i === 1 ? ['--bootstrap'] : ['--join', seed];
    const child = spawn(process.execPath, [KV_BIN, 'node', '--id', id, '--listen', listen, '--data', dir, ...role, ...(creds.perNode.get(id) ?? []), ...passthrough], {
      env: { ...process.env, KV_SECRET: secret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.set(id, child);
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => process.stdout.write(`${formatLine(id, line)}\n`));
    }
    exited.push(new Promise((res) => child.once('exit', (code, signal) => {
      process.stdout.write(`[${id}] exited (${signal ?? code})\n`);
      children.delete(id);
      if (!stopping) stopAll();
      res(code ?? 1);
    })));
    if (i === 1 && fresh && nodes > 1) await waitHealthy(listen, child, creds.ca);
  }
  process.stdout.write(`local cluster of ${nodes} node(s), data in ${dataDir}\n`);
  for (let i = 1; i <= nodes; i++) process.stdout.write(`  n${i}  ${creds.ca ? 'https' : 'http'}://${host}:${basePort + i - 1}\n`);
  process.stdout.write('try: kv put hello world --node ' + seed + '   |   Ctrl-C stops all nodes\n');
  const codes = await Promise.all(exited);
  return stopping && codes.every((c) => c === 0) ? 0 : 1;
}

/** The seed node must serve before others can join through it. */
async function waitHealthy(addr: string, child: ChildProcess, ca: string | undefined): Promise<void> {
  const deadline = Date.now() + 30_000;
  const client = new KvClient({ nodes: [addr], timeoutMs: 2000, ...(ca ? { ca: readFileSync(ca) } : {}) });
  try {
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new KvError('KV_UNAVAILABLE', `seed node exited with ${child.exitCode}`);
      try {
        await client.request('GET', '/health', undefined);
        return;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.close();
  }
  throw new KvError('KV_TIMEOUT', `seed node ${addr} did not become healthy within 30 s`);
}
