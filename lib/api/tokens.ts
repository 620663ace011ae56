/**
 * Client and admin credentials: bearer tokens with a role, kept as hashes in a tokens file
 * that the node reloads when it changes (README "Security").
 *
 * Roles nest: `admin` ⊇ `write` ⊇ `read`. A token is `kv_` + 32 random bytes (base64url),
 * so it carries 256 bits of entropy: nobody can guess it, and nobody can reverse a fast
 * hash of it either. That is why the file keeps SHA-256 (unsalted, no key stretching):
 * stretching protects low-entropy passwords, which these are not, and it would cost every
 * request a slow hash. Presented tokens are hashed and compared with every entry in
 * constant time (timingSafeEqual), so response times say nothing about stored hashes.
 *
 * File format, one token per line, `#` comments and blank lines ignored:
 *
 *   <role> sha256:<64 hex digits> [label]
 *
 * Reload: fs.watch misses changes on some filesystems (NFS, some container mounts) and
 * fires several times on others, so the file's mtime, size and inode are polled every
 * `pollMs`; a change is read and parsed whole, and a file that does not parse keeps the
 * previous tokens in force (logged), so a half-written edit never locks everyone out.
 */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, existsSync, appendFileSync, chmodSync } from 'node:fs';
import { KvError } from '../errors.ts';

export type Role = 'read' | 'write' | 'admin';
export const ROLES: readonly Role[] = ['read', 'write', 'admin'];
const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };

/** Whether a token of role `have` may do what needs `need`. */
export function roleAllows(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

export interface TokenEntry {
  readonly role: Role;
  readonly hash: Buffer;
  readonly label: string;
}

const LINE_RE = /^(read|write|admin)\s+sha256:([0-9a-f]{64})(?:\s+([A-Za-z0-9_.@-]{1,64}))?$/;
/** Longest token we hash: ours are 46 characters; anything far longer is not one of ours. */
const TOKEN_MAX_CHARS = 512;
/** Valid tokens remembered by roleOf before the memory starts over: far more than a node has clients. */
const VALID_CACHE_MAX = 1024;
/** Largest tokens file read: 1 MiB is ~10,000 tokens; a bigger file is a mistake, not a config. */
const TOKENS_FILE_MAX_BYTES = 1024 * 1024;

export function hashToken(token: string): Buffer {
  return hash('sha256', token, 'buffer');
}

/** A fresh token: 256 random bits. */
export function newToken(): string {
  return `kv_${randomBytes(32).toString('base64url')}`;
}

/** The tokens-file line for `token`. */
export function tokenLine(token: string, role: Role, label = ''): string {
  return `${role} sha256:${hashToken(token).toString('hex')}${label ? ` ${label}` : ''}`;
}

/** Parses a tokens file; throws KV_CONFIG naming the first bad line. */
export function parseTokensFile(text: string, file: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = LINE_RE.exec(line);
    if (!m) throw new KvError('KV_CONFIG', `${file}:${i + 1}: expected "<read|write|admin> sha256:<64 hex> [label]"`);
    out.push({ role: m[1] as Role, hash: Buffer.from(m[2] as string, 'hex'), label: m[3] ?? '' });
  });
  return out;
}

/** Appends a token line to `file` (created mode 0600). */
export function appendTokenLine(file: string, line: string): void {
  if (!existsSync(file)) writeFileSync(file, '# kv tokens: <role> sha256:<hash> [label]\n', { mode: 0o600 });
  appendFileSync(file, `${line}\n`);
  chmodSync(file, 0o600);
}

interface Logger { info(obj: object, msg: string): void; error(obj: object, msg: string): void }

/** The tokens in force, from a file that is polled for changes. */
export class TokenStore {
  private entries: readonly TokenEntry[];
  /** Tokens presented and found, with their role (see roleOf). */
  private readonly valid = new Map<string, Role>();
  private stamp: string;
  private timer: NodeJS.Timeout | undefined;
  /** Reloads that failed to parse (previous tokens kept). */
  reloadFailures = 0;
  reloads = 0;

  /** Reads the file now: a missing or malformed file at start is a startup error. */
  constructor(readonly file: string, private readonly log: Logger, pollMs = 1000) {
    this.stamp = fileStamp(file);
    this.entries = this.read();
    this.timer = setInterval(() => this.check(), pollMs);
    this.timer.unref();
  }

  get size(): number {
    return this.entries.length;
  }

