/**
 * A promise that settles exactly once: by its owner, at a deadline, or when an
 * AbortSignal fires, whichever comes first. Settling clears the timer and the abort
 * listener, so nothing outlives the answer. Shared by the transport's pending requests
 * and the coordinator's quorum waits.
 */
export interface SettleOptions<T> {
  /** Milliseconds until `onTimeout` runs (clamped to ≥ 0). */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** Runs at the deadline unless settled; it should settle (resolve or reject). */
  onTimeout: (s: Settle<T>) => void;
  /** Runs when `signal` aborts unless settled. Default: the same as a timeout. */
  onAbort?: (s: Settle<T>, reason: unknown) => void;
}

export class Settle<T> {
  readonly promise: Promise<T>;
  private done = false;
  private resolveFn!: (v: T) => void;
  private rejectFn!: (err: unknown) => void;
  private readonly timer: NodeJS.Timeout;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbortListener: (() => void) | undefined;

  constructor(o: SettleOptions<T>) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    this.signal = o.signal;
    this.timer = setTimeout(() => { if (!this.done) o.onTimeout(this); }, Math.max(0, o.timeoutMs));
    if (o.signal !== undefined) {
      const signal = o.signal;
      this.onAbortListener = () => {
        if (this.done) return;
        if (o.onAbort) o.onAbort(this, signal.reason);
        else o.onTimeout(this);
      };
      if (signal.aborted) queueMicrotask(this.onAbortListener);
      else signal.addEventListener('abort', this.onAbortListener, { once: true });
    }
  }

  get settled(): boolean {
    return this.done;
  }

  /** Returns false (and does nothing) when already settled. */
  resolve(value: T): boolean {
    if (!this.finish()) return false;
    this.resolveFn(value);
    return true;
  }

  reject(err: unknown): boolean {
    if (!this.finish()) return false;
    this.rejectFn(err);
    return true;
  }

  private finish(): boolean {
    if (this.done) return false;
    this.done = true;
    clearTimeout(this.timer);
    if (this.onAbortListener !== undefined) this.signal?.removeEventListener('abort', this.onAbortListener);
    return true;
  }
}
