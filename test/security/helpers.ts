/** Shared pieces of the security tests: raw HTTP, tokens files, a hostile peer transport. */
import http from 'node:http';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { newToken, tokenLine, type Role } from '../../lib/api/tokens.ts';
import { WsTransport } from '../../lib/net/ws-transport.ts';
import { pollUntil } from '../helpers/poll.ts';

/** The secret test/helpers/proc.ts gives every node it spawns. */
export const TEST_SECRET = 'test-secret-0123456789';

export interface RawResponse { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

export function raw(addr: string, method: string, path: string, opts: { body?: Buffer | string; headers?: Record<string, string | number> } = {}): Promise<RawResponse> {
  const [host, port] = addr.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path, headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function errCode(r: RawResponse): string {
  try {
    return (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code;
  } catch {
    return `HTTP ${r.status}: ${r.body.toString().slice(0, 100)}`;
  }
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** A tokens file in `dir` with one token per role; returns the file and the tokens. */
export function tokensFile(dir: string): { file: string; tokens: Record<Role, string> } {
  const tokens = { read: newToken(), write: newToken(), admin: newToken() };
  const file = join(dir, 'tokens');
  writeFileSync(file, `${(Object.entries(tokens) as [Role, string][]).map(([r, t]) => tokenLine(t, r, `test-${r}`)).join('\n')}\n`, { mode: 0o600 });
  return { file, tokens };
}

/** A peer transport in this process that knows the secret: a stranger, or a member once it joined. */
export async function hostilePeer(id: string, clusterId: string, target: { id: string; addr: string }, epoch = 0): Promise<WsTransport> {
  const t = new WsTransport({ selfId: id, clusterId, secret: TEST_SECRET, getEpoch: () => epoch, limits: { reconnectBaseMs: 50, reconnectMaxMs: 200 } });
  // Whatever the node sends us (Raft, gossip) is taken and ignored, so it never closes the link for an unknown type.
  for (const type of ['raft', 'swim']) t.handle(type, () => undefined);
  t.connect(target.id, target.addr);
  await pollUntil(() => t.isConnected(target.id), { timeoutMs: 10_000, what: `${id} connected to ${target.id}` });
  return t;
}

/** A version whose physical time is `aheadMs` past now (ahead of every honest clock). */
export function futureVersion(aheadMs: number, node = 'zzz'): string {
  const wall = Date.now() + aheadMs;
  return `${wall.toString(16).padStart(12, '0')}0000:${node}`;
}
