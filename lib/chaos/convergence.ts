/**
 * The phases after healing: one serial read of each compare-and-set key (it finishes a
 * conditional write left half done), waiting until every replica of every key holds
 * the same record (with no client traffic, so only hinted handoff and anti-entropy can
 * do the work), then reading the final state through each replica.
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../client/client.ts';
import type { NodeReading } from './history.ts';
import type { Violation } from './checkers.ts';
import { pool, replicaRecordSigs, type RecordSig, type ReplicaMap } from './cluster-probe.ts';

const SECOND = 1000;
/** Requests in flight while sweeping keys: enough to finish a sweep of thousands of keys in seconds. */
const HTTP_CONCURRENCY = 32;
/** Gap between sweeps of the keys still divergent. */
const SWEEP_GAP_MS = 500;

export interface Convergence {
  /** Time until every replica of every key agreed (confirmed by a second full pass); undefined if never. */
  convergedMs: number | undefined;
  /** Keys whose replicas still disagreed at the deadline, as converged-checker violations (at most 1000). */
  violations: Violation[];
}

/** Serial reads in flight while settling: few keys, and each is a Paxos round on a majority. */
const SETTLE_CONCURRENCY = 4;
/** Gap between serial reads of a key that did not succeed yet. */
const SETTLE_RETRY_MS = 250;

/**
 * A conditional write is chosen once a majority accepted it; its commits are sent with
 * the answer and not waited for, so a coordinator killed right after answering can
 * leave a chosen (even acknowledged) write that no replica's record shows yet. Only a
 * Paxos round on the key finishes it: that is what a serial read does, and what the
 * store promises (serial reads see every acknowledged conditional write). So each such
 * key is read serially once before the convergence wait, and the final state (plain
 * reads of the records) then shows every chosen write. Keys no serial read succeeded
 * on within `timeoutMs` are returned as converged-checker violations.
 */
export async function settleConditionalKeys(keys: readonly string[], nodes: readonly string[], timeoutMs: number, clientTimeoutMs: number): Promise<Violation[]> {
  const client = new KvClient({ nodes: [...nodes], timeoutMs: clientTimeoutMs, session: false });
  const t0 = performance.now();
  const violations: Violation[] = [];
  try {
    await pool(keys, SETTLE_CONCURRENCY, async (key) => {
      let last = '';
      while (performance.now() - t0 < timeoutMs) {
        try {
          await client.get(key, { serial: true });
          return;
        } catch (err) {
          last = (err as Error).message;
        }
        await new Promise((r) => setTimeout(r, SETTLE_RETRY_MS));
      }
      violations.push({ key, message: `no serial read of the key succeeded within ${timeoutMs / SECOND} s after healing: ${last}` });
    });
  } finally {
    client.close();
  }
  return violations;
}

function agree(sigs: Map<string, RecordSig>): boolean {
  return new Set(sigs.values()).size <= 1 && ![...sigs.values()].some((s) => s.startsWith('error'));
}

export async function waitForConvergence(keys: readonly string[], replicas: ReplicaMap, timeoutMs: number): Promise<Convergence> {
  const c0 = performance.now();
  let pending = keys;
  let convergedMs: number | undefined;
  let divergent = new Map<string, Map<string, RecordSig>>();
  while (performance.now() - c0 < timeoutMs) {
    const still: string[] = [];
    divergent = new Map();
    await pool(pending, HTTP_CONCURRENCY, async (key) => {
      try {
        const sigs = await replicaRecordSigs(replicas, key);
        if (!agree(sigs)) {
          still.push(key);
          divergent.set(key, sigs);
        }
      } catch {
        still.push(key);
      }
    });
    if (still.length === 0) {
      if (pending.length === keys.length) {
        convergedMs = performance.now() - c0;
        break;
      }
      // Every key agreed at some point; a full pass confirms none moved since
      // (a late hint can still land on one replica).
      pending = keys;
      continue;
    }
    pending = still;
    await new Promise((r) => setTimeout(r, SWEEP_GAP_MS));
  }
  const violations: Violation[] = [...divergent].slice(0, 1000).map(([key, sigs]) => ({
    key, nodes: [...sigs.keys()],
    message: `replicas still disagree ${timeoutMs / SECOND} s after healing: ${[...sigs].map(([n, s]) => `${n} ${s}`).join(', ')}`,
  }));
  return { convergedMs, violations };
}

/** Every key read with r=all through each of its replicas: key → node id → reading. */
export async function readFinalState(keys: readonly string[], replicas: ReplicaMap): Promise<Map<string, Map<string, NodeReading>>> {
  const final = new Map<string, Map<string, NodeReading>>();
  await pool(keys, HTTP_CONCURRENCY, async (key) => {
    const perNode = new Map<string, NodeReading>();
    final.set(key, perNode);
    for (const id of replicas.replicasOf(key)) {
      try {
        const res = await fetch(`http://${replicas.addr(id)}/kv/${encodeURIComponent(key)}?r=all`, { signal: AbortSignal.timeout(10 * SECOND) });
        const body = Buffer.from(await res.arrayBuffer());
        if (res.status === 404) perNode.set(id, { value: null, version: res.headers.get('x-kv-version') });
        else if (res.ok) perNode.set(id, { value: body.toString(), version: res.headers.get('x-kv-version') });
        else perNode.set(id, { value: null, version: null, error: `HTTP ${res.status} ${body.toString().slice(0, 120)}` });
      } catch (err) {
        perNode.set(id, { value: null, version: null, error: (err as Error).message });
      }
    }
  });
  return final;
}
