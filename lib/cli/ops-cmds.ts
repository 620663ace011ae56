/**
 * Operator subcommands (nodetool's job): status, ring, repair, removenode, decommission.
 * Each takes `--node HOST:PORT` (any member), `--json` for machine-readable output, and the
 * token/CA lookup of the client commands. Long operations poll the node that runs them
 * (`GET /cluster/operations`) and show their progress until they end.
 */
import { KvError } from '../errors.ts';
import { partitionOf } from '../core/partitioner.ts';
import { KvClient, KvClientError } from '../client/client.ts';
import { clientOptions } from './client-cmds.ts';
import { ProgressPrinter } from './progress.ts';
import type { ParsedArgs } from './args.ts';
import type { ClusterStats, MemberStats } from '../node/stats.ts';
import type { OperationView } from '../node/operations.ts';

/** Poll period of a running operation. */
const POLL_MS = 500;
/** A poll that fails this many times in a row (the node is gone) ends the wait with an error. */
const MAX_POLL_FAILURES = 20;

interface ClusterView {
  id: string; epoch: number; n: number; partitions: number; ringChecksum: string;
  raft: { role: string; term: number; leader: string | null };
  members: { id: string; addr: string; state: string; liveness: string }[];
}

function json(args: ParsedArgs): boolean {
  return args.flags['json'] === true;
}

function one(args: ParsedArgs, usage: string): string {
  if (args.positionals.length !== 1) throw new KvError('KV_INVALID_ARGUMENT', `usage: ${usage}`);
  return args.positionals[0] as string;
}

/** A client for another member, with the same credentials. */
function clientFor(args: ParsedArgs, addr: string): KvClient {
  return new KvClient({ ...clientOptions(args), nodes: [addr] });
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

function ago(ms: number | null, now: number): string {
  if (ms === null) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

/** One row of `kv status`, from a member's stats (or what is known without them). */
export function statusRow(m: MemberStats, q: number, now: number): Record<string, string> {
  const s = m.ok ? m.stats : undefined;
  return {
    ID: m.id,
    ADDRESS: m.addr,
    STATE: m.state,
    LIVENESS: m.liveness,
    RAFT: s ? s.raft.role : '-',
    KEYS: s ? String(s.storage.records) : '-',
    DISK: s ? bytes(s.storage.diskBytes) : '-',
    OWNS: s ? `${s.ownership.replicated} (${q > 0 ? ((100 * s.ownership.replicated) / q).toFixed(1) : '0.0'}%)` : '-',
    HINTS: s ? (s.hints.enabled ? String(s.hints.pending) : 'off') : '-',
    'LAST AE WALK': s ? ago(s.antiEntropy.lastWalkDoneMs, now) : m.ok ? '-' : `unreachable: ${m.error.code}`,
  };
}

function table(rows: Record<string, string>[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0] as Record<string, string>);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)) + 2);
  const line = (r: Record<string, string>): string => cols.map((c, i) => (r[c] ?? '').padEnd(width[i] as number)).join('').trimEnd();
  return [line(Object.fromEntries(cols.map((c) => [c, c]))), ...rows.map(line)].join('\n');
}

export async function statusCommand(args: ParsedArgs): Promise<number> {
  const c = new KvClient(clientOptions(args));
  try {
    const stats = await c.json<ClusterStats>('GET', '/cluster/stats');
    if (json(args)) {
      process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
      return 0;
    }
    const view = stats.cluster as ClusterView;
    const normal = view.members.filter((m) => m.state === 'normal').length;
    const header = `cluster epoch ${view.epoch}  members ${view.members.length} (${normal} normal)  leader ${view.raft.leader ?? '-'}  N ${view.n}  ` +
      `partitions ${view.partitions}  ring ${view.ringChecksum || '-'}  (via ${stats.via})`;
    const rows = stats.nodes.map((m) => statusRow(m, view.partitions, stats.atMs));
    process.stdout.write(`${header}\n\n${table(rows)}\n`);
    return 0;
  } finally { c.close(); }
}

interface RingView { epoch: number; checksum: string; partitions: number; n: number; table: { partition: number; replicas: string[]; fallbacks: string[] }[] }
interface LocalRecord { id: string; key: string; version: string; tombstone: boolean; bytes: number }

/** What one replica holds of a key: its local record, "absent", or why it could not say. */
async function heldBy(args: ParsedArgs, addr: string, key: string): Promise<{ held: string; record?: LocalRecord }> {
  const c = clientFor(args, addr);
  try {
    const rec = await c.json<LocalRecord>('GET', `/cluster/records/${encodeURIComponent(key)}`);
    return { held: `${rec.version}${rec.tombstone ? ' (tombstone)' : ` (${rec.bytes} B)`}`, record: rec };
  } catch (err) {
    if (err instanceof KvClientError && err.code === 'KV_NOT_FOUND') return { held: 'absent' };
    return { held: `unreachable: ${(err as Error).message}` };
  } finally { c.close(); }
}

