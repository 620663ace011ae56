/**
 * libfaketime for the tests that skew clocks: when it is missing, the project's own
 * installer (lib/chaos/install-faketime.sh, Debian's `faketime` package) runs once, so a
 * fresh machine gets it the way `kv chaos` users are told to get it.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findLibfaketime } from '../../lib/chaos/faketime.ts';

const INSTALL_FAKETIME = fileURLToPath(new URL('../../lib/chaos/install-faketime.sh', import.meta.url));
/** apt-get update and install on a fresh image: well under this on any mirror. */
const INSTALL_TIMEOUT_MS = 300_000;

let attempt: Promise<string | undefined> | undefined;

/** Undefined when libfaketime is there (installed now if need be); otherwise why it cannot be had. */
export function ensureFaketime(): Promise<string | undefined> {
  attempt ??= install();
  return attempt;
}

async function install(): Promise<string | undefined> {
  if (findLibfaketime() !== undefined) return undefined;
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn('sh', [INSTALL_FAKETIME], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => { text += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { text += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), INSTALL_TIMEOUT_MS);
    child.once('error', (err) => { clearTimeout(timer); resolve({ code: null, out: err.message }); });
    child.once('exit', (c) => { clearTimeout(timer); resolve({ code: c, out: text }); });
  });
  if (findLibfaketime() !== undefined) return undefined;
  return `${INSTALL_FAKETIME} exited ${code}: ${out.trim().split('\n').slice(-3).join(' ')}`;
}
