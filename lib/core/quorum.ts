/**
 * Quorum arithmetic and request-parameter parsing (DESIGN.md §8).
 * Pure: used by the HTTP layer to validate `w`/`r` and by the coordinator to decide.
 */
import { KvError } from '../errors.ts';

export type QuorumSpec = number | 'one' | 'quorum' | 'all';

/** Parse a `w`/`r` query value: 1..N, one, quorum or all. Throws KV_INVALID_ARGUMENT. */
export function parseQuorum(name: string, raw: string, n: number): QuorumSpec {
  if (raw === 'one' || raw === 'quorum' || raw === 'all') return raw;
  if (!/^[0-9]{1,3}$/.test(raw)) {
    throw new KvError('KV_INVALID_ARGUMENT', `${name} must be 1..${n}, one, quorum or all; got "${raw.slice(0, 20)}"`);
  }
  const v = Number(raw);
  if (v < 1 || v > n) throw new KvError('KV_INVALID_ARGUMENT', `${name} must be between 1 and N=${n}; got ${v}`);
  return v;
}

/**
 * Required acknowledgements for a spec, given the replica count of the key's
 * preference list (min(N, members)). Named specs scale with the real replica count,
 * so a one-node development cluster serves `quorum` and `all`; explicit numbers do not,
 * so `w=3` on fewer than three replicas is refused as unavailable rather than weakened.
 */
export function required(spec: QuorumSpec, replicas: number): number {
  switch (spec) {
    case 'one': return 1;
    case 'quorum': return Math.floor(replicas / 2) + 1;
    case 'all': return replicas;
    default: return spec;
  }
}

// ---------------------------------------------------------------------------------------
// Quorum decisions (DESIGN.md §2, §8), pure: the coordinator feeds replica outcomes in and
// reads the decision out; the seeded simulation in test/sim/quorum.test.ts drives the same
// trackers with random outcomes and checks the guarantees after every event.
// ---------------------------------------------------------------------------------------

/** What one replica (or sloppy hint) said about a write. */
export type ReplicaOutcome =
  /** Stored (or already held something newer). */
  | { kind: 'ack' }
  /** Refused before touching its store: certainly not applied. */
  | { kind: 'refused'; staleEpoch?: number }
  /** No usable answer (timeout, connection lost after sending, internal error): may have been applied. */
  | { kind: 'lost' };

export type WriteDecision =
  | { result: 'ok' }
  /** Nothing can have been applied anywhere: safe to report "failed". */
  | { result: 'failed'; staleEpoch: number | undefined }
  /** Some replica may hold it: report "unknown" (or retry at a newer epoch when `staleEpoch` is set). */
  | { result: 'unknown'; reason: 'quorum' | 'timeout'; staleEpoch: number | undefined };

/**
 * One write attempt: targets that count toward W (replicas, and sloppy hints) and targets
 * that do not (pending owners of a topology change).
 */
export class WriteTracker {
  private acks = 0;
  private maybe = false;
  private pendingCount = 0;
  private stale: number | undefined;
  private readonly counting = new Map<string, boolean>();
  private readonly acked = new Set<string>();
  private readonly answered = new Set<string>();

  constructor(readonly need: number) {}

  /** Declare a target before its request is sent. */
  send(id: string, counts: boolean): void {
    this.counting.set(id, counts);
    this.pendingCount++;
  }

  record(id: string, o: ReplicaOutcome): void {
    const counts = this.counting.get(id);
    if (counts === undefined || this.answered.has(id)) return; // unknown target or duplicate answer
    this.answered.add(id);
    this.pendingCount--;
    if (o.kind === 'ack') {
      this.maybe = true;
      this.acked.add(id);
      if (counts) this.acks++;
    } else if (o.kind === 'lost') {
      this.maybe = true;
    } else if (o.staleEpoch !== undefined) {
      this.stale = Math.max(this.stale ?? 0, o.staleEpoch);
    }
  }

