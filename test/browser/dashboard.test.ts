/**
 * The dashboard at /ui in real headless Chromium against a 3-node cluster of real
 * processes: it loads without console errors, shows every member, shows request counts
 * rising under load, and marks a kill -9'd node dead. Screenshots land in test-artifacts/.
 */
import { expect } from 'chai';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';
import { skipMissingBinary } from '../helpers/skip.ts';
import type { Page } from 'playwright-core';
import { chromiumMissing, launch, type Browser } from './browser.ts';

/** Fast failure detection, as the liveness tests use: a killed node is dead within a few seconds. */
const FAST_SWIM = ['--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100'];

/** Client load: `concurrency` loops of PUT then GET over every node until stopped. */
function startLoad(addrs: string[], concurrency = 6): { stop: () => Promise<void>; done: () => number } {
  let running = true;
  let done = 0;
  const loops = Array.from({ length: concurrency }, async (_, w) => {
    for (let i = 0; running; i++) {
      const addr = addrs[(w + i) % addrs.length] as string;
      const key = `ui-load-${w}-${i % 50}`;
      try {
        await fetch(`http://${addr}/kv/${key}`, { method: 'PUT', body: `v${i}`, signal: AbortSignal.timeout(5000) }).then((r) => r.arrayBuffer());
        await fetch(`http://${addr}/kv/${key}`, { signal: AbortSignal.timeout(5000) }).then((r) => r.arrayBuffer());
        done += 2;
      } catch (err) {
        // A killed node refuses connections: the load goes on through the others.
        const code = ((err as Error).cause as { code?: string } | undefined)?.code;
        if (code === 'ECONNREFUSED' && addrs.length > 1) addrs = addrs.filter((a) => a !== addr);
      }
    }
  });
  return { stop: async () => { running = false; await Promise.all(loops); }, done: () => done };
}

