import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { DEFAULTS, envName, flagName, loadConfig } from '../../lib/config.ts';
import { isKvError } from '../../lib/errors.ts';
import { removeDir, tempDir } from '../helpers/proc.ts';

function fails(fn: () => unknown, field: string): void {
  let caught: unknown;
  try { fn(); } catch (err) { caught = err; }
  expect(isKvError(caught, 'KV_CONFIG'), String(caught)).to.equal(true);
  expect((caught as Error).message).to.contain(`"${field}"`);
}

describe('config', () => {
  let dir: string;
  before(() => { dir = tempDir(); });
  after(() => removeDir(dir));

  it('documents a default for every field and derives id and data from listen', () => {
    const c = loadConfig({ flags: { listen: '127.0.0.1:7005' } });
    expect(c.id).to.equal('n7005');
    expect(c.data).to.equal('./data/n7005');
    expect(c.advertise).to.equal('127.0.0.1:7005');
    expect(c.n).to.equal(DEFAULTS.n);
    expect(c.maxValueBytes).to.equal(1024 * 1024);
  });

  it('layers file < env < flags', () => {
    const file = join(dir, 'kv.json');
    writeFileSync(file, JSON.stringify({ requestTimeoutMs: 111, maxKeyBytes: 100, readRepair: false }));
    const c = loadConfig({
      flags: { config: file, 'max-key-bytes': '300', 'hinted-handoff': 'false' },
      env: { KV_MAX_KEY_BYTES: '200', KV_REQUEST_TIMEOUT_MS: '222', KV_JOIN: 'a:1,b:2' },
    });
    expect(c.requestTimeoutMs).to.equal(222);
    expect(c.maxKeyBytes).to.equal(300);
    expect(c.readRepair).to.equal(false);
    expect(c.hintedHandoff).to.equal(false);
    expect(c.join).to.deep.equal(['a:1', 'b:2']);
  });

  it('maps field names to flags and env variables', () => {
    expect(flagName('readRepair')).to.equal('read-repair');
    expect(envName('readRepair')).to.equal('KV_READ_REPAIR');
    expect(envName('hintedHandoff')).to.equal('KV_HINTED_HANDOFF');
  });

  it('takes the storage memory options from flags and env, within the ranges LevelDB keeps', () => {
    const c = loadConfig({
      flags: { 'leveldb-cache-bytes': String(64 * 1024 * 1024), 'version-cache-keys': '0' },
      env: { KV_LEVELDB_WRITE_BUFFER_BYTES: String(16 * 1024 * 1024), KV_LEVELDB_MAX_FILE_BYTES: String(8 * 1024 * 1024), KV_LEVELDB_MAX_OPEN_FILES: '500' },
    });
    expect([c.leveldbCacheBytes, c.leveldbWriteBufferBytes, c.leveldbMaxFileBytes, c.leveldbMaxOpenFiles, c.versionCacheKeys])
      .to.deep.equal([64 * 1024 * 1024, 16 * 1024 * 1024, 8 * 1024 * 1024, 500, 0]);
    fails(() => loadConfig({ flags: { 'leveldb-max-file-bytes': String(512 * 1024) } }), 'leveldbMaxFileBytes');
    fails(() => loadConfig({ flags: { 'leveldb-max-open-files': '10' } }), 'leveldbMaxOpenFiles');
    fails(() => loadConfig({ flags: { 'leveldb-write-buffer-bytes': '1000' } }), 'leveldbWriteBufferBytes');
    fails(() => loadConfig({ flags: { 'leveldb-cache-bytes': '-1' } }), 'leveldbCacheBytes');
    fails(() => loadConfig({ flags: { 'version-cache-keys': '1.5' } }), 'versionCacheKeys');
  });

  it('names the bad field', () => {
    fails(() => loadConfig({ flags: { w: '5' } }), 'w');
    fails(() => loadConfig({ flags: { partitions: '1000' } }), 'partitions');
    fails(() => loadConfig({ flags: { listen: 'nope' } }), 'listen');
    fails(() => loadConfig({ flags: { id: 'bad id!' } }), 'id');
    fails(() => loadConfig({ flags: { 'read-repair': 'perhaps' } }), 'readRepair');
    fails(() => loadConfig({ flags: { 'no-such-flag': '1' } }), 'no-such-flag');
    fails(() => loadConfig({ env: { KV_MAX_VALUE_BYTES: 'lots' } }), 'maxValueBytes');
    fails(() => loadConfig({ flags: { bootstrap: true, join: 'a:1' } }), 'bootstrap');
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ nope: 1 }));
    fails(() => loadConfig({ flags: { config: file } }), 'nope');
  });
});
