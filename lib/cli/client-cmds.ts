/** Client subcommands: put, get, del, ls, status, decommission. */
import { KvError } from '../errors.ts';
import { KvClient } from '../client/client.ts';
import { intFlag, type ParsedArgs } from './args.ts';

function client(args: ParsedArgs): KvClient {
  const node = args.flags['node'];
  const nodes = typeof node === 'string' ? node.split(',') : (process.env['KV_NODES'] ?? '127.0.0.1:7001').split(',');
  return new KvClient({ nodes });
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
  const c = client(args);
  try {
    const res = await c.put(key, value, {
      w: str(args.flags['w']), ...(args.flags['sloppy'] === true || args.flags['sloppy'] === 'true' ? { sloppy: true } : {}), ...conditionFlags(args, true),
      ...(ttlRaw === undefined ? {} : { ttl: Number(ttlRaw) }),
    });
    process.stdout.write(`${res.version}\n`);
    return 0;
  } finally { c.close(); }
}

export async function getCommand(args: ParsedArgs): Promise<number> {
  const [key] = need(args, 1, 'kv get KEY [--r R | --serial] [--node HOST:PORT]') as [string];
  const c = client(args);
  try {
    const serial = args.flags['serial'] === true || args.flags['serial'] === 'true';
    const res = await c.get(key, { r: str(args.flags['r']), ...(serial ? { serial } : {}) });
    if (!res) {
      process.stderr.write('kv: KV_NOT_FOUND: key not found\n');
      return 1;
    }
    process.stdout.write(res.value);
    if (process.stdout.isTTY) process.stdout.write('\n');
    return 0;
  } finally { c.close(); }
}

export async function delCommand(args: ParsedArgs): Promise<number> {
  const [key] = need(args, 1, 'kv del KEY [--w W] [--if-match VERSION] [--node HOST:PORT]') as [string];
  const c = client(args);
  try {
    const res = await c.del(key, { w: str(args.flags['w']), ...conditionFlags(args, false) });
    process.stdout.write(`${res.version}\n`);
    return 0;
  } finally { c.close(); }
}

/** `kv ls [PREFIX] [--limit N] [--page-size N]`: KEY<TAB>VERSION lines, following cursors until the end (or N keys). */
export async function lsCommand(args: ParsedArgs): Promise<number> {
  if (args.positionals.length > 1) throw new KvError('KV_INVALID_ARGUMENT', 'usage: kv ls [PREFIX] [--limit N] [--page-size N] [--node HOST:PORT]');
  const prefix = args.positionals[0] ?? '';
  const max = intFlag(args, 'limit', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
  const pageSize = intFlag(args, 'page-size', 1000, 1, 1000);
  const c = client(args);
  try {
    let n = 0;
    for await (const k of c.listAll(prefix, { limit: Math.min(pageSize, max) })) {
      process.stdout.write(`${k.key}\t${k.version}\n`);
      if (++n >= max) break;
    }
    return 0;
  } finally { c.close(); }
}

interface ClusterView {
  id: string; epoch: number; ringChecksum: string;
  raft: { role: string; term: number; leader: string | null };
  members: { id: string; addr: string; state: string; liveness?: string; incarnation?: number }[];
}

export async function statusCommand(args: ParsedArgs): Promise<number> {
  const c = client(args);
  try {
    const view = await c.json<ClusterView>('GET', '/cluster');
    if (args.flags['json']) {
      process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
      return 0;
    }
    const lines = [
      `node ${view.id}  epoch ${view.epoch}  ring ${view.ringChecksum || '-'}  raft ${view.raft.role} term ${view.raft.term} leader ${view.raft.leader ?? '-'}`,
      '',
      `${'ID'.padEnd(16)}${'ADDRESS'.padEnd(24)}${'STATE'.padEnd(10)}${'LIVENESS'.padEnd(10)}INCARNATION`,
      ...view.members.map((m) => `${m.id.padEnd(16)}${m.addr.padEnd(24)}${m.state.padEnd(10)}${(m.liveness ?? '-').padEnd(10)}${m.incarnation ?? '-'}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } finally { c.close(); }
}

export async function decommissionCommand(args: ParsedArgs): Promise<number> {
  const [id] = need(args, 1, 'kv decommission ID [--node HOST:PORT]') as [string];
  const c = client(args);
  try {
    const res = await c.json('POST', '/cluster/decommission', { id });
    process.stdout.write(`${JSON.stringify(res)}\n`);
    return 0;
  } finally { c.close(); }
}