/** The token the page keeps for its tab (the test's types have no DOM, hence the cast). */
function sessionToken(page: Page): Promise<string | null> {
  return page.evaluate(() => (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem('kv.token'));
}

interface CardView { id: string; liveness: string; reachable: string; requests: number }

async function cards(b: Browser): Promise<CardView[]> {
  return b.page.$$eval('#map .card', (els) => els.map((e) => ({
    id: e.getAttribute('data-node') ?? '',
    liveness: e.getAttribute('data-liveness') ?? '',
    reachable: e.getAttribute('data-reachable') ?? '',
    requests: Number(e.getAttribute('data-requests') ?? 'NaN'),
  })));
}

describe('dashboard in headless Chromium (3 real nodes)', function () {
  this.timeout(180_000);
  let cluster: TestCluster | undefined;
  let browser: Browser | undefined;
  const missing = chromiumMissing();

  before(async function () {
    if (missing) return;
    cluster = await TestCluster.start(3, { args: FAST_SWIM });
    browser = await launch();
  });

  beforeEach(function () {
    if (missing) skipMissingBinary(this, 'chromium', missing);
  });

  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  it('loads without console errors and shows every member alive, with the Raft leader and epoch', async () => {
    const b = browser as Browser;
    const c = cluster as TestCluster;
    const views = await c.waitConverged(3);
    await b.page.goto(`http://${c.addr('n1')}/ui`);
    const shown = await pollUntil(async () => {
      const cs = await cards(b);
      return cs.length === 3 && cs.every((x) => x.liveness === 'alive' && x.reachable === 'true') ? cs : undefined;
    }, { timeoutMs: 30_000, what: 'three alive members on the page' });
    expect(shown.map((x) => x.id).sort()).to.deep.equal(['n1', 'n2', 'n3']);
    const leader = await b.page.getAttribute('#summary [data-leader]', 'data-leader');
    expect(leader).to.be.oneOf(['n1', 'n2', 'n3']);
    expect(await b.page.locator(`#map .card[data-node="${leader}"] .badge.leader`).count()).to.equal(1);
    const epoch = Number(await b.page.getAttribute('#summary [data-epoch]', 'data-epoch'));
    expect(epoch).to.be.at.least((views[0] as { epoch: number }).epoch);
    expect(await b.page.locator('#events li').count()).to.be.greaterThan(0);
    await b.screenshot('dashboard-3-nodes');
    expect(b.errors, b.errors.join('\n')).to.deep.equal([]);
  });

  it('shows request counts and rates rising under load on every node', async () => {
    const b = browser as Browser;
    const c = cluster as TestCluster;
    const before = new Map((await cards(b)).map((x) => [x.id, x.requests]));
    const load = startLoad(c.addrs());
    try {
      await pollUntil(async () => {
        const cs = await cards(b);
        return cs.length === 3 && cs.every((x) => x.requests > (before.get(x.id) ?? Infinity));
      }, { timeoutMs: 30_000, what: 'request counts rising on every card' });
      // The rate needs two samples inside the window, so it shows a poll or two later.
      const rate = await pollUntil(async () => {
        const text = await b.page.textContent('#ops tr.total td:nth-last-child(3)');
        const v = Number((text ?? '').replace(/,/g, ''));
        return v > 0 ? v : undefined;
      }, { timeoutMs: 30_000, what: 'a cluster request rate above zero in the operations table' });
      expect(rate).to.be.greaterThan(0);
      expect(load.done()).to.be.greaterThan(0);
      await b.screenshot('dashboard-under-load');
    } finally {
      await load.stop();
    }
    expect(b.errors, b.errors.join('\n')).to.deep.equal([]);
  });

  it('takes a token from the URL fragment, drops it from the address bar, keeps it for the tab and sends it as a bearer token', async () => {
    const b = browser as Browser;
    const c = cluster as TestCluster;
    const page = await b.context.newPage();
    try {
      const seen: { url: string; auth: string | undefined }[] = [];
      page.on('request', (r) => seen.push({ url: r.url(), auth: r.headers()['authorization'] }));
      await page.goto(`http://${c.addr('n1')}/ui#token=t0k3n-abc&x=1`);
      await pollUntil(() => seen.some((r) => r.url.endsWith('/cluster/stats') && r.auth === 'Bearer t0k3n-abc'),
        { timeoutMs: 20_000, what: 'a stats request with the bearer token' });
      expect(page.url()).to.not.include('t0k3n');
      expect(page.url()).to.match(/#x=1$/);
      expect(await sessionToken(page)).to.equal('t0k3n-abc');
      // The fragment never reaches the server: no request line carries it.
      expect(seen.filter((r) => r.url.includes('t0k3n'))).to.deep.equal([]);
    } finally {
      await page.close();
    }
  });

  it('asks for a token when the node answers 401 and polls on with the one typed in', async () => {
    const b = browser as Browser;
    const c = cluster as TestCluster;
    const page = await b.context.newPage();
    try {
      // This node runs open; the route below answers as a node with tokens on would (401 without a token).
      await page.route('**/cluster/stats', (route) => {
        const auth = route.request().headers()['authorization'];
        if (auth === 'Bearer typed-token') return route.continue();
        return route.fulfill({
          status: 401, contentType: 'application/json', headers: { 'www-authenticate': 'Bearer realm="kv"' },
          body: JSON.stringify({ error: { code: 'KV_UNAUTHORIZED', message: 'a bearer token is required' } }),
        });
      });
      await page.goto(`http://${c.addr('n2')}/ui`);
      await page.locator('#login').waitFor({ state: 'visible', timeout: 20_000 });
      expect(await page.textContent('#status')).to.equal('token needed');
      await page.fill('#token-input', 'typed-token');
      await page.click('#login button');
      await page.locator('#map .card').first().waitFor({ timeout: 20_000 });
      expect(await page.isHidden('#login')).to.equal(true);
      expect(await sessionToken(page)).to.equal('typed-token');
    } finally {
      await page.close();
    }
  });

  it('marks a kill -9\'d node dead, and lists its death in the event feed', async () => {
    const b = browser as Browser;
    const c = cluster as TestCluster;
    const load = startLoad(c.addrs());
    try {
      await c.kill('n3', 'SIGKILL');
      await pollUntil(async () => {
        const n3 = (await cards(b)).find((x) => x.id === 'n3');
        return n3?.liveness === 'dead' && n3.reachable === 'false';
      }, { timeoutMs: 60_000, what: 'n3 shown dead' });
      const feed = await b.page.$$eval('#events li', (els) => els.map((e) => e.textContent ?? ''));
      expect(feed.some((t) => /n3 .*→ dead/.test(t)), feed.join('\n')).to.equal(true);
      const others = (await cards(b)).filter((x) => x.id !== 'n3');
      expect(others.map((x) => x.liveness)).to.deep.equal(['alive', 'alive']);
      await b.screenshot('dashboard-node-killed');
    } finally {
      await load.stop();
    }
    expect(b.errors, b.errors.join('\n')).to.deep.equal([]);
  });
});