  get ackCount(): number { return this.acks; }
  get pending(): number { return this.pendingCount; }
  /** Whether any target may hold the write (an ack, a lost answer, or — after the deadline — one still pending). */
  get maybeApplied(): boolean { return this.maybe; }
  hasAcked(id: string): boolean { return this.acked.has(id); }

  /** The decision once it is known, before the deadline; undefined while waiting. */
  decision(): WriteDecision | undefined {
    if (this.acks >= this.need) return { result: 'ok' };
    if (this.pendingCount > 0) return undefined;
    return this.maybe ? { result: 'unknown', reason: 'quorum', staleEpoch: this.stale } : { result: 'failed', staleEpoch: this.stale };
  }

  /** The decision at the deadline: requests still in flight may yet be applied. */
  expire(): WriteDecision {
    const d = this.decision();
    if (d) return d;
    this.maybe = true;
    return { result: 'unknown', reason: 'timeout', staleEpoch: this.stale };
  }

  /**
   * Counting targets to hint once every answer is in: the replicas that did not ack, but
   * only if the write may have been applied (a write reported failed must never surface).
   */
  hintTargets(replicas: readonly string[]): string[] {
    if (!this.maybe && this.acks < this.need) return [];
    return replicas.filter((id) => !this.acked.has(id) && !this.acked.has(`hint:${id}`));
  }
}

/** The reply of one replica to a read: its version (null = no record). */
export interface ReadReply { version: string | null }

/**
 * One read: ask R replicas first, the next one whenever one fails, all the rest when
 * `speculate()` is called (slow answer). Decides once R replies are in, or when every
 * candidate has answered.
 */
export class ReadTracker {
  private next = 0;
  private inFlight = 0;
  private stale: number | undefined;
  readonly replies = new Map<string, string | null>();
  private bestVersion: string | null = null;
  private bestFrom: string | undefined;

  constructor(readonly need: number, readonly candidates: readonly string[]) {}

  /** Targets to ask now. */
  start(): string[] {
    return this.take(Math.min(this.need, this.candidates.length));
  }

  private take(n: number): string[] {
    const out = this.candidates.slice(this.next, this.next + n);
    this.next += out.length;
    this.inFlight += out.length;
    return out;
  }

  reply(id: string, version: string | null): void {
    if (this.replies.has(id)) return;
    this.inFlight--;
    this.replies.set(id, version);
    if (version !== null && (this.bestVersion === null || version > this.bestVersion)) {
      this.bestVersion = version;
      this.bestFrom = id;
    }
  }

  /** A failed ask; returns the next target to ask, if any. */
  fail(_id: string, staleEpoch?: number): string[] {
    this.inFlight--;
    if (staleEpoch !== undefined) {
      this.stale = Math.max(this.stale ?? 0, staleEpoch);
      return [];
    }
    return this.take(1);
  }

  /** Slow answer: ask every remaining candidate. */
  speculate(): string[] {
    return this.take(this.candidates.length - this.next);
  }

  get staleEpoch(): number | undefined { return this.stale; }
  get outstanding(): number { return this.inFlight; }
  get best(): { version: string | null; from: string | undefined } { return { version: this.bestVersion, from: this.bestFrom }; }

  /** 'ok' with R replies; 'failed' when nothing more can come; undefined while waiting. */
  decision(): 'ok' | 'failed' | undefined {
    if (this.replies.size >= this.need) return 'ok';
    if (this.inFlight === 0 && this.next >= this.candidates.length) return 'failed';
    if (this.inFlight === 0 && this.stale !== undefined) return 'failed';
    return undefined;
  }

  /** Replicas that answered with less than the best version (read repair targets). */
  repairTargets(): string[] {
    if (this.bestVersion === null) return [];
    const best = this.bestVersion;
    return [...this.replies].filter(([, v]) => v === null || v < best).map(([id]) => id);
  }
}
