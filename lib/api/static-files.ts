/**
 * The files a node serves to browsers: the dashboard (lib/api/ui), its chart library
 * (uPlot, from node_modules) and the API description (lib/api/openapi.json). A fixed
 * allow-list maps each URL path to one file; no part of a request URL ever becomes a file
 * path, so nothing else on disk can be reached through it. They hold no data, so they are
 * served without a token.
 *
 * Files are read once, on first request, and kept (about 300 KB in all); each answer has a
 * strong ETag, so a polling browser revalidates with a 304 instead of downloading again.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type http from 'node:http';
import { KvError } from '../errors.ts';

const require = createRequire(import.meta.url);
const here = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));
const pkg = (rel: string): (() => string) => () => require.resolve(rel);

const HTML = 'text/html; charset=utf-8';
const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';
const JSON_TYPE = 'application/json';

/**
 * The page loads only its own files and talks only to the node that served it; inline
 * script and style stay forbidden, so a value that found its way into the page cannot run.
 */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset { file: () => string; type: string }

/** URL path → file. The only files served; the dashboard's own files list themselves here. */
export const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ['/ui', { file: () => here('./ui/index.html'), type: HTML }],
  ['/ui/app.js', { file: () => here('./ui/app.js'), type: JS }],
  ['/ui/dashboard-math.js', { file: () => here('./ui/dashboard-math.js'), type: JS }],
  ['/ui/style.css', { file: () => here('./ui/style.css'), type: CSS }],
  ['/ui/uPlot.iife.min.js', { file: pkg('uplot/dist/uPlot.iife.min.js'), type: JS }],
  ['/ui/uPlot.min.css', { file: pkg('uplot/dist/uPlot.min.css'), type: CSS }],
  ['/openapi.json', { file: () => here('./openapi.json'), type: JSON_TYPE }],
]);

interface Loaded { body: Buffer; etag: string }

const cache = new Map<string, Promise<Loaded>>();

function load(path: string, asset: Asset): Promise<Loaded> {
  let p = cache.get(path);
  if (!p) {
    p = (async () => {
      const body = await readFile(asset.file());
      return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` };
    })();
    // A failed read (a broken install) is not cached: the next request tries again.
    p.catch(() => cache.delete(path));
    cache.set(path, p);
  }
  return p;
}

/** Answers a GET of an allow-listed path; throws KV_NOT_FOUND for any other path. */
export async function serveAsset(path: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const asset = ASSETS.get(path);
  if (!asset) throw new KvError('KV_NOT_FOUND', `no file ${path.slice(0, 100)}`);
  let got: Loaded;
  try {
    got = await load(path, asset);
  } catch (err) {
    throw new KvError('KV_INTERNAL', `${path} is missing from this installation`, { cause: err });
  }
  const headers: Record<string, string | number> = {
    'content-type': asset.type,
    etag: got.etag,
    // Revalidate every time: a node upgraded in place must not leave browsers on the old page.
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
  };
  if (asset.type === HTML) {
    headers['content-security-policy'] = PAGE_CSP;
    headers['referrer-policy'] = 'no-referrer';
  }
  if (req.headers['if-none-match'] === got.etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  headers['content-length'] = got.body.length;
  res.writeHead(200, headers);
  res.end(got.body);
}
