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

/** What one replica (or a hint standing in for it) said about one write attempt. */
export type ReplicaOutcome =
  /** Stored it (or held exactly this version already). */
  | { kind: 'applied' }
  /** Kept a version at least as new (`held`) and did not store ours: certainly not applied by us. */
  | { kind: 'newer'; held: string }
  /** Refused before touching its store: certainly not applied. */
  | { kind: 'refused'; staleEpoch?: number }
  /** No usable answer (timeout, connection lost after sending, internal error): may have been applied. */
  | { kind: 'lost' };

export type WriteDecision =
  | { result: 'ok' }
  /** Replicas hold a newer version than ours: stamp above `held` and try again. */
  | { result: 'outdated'; held: string; staleEpoch: number | undefined }
  /** Nothing can have been applied anywhere: safe to report "failed". */
  | { result: 'failed'; staleEpoch: number | undefined }
  /** Some replica may hold it: report "unknown" (or retry at a newer epoch when `staleEpoch` is set). */
  | { result: 'unknown'; reason: 'quorum' | 'timeout'; staleEpoch: number | undefined };

/** One destination of a write attempt, as the tracker sees it. */
export interface TrackedTarget {
  /** The replica the copy is for (for a hint: the down replica it stands in for). */
  readonly replica: string;
  /** Whether an applied answer counts toward W (replicas, sloppy hints) or not (pending owners). */
  readonly countsTowardW: boolean;
}

/**
 * One write attempt (one version, one epoch). Targets are declared before sending and
 * answered by index; the tracker decides as soon as the outcome is known:
 *   ok        W counting targets applied it;
 *   outdated  it can no longer reach W and some replica holds a newer version (re-stamp);
 *   failed    every answer is in and none can have applied it;
 *   unknown   every answer is in, short of W, and some target may hold it.
 */
export class WriteTracker {
  private applied = 0;
  private maybe = false;
  private pendingCounting = 0;
  private pendingCount = 0;
  private stale: number | undefined;
  private held: string | undefined;
  private readonly targets: TrackedTarget[] = [];
  private readonly answers: (ReplicaOutcome | undefined)[] = [];

  constructor(readonly need: number) {}

  /** Declare a target before its request is sent; returns its index for `record`. */
  add(t: TrackedTarget): number {
    this.targets.push(t);
    this.answers.push(undefined);
    this.pendingCount++;
    if (t.countsTowardW) this.pendingCounting++;
    return this.targets.length - 1;
  }

  record(i: number, o: ReplicaOutcome): void {
    const t = this.targets[i];
    if (t === undefined || this.answers[i] !== undefined) return; // unknown target or duplicate answer
    this.answers[i] = o;
    this.pendingCount--;
    if (t.countsTowardW) this.pendingCounting--;
    switch (o.kind) {
      case 'applied':
        this.maybe = true;
        if (t.countsTowardW) this.applied++;
        break;
      case 'lost':
        this.maybe = true;
        break;
      case 'newer':
        if (this.held === undefined || o.held > this.held) this.held = o.held;
        break;
      case 'refused':
        if (o.staleEpoch !== undefined) this.stale = Math.max(this.stale ?? 0, o.staleEpoch);
        break;
    }
  }

  get appliedCount(): number { return this.applied; }
  get pending(): number { return this.pendingCount; }
  /** Whether any target may hold the write (an applied or lost answer, or, after the deadline, one still pending). */
  get maybeApplied(): boolean { return this.maybe; }

  /** The decision once it is known, before the deadline; undefined while waiting. */
  decision(): WriteDecision | undefined {
    if (this.applied >= this.need) return { result: 'ok' };
    // Short of W even if every pending counting target applies: a newer version held somewhere
    // means this version cannot win; re-stamp now rather than wait for slow answers.
    if (this.held !== undefined && this.applied + this.pendingCounting < this.need) {
      return { result: 'outdated', held: this.held, staleEpoch: this.stale };
    }
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
   * Owners to hint once every answer is in: those of `owners` (the key's replicas and
   * pending owners, down ones included) that neither applied the write nor hold something
   * newer, directly or through a hint; none at all unless the write may have been applied
   * (a write reported failed must never surface later).
   */
  hintTargets(owners: readonly string[]): string[] {
    if (!this.maybe && this.applied < this.need) return [];
    const covered = new Set<string>();
    this.targets.forEach((t, i) => {
      const a = this.answers[i];
      if (a?.kind === 'applied' || a?.kind === 'newer') covered.add(t.replica);
    });
    return owners.filter((id, i) => !covered.has(id) && owners.indexOf(id) === i);
  }
}

/** The reply of one replica to a read: its version (null = no record). */
export interface ReadReply { version: string | null }

export interface ReadTrackerOptions {
  /** A session's version of the key: the read is satisfied only by a reply at least this new. */
  want?: string | undefined;
  /** The candidates are every replica of the key (none is down), so replies from all of them
   *  settle the read even below `want`: no replica holds anything newer. */
  everyReplica?: boolean;
}

/**
 * One read: ask R replicas first, the next one whenever one fails, all the rest when
 * `speculate()` is called (slow answer, or behind the session). Decides once R replies are
 * in (and the session is satisfied), or when nothing more can come:
 *   ok      R replies, and the best is at least `want` or every replica answered;
 *   behind  R replies but below `want`, and replicas that might hold it cannot answer;
 *   failed  fewer than R replies and no candidate left (or a stale epoch to catch up on).
 */
export class ReadTracker {
  private next = 0;
  private inFlight = 0;
  private stale: number | undefined;
  readonly replies = new Map<string, string | null>();
  private bestVersion: string | null = null;
  private bestFrom: string | undefined;
  private readonly want: string | undefined;
  private readonly everyReplica: boolean;

  constructor(readonly need: number, readonly candidates: readonly string[], opts: ReadTrackerOptions = {}) {
    this.want = opts.want;
    this.everyReplica = opts.everyReplica ?? false;
  }

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

  /** Slow answer or behind the session: ask every remaining candidate. */
  speculate(): string[] {
    return this.take(this.candidates.length - this.next);
  }

  get staleEpoch(): number | undefined { return this.stale; }
  get outstanding(): number { return this.inFlight; }
  get best(): { version: string | null; from: string | undefined } { return { version: this.bestVersion, from: this.bestFrom }; }

  private satisfied(): boolean {
    if (this.want === undefined || (this.bestVersion !== null && this.bestVersion >= this.want)) return true;
    return this.everyReplica && this.replies.size === this.candidates.length;
  }

  /** R replies in but below the session's version, with candidates not yet asked: ask them. */
  behind(): boolean {
    return this.replies.size >= this.need && !this.satisfied() && this.next < this.candidates.length;
  }

  decision(): 'ok' | 'behind' | 'failed' | undefined {
    const exhausted = this.inFlight === 0 && this.next >= this.candidates.length;
    if (this.replies.size >= this.need && this.satisfied()) return 'ok';
    // A replica at a newer epoch refused us: catch up and ask again rather than wait on others.
    if (this.inFlight === 0 && this.stale !== undefined) return 'failed';
    if (this.replies.size >= this.need) return exhausted ? 'behind' : undefined;
    return exhausted ? 'failed' : undefined;
  }

  /** Replicas that answered with less than the best version (read repair targets). */
  repairTargets(): string[] {
    if (this.bestVersion === null) return [];
    const best = this.bestVersion;
    return [...this.replies].filter(([, v]) => v === null || v < best).map(([id]) => id);
  }
}