export async function ringCommand(args: ParsedArgs): Promise<number> {
  const c = new KvClient(clientOptions(args));
  try {
    const ring = await c.json<RingView>('GET', '/cluster/ring');
    const key = typeof args.flags['key'] === 'string' ? args.flags['key'] : undefined;
    if (key === undefined) {
      if (json(args)) process.stdout.write(`${JSON.stringify(ring, null, 2)}\n`);
      else {
        process.stdout.write(`epoch ${ring.epoch}  ring ${ring.checksum}  partitions ${ring.partitions}  N ${ring.n}\n\n`);
        process.stdout.write(`${table(ring.table.map((r) => ({ PARTITION: String(r.partition), REPLICAS: r.replicas.join(','), FALLBACKS: r.fallbacks.join(',') })))}\n`);
      }
      return 0;
    }
    const view = await c.json<ClusterView>('GET', '/cluster');
    const p = partitionOf(key, ring.partitions);
    const row = ring.table[p];
    if (!row) throw new KvError('KV_INTERNAL', `partition ${p} missing from the ring`);
    const addrOf = new Map(view.members.map((m) => [m.id, m.addr]));
    const replicas = await Promise.all(row.replicas.map(async (id) => ({ id, addr: addrOf.get(id) ?? '', ...(await heldBy(args, addrOf.get(id) ?? '', key)) })));
    if (json(args)) {
      process.stdout.write(`${JSON.stringify({ key, partition: p, epoch: ring.epoch, preference: [...row.replicas, ...row.fallbacks],
        replicas: replicas.map((r) => ({ id: r.id, addr: r.addr, record: r.record ?? null, held: r.held })), fallbacks: row.fallbacks }, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`key ${JSON.stringify(key)}  partition ${p}  epoch ${ring.epoch}\npreference: ${[...row.replicas, ...row.fallbacks].join(' > ')}\n\n`);
    process.stdout.write(`${table(replicas.map((r) => ({ REPLICA: r.id, ADDRESS: r.addr, HOLDS: r.held })))}\n`);
    return 0;
  } finally { c.close(); }
}

/** Polls the operation `id` on `addr` until it ends, showing its progress; resolves with its last view. */
async function follow(args: ParsedArgs, addr: string, label: string, find: (ops: OperationView[]) => OperationView | undefined,
  done?: () => Promise<boolean>): Promise<OperationView | undefined> {
  const c = clientFor(args, addr);
  const printer = json(args) ? undefined : new ProgressPrinter(label);
  let failures = 0;
  let last: OperationView | undefined;
  try {
    for (;;) {
      try {
        const { operations } = await c.json<{ operations: OperationView[] }>('GET', '/cluster/operations');
        last = find(operations) ?? last;
        failures = 0;
      } catch (err) {
        if (++failures >= MAX_POLL_FAILURES) throw err;
      }
      if (last) printer?.update(last);
      if (last && last.state !== 'running' && (!done || await done())) break;
      if (!last && done && await done()) break;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } catch (err) {
    // The node running it went away (a decommissioned node may exit once removed).
    if (!done || !(await done())) throw err;
  } finally { c.close(); }
  const end = last?.state === 'failed' ? `${label} failed: ${last.error ?? 'unknown error'}` : `${label} done${last ? `: ${last.done}/${last.total}, ${last.records} records` : ''}`;
  if (printer) printer.end(end);
  else process.stdout.write(`${JSON.stringify(last ?? null, null, 2)}\n`);
  return last;
}

async function memberAddr(args: ParsedArgs, id: string): Promise<string | undefined> {
  const c = new KvClient(clientOptions(args));
  try {
    const view = await c.json<ClusterView>('GET', '/cluster');
    return view.members.find((m) => m.id === id)?.addr;
  } finally { c.close(); }
}

export async function repairCommand(args: ParsedArgs): Promise<number> {
  const c = new KvClient(clientOptions(args));
  try {
    const op = await c.json<OperationView>('POST', '/cluster/repair', {});
    const addr = clientOptions(args).nodes[0] as string;
    const last = await follow(args, addr, `repair of ${op.target}`, (ops) => ops.find((o) => o.id === op.id));
    return last?.state === 'failed' ? 1 : 0;
  } finally { c.close(); }
}

export async function removenodeCommand(args: ParsedArgs): Promise<number> {
  const id = one(args, 'kv removenode ID [--node HOST:PORT] [--json]');
  const c = new KvClient(clientOptions(args));
  try {
    const op = await c.json<OperationView>('POST', '/cluster/removenode', { id });
    const addr = clientOptions(args).nodes[0] as string;
    const last = await follow(args, addr, `removenode ${id}`, (ops) => ops.find((o) => o.id === op.id));
    return last?.state === 'failed' ? 1 : 0;
  } finally { c.close(); }
}

export async function decommissionCommand(args: ParsedArgs): Promise<number> {
  const id = one(args, 'kv decommission ID [--node HOST:PORT] [--json]');
  const c = new KvClient(clientOptions(args));
  try {
    const res = await c.json('POST', '/cluster/decommission', { id });
    if (args.flags['no-wait'] === true) {
      process.stdout.write(`${JSON.stringify(res)}\n`);
      return 0;
    }
    const addr = await memberAddr(args, id);
    if (!addr) return 0;
    const removed = async (): Promise<boolean> => (await memberAddr(args, id).catch(() => 'unknown')) === undefined;
    const last = await follow(args, addr, `decommission ${id}`, (ops) => ops.filter((o) => o.kind === 'decommission').at(-1), removed);
    return last?.state === 'failed' ? 1 : 0;
  } finally { c.close(); }
}
