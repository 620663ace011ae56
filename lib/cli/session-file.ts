/**
 * The CLI's sessions, kept across invocations: `kv put k v --w 1` then `kv get k --r 1
 * --node other` reads the write back, as a KvClient does within one process.
 *
 * The file (`$KV_SESSION_FILE`, else `$XDG_STATE_HOME/kv/sessions.json`, else
 * `~/.local/state/kv/sessions.json`; mode 0600) holds one session per cluster and which
 * cluster each node address last answered for. An invocation continues the session of the
 * cluster its first node belongs to (else the most recently used one); the request names
 * that cluster (X-Kv-Session-Cluster), so a node of another cluster, or of a cluster
 * recreated at the same address, ignores it instead of waiting for versions it never had.
 * `--no-session` neither reads nor writes the file.
 *
 * Two invocations finishing together each re-read the file and merge before replacing it
 * (write to a temporary file, then rename), so neither loses the other's whole session;
 * the later one's entry for a key both touched wins only if it is newer.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { ClientSession, type SessionState } from '../client/session.ts';

/** Clusters remembered (least recently used dropped first). */
export const MAX_SESSIONS = 16;
/** Keys remembered per cluster: about 100 bytes each. */
export const MAX_SESSION_KEYS = 1_000;
/** Node addresses remembered with their cluster. */
export const MAX_ADDRESSES = 256;
/** A file larger than this is not read (and is replaced). */
const MAX_FILE_BYTES = 4 * 1024 * 1024;

interface SessionFile {
  v: 1;
  /** Least recently used first. */
  sessions: SessionState[];
  /** node address → cluster id, least recently used first. */
  addresses: [string, string][];
}

export function sessionFilePath(env: NodeJS.ProcessEnv = process.env): string {
  if (env['KV_SESSION_FILE']) return env['KV_SESSION_FILE'];
  const state = env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state');
  return join(state, 'kv', 'sessions.json');
}

function read(path: string): SessionFile {
  const empty: SessionFile = { v: 1, sessions: [], addresses: [] };
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch {
    return empty;
  }
  if (raw.length > MAX_FILE_BYTES) return empty;
  try {
    const f = JSON.parse(raw) as Partial<SessionFile>;
    if (f.v !== 1 || !Array.isArray(f.sessions) || !Array.isArray(f.addresses)) return empty;
    const addresses = f.addresses.filter((a): a is [string, string] => Array.isArray(a) && typeof a[0] === 'string' && typeof a[1] === 'string');
    const sessions = f.sessions.filter((s): s is SessionState => typeof s?.cluster === 'string' && typeof s.max === 'string' && Array.isArray(s.keys));
    return { v: 1, sessions, addresses };
  } catch {
    return empty; // a torn or foreign file: start over rather than refuse to work
  }
}

/** The session to continue for a command aimed at `nodes` (a fresh one if none is kept). */
export function loadSession(path: string, nodes: readonly string[]): ClientSession {
  const f = read(path);
  const session = new ClientSession(MAX_SESSION_KEYS);
  const known = new Map(f.addresses);
  const cluster = nodes.map((n) => known.get(n)).find((c) => c !== undefined);
  const kept = cluster !== undefined ? f.sessions.find((s) => s.cluster === cluster) : f.sessions.at(-1);
  if (kept) session.merge(kept);
  return session;
}

/** Keep `session` (if an answer named its cluster) and that `nodes` answered for it. Never throws: a session is a convenience. */
export function saveSession(path: string, nodes: readonly string[], session: ClientSession): void {
  const state = session.toState();
  if (state === undefined) return;
  try {
    const f = read(path);
    const merged = new ClientSession(MAX_SESSION_KEYS);
    merged.merge(state);
    // What the file kept for this cluster goes under this invocation's keys (a newer version still wins per key).
    const old = f.sessions.find((s) => s.cluster === state.cluster);
    if (old) merged.merge(old);
    const sessions = [...f.sessions.filter((s) => s.cluster !== state.cluster), merged.toState() as SessionState].slice(-MAX_SESSIONS);
    const addresses = new Map(f.addresses);
    for (const n of nodes) {
      addresses.delete(n);
      addresses.set(n, state.cluster);
    }
    const out: SessionFile = { v: 1, sessions, addresses: [...addresses].slice(-MAX_ADDRESSES) };
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(out), { mode: 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    process.stderr.write(`kv: could not keep the session in ${path}: ${(err as Error).message}\n`);
  }
}
