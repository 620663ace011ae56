/**
 * A client's side of session consistency (X-Kv-Session, lib/core/session.ts): remembers
 * the highest version it has observed and, per key, the server's token entry for it, and
 * sends back for each request the part that concerns the request's key. KvClient keeps
 * one per client, so every client reads its own writes and never reads older than it has
 * read, through any coordinator and any `r`.
 */

/** Keys remembered at most (least recently used dropped first). 10,000 entries ≈ 1 MiB. */
const DEFAULT_MAX_KEYS = 10_000;

export class ClientSession {
  private max: string | undefined;
  /** key → "<key hash>:<version>" as the server last returned it. */
  private readonly keys = new Map<string, string>();

  constructor(private readonly maxKeys = DEFAULT_MAX_KEYS) {}

  /** The X-Kv-Session header for a request about `key`, if the session has seen anything. */
  header(key: string): string | undefined {
    if (this.max === undefined) return undefined;
    const entry = this.keys.get(key);
    return entry === undefined ? this.max : `${this.max},${entry}`;
  }

  /**
   * Learn from an answer's token. The request carried at most this key's entry, so every
   * entry of the answer is this key's; the first one is the newest.
   */
  update(key: string, token: string | undefined): void {
    if (typeof token !== 'string' || token === '') return;
    const parts = token.split(',');
    const max = parts[0] as string;
    if (this.max === undefined || max > this.max) this.max = max;
    const entry = parts[1];
    if (entry === undefined) return;
    this.keys.delete(key);
    this.keys.set(key, entry);
    if (this.keys.size > this.maxKeys) this.keys.delete(this.keys.keys().next().value as string);
  }

  /** The whole session as one token (for tools that keep it across processes). */
  get highest(): string | undefined {
    return this.max;
  }
}
