/** Shared pieces of the security tests: raw HTTP, tokens files, a hostile peer transport. */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { newToken, tokenLine, type Role } from '../../lib/api/tokens.ts';
import { WsTransport } from '../../lib/net/ws-transport.ts';
import { pollUntil } from '../helpers/poll.ts';
import { raw as rawHttp, type RawResponse } from '../helpers/raw-http.ts';

/** The secret test/helpers/proc.ts gives every node it spawns. */
export const TEST_SECRET = 'test-secret-0123456789';

export type { RawResponse } from '../helpers/raw-http.ts';

/** A raw request that also rejects on a reset: the security tests look at how a node refuses. */
export function raw(addr: string, method: string, path: string, opts: { body?: Buffer | string; headers?: Record<string, string | number> } = {}): Promise<RawResponse> {
  return rawHttp(addr, method, path, { ...opts, strict: true });
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
