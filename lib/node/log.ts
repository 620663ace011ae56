import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout (pino); `name` is the node id so merged logs stay attributable. */
export function createLogger(name: string, level: string): Logger {
  return pino({ name, level, base: { node: name }, timestamp: pino.stdTimeFunctions.isoTime });
}
