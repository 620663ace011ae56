/**
 * Mocha root hooks (loaded by .mocharc.json for every run): `kv` commands the tests start
 * keep their CLI session in a directory of this run, removed at the end, never in the
 * user's ~/.local/state.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let dir: string | undefined;

export const mochaHooks = {
  beforeAll(): void {
    if (process.env['KV_SESSION_FILE']) return;
    dir = mkdtempSync(join(tmpdir(), 'kv-test-sessions-'));
    process.env['KV_SESSION_FILE'] = join(dir, 'sessions.json');
  },
  afterAll(): void {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  },
};
