/**
 * One typed configuration for a node. Every field has a documented default; values
 * come from (lowest to highest precedence) defaults, an optional JSON file
 * (`--config FILE` / KV_CONFIG), `KV_*` environment variables, and CLI flags.
 * `validateConfig` fails fast with KV_CONFIG naming the bad field.
 */
import { readFileSync } from 'node:fs';
import { KvError } from './errors.ts';
import { NODE_ID_RE } from './core/hlc.ts';

const SECOND = 1000;
const KiB = 1024;
const MiB = 1024 * KiB;

export interface Config {
  /** Node id, unique in the cluster ([A-Za-z0-9_.-], ≤ 64 chars). Default: derived from listen address. */
  id: string;
  /** HOST:PORT for HTTP clients and peer WebSockets (one port). Default 127.0.0.1:7001. */
  listen: string;
  /** Address peers dial to reach this node; default = listen. */
  advertise: string;
  /** Data directory (LevelDB lives in DIR/db). Default ./data/<id>. */
  data: string;
  /** Create a new cluster on a fresh data dir. */
  bootstrap: boolean;
  /** Existing members to join through (fresh data dir only). */
  join: string[];
  /** Shared cluster secret for peer authentication. Default: a fixed development secret (logged as a warning). */
  secret: string;
  /** Log level: fatal, error, warn, info, debug, trace, silent. */
  logLevel: string;

  /** Sync every write to disk (LevelDB `sync: true`). Default false: an acknowledged write is in the
   *  LevelDB log (OS page cache) of W replicas, surviving process crashes but not a power loss of all W
   *  at once; the same trade Cassandra's periodic commitlog sync makes. */
  fsync: boolean;

  /** Replication factor N (cluster-wide, fixed at bootstrap). Default 3. */
  n: number;
  /** Default write quorum W. Default 2 (R+W>N with R=2, N=3). */
  w: number;
  /** Default read quorum R. Default 2. */
  r: number;
  /** Partition count Q, a power of two fixed at bootstrap. Default 1024 (Riak's ring_creation_size is 64; more
   *  partitions give finer data movement at the cost of more Merkle trees). */
  partitions: number;
  /** Virtual nodes per member on the hash ring. Default 160 (hashring's own default, gives an even spread). */
  vnodes: number;

  /** Longest key in UTF-8 bytes. Default 1024. */
  maxKeyBytes: number;
  /** Largest value in bytes. Default 1 MiB (etcd caps requests at 1.5 MiB; big blobs belong elsewhere). */
  maxValueBytes: number;
  /** Longest request URL in bytes. Default 8 KiB (key limit after %-encoding ×3 plus query). */
  maxUrlBytes: number;
  /** Largest request header block. Default 16 KiB (node's default, stated explicitly). */
  maxHeaderBytes: number;
  /** Coordinator deadline for one client request (quorum wait). Default 5 s. */
  requestTimeoutMs: number;
  /** Whole HTTP request deadline, including a slow body upload. Default 30 s. */
  httpRequestTimeoutMs: number;
  /** Remote HLC timestamps further ahead than this are rejected. Default 10 s: NTP-synced hosts are within
   *  milliseconds; 10 s tolerates a badly set VM clock while bounding how far a wrong clock can leapfrog LWW. */
  maxClockSkewMs: number;
  /** Client requests in flight on one node before new ones get 429. Default 10,000. */
  maxInflightRequests: number;

  /** Repair stale replicas seen by reads. Default true. */
  readRepair: boolean;
  /** Store hints for down replicas. Default true. */
  hintedHandoff: boolean;
  /** Most hints kept per node. Default 100,000. */
  hintsMaxCount: number;
  /** Most hint bytes kept per node. Default 256 MiB. */
  hintsMaxBytes: number;
  /** Hints older than this are dropped (anti-entropy repairs the rest). Default 3 h (Cassandra's max_hint_window). */
  hintsMaxAgeMs: number;
  /** Tombstones are kept at least this long and until every replica holds them. Default 1 h (small, because
   *  purging also needs anti-entropy confirmation from every replica; Cassandra's gc_grace is 10 days
   *  because its repair is manual). */
  tombstoneGraceMs: number;
  /** Time for one anti-entropy walk over all of this node's partitions (each exchanged with its other
   *  replicas, paced evenly). Default 60 s: ~17 small exchanges a second at Q=1024, negligible load. */
  antiEntropyIntervalMs: number;

  /** A Raft voter that gossip has seen dead this long gives its seat to a live, caught-up learner.
   *  Default 30 s: outlasts restarts and GC pauses, so a bounce does not churn the voter set. */
  deadVoterMs: number;

