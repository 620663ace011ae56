/**
 * Client subcommands: put, get, del, ls (the operator ones are in ops-cmds.ts). The token comes from `--token`,
 * then `$KV_TOKEN`, then `./data/admin.token` (what `kv start` writes), so a local cluster
 * needs no flag; the file is sent only to loopback nodes, so a local admin token never goes
 * to a remote server by accident. `--ca FILE` (or `$KV_CA`) switches to HTTPS trusting that CA.
 * put/get/del continue the user's session with the cluster across invocations (read your
 * writes through any node; session-file.ts); `--no-session` opts out.
 */
import { existsSync, readFileSync } from 'node:fs';
import { KvError } from '../errors.ts';
import { isLoopbackHost, parseHostPort } from '../config.ts';
import { KvClient, type ClientOptions } from '../client/client.ts';
import { intFlag, type ParsedArgs } from './args.ts';
import { loadSession, saveSession, sessionFilePath } from './session-file.ts';

/** Where `kv start` leaves the admin token of a cluster started in this directory. */
const LOCAL_ADMIN_TOKEN = './data/admin.token';

export function findToken(flags: ParsedArgs['flags'], nodes: readonly string[], env: NodeJS.ProcessEnv = process.env): string | undefined {
  const flag = flags['token'];
  if (typeof flag === 'string' && flag !== '') return flag;
  if (env['KV_TOKEN']) return env['KV_TOKEN'];
  const local = nodes.every((n) => isLoopbackHost(parseHostPort(n).host));
  if (local && existsSync(LOCAL_ADMIN_TOKEN)) return readFileSync(LOCAL_ADMIN_TOKEN, 'utf8').trim() || undefined;
  return undefined;
}

export function clientOptions(args: ParsedArgs): ClientOptions {
  const node = args.flags['node'];
  const nodes = typeof node === 'string' ? node.split(',') : (process.env['KV_NODES'] ?? '127.0.0.1:7001').split(',');
  const token = findToken(args.flags, nodes);
  const caFlag = args.flags['ca'];
  const ca = typeof caFlag === 'string' ? caFlag : process.env['KV_CA'];
  let caPem: Buffer | undefined;
  if (ca) {
    try {
      caPem = readFileSync(ca);
    } catch (err) {
      throw new KvError('KV_INVALID_ARGUMENT', `cannot read --ca ${ca}: ${(err as Error).message}`);
    }
  }
  return { nodes, ...(token ? { token } : {}), ...(caPem ? { ca: caPem } : {}) };
}

/** Run `fn` with a client that continues this user's session with the cluster (session-file.ts) unless --no-session. */
async function withClient<T>(args: ParsedArgs, fn: (c: KvClient) => Promise<T>): Promise<T> {
  const opts = clientOptions(args);
  const file = args.flags['no-session'] === true ? undefined : sessionFilePath();
  const session = file === undefined ? undefined : loadSession(file, opts.nodes);
  const c = new KvClient({ ...opts, ...(session ? { session } : {}) });
  try {
    return await fn(c);
  } finally {
    c.close();
    if (file !== undefined && session !== undefined) saveSession(file, opts.nodes, session);
  }
}

function need(args: ParsedArgs, n: number, usage: string): string[] {
  if (args.positionals.length !== n) throw new KvError('KV_INVALID_ARGUMENT', `usage: ${usage}`);
  return args.positionals;
}

function str(v: string | boolean | undefined): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** --if-match V / --if-none-match: a conditional write. */
function conditionFlags(args: ParsedArgs, allowNoneMatch: boolean): { ifMatch?: string; ifNoneMatch?: boolean } {
  const ifMatch = args.flags['if-match'];
  if (ifMatch === true) throw new KvError('KV_INVALID_ARGUMENT', '--if-match takes a version (as printed by kv put / shown in X-Kv-Version)');
  const none = args.flags['if-none-match'] === true || args.flags['if-none-match'] === 'true';
  if (none && !allowNoneMatch) throw new KvError('KV_INVALID_ARGUMENT', '--if-none-match is for kv put');
  if (none && ifMatch !== undefined) throw new KvError('KV_INVALID_ARGUMENT', '--if-match and --if-none-match exclude each other');
  return { ...(typeof ifMatch === 'string' ? { ifMatch } : {}), ...(none ? { ifNoneMatch: true } : {}) };
}

export async function putCommand(args: ParsedArgs): Promise<number> {
  const [key, value] = need(args, 2, 'kv put KEY VALUE [--w W] [--ttl SECONDS] [--if-match VERSION | --if-none-match] [--node HOST:PORT]') as [string, string];
  const ttlRaw = args.flags['ttl'];
  if (ttlRaw === true) throw new KvError('KV_INVALID_ARGUMENT', '--ttl takes a number of seconds');
  const params = {
    w: str(args.flags['w']), ...(args.flags['sloppy'] === true || args.flags['sloppy'] === 'true' ? { sloppy: true } : {}), ...conditionFlags(args, true),
    ...(ttlRaw === undefined ? {} : { ttl: Number(ttlRaw) }),
  };
  const res = await withClient(args, (c) => c.put(key, value, params));
  process.stdout.write(`${res.version}\n`);
  return 0;
}

export async function getCommand(args: ParsedArgs): Promise<number> {
  const [key] = need(args, 1, 'kv get KEY [--r R | --serial] [--node HOST:PORT]') as [string];
  const serial = args.flags['serial'] === true || args.flags['serial'] === 'true';
  const res = await withClient(args, (c) => c.get(key, { r: str(args.flags['r']), ...(serial ? { serial } : {}) }));
  if (!res) {
    process.stderr.write('kv: KV_NOT_FOUND: key not found\n');
    return 1;
  }
  process.stdout.write(res.value);
  if (process.stdout.isTTY) process.stdout.write('\n');
  return 0;
}

export async function delCommand(args: ParsedArgs): Promise<number> {
  const [key] = need(args, 1, 'kv del KEY [--w W] [--if-match VERSION] [--node HOST:PORT]') as [string];
  const params = { w: str(args.flags['w']), ...conditionFlags(args, false) };
  const res = await withClient(args, (c) => c.del(key, params));
  process.stdout.write(`${res.version}\n`);
  return 0;
}

/** `kv ls [PREFIX] [--limit N] [--page-size N]`: KEY<TAB>VERSION lines, following cursors until the end (or N keys). */
export async function lsCommand(args: ParsedArgs): Promise<number> {
  if (args.positionals.length > 1) throw new KvError('KV_INVALID_ARGUMENT', 'usage: kv ls [PREFIX] [--limit N] [--page-size N] [--node HOST:PORT]');
  const prefix = args.positionals[0] ?? '';
  const max = intFlag(args, 'limit', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
  const pageSize = intFlag(args, 'page-size', 1000, 1, 1000);
  await withClient(args, async (c) => {
    let n = 0;
    for await (const k of c.listAll(prefix, { limit: Math.min(pageSize, max) })) {
      process.stdout.write(`${k.key}\t${k.version}\n`);
      if (++n >= max) break;
    }
  });
  return 0;
}
