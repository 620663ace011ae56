/**
 * One HTTP request on a fresh connection, answered as status, headers and body bytes, for
 * tests that look at exactly what a node answers (any method, any path, bodies in chunks).
 */
import http from 'node:http';

export interface RawResponse { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

export interface RawOptions {
  body?: Buffer | string;
  headers?: Record<string, string | number>;
  chunks?: Buffer[];
  /** Reject on a reset or broken pipe too (by default ignored: a 413 may close while we write). */
  strict?: boolean;
}

export function raw(addr: string, method: string, path: string, opts: RawOptions = {}): Promise<RawResponse> {
  const [host, port] = addr.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path, headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    // The server may answer 413 and close while we are still writing: that is the point.
    req.on('error', (err: NodeJS.ErrnoException) => { if (opts.strict || (err.code !== 'EPIPE' && err.code !== 'ECONNRESET')) reject(err); });
    if (opts.chunks) {
      let i = 0;
      const writeNext = (): void => {
        while (i < opts.chunks!.length) {
          if (req.destroyed) return;
          if (!req.write(opts.chunks![i++] as Buffer)) { req.once('drain', writeNext); return; }
        }
        req.end();
      };
      writeNext();
    } else {
      req.end(opts.body);
    }
  });
}