  private read(): TokenEntry[] {
    let text: string;
    try {
      const st = statSync(this.file);
      if (st.size > TOKENS_FILE_MAX_BYTES) throw new Error(`larger than ${TOKENS_FILE_MAX_BYTES} bytes`);
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      throw new KvError('KV_CONFIG', `cannot read tokens file ${this.file}: ${(err as Error).message}`, { cause: err });
    }
    return parseTokensFile(text, this.file);
  }

  /** Re-reads the file if its stamp changed; a bad file keeps the tokens in force. */
  check(): void {
    const stamp = fileStamp(this.file);
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.entries = this.read();
      this.valid.clear();
      this.reloads++;
      this.log.info({ file: this.file, tokens: this.entries.length }, 'tokens file reloaded');
    } catch (err) {
      this.reloadFailures++;
      this.log.error({ file: this.file, err: (err as Error).message }, 'tokens file not reloaded; the previous tokens stay in force');
    }
  }

  /**
   * The role of `token`, or undefined. Compares with every entry in constant time. Tokens
   * found are remembered (at most VALID_CACHE_MAX, dropped at every reload, so a revoked
   * token stops working at the same moment as without the cache): a client sends the same
   * token on every request, and its hash was ~1 % of a node's CPU under load. Unknown tokens
   * are never remembered, so nobody can fill the cache. A hit says only what the answer
   * says anyway (the token is valid); the lookup's string comparison runs only on a match
   * of V8's per-process seeded string hash.
   */
  roleOf(token: string): Role | undefined {
    if (token.length === 0 || token.length > TOKEN_MAX_CHARS) return undefined;
    const known = this.valid.get(token);
    if (known !== undefined) return known;
    const h = hashToken(token);
    let found: Role | undefined;
    for (const e of this.entries) {
      if (timingSafeEqual(h, e.hash) && (found === undefined || RANK[e.role] > RANK[found])) found = e.role;
    }
    if (found !== undefined) {
      if (this.valid.size >= VALID_CACHE_MAX) this.valid.clear();
      this.valid.set(token, found);
    }
    return found;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function fileStamp(file: string): string {
  try {
    const st = statSync(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch {
    return 'missing';
  }
}

/** How the HTTP layer decides who may do what. */
export interface Authenticator {
  /** Throws KV_UNAUTHORIZED (no or unknown token) or KV_FORBIDDEN (role too low). */
  check(authorization: string | undefined, need: Role): void;
  /** Whether any request is served without a token (loopback open mode or --auth none). */
  readonly open: boolean;
}

export const OPEN_AUTH: Authenticator = { open: true, check() {} };

const BEARER_RE = /^Bearer[ ]+([^\s]+)\s*$/i;

export function tokenAuthenticator(store: TokenStore): Authenticator {
  return {
    open: false,
    check(authorization, need) {
      const m = authorization === undefined ? null : BEARER_RE.exec(authorization);
      const role = m ? store.roleOf(m[1] as string) : undefined;
      if (role === undefined) {
        throw new KvError('KV_UNAUTHORIZED', m ? 'unknown token' : 'this route needs "Authorization: Bearer <token>"');
      }
      if (!roleAllows(role, need)) throw new KvError('KV_FORBIDDEN', `this route needs the ${need} role; the token has ${role}`);
    },
  };
}

/**
 * The authenticator a node runs with (config already validated that open mode is allowed:
 * loopback-only without a tokens file, or `--auth none`). Logs which mode it is.
 */
export function authFromConfig(cfg: { auth: string; tokensFile: string }, log: Logger & { warn(obj: object, msg: string): void }):
  { auth: Authenticator; store: TokenStore | undefined } {
  if (cfg.auth === 'none') {
    log.warn({ auth: 'none' }, 'client authentication is off (--auth none): anyone who reaches this port can read, write and administer');
    return { auth: OPEN_AUTH, store: undefined };
  }
  if (cfg.tokensFile === '') {
    log.warn({ auth: 'open-loopback' }, 'no tokens file: serving clients without credentials, on loopback addresses only (pass --tokens-file to require tokens)');
    return { auth: OPEN_AUTH, store: undefined };
  }
  const store = new TokenStore(cfg.tokensFile, log);
  log.info({ file: cfg.tokensFile, tokens: store.size }, 'client tokens loaded');
  return { auth: tokenAuthenticator(store), store };
}
