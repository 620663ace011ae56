/**
 * One typed configuration for a node. Every field has a documented default; values
 * come from (lowest to highest precedence) defaults, an optional JSON file
 * (`--config FILE` / KV_CONFIG), `KV_*` environment variables, and CLI flags.
 * `validateConfig` fails fast with KV_CONFIG naming the bad field.
 */
import { readFileSync } from 'node:fs';
import { KvError } from './errors.ts';
import { NODE_ID_RE } from './core/hlc.ts';
import { DEFAULT_TRANSPORT_LIMITS } from './net/limits.ts';
import { STREAM_PACE_DEFAULTS } from './core/stream-pace.ts';
import { DEFAULT_LEVEL_OPTIONS, type LevelOptions } from './storage/level-options.ts';
import { DEFAULT_VERSION_CACHE_KEYS } from './storage/version-cache.ts';

const SECOND = 1000;
const KiB = 1024;
const MiB = 1024 * KiB;

/** The built-in secret: public (it is in this file), so only for nodes that nobody else can reach. */
export const DEV_SECRET = 'kv-development-secret';

/**
 * Bytes a peer frame needs around one record besides its value: the envelope tuple, the key
 * (counted separately), the version, msgpack headers of the record and of the batch.
 */
export const PEER_RECORD_OVERHEAD_BYTES = 4 * KiB;

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
  /** Start-up discovery (docs/deploy.md), for a fresh data dir without --bootstrap or --join: HOST:PORT
   *  names of the cluster's first members (in Kubernetes, the StatefulSet's first pods behind the headless
   *  Service). The node joins through whichever seed serves a cluster, retrying until discoveryTimeoutMs. */
  seeds: string[];
  /** With seeds: the node whose advertise address is the first seed may create the cluster, and only when
   *  every other seed proves (signed with the cluster secret) that it is a fresh node that found no cluster
   *  either. Default false. A node whose volume was lost finds the others serving and never creates a
   *  second cluster; while they cannot be reached it waits. */
  seedBootstrap: boolean;
  /** Take over dead member ID's place in the ring (`kv node --replace ID`, fresh data dir, with --join or
   *  --seeds): the node's id becomes ID, so it owns the same partitions; it streams them from the other
   *  replicas and serves reads only then. Refused while ID is alive. Default '' (no replacement). */
  replace: string;
  /** How long discovery keeps looking before the node gives up and exits (a supervisor restarts it).
   *  Default 10 min: covers pods scheduled minutes apart; restarting does no harm, waiting forever hides a fault. */
  discoveryTimeoutMs: number;
  /** Shared cluster secret for peer authentication and joins. Default: a fixed, public development secret,
   *  accepted only when every listen and advertise address is loopback (the node refuses to start otherwise). */
  secret: string;
  /** File of hashed client tokens (`kv token`; README "Security"), reloaded on change. Default none: then the
   *  node serves clients without credentials only when every address is loopback (protected mode). */
  tokensFile: string;
  /** `tokens` (default): client and admin routes need a bearer token, or loopback-only open mode without a
   *  tokens file. `none`: no client authentication on any address, an explicit opt-out. */
  auth: string;
  /** Serve GET /metrics without a token (for scrapers on a trusted network). Default false: needs `read`. */
  metricsOpen: boolean;
  /** PEM certificate of this node (with --tls-key and --tls-ca): the port speaks HTTPS and peers use mutual TLS. */
  tlsCert: string;
  /** PEM private key of --tls-cert. */
  tlsKey: string;
  /** PEM certificate of the cluster CA: peer certificates must chain to it (both directions). */
  tlsCa: string;
  /** Log level: fatal, error, warn, info, debug, trace, silent. */
  logLevel: string;

  /** Sync every write to disk (LevelDB `sync: true`). Default false: an acknowledged write is in the
   *  LevelDB log (OS page cache) of W replicas, surviving process crashes but not a power loss of all W
   *  at once; the same trade Cassandra's periodic commitlog sync makes. */
  fsync: boolean;

  /** LevelDB's block cache: uncompressed data blocks kept in memory, an LRU bounded by this. Default 8 MiB
   *  (LevelDB's own). Part of the memory bound (README "Performance", Scale). */
  leveldbCacheBytes: number;
  /** LevelDB memtable: writes collect in memory up to this before a flush to a level-0 table; two can be
   *  in memory at once (one filling, one flushing), and a restart replays up to one from the log. Default
   *  16 MiB (LevelDB's own is 4 MiB): with keys spread over the whole key space, fewer and larger level-0
   *  tables cut compaction work per write at 1M keys by a third (lib/storage/level-backend.ts). Part of
   *  the memory bound. */
  leveldbWriteBufferBytes: number;
  /** Target size of one LevelDB table file. Default 8 MiB (LevelDB's own is 2 MiB): fewer tables to
   *  compact and keep open. */
  leveldbMaxFileBytes: number;
  /** LevelDB tables kept open, each with its index block and Bloom filter in memory. Default 250: with
   *  8 MiB tables that covers ~2 GB of tables before older ones are closed and their metadata read again
   *  on use. Part of the memory bound. */
  leveldbMaxOpenFiles: number;
  /** Keys whose stored version the record store keeps in memory, so a write to one skips the read of its
   *  read-compare-write. Default 100,000: ~190 B each with 10-byte keys (key + version + map entry), so
   *  ~19 MB. 0 turns it off. Part of the memory bound. */
  versionCacheKeys: number;

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
  /** Open client connections (HTTP keep-alive sockets; peer links not counted); beyond it a new connection
   *  gets 503 KV_OVERLOADED and is closed. Default 4096: far above what pooled clients keep open (k6 with a
   *  few hundred VUs, a client pool of 64 per node), while an idle-socket flood stays within a few MB and
   *  below common file-descriptor limits. */
  maxConnections: number;
  /** Request body bytes a node holds or has been promised (declared Content-Length; a body of unknown length
   *  counts as maxValueBytes until it ends) across all requests in flight; beyond it 503 KV_OVERLOADED with
   *  Retry-After. Default 256 MiB: 256 maximum values or ~25,000 10 KiB values at once, while 10,000
   *  stalled uploads can no longer pin 10 GiB. */
  maxInflightBytes: number;
  /** A request body that sends no byte for this long is cut off (408 KV_TIMEOUT) and its bytes released.
   *  Default 10 s: a LAN upload never pauses that long; a client holding a reservation open does not keep it. */
  bodyIdleTimeoutMs: number;
  /** SIGTERM/SIGINT: the node closes every socket and exits within this bound, finished or not. Default 10 s:
   *  in-flight requests (5 s quorum deadline) get to finish, and supervisors' stop timeouts (systemd 90 s,
   *  Kubernetes 30 s) are never reached. */
  shutdownTimeoutMs: number;

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
   *  replicas, paced evenly). Default 10 min: at Q=1024 a node of a 3-node cluster starts ~3.4 small
   *  exchanges a second, of a 9-node one ~1.1 (at 60 s the walks were half of an idle node's CPU).
   *  Bound: what hints and read repair leave divergent (a replica down longer than the hint window,
   *  hints dropped at their bounds) is repaired within about one period (twice that while the event
   *  loop lags, which halves the pace) plus the transfer, since each live replica compares every
   *  partition with its other replicas once per walk; `kv repair` walks at once. Hand-offs that
   *  could not complete at a topology change are retried at the start of each walk. */
  antiEntropyIntervalMs: number;
  /** Streaming for a join, decommission, replace or removenode moves at most this many partitions at
   *  once: the ceiling of an adaptive window (AIMD on event-loop lag) whose floor is 2. Default 32: hides
   *  round trips for small partitions; each holds at most two 512 KiB pages, 32 MiB in flight. */
  streamMaxPartitions: number;
  /** Streaming's window halves while the p99 event-loop lag of this node or of a peer it streams with is
   *  above this or above twice the base lag (the lowest over the last minute), whichever is higher, and grows
   *  by one partition per quarter second below it; at the floor, pages also pause. Default 20 ms of delay
   *  beyond the lag histogram's sampling interval (20 ms while streaming; ~0 on a quiet node), what a client feels on top of
   *  its own request; twice the base lag keeps a node that lags anyway within the 2x of client p99. Each
   *  peer's lag is measured against its own base lag (it reports it in its page answers). */
  streamLagTargetMs: number;

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
  seeds: [],
  replace: '',
  seedBootstrap: false,
  discoveryTimeoutMs: 10 * 60 * SECOND,
  secret: DEV_SECRET,
  tokensFile: '',
  auth: 'tokens',
  metricsOpen: false,
  tlsCert: '',
  tlsKey: '',
  tlsCa: '',
  logLevel: 'info',
  fsync: false,
  leveldbCacheBytes: DEFAULT_LEVEL_OPTIONS.cacheBytes,
  leveldbWriteBufferBytes: DEFAULT_LEVEL_OPTIONS.writeBufferBytes,
  leveldbMaxFileBytes: DEFAULT_LEVEL_OPTIONS.maxFileBytes,
  leveldbMaxOpenFiles: DEFAULT_LEVEL_OPTIONS.maxOpenFiles,
  versionCacheKeys: DEFAULT_VERSION_CACHE_KEYS,
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
  maxConnections: 4096,
  maxInflightBytes: 256 * MiB,
  bodyIdleTimeoutMs: 10 * SECOND,
  shutdownTimeoutMs: 10 * SECOND,
  readRepair: true,
  hintedHandoff: true,
  hintsMaxCount: 100_000,
  hintsMaxBytes: 256 * MiB,
  hintsMaxAgeMs: 3 * 3600 * SECOND,
  tombstoneGraceMs: 3600 * SECOND,
  antiEntropyIntervalMs: 10 * 60 * SECOND,
  streamMaxPartitions: STREAM_PACE_DEFAULTS.maxPartitions,
  streamLagTargetMs: STREAM_PACE_DEFAULTS.lagTargetMs,
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
  const cfg: Record<string, unknown> = { ...DEFAULTS, join: [], seeds: [] };
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
  if (cfg.replace) {
    if (!NODE_ID_RE.test(cfg.replace)) bad('replace', 'must be the id of the dead member to take over');
    if (cfg.id && cfg.id !== cfg.replace) bad('replace', `--replace ${cfg.replace} takes the dead member's id; --id ${cfg.id} differs`);
    cfg.id = cfg.replace;
    if (cfg.bootstrap) bad('replace', '--replace joins an existing cluster; it excludes --bootstrap');
    if (cfg.join.length === 0 && cfg.seeds.length === 0) bad('replace', '--replace needs --join HOST:PORT (or --seeds) to reach the cluster');
  }
  if (!cfg.id) cfg.id = `n${parseHostPort(cfg.advertise).port}`;
  if (!NODE_ID_RE.test(cfg.id)) bad('id', 'must be 1..64 characters of A-Z a-z 0-9 _ . -');
  if (!cfg.data) cfg.data = `./data/${cfg.id}`;
  for (const j of cfg.join) if (!HOSTPORT_RE.test(j)) bad('join', `expected HOST:PORT[,HOST:PORT...], got "${j}"`);
  if (cfg.bootstrap && cfg.join.length > 0) bad('bootstrap', '--bootstrap and --join exclude each other');
  for (const s of cfg.seeds) if (!HOSTPORT_RE.test(s)) bad('seeds', `expected HOST:PORT[,HOST:PORT...], got "${s}"`);
  if (cfg.seeds.length > 0 && (cfg.bootstrap || cfg.join.length > 0)) bad('seeds', '--seeds (discovery) excludes --bootstrap and --join');
  if (cfg.seedBootstrap && cfg.seeds.length === 0) bad('seedBootstrap', 'needs --seeds');
  int(cfg, 'discoveryTimeoutMs', 1 * SECOND, 7 * 24 * 3600 * SECOND);
  if (Buffer.byteLength(cfg.secret) < 16) bad('secret', 'must be at least 16 bytes');
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(cfg.logLevel)) bad('logLevel', `unknown level "${cfg.logLevel}"`);
  int(cfg, 'n', 1, 7);
  int(cfg, 'w', 1, cfg.n);
  int(cfg, 'r', 1, cfg.n);
  int(cfg, 'partitions', 1, 65536);
  if ((cfg.partitions & (cfg.partitions - 1)) !== 0) bad('partitions', `must be a power of two, got ${cfg.partitions}`);
  int(cfg, 'vnodes', 1, 4096);
  int(cfg, 'maxKeyBytes', 1, 64 * KiB);
  // A value must fit one peer frame with its key and envelope, or replication, hints and anti-entropy could
  // never move it (the coordinator alone would hold it, and the retries would go on forever).
  const maxValue = DEFAULT_TRANSPORT_LIMITS.maxFrameBytes - cfg.maxKeyBytes - PEER_RECORD_OVERHEAD_BYTES;
  if (Number.isInteger(cfg.maxValueBytes) && cfg.maxValueBytes > maxValue) {
    bad('maxValueBytes', `${cfg.maxValueBytes} bytes do not fit a peer frame (${DEFAULT_TRANSPORT_LIMITS.maxFrameBytes} bytes); the most is ${maxValue} with maxKeyBytes ${cfg.maxKeyBytes}`);
  }
  int(cfg, 'maxValueBytes', 0, maxValue);
  int(cfg, 'maxUrlBytes', 256, 1 * MiB);
  int(cfg, 'maxHeaderBytes', 1 * KiB, 1 * MiB);
  int(cfg, 'requestTimeoutMs', 1, 10 * 60 * SECOND);
  int(cfg, 'httpRequestTimeoutMs', 1, 60 * 60 * SECOND);
  int(cfg, 'maxClockSkewMs', 1, 24 * 3600 * SECOND);
  int(cfg, 'maxInflightRequests', 1, 1_000_000);
  int(cfg, 'maxConnections', 1, 1_000_000);
  int(cfg, 'maxInflightBytes', 1 * MiB, 64 * 1024 * MiB);
  if (cfg.maxInflightBytes < cfg.maxValueBytes) bad('maxInflightBytes', `must hold at least one maximum value (maxValueBytes ${cfg.maxValueBytes})`);
  int(cfg, 'bodyIdleTimeoutMs', 100, 10 * 60 * SECOND);
  int(cfg, 'shutdownTimeoutMs', 100, 10 * 60 * SECOND);
  validateSecurity(cfg);
  int(cfg, 'leveldbCacheBytes', 0, 64 * 1024 * MiB);
  int(cfg, 'leveldbWriteBufferBytes', 64 * KiB, 1024 * MiB);
  // LevelDB clips these to its own ranges (db_impl.cc SanitizeOptions); refusing outside them keeps the
  // configured value the one in effect.
  int(cfg, 'leveldbMaxFileBytes', 1 * MiB, 1024 * MiB);
  int(cfg, 'leveldbMaxOpenFiles', 74, 50_000);
  int(cfg, 'versionCacheKeys', 0, 100_000_000);
  int(cfg, 'hintsMaxCount', 0, 100_000_000);
  int(cfg, 'hintsMaxBytes', 0, 64 * 1024 * MiB);
  int(cfg, 'hintsMaxAgeMs', 0, 30 * 24 * 3600 * SECOND);
  int(cfg, 'tombstoneGraceMs', 0, 365 * 24 * 3600 * SECOND);
  int(cfg, 'antiEntropyIntervalMs', 10, 24 * 3600 * SECOND);
  int(cfg, 'streamMaxPartitions', 2, 1024);
  int(cfg, 'streamLagTargetMs', 1, 10_000);
  int(cfg, 'deadVoterMs', 100, 24 * 3600 * SECOND);
  int(cfg, 'swimProbeIntervalMs', 10, 60 * SECOND);
  int(cfg, 'swimProbeTimeoutMs', 5, cfg.swimProbeIntervalMs - 1);
  int(cfg, 'swimIndirectChecks', 0, 16);
  int(cfg, 'swimSuspicionMult', 1, 100);
  int(cfg, 'swimSuspicionMaxTimeoutMult', 1, 100);
  int(cfg, 'swimRetransmitMult', 1, 100);
  return cfg;
}

