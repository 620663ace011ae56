// Kubernetes preStop hook of the kv StatefulSet (deploy/statefulset.yaml): waits until this
// node holds no pending hints (writes it keeps for replicas that were down), or until a
// bound, then returns so SIGTERM can stop the node. Always exits 0: a preStop hook that
// fails only delays the stop, and the hints are on the volume anyway.
//
// Environment (all optional):
//   KV_PRESTOP_URL          metrics URL of this node   (default http://127.0.0.1:7001/metrics)
//   KV_PRESTOP_TOKEN_FILE   file with a read token     (default none: /metrics open or loopback)
//   KV_PRESTOP_MAX_WAIT_MS  the bound                  (default 30000, within terminationGracePeriodSeconds)
import { readFileSync } from 'node:fs';

const url = process.env.KV_PRESTOP_URL ?? 'http://127.0.0.1:7001/metrics';
const maxWaitMs = Number(process.env.KV_PRESTOP_MAX_WAIT_MS ?? 30_000);
const POLL_MS = 500;
let token = '';
try {
  if (process.env.KV_PRESTOP_TOKEN_FILE) token = readFileSync(process.env.KV_PRESTOP_TOKEN_FILE, 'utf8').trim();
} catch {
  // No token file: ask without one.
}

async function pendingHints() {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  const line = (await res.text()).split('\n').find((l) => l.startsWith('kv_hints_pending '));
  // A node with hinted handoff off has no such metric: nothing to wait for.
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

const started = Date.now();
for (;;) {
  let pending;
  try {
    pending = await pendingHints();
  } catch (err) {
    console.log(`prestop: cannot read hints (${err.message}); not waiting`);
    break;
  }
  if (pending === 0) {
    console.log(`prestop: no hints pending after ${Date.now() - started} ms`);
    break;
  }
  if (Date.now() - started >= maxWaitMs) {
    console.log(`prestop: ${pending} hints still pending after ${maxWaitMs} ms; stopping anyway (they stay on the volume)`);
    break;
  }
  await new Promise((r) => setTimeout(r, POLL_MS));
}
process.exit(0);
