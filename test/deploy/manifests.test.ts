/**
 * deploy/ and the Dockerfile, checked statically: every manifest parses, the kustomization
 * lists them all, and the points the deployment relies on hold (stable ids from the pod
 * name, a volume claim for the data, readiness on /health, the preStop hook, zone
 * anti-affinity, headless and client Services, PDB of one, Secrets, Prometheus scraping,
 * discovery through the first pods), and the image's production install has every
 * package the runtime imports.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { parse } from 'yaml';
import { DEFAULTS, envName } from '../../lib/config.ts';
import { DEPLOY_DIR, ROOT_DIR, find, loadManifests, manifestFiles, podEnv, type Doc } from './manifests.ts';

/** Env names the prestop hook reads (deploy/prestop.mjs). */
const PRESTOP_ENV = ['KV_PRESTOP_URL', 'KV_PRESTOP_TOKEN_FILE', 'KV_PRESTOP_MAX_WAIT_MS'];
/** Config fields that come with the security change (issue 10: tokens file, TLS); the node ignores them until then. */
const SECURITY_ENV = ['KV_TOKENS_FILE', 'KV_TLS_CERT', 'KV_TLS_KEY', 'KV_TLS_CA', 'KV_AUTH', 'KV_METRICS_OPEN'];

describe('deploy/: Kubernetes manifests and Dockerfile', () => {
  const sts = find('StatefulSet');
  const pod = sts.spec.template.spec;
  const container = pod.containers[0];
  const env = new Map<string, Doc>((container.env as Doc[]).map((e) => [e.name, e]));
  const labels = sts.spec.template.metadata.labels;
  const services = loadManifests().filter((m) => m.doc.kind === 'Service').map((m) => m.doc);
  const headless = services.find((s) => s.metadata.name === sts.spec.serviceName);
  const client = services.find((s) => s.spec.clusterIP !== 'None');

  const selects = (selector: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

  it('parses every manifest, each document a named Kubernetes object, all listed in the kustomization', () => {
    const all = loadManifests();
    expect(all.length).to.be.greaterThan(8);
    for (const { file, doc } of all) {
      expect(doc.apiVersion, file).to.be.a('string');
      expect(doc.kind, file).to.be.a('string');
      if (doc.kind !== 'Kustomization') expect(doc.metadata?.name, `${file} ${doc.kind}`).to.be.a('string');
    }
    const k = find('Kustomization');
    expect([...k.resources].sort()).to.deep.equal(manifestFiles().filter((f) => f !== 'kustomization.yaml'));
  });

  it('runs a StatefulSet whose pods take their id from the pod name and keep data on a volume claim', () => {
    expect(sts.spec.replicas).to.be.at.least(3);
    expect(selects(sts.spec.selector.matchLabels)).to.equal(true);
    expect(env.get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath).to.equal('metadata.name');
    expect(env.get('KV_ID')?.value).to.equal('$(POD_NAME)');
    const claim = sts.spec.volumeClaimTemplates.find((c: Doc) => c.metadata.name === 'data');
    expect(claim.spec.accessModes).to.deep.equal(['ReadWriteOnce']);
    expect(claim.spec.resources.requests.storage).to.be.a('string');
    const mount = container.volumeMounts.find((m: Doc) => m.name === 'data');
    expect(mount.mountPath).to.equal(env.get('KV_DATA')?.value);
  });

  it('advertises the pod\'s DNS name under the headless Service and finds the cluster through the first pods', () => {
    const ns = 'kvns';
    const e = podEnv('kv-1', ns, {});
    expect(e['KV_ADVERTISE']).to.equal(`kv-1.${sts.spec.serviceName}.${ns}.svc.cluster.local:7001`);
    expect(e['KV_SEEDS']?.split(',')).to.deep.equal([0, 1, 2].map((i) => `${sts.metadata.name}-${i}.${sts.spec.serviceName}.${ns}.svc.cluster.local:7001`));
    expect(e['KV_SEED_BOOTSTRAP']).to.equal('true');
    expect(e['KV_LISTEN']).to.equal(`0.0.0.0:${container.ports[0].containerPort}`);
    expect(env.has('KV_BOOTSTRAP'), 'no pod is told to bootstrap').to.equal(false);
    expect(env.has('KV_JOIN'), 'no addresses by hand').to.equal(false);
    // The seeds must run together to find each other.
    expect(sts.spec.podManagementPolicy).to.equal('Parallel');
  });

  it('sets only environment variables the node, the preStop hook or the security settings know', () => {
    const known = new Set([...Object.keys(DEFAULTS).map(envName), ...PRESTOP_ENV, ...SECURITY_ENV]);
    for (const name of env.keys()) if (name.startsWith('KV_')) expect(known.has(name), name).to.equal(true);
    const prestop = readFileSync(join(DEPLOY_DIR, 'prestop.mjs'), 'utf8');
    for (const name of PRESTOP_ENV) expect(prestop, name).to.include(`process.env.${name}`);
  });

  it('checks readiness on /health, liveness on the port, and waits for hints in a preStop hook within the grace period', () => {
    expect(container.readinessProbe.httpGet).to.deep.include({ path: '/health', port: 'http' });
    expect(container.livenessProbe.tcpSocket.port).to.equal('http');
    const cmd: string[] = container.lifecycle.preStop.exec.command;
    expect(cmd[0]).to.equal('node');
    expect(existsSync(join(ROOT_DIR, cmd[1] as string)), cmd[1]).to.equal(true);
    const waitMs = Number(/KV_PRESTOP_MAX_WAIT_MS \?\? ([0-9_]+)/.exec(readFileSync(join(DEPLOY_DIR, 'prestop.mjs'), 'utf8'))?.[1]?.replace(/_/g, ''));
    // preStop, then the node's shutdown bound (10 s), must fit before the kubelet's SIGKILL.
    expect(pod.terminationGracePeriodSeconds * 1000).to.be.at.least(waitMs + 10_000);
  });

  it('keeps replicas apart: never two on a host, spread across zones', () => {
    const anti = pod.affinity.podAntiAffinity;
    const required = anti.requiredDuringSchedulingIgnoredDuringExecution.map((t: Doc) => t.topologyKey);
    expect(required).to.include('kubernetes.io/hostname');
    const preferred = anti.preferredDuringSchedulingIgnoredDuringExecution.map((t: Doc) => t.podAffinityTerm.topologyKey);
    expect(preferred).to.include('topology.kubernetes.io/zone');
    for (const t of anti.requiredDuringSchedulingIgnoredDuringExecution) expect(selects(t.labelSelector.matchLabels)).to.equal(true);
    expect(pod.topologySpreadConstraints[0].topologyKey).to.equal('topology.kubernetes.io/zone');
  });

  it('has a headless peer Service that publishes pods before they are ready, and a client Service of ready pods', () => {
    expect(headless.spec.clusterIP).to.equal('None');
    expect(headless.spec.publishNotReadyAddresses).to.equal(true);
    expect(selects(headless.spec.selector)).to.equal(true);
    expect(client.spec.publishNotReadyAddresses ?? false).to.equal(false);
    expect(selects(client.spec.selector)).to.equal(true);
    for (const s of [headless, client]) expect(s.spec.ports[0].targetPort).to.equal(container.ports[0].name);
  });

  it('allows one pod down at a time (PodDisruptionBudget)', () => {
    const pdb = find('PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).to.equal(1);
    expect(selects(pdb.spec.selector.matchLabels)).to.equal(true);
  });

  it('takes the cluster secret, the tokens and TLS from Secrets that exist, with placeholders only', () => {
    const secrets = loadManifests().filter((m) => m.doc.kind === 'Secret').map((m) => m.doc);
    const byName = new Map(secrets.map((s) => [s.metadata.name, s]));
    expect([...byName.keys()].sort()).to.deep.equal(['kv-cluster-secret', 'kv-tls', 'kv-tokens']);
    const ref = env.get('KV_SECRET')?.valueFrom?.secretKeyRef;
    expect(byName.get(ref.name)?.stringData).to.have.property(ref.key);
    for (const v of pod.volumes.filter((x: Doc) => x.secret)) expect(byName.has(v.secret.secretName), v.secret.secretName).to.equal(true);
    expect(byName.get('kv-tls').type).to.equal('kubernetes.io/tls');
    // Nothing real is committed: every value says it must be replaced.
    for (const s of secrets) for (const [k, v] of Object.entries<string>(s.stringData)) expect(v, `${s.metadata.name}.${k}`).to.match(/REPLACE/);
  });

  it('is scraped by Prometheus: pod annotations and a ServiceMonitor on the client Service only', () => {
    const ann = sts.spec.template.metadata.annotations;
    expect(ann['prometheus.io/scrape']).to.equal('true');
    expect(Number(ann['prometheus.io/port'])).to.equal(container.ports[0].containerPort);
    expect(ann['prometheus.io/path']).to.equal('/metrics');
    const sm = find('ServiceMonitor');
    const picks = services.filter((s) => Object.entries<string>(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels?.[k] === v));
    expect(picks.map((s) => s.metadata.name)).to.deep.equal([client.metadata.name]);
    expect(sm.spec.endpoints[0]).to.deep.include({ port: 'http', path: '/metrics' });
  });

  it('builds the image from node:20-slim with a production install that has every package the runtime imports', () => {
    const docker = readFileSync(join(ROOT_DIR, 'Dockerfile'), 'utf8');
    expect(docker).to.match(/^FROM node:20-slim$/m);
    expect(docker).to.match(/npm ci --omit=dev/);
    expect(docker).to.match(/^ENTRYPOINT \["node", "bin\/kv\.js"\]$/m);
    for (const m of docker.matchAll(/^COPY (\S+)/gm)) expect(existsSync(join(ROOT_DIR, m[1] as string)), m[1]).to.equal(true);
    const pkg = parse(readFileSync(join(ROOT_DIR, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; overrides: Record<string, string> };
    expect(pkg.overrides['msgpackr-extract']).to.equal('3.0.4');
    const files = (dir: string): string[] => readdirSync(dir).flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? files(p) : /\.(ts|js|mjs)$/.test(f) && !f.endsWith('.d.ts') ? [p] : [];
    });
    const needed = new Set<string>();
    for (const f of [...files(join(ROOT_DIR, 'lib')), ...files(join(ROOT_DIR, 'bin')), join(DEPLOY_DIR, 'prestop.mjs')]) {
      for (const m of readFileSync(f, 'utf8').matchAll(/(?:\bfrom |import\(|resolve\(|pkg\()'((?:@[a-z0-9._-]+\/)?[a-z0-9_][a-z0-9._-]*(?:\/[^'\s]*)?|node:[a-z/_]+)'/g)) {
        const spec = m[1] as string;
        if (spec.startsWith('node:')) continue;
        needed.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0] as string);
      }
    }
    expect(needed.has('uplot'), 'the dashboard\'s chart library is found').to.equal(true);
    expect([...needed].filter((p) => !(p in pkg.dependencies)), 'imported at run time but not a production dependency').to.deep.equal([]);
  });
});
