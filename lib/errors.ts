/**
 * Operating errors carry a stable `code` that clients, scripts and tests rely on
 * (README "Error codes"). Programmer errors are asserts, never KvError.
 */
export const ERROR_STATUS = {
  KV_INVALID_KEY: 400,
  KV_INVALID_ARGUMENT: 400,
  KV_UNAUTHORIZED: 401,
  KV_FORBIDDEN: 403,
  KV_NOT_FOUND: 404,
  KV_METHOD_NOT_ALLOWED: 405,
  KV_REQUEST_TIMEOUT: 408,
  KV_VALUE_TOO_LARGE: 413,
  KV_URI_TOO_LONG: 414,
  KV_HEADERS_TOO_LARGE: 431,
  KV_STALE_EPOCH: 409,
  KV_TOPOLOGY_BUSY: 409,
  KV_BUSY: 409,
  KV_PRECONDITION_FAILED: 412,
  KV_NOT_LEADER: 421,
  KV_INTERNAL: 500,
  KV_UNAVAILABLE: 503,
  KV_OVERLOADED: 503,
  KV_QUORUM_NOT_MET: 504,
  KV_TIMEOUT: 504,
  KV_SESSION_UNAVAILABLE: 504,
  KV_CLOCK_SKEW: 400,
  KV_CLOSED: 503,
  KV_STORE_NOT_OPEN: 503,
  KV_CONFIG: 400,
  KV_FRAME_INVALID: 400,
  KV_FRAME_TOO_LARGE: 413,
  KV_TOO_MANY_REQUESTS: 429,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** Whether a write that failed with this error may still have been applied somewhere. */
export type Outcome = 'failed' | 'unknown';

export class KvError extends Error {
  readonly code: ErrorCode;
  readonly outcome: Outcome | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { cause?: unknown; outcome?: Outcome; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'KvError';
    this.code = code;
    this.outcome = opts.outcome;
    this.details = opts.details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }

  toJSON(): { error: { code: ErrorCode; message: string; outcome?: Outcome } & Record<string, unknown> } {
    const error: { code: ErrorCode; message: string; outcome?: Outcome } & Record<string, unknown> = {
      ...(this.details ?? {}),
      code: this.code,
      message: this.message,
    };
    if (this.outcome !== undefined) error.outcome = this.outcome;
    return { error };
  }
}

export function isKvError(err: unknown, code?: ErrorCode): err is KvError {
  return err instanceof KvError && (code === undefined || err.code === code);
}

/** Programmer-error assertion: a broken invariant, never a user mistake. */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}