  /** SWIM protocol period: one member probed per period. Default 1 s (memberlist LAN). */
  swimProbeIntervalMs: number;
  /** Wait for a direct ack before indirect probes; also the whole period of the urgent probe a closed
   *  peer connection starts. Default 500 ms (memberlist LAN; ~100× a LAN round trip). */
  swimProbeTimeoutMs: number;
  /** Members asked to probe indirectly. Default 3 (memberlist LAN): tolerates one bad path without flooding. */
  swimIndirectChecks: number;
  /** Minimum suspicion timeout = mult · max(1, log10 n) · probe interval, reached with 2 confirmations
   *  (plus one probe interval while the connection to the suspect is open). Default 2 (memberlist LAN: 4):
   *  2 s at n ≤ 10, so a killed node is dead ~2.5 s after its connections close, while a stalled node
   *  (connections open) is first suspected a period into the stall and dead no sooner than 4 s into it
   *  (docs/liveness.md works it through). */
  swimSuspicionMult: number;
  /** Upper suspicion timeout (a lone accuser's) as a multiple of the lower one (Lifeguard). Default 6: 12 s
   *  (13 s with an open connection). */
  swimSuspicionMaxTimeoutMult: number;
  /** Gossip retransmits per update = mult · ceil(log10(n+1)). Default 4 (memberlist LAN). */
  swimRetransmitMult: number;
}

export const DEFAULTS: Config = {
  id: '',
  listen: '127.0.0.1:7001',
  advertise: '',
  data: '',
  bootstrap: false,
  join: [],
  secret: 'kv-development-secret',
  logLevel: 'info',
  fsync: false,
  n: 3,
  w: 2,
  r: 2,
  partitions: 1024,
  vnodes: 160,
  maxKeyBytes: 1024,
  maxValueBytes: 1 * MiB,
  maxUrlBytes: 8 * KiB,
  maxHeaderBytes: 16 * KiB,
  requestTimeoutMs: 5 * SECOND,
  httpRequestTimeoutMs: 30 * SECOND,
  maxClockSkewMs: 10 * SECOND,
  maxInflightRequests: 10_000,
  readRepair: true,
  hintedHandoff: true,
  hintsMaxCount: 100_000,
  hintsMaxBytes: 256 * MiB,
  hintsMaxAgeMs: 3 * 3600 * SECOND,
  tombstoneGraceMs: 3600 * SECOND,
  antiEntropyIntervalMs: 60 * SECOND,
  deadVoterMs: 30 * SECOND,
  swimProbeIntervalMs: 1 * SECOND,
  swimProbeTimeoutMs: 500,
  swimIndirectChecks: 3,
  swimSuspicionMult: 2,
  swimSuspicionMaxTimeoutMult: 6,
  swimRetransmitMult: 4,
};

type Field = keyof Config;
const FIELDS = Object.keys(DEFAULTS) as Field[];

