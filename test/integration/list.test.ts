/**
 * Listing on real processes: a 3-node cluster holds 50,000 acknowledged keys under
 * `npm run test:full`, 12,000 in `npm test` (plus deleted
 * and expired ones that must not be listed); a 4th node starts joining, and the listing runs
 * page by page while it streams and becomes a normal member, so some pages are served at
 * the old epoch and the rest at the new one, through different coordinators. Every
 * acknowledged key is listed exactly once across the pages, nothing else is.
 */
import { expect } from 'chai';
import { KvClient } from '../../lib/client/client.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { pool } from '../helpers/pool.ts';
import { count, testSize } from '../helpers/scale.ts';

const KEYS = testSize(50_000, 12_000);
const DELETED = 500;
const ARGS = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100', '--partitions', '256'];

describe('listing keys on real processes', function () {
  this.timeout(600_000);
  let c: TestCluster;
  let client: KvClient;

  before(async () => {
    c = await TestCluster.start(3, { args: ARGS });
    client = new KvClient({ nodes: c.addrs(), session: false, maxSockets: 64 });
  });

  after(async () => {
    c?.signal('n4', 'SIGCONT');
    client?.close();
    await c?.stop();
  });

  it('answers GET /kv pages with keys and versions, and refuses bad parameters', async () => {
    for (let i = 0; i < 5; i++) await client.put(`small/${i}`, 'v');
    const page = await client.list('small/', { limit: 2 });
    expect(page.keys.length).to.be.at.most(2);
    for (const k of page.keys) expect(k.version).to.match(/^[0-9a-f]{16}:n\d$/);
    for (const q of ['limit=0', 'limit=5000', 'cursor=%21', 'bogus=1', 'r=9']) {
      const res = await fetch(`http://${c.addr('n1')}/kv?${q}`);
      expect(res.status, q).to.equal(400);
    }
    const all = [];
    for await (const k of client.listAll('small/', { limit: 2 })) all.push(k.key);
    expect(all.sort()).to.deep.equal([0, 1, 2, 3, 4].map((i) => `small/${i}`));
  });

  it(`lists every acknowledged key of a ${count(KEYS)}-key cluster exactly once across pages while a node joins`, async () => {
    const value = Buffer.alloc(100, 7);
    const started = Date.now();
    const writeErrors = await pool(KEYS, 48, async (i) => { await client.put(`key/${i}`, value); });
    expect(writeErrors, String(writeErrors[0])).to.have.length(0);
    // Each deleted key is written, then deleted once the write was acknowledged; keys in parallel.
    const deleteErrors = await pool(DELETED, 16, async (i) => {
      await client.put(`key/gone-${i}`, value);
      await client.del(`key/gone-${i}`);
    });
    expect(deleteErrors, String(deleteErrors[0])).to.have.length(0);
    const ttlErrors = await pool(50, 16, async (i) => { await client.put(`key/brief-${i}`, value, { ttl: 1 }); });
    expect(ttlErrors, String(ttlErrors[0])).to.have.length(0);
    process.stdout.write(`      wrote ${KEYS} keys (+${DELETED} deleted, 50 expiring) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    const expiresBy = Date.now() + 1100;
    await pollUntil(() => Date.now() > expiresBy, { what: 'the 1 s TTLs to pass', timeoutMs: 5000 });

    // n4 starts joining; the listing begins once it is a (joining) member and runs while it streams.
    const joining = c.add('n4', { healthyTimeoutMs: 300_000 });
    await pollUntil(async () => (await c.view('n1')).members.some((m) => m.id === 'n4'), { what: 'n4 in the membership', timeoutMs: 120_000 });
    // Held mid-join for the first pages, so the listing surely starts while n4 is joining.
    c.signal('n4', 'SIGSTOP');
    let held = true;
    const states: string[] = [];
    const seen = new Map<string, number>();
    const coordinators = ['n1', 'n2', 'n3'];
    let cursor: string | undefined;
    let pages = 0;
    const listStarted = Date.now();
    do {
      const node = c.addr(coordinators[pages % coordinators.length] as string);
      const page = await pollUntil(async () => client.list('key/', { limit: 1000, node, ...(cursor === undefined ? {} : { cursor }) }),
        { what: `page ${pages + 1}`, timeoutMs: 60_000 });
      for (const k of page.keys) seen.set(k.key, (seen.get(k.key) ?? 0) + 1);
      cursor = page.cursor ?? undefined;
      pages++;
      const state = (await c.view('n1')).members.find((m) => m.id === 'n4')?.state ?? 'absent';
      if (states[states.length - 1] !== state) states.push(state);
      if (held && seen.size > KEYS / 4) {
        c.signal('n4', 'SIGCONT');
        held = false;
      }
      // Keep half the listing for after the join, so both epochs serve pages.
      if (seen.size > KEYS / 2 && state !== 'normal') {
        await pollUntil(async () => (await c.view('n1')).members.find((m) => m.id === 'n4')?.state === 'normal', { what: 'n4 normal', timeoutMs: 300_000 });
      }
    } while (cursor !== undefined);
    await joining;
    process.stdout.write(`      listed ${seen.size} keys in ${pages} pages in ${((Date.now() - listStarted) / 1000).toFixed(1)} s; n4 was ${states.join(' → ')} during the listing\n`);
    expect(states[0], 'the listing began while n4 was joining').to.equal('joining');
    expect(states[states.length - 1], 'and ended after it became normal').to.equal('normal');
    const twice = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
    expect(twice, 'keys listed twice').to.deep.equal([]);
    const extra = [...seen.keys()].filter((k) => !/^key\/\d+$/.test(k));
    expect(extra, 'deleted or expired keys listed').to.deep.equal([]);
    const missing: string[] = [];
    for (let i = 0; i < KEYS; i++) if (!seen.has(`key/${i}`)) missing.push(`key/${i}`);
    expect(missing.slice(0, 20), `${missing.length} acknowledged keys missing`).to.deep.equal([]);
  });
});
