import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenStore, newToken, tokenLine } from '../../lib/api/tokens.ts';
import { removeDir, tempDir } from '../helpers/proc.ts';

const quiet = { info: () => {}, error: () => {} };

describe('TokenStore', () => {
  let dir: string;
  let store: TokenStore | undefined;
  beforeEach(() => { dir = tempDir('kv-tokens-'); });
  afterEach(() => { store?.stop(); store = undefined; removeDir(dir); });

  it('answers a remembered token from memory until the file changes, then not at all once it is removed', () => {
    const file = join(dir, 'tokens');
    const keep = newToken();
    const drop = newToken();
    writeFileSync(file, `${tokenLine(keep, 'read')}\n${tokenLine(drop, 'admin')}\n`);
    store = new TokenStore(file, quiet, 60_000);
    expect(store.roleOf(drop)).to.equal('admin');
    expect(store.roleOf(drop)).to.equal('admin');
    expect(store.roleOf(keep)).to.equal('read');
    // Same size and mtime granularity could hide the edit: the line order changes the size.
    writeFileSync(file, `# revoked one\n${tokenLine(keep, 'write')}\n`);
    store.check();
    expect(store.roleOf(drop)).to.equal(undefined);
    expect(store.roleOf(keep)).to.equal('write');
  });

  it('never remembers an unknown token', () => {
    const file = join(dir, 'tokens');
    const known = newToken();
    writeFileSync(file, `${tokenLine(known, 'write')}\n`);
    store = new TokenStore(file, quiet, 60_000);
    expect(store.roleOf(known)).to.equal('write');
    for (let i = 0; i < 3000; i++) expect(store.roleOf(newToken())).to.equal(undefined);
    expect((store as unknown as { valid: Map<string, string> }).valid.size).to.equal(1);
  });
});
