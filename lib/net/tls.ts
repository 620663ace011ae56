/** The PEM files of a node's TLS setup (--tls-cert, --tls-key, --tls-ca), read once at start. */
import { readFileSync } from 'node:fs';
import { KvError } from '../errors.ts';

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/** undefined when TLS is off (all three empty; config validation enforces all or none). */
export function readTlsFiles(cfg: { tlsCert: string; tlsKey: string; tlsCa: string }): TlsFiles | undefined {
  if (cfg.tlsCert === '') return undefined;
  const read = (flag: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new KvError('KV_CONFIG', `cannot read ${flag} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { cert: read('--tls-cert', cfg.tlsCert), key: read('--tls-key', cfg.tlsKey), ca: read('--tls-ca', cfg.tlsCa) };
}
