/**
 * The Kubernetes manifests under deploy/, parsed (yaml), for the manifest checks and for the
 * multi-host start-up test, which starts nodes with the StatefulSet's own environment.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Doc = any;

export const DEPLOY_DIR = fileURLToPath(new URL('../../deploy/', import.meta.url));
export const ROOT_DIR = fileURLToPath(new URL('../../', import.meta.url));

export function manifestFiles(): string[] {
  return readdirSync(DEPLOY_DIR).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort();
}

/** Every document of every manifest, with the file it came from; throws on a YAML error. */
export function loadManifests(): { file: string; doc: Doc }[] {
  const out: { file: string; doc: Doc }[] = [];
  for (const file of manifestFiles()) {
    for (const d of parseAllDocuments(readFileSync(DEPLOY_DIR + file, 'utf8'))) {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      const doc = d.toJS();
      if (doc !== null && doc !== undefined) out.push({ file, doc });
    }
  }
  return out;
}

export function find(kind: string, name?: string): Doc {
  const hits = loadManifests().filter((m) => m.doc.kind === kind && (name === undefined || m.doc.metadata?.name === name));
  if (hits.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${hits.length}`);
  return hits[0]?.doc;
}

/**
 * The environment the StatefulSet gives pod `podName` in `namespace`: fieldRefs resolved,
 * `$(VAR)` expanded from the variables before it (as the kubelet does), secretKeyRefs taken
 * from `secrets` (Secret name → key → value).
 */
export function podEnv(podName: string, namespace: string, secrets: Record<string, Record<string, string>>): Record<string, string> {
  const sts = find('StatefulSet');
  const container = sts.spec.template.spec.containers[0];
  const fields: Record<string, string> = { 'metadata.name': podName, 'metadata.namespace': namespace };
  const env: Record<string, string> = {};
  for (const e of container.env as Doc[]) {
    if (e.value !== undefined) env[e.name] = String(e.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m);
    else if (e.valueFrom?.fieldRef) env[e.name] = fields[e.valueFrom.fieldRef.fieldPath] ?? '';
    else if (e.valueFrom?.secretKeyRef) env[e.name] = secrets[e.valueFrom.secretKeyRef.name]?.[e.valueFrom.secretKeyRef.key] ?? '';
    else throw new Error(`env ${e.name}: unsupported source`);
  }
  return env;
}
