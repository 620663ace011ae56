/**
 * Parent-death detection for a supervised `kv node`, opt-in with KV_EXIT_ON_STDIN_EOF=1
 * (`kv start` sets it on its nodes). Node has no prctl(PR_SET_PDEATHSIG), so the
 * supervisor instead keeps the write end of the node's stdin pipe and never writes to it:
 * the kernel closes that end when the supervisor exits for any reason, SIGKILL included,
 * and the node reads end-of-file and shuts down rather than living on as an orphan that
 * holds its port and data dir. A plain `kv node` (systemd, Kubernetes, a terminal) leaves
 * the variable unset and never looks at its stdin.
 */

export const EXIT_ON_STDIN_EOF_ENV = 'KV_EXIT_ON_STDIN_EOF';

/**
 * After its supervisor is gone a node exits at the latest this long after starting its
 * clean shutdown, even if that shutdown hangs: nobody is left to send SIGKILL. 10 s, the
 * default bound of a node's own shutdown.
 */
export const ORPHAN_EXIT_BOUND_MS = 10_000;

export function exitOnStdinEofRequested(env: NodeJS.ProcessEnv): boolean {
  return env[EXIT_ON_STDIN_EOF_ENV] === '1';
}

/**
 * Calls `shutdown` once stdin reaches end-of-file (or fails), then forces the exit after the
 * bound. Returns a function that stops watching and lets go of stdin (which otherwise holds
 * the process open).
 */
export function watchParentPipe(shutdown: () => void, boundMs = ORPHAN_EXIT_BOUND_MS): () => void {
  let fired = false;
  const gone = (): void => {
    if (fired) return;
    fired = true;
    setTimeout(() => process.exit(1), boundMs).unref();
    shutdown();
  };
  process.stdin.on('end', gone);
  process.stdin.on('close', gone);
  process.stdin.on('error', gone);
  // Flowing mode, discarding anything written: only end-of-file matters.
  process.stdin.on('data', () => undefined);
  return () => {
    fired = true;
    process.stdin.destroy();
  };
}