/** The LevelDB options of a node (lib/storage/level-backend.ts; block size stays LevelDB's 4 KiB). */
export function levelOptions(cfg: Config): Partial<LevelOptions> {
  return {
    cacheBytes: cfg.leveldbCacheBytes, writeBufferBytes: cfg.leveldbWriteBufferBytes,
    maxFileBytes: cfg.leveldbMaxFileBytes, maxOpenFiles: cfg.leveldbMaxOpenFiles,
  };
}

const LOOPBACK_V4_RE = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** Whether HOST (of HOST:PORT) can only be reached from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || LOOPBACK_V4_RE.test(h);
}

/** Whether every address this node listens on or advertises is loopback. */
export function loopbackOnly(cfg: Pick<Config, 'listen' | 'advertise'>): boolean {
  return [cfg.listen, cfg.advertise || cfg.listen].every((a) => isLoopbackHost(parseHostPort(a).host));
}

/**
 * The rules that keep a reachable node from being open by accident (README "Security"): the public
 * development secret and running without client tokens are loopback-only unless opted out explicitly.
 */
function validateSecurity(cfg: Config): void {
  if (cfg.auth !== 'tokens' && cfg.auth !== 'none') bad('auth', `must be "tokens" or "none", got "${cfg.auth}"`);
  if (cfg.auth === 'none' && cfg.tokensFile) bad('auth', '--auth none and --tokens-file exclude each other');
  const local = loopbackOnly(cfg);
  if (cfg.secret === DEV_SECRET && !local) {
    bad('secret', `the built-in development secret is public and refused on a non-loopback address (${cfg.listen}, advertise ${cfg.advertise}): set --secret or KV_SECRET`);
  }
  if (cfg.auth === 'tokens' && !cfg.tokensFile && !local) {
    bad('tokensFile', `no client tokens on a non-loopback address (${cfg.listen}, advertise ${cfg.advertise}): pass --tokens-file FILE (KV_TOKENS_FILE), or --auth none to serve without authentication`);
  }
  const tls = [cfg.tlsCert, cfg.tlsKey, cfg.tlsCa].filter((x) => x !== '').length;
  if (tls !== 0 && tls !== 3) bad('tlsCert', '--tls-cert, --tls-key and --tls-ca go together');
}
