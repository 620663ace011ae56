/**
 * Long operations this node runs (join streaming, decommission, removenode, replace,
 * repair, scrub), with progress, so `GET /cluster/operations` and the CLI can show them.
 * Bounded: the most recent MAX_KEPT finished operations are kept besides running ones.
 */
import { randomBytes } from 'node:crypto';

export type OperationKind = 'join' | 'decommission' | 'removenode' | 'replace' | 'repair' | 'scrub';

export interface OperationView {
  id: string;
  kind: OperationKind;
  /** The member the operation is about (the leaving, removed or replaced node; this node for repair). */
  target: string;
  state: 'running' | 'done' | 'failed';
  /** Units of work done and in all (partitions, or partition × peer exchanges). */
  done: number;
  total: number;
  /** Records moved so far. */
  records: number;
  startedAt: number;
  finishedAt?: number;
  error?: string;
  /** What the operation waits for or does now, for humans. */
  step?: string;
}

/** Finished operations kept for `GET /cluster/operations`. 32: a day of operator work. */
const MAX_KEPT = 32;
/** Progress lines in a node's log at most this often per operation. */
const PROGRESS_LOG_MS = 5000;

/** A progress listener that writes throttled lines to a log (a node's own long operations). */
export function progressLogger(log: { info(o: object, m: string): void }, what: string): (v: Readonly<OperationView>) => void {
  let last = 0;
  return (v) => {
    const now = Date.now();
    if (now - last < PROGRESS_LOG_MS && v.done < v.total) return;
    last = now;
    log.info({ done: v.done, total: v.total, records: v.records }, `${what}: ${v.done}/${v.total}`);
  };
}

export class Operation {
  constructor(private readonly v: OperationView, private readonly onProgress?: (v: Readonly<OperationView>) => void) {}

  get view(): OperationView {
    return { ...this.v };
  }

  get id(): string {
    return this.v.id;
  }

  total(n: number): void {
    this.v.total = n;
  }

  progress(done: number, records?: number): void {
    this.v.done = done;
    if (records !== undefined) this.v.records = records;
    this.onProgress?.(this.v);
  }

  add(done: number, records = 0): void {
    this.v.done += done;
    this.v.records += records;
    this.onProgress?.(this.v);
  }

  step(s: string): void {
    this.v.step = s;
  }

  finish(): void {
    this.v.state = 'done';
    this.v.finishedAt = Date.now();
    delete this.v.step;
  }

  fail(err: unknown): void {
    this.v.state = 'failed';
    this.v.finishedAt = Date.now();
    this.v.error = err instanceof Error ? err.message : String(err);
  }
}

export class Operations {
  private readonly ops: Operation[] = [];

  start(kind: OperationKind, target: string, onProgress?: (v: Readonly<OperationView>) => void): Operation {
    const op = new Operation({ id: randomBytes(6).toString('hex'), kind, target, state: 'running', done: 0, total: 0, records: 0, startedAt: Date.now() }, onProgress);
    this.ops.push(op);
    const finished = this.ops.filter((o) => o.view.state !== 'running');
    for (const old of finished.slice(0, Math.max(0, finished.length - MAX_KEPT))) this.ops.splice(this.ops.indexOf(old), 1);
    return op;
  }

  /** Runs `fn` as an operation: finished or failed with its outcome. */
  async run<T>(kind: OperationKind, target: string, fn: (op: Operation) => Promise<T>, onProgress?: (v: Readonly<OperationView>) => void): Promise<T> {
    const op = this.start(kind, target, onProgress);
    try {
      const r = await fn(op);
      op.finish();
      return r;
    } catch (err) {
      op.fail(err);
      throw err;
    }
  }

  running(kind: OperationKind, target?: string): Operation | undefined {
    return this.ops.find((o) => o.view.state === 'running' && o.view.kind === kind && (target === undefined || o.view.target === target));
  }

  get(id: string): OperationView | undefined {
    return this.ops.find((o) => o.id === id)?.view;
  }

  list(): OperationView[] {
    return this.ops.map((o) => o.view);
  }
}
