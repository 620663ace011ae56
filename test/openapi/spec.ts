/**
 * lib/api/openapi.json for the conformance test: the document, its operations, and a
 * checker that holds one HTTP answer against what the document says of it (status,
 * required headers, media type, body schema) with ajv's JSON Schema 2020-12 validator,
 * the dialect of OpenAPI 3.1.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type http from 'node:http';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Json = any;

export const SPEC_PATH = new URL('../../lib/api/openapi.json', import.meta.url);
export const spec: Json = JSON.parse(readFileSync(SPEC_PATH, 'utf8'));

export const METHODS = ['get', 'head', 'put', 'post', 'delete', 'patch', 'options'] as const;

export interface Operation { path: string; method: string; id: string; op: Json; params: Json[] }

/** Follows one local `$ref` (`#/components/...`). */
export function deref(x: Json): Json {
  if (!x || typeof x.$ref !== 'string') return x;
  const parts = (x.$ref as string).replace(/^#\//, '').split('/');
  let cur: Json = spec;
  for (const p of parts) {
    cur = cur?.[p];
    if (cur === undefined) throw new Error(`unresolved $ref ${x.$ref}`);
  }
  return deref(cur);
}

export function operations(): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries<Json>(spec.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(deref);
      out.push({ path, method: method.toUpperCase(), id: op.operationId, op, params });
    }
  }
  return out;
}

/** Every `$ref` in the document, to check they all resolve. */
export function allRefs(x: Json = spec, out: string[] = []): string[] {
  if (Array.isArray(x)) for (const v of x) allRefs(v, out);
  else if (x && typeof x === 'object') {
    for (const [k, v] of Object.entries(x)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else allRefs(v, out);
    }
  }
  return out;
}

const COMPONENTS_ID = 'kv:components';

/** Schemas refer to `#/components/schemas/X`; inside ajv they live under one $id's $defs. */
function rebase(x: Json): Json {
  if (Array.isArray(x)) return x.map(rebase);
  if (x && typeof x === 'object') {
    const o: Json = {};
    for (const [k, v] of Object.entries(x)) {
      o[k] = k === '$ref' && typeof v === 'string' ? v.replace('#/components/schemas/', `${COMPONENTS_ID}#/$defs/`) : rebase(v);
    }
    return o;
  }
  return x;
}

export const ajv = new Ajv2020({ strict: true, allErrors: true });
ajv.addKeyword('x-kv-peer-codes');
ajv.addKeyword('x-kv-reserved-codes');
ajv.addSchema({ $id: COMPONENTS_ID, $defs: rebase(spec.components.schemas) });

const compiled = new Map<string, ValidateFunction>();
export function validator(schema: Json): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = compiled.get(key);
  if (!v) compiled.set(key, (v = ajv.compile(rebase(schema))));
  return v;
}

export interface Answer { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

/** What is wrong with this answer to `op` (empty when it matches the description). */
export function mismatches(op: Operation, a: Answer): string[] {
  const problems: string[] = [];
  const documented = op.op.responses[String(a.status)];
  if (!documented) return [`${op.id}: status ${a.status} is not documented (${Object.keys(op.op.responses).join(', ')})`];
  const r = deref(documented);
  for (const [name, hRef] of Object.entries<Json>(r.headers ?? {})) {
    const h = deref(hRef);
    const value = a.headers[name.toLowerCase()];
    if (value === undefined) {
      if (h.required) problems.push(`${op.id} ${a.status}: header ${name} missing`);
      continue;
    }
    const v = validator(h.schema);
    if (!v(value)) problems.push(`${op.id} ${a.status}: header ${name}=${String(value)} ${ajv.errorsText(v.errors)}`);
  }
  if (op.method === 'HEAD' || !r.content) {
    if (op.method !== 'HEAD' && a.body.length > 0) problems.push(`${op.id} ${a.status}: a body where none is documented`);
    return problems;
  }
  const type = String(a.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
  const media = r.content[type];
  if (!media) return [...problems, `${op.id} ${a.status}: content-type ${type} not documented (${Object.keys(r.content).join(', ')})`];
  if (type === 'application/json') {
    let body: unknown;
    try {
      body = JSON.parse(a.body.toString('utf8'));
    } catch {
      return [...problems, `${op.id} ${a.status}: body is not JSON`];
    }
    const v = validator(media.schema);
    if (!v(body)) problems.push(`${op.id} ${a.status}: body ${ajv.errorsText(v.errors)}: ${a.body.toString('utf8').slice(0, 300)}`);
  }
  return problems;
}
