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

/**
 * Who may call a route (README "Security"): a token role, `open` (no token: /health, the
 * MAC-signed join handshake, the dashboard's static files and the API description, which hold
 * no data), `data` (read for GET/HEAD, write for PUT/DELETE) or `metrics` (read unless
 * --metrics-open). Every route must say, so none can be left open by omission.
 */
export type RouteAccess = 'read' | 'write' | 'admin' | 'open' | 'data' | 'metrics';

export interface RouteSpec {
  /** OpenAPI path template, e.g. `/kv/{key}`. */
  readonly path: string;
  /** Methods the route takes; any other gets 405 KV_METHOD_NOT_ALLOWED. */
  readonly methods: readonly string[];
  /** The `route` label of kv_http_* metrics: a fixed set, so client-chosen paths cannot grow the registry. */
  readonly label: string;
  readonly access: RouteAccess;
}

export const ROUTES: readonly RouteSpec[] = [
  { path: '/kv/{key}', methods: ['GET', 'HEAD', 'PUT', 'DELETE'], label: 'kv', access: 'data' },
  { path: '/kv', methods: ['GET'], label: '/kv', access: 'read' },
  { path: '/health', methods: ['GET'], label: '/health', access: 'open' },
  { path: '/metrics', methods: ['GET'], label: '/metrics', access: 'metrics' },
  { path: '/cluster', methods: ['GET'], label: '/cluster', access: 'read' },
  { path: '/cluster/ring', methods: ['GET'], label: '/cluster/ring', access: 'read' },
  { path: '/cluster/partitions', methods: ['GET'], label: '/cluster/partitions', access: 'read' },
  { path: '/cluster/stats', methods: ['GET'], label: '/cluster/stats', access: 'read' },
  { path: '/cluster/records/{key}', methods: ['GET'], label: '/cluster/records/:key', access: 'read' },
  { path: '/cluster/decommission', methods: ['POST'], label: '/cluster/decommission', access: 'admin' },
  { path: '/cluster/scrub', methods: ['POST'], label: '/cluster/scrub', access: 'admin' },
  { path: '/cluster/removenode', methods: ['POST'], label: '/cluster/removenode', access: 'admin' },
  { path: '/cluster/repair', methods: ['POST'], label: '/cluster/repair', access: 'admin' },
  { path: '/cluster/operations', methods: ['GET'], label: '/cluster/operations', access: 'read' },
  { path: '/cluster/join/challenge', methods: ['POST'], label: '/cluster/join/challenge', access: 'open' },
  { path: '/cluster/join', methods: ['POST'], label: '/cluster/join', access: 'open' },
  { path: '/ui', methods: ['GET'], label: '/ui', access: 'open' },
  { path: '/ui/{file}', methods: ['GET'], label: '/ui/:file', access: 'open' },
  { path: '/openapi.json', methods: ['GET'], label: '/openapi.json', access: 'open' },
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

/** The token role a request needs, or null when the route is open. */
export function roleFor(spec: RouteSpec, method: string, metricsOpen: boolean): 'read' | 'write' | 'admin' | null {
  switch (spec.access) {
    case 'open': return null;
    case 'metrics': return metricsOpen ? null : 'read';
    case 'data': return method === 'PUT' || method === 'DELETE' ? 'write' : 'read';
    default: return spec.access;
  }
}
