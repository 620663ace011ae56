/**
 * A client's side of session consistency (X-Kv-Session, lib/core/session.ts): remembers
 * the highest version it has observed and, per key, the server's token entry for it, and
 * sends back for each request the part that concerns the request's key. KvClient keeps
 * one per client, so every client reads its own writes and never reads older than it has
 * read, through any coordinator and any `r`.
 *
 * A session belongs to one cluster (the `X-Kv-Cluster` of its answers). It is sent with
 * `X-Kv-Session-Cluster`, and a node of another cluster ignores it, so a session kept
 * across processes (the CLI's session file) never makes a fresh or different cluster wait
 * for versions it never had; the first answer from another cluster starts a new session.
 */

import { isVersion } from '../core/hlc.ts';

/** Keys remembered at most (least recently used dropped first). 10,000 entries ≈ 1 MiB. */
const DEFAULT_MAX_KEYS = 10_000;

/** A session as plain data, for keeping it across processes (lib/cli/session-file.ts). */
export interface SessionState {
  cluster: string;
  max: string;
  /** [key, "<key hash>:<version>"], least recently used first. */
  keys: [string, string][];
}

/** The version part of a "<16 hex key hash>:<version>" entry. */
function entryVersion(entry: string): string {
  return entry.slice(17);
}

function isEntry(entry: unknown): entry is string {
  return typeof entry === 'string' && /^[0-9a-f]{16}:/.test(entry) && isVersion(entryVersion(entry));
}

export class ClientSession {
  private max: string | undefined;
  private clusterId: string | undefined;
  /** key → "<key hash>:<version>" as the server last returned it, least recently used first. */
  private readonly keys = new Map<string, string>();

  constructor(private readonly maxKeys = DEFAULT_MAX_KEYS) {}

  /** The cluster this session belongs to, once an answer said. */
  get cluster(): string | undefined {
    return this.clusterId;
  }

  /** The session headers for a request about `key`, if the session has seen anything. */
  headers(key: string): Record<string, string> | undefined {
    if (this.max === undefined) return undefined;
    const entry = this.keys.get(key);
    const token = entry === undefined ? this.max : `${this.max},${entry}`;
    return this.clusterId === undefined ? { 'x-kv-session': token } : { 'x-kv-session': token, 'x-kv-session-cluster': this.clusterId };
  }

  /** The X-Kv-Session header for a request about `key`, if the session has seen anything. */
  header(key: string): string | undefined {
    return this.headers(key)?.['x-kv-session'];
  }

  /**
   * Learn from an answer's token. The request carried at most this key's entry, so every
   * entry of the answer is this key's; the first one is the newest. An answer from another
   * cluster than the session's (`cluster`, its X-Kv-Cluster) starts the session over.
   */
  update(key: string, token: string | undefined, cluster?: string): void {
    if (typeof token !== 'string' || token === '') return;
    if (cluster !== undefined && cluster !== '' && cluster !== this.clusterId) {
      if (this.clusterId !== undefined) this.reset();
      this.clusterId = cluster;
    }
    const parts = token.split(',');
    const max = parts[0] as string;
    if (this.max === undefined || max > this.max) this.max = max;
    const entry = parts[1];
    if (entry === undefined) return;
    const had = this.keys.get(key);
    this.keys.delete(key);
    this.keys.set(key, had !== undefined && entryVersion(had) > entryVersion(entry) ? had : entry);
    if (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value as string);
  }

  /** The whole session as one token (for tools that keep it across processes). */
  get highest(): string | undefined {
    return this.max;
  }

  /** The session as plain data; undefined until an answer named its cluster. */
  toState(): SessionState | undefined {
    if (this.max === undefined || this.clusterId === undefined) return undefined;
    return { cluster: this.clusterId, max: this.max, keys: [...this.keys] };
  }

  /**
   * Take in a kept session of the same cluster (or any, while this one knows none): the
   * higher version of each key wins, and this session's keys stay the most recently used.
   * Anything malformed is skipped: a kept file is never trusted to be well formed.
   */
  merge(s: SessionState): void {
    if (typeof s.cluster !== 'string' || s.cluster === '' || !isVersion(s.max) || !Array.isArray(s.keys)) return;
    if (this.clusterId !== undefined && s.cluster !== this.clusterId) return;
    this.clusterId = s.cluster;
    if (this.max === undefined || s.max > this.max) this.max = s.max;
    const mine = [...this.keys];
    this.keys.clear();
    for (const pair of [...s.keys.slice(-this.maxKeys), ...mine]) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || !isEntry(pair[1]) || entryVersion(pair[1]) > (this.max as string)) continue;
      const [key, entry] = pair;
      const had = this.keys.get(key);
      this.keys.delete(key);
      this.keys.set(key, had !== undefined && entryVersion(had) > entryVersion(entry) ? had : entry);
    }
    while (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value as string);
  }

  private reset(): void {
    this.max = undefined;
    this.keys.clear();
  }
}