/** `readRepair` → `read-repair` (flag) and `KV_READ_REPAIR` (env). */
export function flagName(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
export function envName(field: string): string {
  return `KV_${field.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

function bad(field: string, why: string): never {
  throw new KvError('KV_CONFIG', `invalid config field "${field}": ${why}`, { details: { field } });
}

/** Coerce a raw value (string from flags/env, or JSON) to the type of the default. */
function coerce(field: Field, raw: unknown): unknown {
  const def = DEFAULTS[field];
  if (typeof def === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1' || raw === 'yes' || raw === '') return true;
    if (raw === 'false' || raw === '0' || raw === 'no') return false;
    return bad(field, `expected true or false, got ${JSON.stringify(raw)}`);
  }
  if (typeof def === 'number') {
    const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
    if (!Number.isFinite(n)) return bad(field, `expected a number, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (Array.isArray(def)) {
    if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw;
    if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter(Boolean);
    return bad(field, 'expected a comma-separated list');
  }
  if (typeof raw !== 'string') return bad(field, `expected a string, got ${JSON.stringify(raw)}`);
  return raw;
}

export interface ConfigSources {
  flags?: Record<string, string | boolean>;
  env?: Record<string, string | undefined>;
  file?: string;
}

/** Merge defaults, file, env and flags (flags win), then validate. */
export function loadConfig(src: ConfigSources): Config {
  const cfg: Record<string, unknown> = { ...DEFAULTS, join: [] };
  const flags = src.flags ?? {};
  const env = src.env ?? {};
  const file = (flags['config'] as string | undefined) ?? src.file ?? env['KV_CONFIG'];
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new KvError('KV_CONFIG', `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) bad('config', 'file must hold a JSON object');
    for (const [k, v] of Object.entries(parsed)) {
      if (!FIELDS.includes(k as Field)) bad(k, 'unknown field in config file');
      cfg[k] = coerce(k as Field, v);
    }
  }
  for (const f of FIELDS) {
    const v = env[envName(f)];
    if (v !== undefined) cfg[f] = coerce(f, v);
  }
  for (const [k, v] of Object.entries(flags)) {
    if (k === 'config') continue;
    const f = FIELDS.find((x) => flagName(x) === k || x === k);
    if (!f) bad(k, 'unknown option');
    cfg[f] = coerce(f, v);
  }
  return validateConfig(cfg as unknown as Config);
}

const HOSTPORT_RE = /^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;
export function parseHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i).replace(/^\[|\]$/g, '');
  return { host, port: Number(s.slice(i + 1)) };
}

function int(cfg: Config, f: Field, min: number, max: number): void {
  const v = cfg[f] as number;
  if (!Number.isInteger(v) || v < min || v > max) bad(f, `must be an integer in ${min}..${max}, got ${v}`);
}

export function validateConfig(cfg: Config): Config {
  if (!HOSTPORT_RE.test(cfg.listen) || parseHostPort(cfg.listen).port > 65535) bad('listen', `expected HOST:PORT, got "${cfg.listen}"`);
  if (!cfg.advertise) cfg.advertise = cfg.listen;
  if (!HOSTPORT_RE.test(cfg.advertise)) bad('advertise', `expected HOST:PORT, got "${cfg.advertise}"`);
  if (!cfg.id) cfg.id = `n${parseHostPort(cfg.advertise).port}`;
  if (!NODE_ID_RE.test(cfg.id)) bad('id', 'must be 1..64 characters of A-Z a-z 0-9 _ . -');
  if (!cfg.data) cfg.data = `./data/${cfg.id}`;
  for (const j of cfg.join) if (!HOSTPORT_RE.test(j)) bad('join', `expected HOST:PORT[,HOST:PORT...], got "${j}"`);
  if (cfg.bootstrap && cfg.join.length > 0) bad('bootstrap', '--bootstrap and --join exclude each other');
  if (Buffer.byteLength(cfg.secret) < 16) bad('secret', 'must be at least 16 bytes');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel)) bad('logLevel', `unknown level "${cfg.logLevel}"`);
  int(cfg, 'n', 1, 7);
  int(cfg, 'w', 1, cfg.n);
  int(cfg, 'r', 1, cfg.n);
  int(cfg, 'partitions', 1, 65536);
  if ((cfg.partitions & (cfg.partitions - 1)) !== 0) bad('partitions', `must be a power of two, got ${cfg.partitions}`);
  int(cfg, 'vnodes', 1, 4096);
  int(cfg, 'maxKeyBytes', 1, 64 * KiB);
  int(cfg, 'maxValueBytes', 0, 64 * MiB);
  int(cfg, 'maxUrlBytes', 256, 1 * MiB);
  int(cfg, 'maxHeaderBytes', 1 * KiB, 1 * MiB);
  int(cfg, 'requestTimeoutMs', 1, 10 * 60 * SECOND);
  int(cfg, 'httpRequestTimeoutMs', 1, 60 * 60 * SECOND);
  int(cfg, 'maxClockSkewMs', 1, 24 * 3600 * SECOND);
  int(cfg, 'maxInflightRequests', 1, 1_000_000);
  int(cfg, 'hintsMaxCount', 0, 100_000_000);
  int(cfg, 'hintsMaxBytes', 0, 64 * 1024 * MiB);
  int(cfg, 'hintsMaxAgeMs', 0, 30 * 24 * 3600 * SECOND);
  int(cfg, 'tombstoneGraceMs', 0, 365 * 24 * 3600 * SECOND);
  int(cfg, 'antiEntropyIntervalMs', 10, 24 * 3600 * SECOND);
  int(cfg, 'deadVoterMs', 100, 24 * 3600 * SECOND);
  int(cfg, 'swimProbeIntervalMs', 10, 60 * SECOND);
  int(cfg, 'swimProbeTimeoutMs', 5, cfg.swimProbeIntervalMs - 1);
  int(cfg, 'swimIndirectChecks', 0, 16);
  int(cfg, 'swimSuspicionMult', 1, 100);
  int(cfg, 'swimSuspicionMaxTimeoutMult', 1, 100);
  int(cfg, 'swimRetransmitMult', 1, 100);
  return cfg;
}
