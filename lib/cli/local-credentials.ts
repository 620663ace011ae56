/**
 * Credentials of a local cluster (`kv start`), made once in its data dir and reused:
 *
 *   <data>/tokens        hashed tokens (the nodes' --tokens-file)
 *   <data>/admin.token   an admin token, one line, mode 0600 (the CLI's default token)
 *   <data>/client.token  a read-write token, one line, mode 0600 (for applications, k6)
 *   <data>/tls/          with --tls: ca.pem + ca.key (the cluster CA), <id>.pem + <id>.key
 *
 * Certificates are made with Debian's `openssl` command rather than an npm library: it is
 * the tool operators already use to inspect and rotate certificates (README "Security"
 * shows the same commands), it adds no dependency tree to the database, and the files it
 * writes are plain PEM that any TLS stack reads. Keys are ECDSA P-256 (fast handshakes,
 * small certificates); node certificates carry SANs for localhost, 127.0.0.1 and the
 * node's own host, and both serverAuth and clientAuth (one certificate per node serves
 * its port and dials its peers, mutual TLS).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { KvError } from '../errors.ts';
import { appendTokenLine, newToken, parseTokensFile, tokenLine, hashToken, type Role } from '../api/tokens.ts';

export interface LocalCredentials {
  tokensFile: string;
  adminTokenFile: string;
  clientTokenFile: string;
  /** Files made now (printed once for the operator). */
  created: string[];
}

/** A token file's one line, made (mode 0600) if missing, and its hash listed in the tokens file. */
function ensureToken(file: string, role: Role, label: string, tokensFile: string, created: string[]): void {
  let token: string;
  if (existsSync(file)) {
    token = readFileSync(file, 'utf8').trim();
  } else {
    token = newToken();
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    created.push(file);
  }
  const hash = hashToken(token);
  const listed = existsSync(tokensFile) && parseTokensFile(readFileSync(tokensFile, 'utf8'), tokensFile)
    .some((e) => e.hash.equals(hash) && e.role === role);
  if (!listed) appendTokenLine(tokensFile, tokenLine(token, role, label));
}

export function ensureLocalTokens(dataDir: string): LocalCredentials {
  const created: string[] = [];
  const tokensFile = join(dataDir, 'tokens');
  const adminTokenFile = join(dataDir, 'admin.token');
  const clientTokenFile = join(dataDir, 'client.token');
  if (!existsSync(tokensFile)) created.push(tokensFile);
  ensureToken(adminTokenFile, 'admin', 'local-admin', tokensFile, created);
  ensureToken(clientTokenFile, 'write', 'local-client', tokensFile, created);
  return { tokensFile, adminTokenFile, clientTokenFile, created };
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new KvError('KV_CONFIG', 'TLS certificates need the `openssl` command (Debian: apt-get install openssl)');
    throw new KvError('KV_CONFIG', `openssl ${args[0]} failed: ${e.stderr?.toString().trim().slice(0, 400) ?? e.message}`, { cause: err });
  }
}

export interface CertFiles { cert: string; key: string }

/** A CA (10 years) in `dir`: <name>.pem and <name>.key. Kept if it exists. */
export function makeCa(dir: string, name = 'ca', subject = 'kv-cluster-ca'): CertFiles {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  if (existsSync(cert) && existsSync(key)) return { cert, key };
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '3650', '-subj', `/CN=${subject}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  chmodSync(key, 0o600);
  return { cert, key };
}

/** A node certificate signed by `ca` (about 2 years): <id>.pem and <id>.key in `dir`. Kept if it exists. */
export function makeNodeCert(dir: string, ca: CertFiles, id: string, hosts: readonly string[]): CertFiles {
  const cert = join(dir, `${id}.pem`);
  const key = join(dir, `${id}.key`);
  if (existsSync(cert) && existsSync(key)) return { cert, key };
  const csr = join(dir, `${id}.csr`);
  const ext = join(dir, `${id}.ext`);
  const names = new Set(['localhost', '127.0.0.1', ...hosts]);
  const san = [...names].map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${id}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '825', '-extfile', ext]);
  chmodSync(key, 0o600);
  return { cert, key };
}

/** The CA and one certificate per node of a local cluster, in <data>/tls. */
export function ensureLocalTls(dataDir: string, nodes: readonly { id: string; host: string }[]): { ca: string; nodes: Map<string, CertFiles> } {
  const dir = join(dataDir, 'tls');
  const ca = makeCa(dir);
  return { ca: ca.cert, nodes: new Map(nodes.map((n) => [n.id, makeNodeCert(dir, ca, n.id, [n.host])])) };
}

/**
 * What `kv start` adds to each node's command line: the tokens file always, and with `tls`
 * the node's certificate, key and the CA. Also the lines to print for the operator.
 */
export function localClusterArgs(dataDir: string, opts: { tls: boolean; nodes: readonly { id: string; host: string }[] }):
  { perNode: Map<string, string[]>; ca: string | undefined; notes: string[] } {
  const tokens = ensureLocalTokens(dataDir);
  const tls = opts.tls ? ensureLocalTls(dataDir, opts.nodes) : undefined;
  const perNode = new Map(opts.nodes.map((n) => {
    const c = tls?.nodes.get(n.id);
    return [n.id, ['--tokens-file', tokens.tokensFile, ...(c && tls ? ['--tls-cert', c.cert, '--tls-key', c.key, '--tls-ca', tls.ca] : [])]];
  }));
  const notes = [
    `admin token in ${tokens.adminTokenFile} (the kv CLI reads ./data/admin.token by itself), read-write token in ${tokens.clientTokenFile}`,
    ...(tls ? [`TLS on: cluster CA ${tls.ca} (clients: kv ... --ca ${tls.ca})`] : []),
    ...tokens.created.map((f) => `created ${f}`),
  ];
  return { perNode, ca: tls?.ca, notes };
}
