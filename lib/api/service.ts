/** What the HTTP layer needs from a node: the KV operations and the cluster views. */
import type { QuorumSpec } from '../core/quorum.ts';
import type { Version } from '../core/hlc.ts';

export interface WriteOptions {
  w?: QuorumSpec;
  /** Let hinted (fallback) copies count toward W (Dynamo's sloppy quorum). Default false. */
  sloppy?: boolean;
  /** Client deadline; aborted when the client goes away or the request times out. */
  signal?: AbortSignal;
}

export interface ReadOptions {
  r?: QuorumSpec;
  signal?: AbortSignal;
}

export interface ReadResult {
  value: Buffer;
  version: Version;
}

export interface KvService {
  /** Replication factor N of the cluster (bounds `w`/`r`). */
  replicationFactor(): number;
  put(key: string, value: Buffer, opts: WriteOptions): Promise<{ version: Version }>;
  del(key: string, opts: WriteOptions): Promise<{ version: Version }>;
  /** undefined when the key does not exist or is deleted. */
  get(key: string, opts: ReadOptions): Promise<ReadResult | undefined>;
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
  /** Whether the node is ready to serve (for /health). */
  ready(): boolean;
}
