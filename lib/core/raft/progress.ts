/**
 * The leader's view of one follower's log (etcd raft's tracker.Progress).
 *
 *  probe:     the match point is unknown; one append in flight, then wait for a reply
 *             (or a heartbeat reply) before sending the next, to find it cheaply.
 *  replicate: the follower is in sync; appends stream optimistically, bounded by
 *             maxInflight so a slow follower cannot make the leader queue without end.
 *  snapshot:  a snapshot was sent; nothing else until it is acknowledged or times out.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** probe: an append is in flight and unanswered. */
  probeSent = false;
  /** snapshot: index of the snapshot sent, and ticks waited for its acknowledgement. */
  pendingSnapshot = 0;
  snapshotTicks = 0;
  /** replicate: last index of each unacknowledged append, oldest first. */
  inflight: number[] = [];
  recentActive = true;

  constructor(next: number, private readonly maxInflight: number) {
    this.next = next;
  }

  becomeProbe(): void {
    this.state = 'probe';
    this.probeSent = false;
    this.inflight = [];
    this.pendingSnapshot = 0;
    this.next = this.match + 1;
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.probeSent = false;
    this.inflight = [];
    this.pendingSnapshot = 0;
    this.next = this.match + 1;
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.inflight = [];
    this.pendingSnapshot = index;
    this.snapshotTicks = 0;
  }

  /** A success reply for `index`; false when it told nothing new (stale or duplicate). */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A reject of prevIndex `rejected` with the follower's hint; false when the reject
   * is stale (it answers an append older than the current probe) and must be ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  freeInflightTo(index: number): void {
    let i = 0;
    while (i < this.inflight.length && (this.inflight[i] as number) <= index) i++;
    if (i > 0) this.inflight.splice(0, i);
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe': return this.probeSent;
      case 'replicate': return this.inflight.length >= this.maxInflight;
      case 'snapshot': return true;
    }
  }
}
