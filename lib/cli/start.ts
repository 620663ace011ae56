/**
 * `kv start`: a local cluster in the foreground, supervised. Node i (1-based) is `n<i>`,
 * listens on base-port + i - 1 and keeps its data in <data>/n<i>. The first start
 * bootstraps n1 and joins the others through it; later starts resume every node from its
 * data dir. A secret is generated once and kept in <data>/cluster.secret.
 *
 * A node that exits is reported (`[n3] exited (SIGKILL)`) while the others keep serving,
 * and is restarted after --restart-delay seconds (default 5; doubled for each further
 * exit within 30 s of its restart, up to 60 s; --no-restart leaves it down). Ctrl-C or
 * SIGTERM stops every node within the shutdown bound. The nodes exit by themselves if
 * `kv start` dies (see supervisor.ts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { KvError } from '../errors.ts';
import { loadConfig } from '../config.ts';
import { intFlag, type ParsedArgs } from './args.ts';
import { RESTART_BACKOFF_CAP_MS, RESTART_STABLE_UPTIME_MS, Supervisor, type NodeLaunch } from './supervisor.ts';
import { localClusterArgs } from './local-credentials.ts';
import { KvClient } from '../client/client.ts';

const KV_BIN = fileURLToPath(new URL('../../bin/kv.js', import.meta.url));
const SECOND = 1000;

/** `--restart-delay` default, in seconds: long enough to read the exit line, short enough for a demo. */
const DEFAULT_RESTART_DELAY_S = 5;
const MAX_RESTART_DELAY_S = 3600;
/**
 * SIGTERM to SIGKILL. A node bounds its own shutdown (`shutdownTimeoutMs`, 10 s by
 * default); 2 s more covers its exit and the last log lines, so a node that honours its
 * bound is never killed, and one that does not is killed 12 s after Ctrl-C.
 */
export const SHUTDOWN_BOUND_MS = 10 * SECOND + 2 * SECOND;
/** The seed of a new cluster must serve before the others can join through it. */
const SEED_HEALTHY_TIMEOUT_MS = 60 * SECOND;

/** Flags `kv start` keeps for itself; every other flag is passed to each node. */
const OWN_FLAGS = ['nodes', 'base-port', 'data', 'host', 'restart-delay', 'no-restart', 'tls'];

/** Everything the nodes of one `kv start` share. */
export interface ClusterPlan {
  nodes: number;
  basePort: number;
  host: string;
  dataDir: string;
  secret: string;
  /** Flags given to `kv start` that are node options (`--fsync`, `--log-level debug`...). */
  passthrough: string[];
  /** Per node: its tokens file and, with --tls, its certificate flags (lib/cli/local-credentials.ts). */
  credentials: ReadonlyMap<string, string[]>;
}

export function nodeId(i: number): string {
  return `n${i}`;
}

function nodeAddr(plan: ClusterPlan, i: number): string {
  return `${plan.host}:${plan.basePort + i - 1}`;
}

function hasData(plan: ClusterPlan, i: number): boolean {
  return existsSync(join(plan.dataDir, nodeId(i), 'db'));
}

/**
 * The command line and environment of node i, the one place they are built; called for
 * every start and restart. A node with data resumes from it. Without data, n1 bootstraps
 * if no node has data yet (a new cluster); otherwise the node joins through the others.
 */
export function nodeLaunch(plan: ClusterPlan, i: number): NodeLaunch {
  const others = Array.from({ length: plan.nodes }, (_, k) => k + 1).filter((k) => k !== i);
  const newCluster = others.every((k) => !hasData(plan, k));
  const role = hasData(plan, i) ? [] : i === 1 && newCluster ? ['--bootstrap'] : ['--join', others.map((k) => nodeAddr(plan, k)).join(',')];
  return {
    argv: [KV_BIN, 'node', '--id', nodeId(i), '--listen', nodeAddr(plan, i), '--data', join(plan.dataDir, nodeId(i)), ...role,
      ...(plan.credentials.get(nodeId(i)) ?? []), ...plan.passthrough],
    env: { ...process.env, KV_SECRET: plan.secret },
  };
}

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

