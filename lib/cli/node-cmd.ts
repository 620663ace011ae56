/** `kv node`: run one node in the foreground until SIGINT/SIGTERM. */
import { DEV_SECRET, loadConfig } from '../config.ts';
import { createLogger } from '../node/log.ts';
import { KvNode } from '../node/node.ts';
import type { ParsedArgs } from './args.ts';
import { exitOnStdinEofRequested, watchParentPipe } from './parent-watch.ts';

/** After a failed start the process exits at the latest this long after its error is printed. */
const FAILED_START_EXIT_MS = 1000;

export async function nodeCommand(args: ParsedArgs): Promise<number> {
  const config = loadConfig({ flags: args.flags, env: process.env });
  const log = createLogger(config.id, config.logLevel);
  if (config.secret === DEV_SECRET) log.warn('using the built-in development secret (accepted on loopback only); set --secret or KV_SECRET for anything real');
  const node = new KvNode(config, log);
  let stopping: Promise<void> | undefined;
  const stop = (signal: string): void => {
    if (stopping) return;
    log.info({ signal, shutdownTimeoutMs: config.shutdownTimeoutMs }, 'shutting down');
    // Whatever is still open then (a stuck disk, a peer that never closes), the process ends.
    setTimeout(() => {
      log.error({ shutdownTimeoutMs: config.shutdownTimeoutMs }, 'shutdown did not finish in time; exiting anyway');
      process.exit(1);
    }, config.shutdownTimeoutMs).unref();
    // Requests in flight get half the bound, at most 5 s (the quorum deadline); closing takes the rest.
    stopping = node.stop(Math.min(5000, config.shutdownTimeoutMs / 2)).then(
      () => { process.exit(0); },
      (err: unknown) => { log.error({ err }, 'unclean shutdown'); process.exit(1); },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // Opt-in (set by `kv start`): exit when the supervisor dies, see parent-watch.ts.
  const unwatch = exitOnStdinEofRequested(process.env) ? watchParentPipe(() => stop('parent exited')) : undefined;
  try {
    await node.start();
  } catch (err) {
    log.fatal({ err }, 'node failed to start');
    await node.stop().catch(() => undefined);
    // A node that did not start ends, so that a supervisor sees the exit and can restart it:
    // nothing left open (the supervisor's stdin pipe, a peer link) may keep it alive.
    unwatch?.();
    setTimeout(() => process.exit(1), FAILED_START_EXIT_MS).unref();
    throw err;
  }
  // Keep running: the HTTP server holds the event loop open.
  return new Promise<number>(() => undefined);
}
