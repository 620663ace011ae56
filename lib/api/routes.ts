/**
 * The route table of the HTTP API: every path the server answers and the methods it takes
 * there. The server dispatches only paths found here (anything else is 404 before any
 * handler runs), so this list cannot drift from what is served; the OpenAPI conformance
 * test (test/openapi) reads it and fails on a route that lib/api/openapi.json does not
 * describe, or on a described route that is not here.
 *
 * Paths are OpenAPI templates. A template may end in one parameter (`/kv/{key}`), which
 * takes the rest of the path, slashes included; the handler validates it.
 */

export interface RouteSpec {
  /** OpenAPI path template, e.g. `/kv/{key}`. */
  readonly path: string;
  /** Methods the route takes; any other gets 405 KV_METHOD_NOT_ALLOWED. */
  readonly methods: readonly string[];
  /** The `route` label of kv_http_* metrics: a fixed set, so client-chosen paths cannot grow the registry. */
  readonly label: string;
}

export const ROUTES: readonly RouteSpec[] = [
  { path: '/kv/{key}', methods: ['GET', 'HEAD', 'PUT', 'DELETE'], label: 'kv' },
  { path: '/kv', methods: ['GET'], label: '/kv' },
  { path: '/health', methods: ['GET'], label: '/health' },
  { path: '/metrics', methods: ['GET'], label: '/metrics' },
  { path: '/cluster', methods: ['GET'], label: '/cluster' },
  { path: '/cluster/ring', methods: ['GET'], label: '/cluster/ring' },
  { path: '/cluster/partitions', methods: ['GET'], label: '/cluster/partitions' },
  { path: '/cluster/stats', methods: ['GET'], label: '/cluster/stats' },
  { path: '/cluster/records/{key}', methods: ['GET'], label: '/cluster/records/:key' },
  { path: '/cluster/decommission', methods: ['POST'], label: '/cluster/decommission' },
  { path: '/cluster/scrub', methods: ['POST'], label: '/cluster/scrub' },
  { path: '/cluster/join', methods: ['POST'], label: '/cluster/join' },
  { path: '/ui', methods: ['GET'], label: '/ui' },
  { path: '/ui/{file}', methods: ['GET'], label: '/ui/:file' },
  { path: '/openapi.json', methods: ['GET'], label: '/openapi.json' },
];

interface Compiled { spec: RouteSpec; exact?: string; prefix?: string }

const COMPILED: Compiled[] = ROUTES.map((spec) => {
  const open = spec.path.indexOf('{');
  if (open < 0) return { spec, exact: spec.path };
  if (!spec.path.endsWith('}') || spec.path.indexOf('{', open + 1) >= 0) {
    throw new Error(`assertion failed: route ${spec.path} may have one parameter, at its end`);
  }
  return { spec, prefix: spec.path.slice(0, open) };
});

const EXACT = new Map(COMPILED.filter((c) => c.exact !== undefined).map((c) => [c.exact as string, c.spec]));
const PREFIXED = COMPILED.filter((c) => c.prefix !== undefined) as Required<Compiled>[];

/** The route serving a request path (without its query), or undefined (404). */
export function matchRoute(path: string): { spec: RouteSpec; param?: string } | undefined {
  const exact = EXACT.get(path);
  if (exact) return { spec: exact };
  for (const c of PREFIXED) {
    // An empty parameter still matches, so the handler can answer with its own error (an empty key is KV_INVALID_KEY).
    if (path.startsWith(c.prefix)) return { spec: c.spec, param: path.slice(c.prefix.length) };
  }
  return undefined;
}