/** `--restart-delay SECONDS` (decimals allowed), or null with `--no-restart`. */
function restartDelayMsFlag(args: ParsedArgs): number | null {
  if (args.flags['no-restart'] === true || args.flags['no-restart'] === 'true') return null;
  const raw = args.flags['restart-delay'];
  if (raw === undefined) return DEFAULT_RESTART_DELAY_S * SECOND;
  const s = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(s) || s < 0 || s > MAX_RESTART_DELAY_S) {
    throw new KvError('KV_INVALID_ARGUMENT', `--restart-delay must be a number of seconds in 0..${MAX_RESTART_DELAY_S}`);
  }
  return Math.round(s * SECOND);
}

export async function startCommand(args: ParsedArgs): Promise<number> {
  const nodes = intFlag(args, 'nodes', 3, 1, 64);
  const basePort = intFlag(args, 'base-port', 7001, 1, 65535 - 64);
  const dataDir = resolve(typeof args.flags['data'] === 'string' ? args.flags['data'] : './data');
  const host = typeof args.flags['host'] === 'string' ? args.flags['host'] : '127.0.0.1';
  const baseDelayMs = restartDelayMsFlag(args);
  const nodeFlags = Object.entries(args.flags).filter(([k]) => !OWN_FLAGS.includes(k));
  // A bad node option would make every node exit at once and be restarted forever: refuse it here.
  loadConfig({ flags: { ...Object.fromEntries(nodeFlags), id: nodeId(1), listen: `${host}:${basePort}`, data: join(dataDir, nodeId(1)) }, env: process.env });
  mkdirSync(dataDir, { recursive: true });
  // Tokens always (auth is on), certificates with --tls: made once in the data dir, reused after.
  const creds = localClusterArgs(dataDir, { tls: args.flags['tls'] === true, nodes: Array.from({ length: nodes }, (_, i) => ({ id: nodeId(i + 1), host })) });
  for (const line of creds.notes) process.stdout.write(`${line}\n`);
  const plan: ClusterPlan = {
    nodes, basePort, host, dataDir,
    secret: clusterSecret(dataDir),
    passthrough: nodeFlags.flatMap(([k, v]) => (v === true ? [`--${k}`] : [`--${k}`, String(v)])),
    credentials: creds.perNode,
  };
  const scheme = creds.ca ? 'https' : 'http';

  const supervisor = new Supervisor({
    restart: { baseDelayMs, capMs: RESTART_BACKOFF_CAP_MS, stableUptimeMs: RESTART_STABLE_UPTIME_MS },
    shutdownBoundMs: SHUTDOWN_BOUND_MS,
    print: (line) => process.stdout.write(`${line}\n`),
    formatNodeLine: formatLine,
  });
  process.on('SIGINT', () => supervisor.stop());
  process.on('SIGTERM', () => supervisor.stop());

  for (let i = 1; i <= nodes; i++) {
    const bootstrapping = i === 1 && nodes > 1 && !hasData(plan, 1);
    supervisor.add(nodeId(i), () => nodeLaunch(plan, i));
    if (!bootstrapping) continue;
    try {
      await supervisor.waitHealthy(nodeId(1), nodeAddr(plan, 1), SEED_HEALTHY_TIMEOUT_MS, creds.ca ? healthCheck(nodeAddr(plan, 1), creds.ca) : undefined);
    } catch (err) {
      if (supervisor.stopping) return supervisor.done; // Ctrl-C while the seed was starting
      // Without a serving seed the others cannot join: give up rather than restart blindly.
      supervisor.stop();
      await supervisor.done;
      throw err;
    }
  }
  const restartNote = baseDelayMs === null ? 'exited nodes stay down (--no-restart)' : `exited nodes restart after ${baseDelayMs / SECOND} s`;
  process.stdout.write(`local cluster of ${nodes} node(s), data in ${dataDir}; ${restartNote}\n`);
  for (let i = 1; i <= nodes; i++) process.stdout.write(`  ${nodeId(i)}  ${scheme}://${nodeAddr(plan, i)}  pid ${supervisor.pid(nodeId(i)) ?? '-'}\n`);
  process.stdout.write(`try: kv put hello world --node ${nodeAddr(plan, 1)}   |   Ctrl-C stops all nodes\n`);
  return supervisor.done;
}

/** /health over HTTPS with the cluster CA (the seed of a `kv start --tls` cluster). */
function healthCheck(addr: string, ca: string): () => Promise<boolean> {
  return async () => {
    const client = new KvClient({ nodes: [addr], timeoutMs: 2000, ca: readFileSync(ca) });
    try {
      await client.request('GET', '/health', undefined);
      return true;
    } finally {
      client.close();
    }
  };
}
