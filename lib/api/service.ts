/** What the HTTP layer needs from a node: the KV operations and the cluster views. */
import type { QuorumSpec } from '../core/quorum.ts';
import type { Version } from '../core/hlc.ts';
import type { SessionToken } from '../core/session.ts';

export interface WriteOptions {
  w?: QuorumSpec;
  /** Let hinted (fallback) copies count toward W (Dynamo's sloppy quorum). Default false. */
  sloppy?: boolean;
  /** Client deadline; aborted when the client goes away or the request times out. */
  signal?: AbortSignal;
  /** What the client has observed (X-Kv-Session): the new version is stamped above it. */
  session?: SessionToken;
  /** Time to live (PUT ?ttl=): the coordinator writes `expiresAt` = its clock + ttlMs into the record. */
  ttlMs?: number;
}

export interface ReadOptions {
  r?: QuorumSpec;
  signal?: AbortSignal;
  /** What the client has observed (X-Kv-Session): the read returns at least that version of the key. */
  session?: SessionToken;
}

export interface WriteAnswer {
  /** The version stored (above anything the replicas held). */
  version: Version;
  /** The client's session token after this write. */
  session: string | undefined;
}

export interface ReadAnswer {
  /** undefined when the key does not exist, is deleted or has expired. */
  value: Buffer | undefined;
  /** The version read (a tombstone's, for a deleted key). */
  version: Version | undefined;
  session: string | undefined;
  /** Wall-clock ms at which the value expires (records written with a TTL), for X-Kv-Expires. */
  expiresAt?: number;
}

export interface KvService {
  /** Replication factor N of the cluster (bounds `w`/`r`). */
  replicationFactor(): number;
  put(key: string, value: Buffer, opts: WriteOptions): Promise<WriteAnswer>;
  del(key: string, opts: WriteOptions): Promise<WriteAnswer>;
  get(key: string, opts: ReadOptions): Promise<ReadAnswer>;
}

export interface ClusterService {
  cluster(): Promise<unknown>;
  ring(): Promise<unknown>;
  partitions(): Promise<unknown>;
  decommission(id: string): Promise<unknown>;
  /** First step of a join (lib/node/join.ts): a single-use ticket for the joiner. */
  joinChallenge(body: unknown): Promise<unknown>;
  /** Second step: a signed join adds the member (forwarded to the Raft leader). */
  join(body: unknown): Promise<unknown>;
  /** This node's own stored record of a key (no quorum): version, tombstone, size. */
  localRecord(key: string): Promise<unknown>;
  /** Rebuild this node's Merkle trees from its records (throttled); reports trees that were wrong. */
  scrub(): Promise<unknown>;
  /** Remove a member that died for good: its partitions are re-replicated first (runs in the background). */
  removenode(id: string): Promise<unknown>;
  /** Start an anti-entropy walk of this node's partitions now (runs in the background). */
  repair(): Promise<unknown>;
  /** This node's long operations with their progress. */
  operations(): Promise<unknown>;
  /** Whether the node is ready to serve (for /health). */
  ready(): boolean;
}

/** The condition of a conditional write: HTTP `If-Match: <version>` or `If-None-Match: *`. */
export type WriteCondition = { readonly ifMatch: Version } | { readonly ifNoneMatch: true };

export interface CasWriteOptions {
  condition: WriteCondition;
  signal?: AbortSignal;
  session?: SessionToken;
  /** As WriteOptions.ttlMs: the written record expires then (a lock taken with a TTL frees itself). */
  ttlMs?: number;
}

/** A conditional write's answer: written at `version`, or not, because the condition was false. */
export type CasWriteAnswer =
  | { readonly applied: true; readonly version: Version; readonly session: string | undefined }
  /** `current`: the version of the live value the condition was evaluated against (undefined: none). */
  | { readonly applied: false; readonly current: Version | undefined; readonly session: string | undefined };

/** Conditional writes and linearizable reads, decided by per-key Paxos (lib/node/cas.ts). */
export interface CasService {
  /** value null: a conditional DELETE (writes a tombstone). */
  casWrite(key: string, value: Buffer | null, opts: CasWriteOptions): Promise<CasWriteAnswer>;
  /** A serial read (GET ?serial=true): linearizable with every conditional write of the key. */
  serialGet(key: string, opts: { signal?: AbortSignal; session?: SessionToken }): Promise<ReadAnswer>;
}

export interface ListOptions {
  prefix: string;
  limit: number;
  /** Opaque position from the previous page. */
  cursor?: string;
  /** Replicas read per partition (default: the configured R). */
  r?: QuorumSpec;
  signal?: AbortSignal;
}

export interface ListPage {
  keys: { key: string; version: Version }[];
  /** Where the next page starts; null once every partition was listed. */
  cursor: string | null;
}

/** GET /kv?prefix=&limit=&cursor= (lib/node/list.ts). */
export interface ListService {
  list(opts: ListOptions): Promise<ListPage>;
}
