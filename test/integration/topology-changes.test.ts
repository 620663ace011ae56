/**
 * Concurrent topology change requests on real processes (issue: "two topology changes at
 * once make an empty node a replica"). Read repair and hinted handoff are OFF, so only
 * join/leave streaming, hand-offs and anti-entropy move data.
 *
 * - Two nodes start joining at the same moment: the leader admits one, the other waits
 *   (409 KV_TOPOLOGY_BUSY) and retries by itself until the first is normal.
 * - A decommission and a join at the same moment: one waits for the other.
 * - Throughout, a writer stores unique keys at w=2 and readers read acknowledged keys at r=2
 *   through every serving node: every read returns the acknowledged value; afterwards every
 *   acknowledged key reads back at r=2 through every node.
 */
import { expect } from 'chai';
import type { KvClient } from '../../lib/client/client.ts';
import { TestCluster } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';

const ARGS = [
  '--swim-probe-interval-ms', '200', '--swim-probe-timeout-ms', '100',
  '--partitions', '64', '--anti-entropy-interval-ms', '600000',
  '--read-repair', 'false', '--hinted-handoff', 'false',
];

/** Pacing of each writer and reader loop: load to check against, not load that starves a 2-core machine. */
const WRITE_GAP_MS = 80;
const READ_GAP_MS = 40;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Traffic {
  readonly acked = new Map<string, string>();
  readonly wrong: string[] = [];
  readonly errors: string[] = [];
  reads = 0;
  private stopped = false;
  private seq = 0;
  private readonly done: Promise<unknown>;

  constructor(private readonly clients: () => KvClient[]) {
    this.done = Promise.all([...Array.from({ length: 4 }, () => this.writer()), ...Array.from({ length: 4 }, () => this.reader())]);
  }

  private pick(): KvClient {
    const cs = this.clients();
    return cs[Math.floor(Math.random() * cs.length)] as KvClient;
  }

  private async writer(): Promise<void> {
    while (!this.stopped) {
      const key = `tc-${this.seq++}`;
      try {
        const { version } = await this.pick().put(key, `v-${key}`, { w: 2 });
        this.acked.set(key, version);
      } catch {
        // A failed or unknown write is not acknowledged: nothing to check.
      }
      await pause(WRITE_GAP_MS);
    }
  }

  private async reader(): Promise<void> {
    while (!this.stopped) {
      const keys = [...this.acked.keys()];
      if (keys.length === 0) { await pause(READ_GAP_MS); continue; }
      const key = keys[Math.floor(Math.random() * keys.length)] as string;
      const version = this.acked.get(key) as string;
      try {
        const got = await this.pick().get(key, { r: 2 });
        this.reads++;
        if (got?.value.toString() !== `v-${key}` || got.version < version) this.wrong.push(`${key}: ${got ? got.version : 'not found'} (acked ${version})`);
      } catch (err) {
        this.errors.push(`${key}: ${(err as Error).message}`);
      }
      await pause(READ_GAP_MS);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

async function states(c: TestCluster, via: string): Promise<Record<string, string>> {
  const v = await c.view(via);
  return Object.fromEntries(v.members.map((m) => [m.id, m.state]));
}

describe('topology changes requested at the same time (real processes, read repair and hints off)', function () {
  this.timeout(240_000);
  let c: TestCluster;
  let traffic: Traffic | undefined;
  const serving = new Set<string>();

  before(async () => {
    c = await TestCluster.start(3, { args: ARGS });
    for (const id of ['n1', 'n2', 'n3']) serving.add(id);
    const clients = new Map<string, KvClient>();
    traffic = new Traffic(() => [...serving].map((id) => {
      let cl = clients.get(id);
      if (!cl) clients.set(id, (cl = c.client([id])));
      return cl;
    }));
    await pollUntil(() => (traffic?.acked.size ?? 0) >= 300, { what: 'some acknowledged writes', timeoutMs: 60_000 });
  });

  afterEach(function () {
    if (this.currentTest?.state !== 'failed') return;
    for (const [id, p] of c.nodes) process.stdout.write(`--- ${id} ---\n${p.output().slice(-4000)}\n`);
  });

  after(async () => {
    await traffic?.stop();
    await c?.stop();
  });

  it('admits one of two joins started together, lets the other wait, and ends with both normal', async () => {
    await Promise.all([c.add('n4', { healthyTimeoutMs: 180_000 }), c.add('n5', { healthyTimeoutMs: 180_000 })]);
    serving.add('n4');
    serving.add('n5');
    await pollUntil(async () => {
      const s = await states(c, 'n1');
      return s['n4'] === 'normal' && s['n5'] === 'normal';
    }, { what: 'n4 and n5 normal', timeoutMs: 120_000 });
    expect(traffic?.wrong, 'reads that missed an acknowledged write').to.deep.equal([]);
    expect(traffic?.errors, 'failed reads').to.deep.equal([]);
    const log = [c.nodes.get('n4')?.output() ?? '', c.nodes.get('n5')?.output() ?? ''].join('\n');
    expect(log, 'one joiner was told to wait').to.include('KV_TOPOLOGY_BUSY');
  });

  it('refuses a decommission with 409 KV_TOPOLOGY_BUSY while a join is in progress, and runs one after the other', async () => {
    const joining = c.add('n6', { healthyTimeoutMs: 180_000 });
    // n6 is admitted (joining) or still waiting; a decommission now must not overlap it.
    await pollUntil(async () => (await states(c, 'n1'))['n6'] === 'joining', { what: 'n6 joining', timeoutMs: 60_000 });
    const res = await fetch(`http://${c.addr('n1')}/cluster/decommission`, { method: 'POST', body: JSON.stringify({ id: 'n2' }) });
    const busy = await res.json() as { error?: { code: string; inProgress?: { id: string; state: string }[] } };
    await joining;
    if (res.status === 409) {
      expect(busy.error?.code).to.equal('KV_TOPOLOGY_BUSY');
      expect(busy.error?.inProgress).to.deep.include({ id: 'n6', state: 'joining' });
      await pollUntil(async () => (await states(c, 'n1'))['n6'] === 'normal', { what: 'n6 normal', timeoutMs: 120_000 });
    } else {
      // n6 finished streaming first (a small cluster streams fast): then the decommission was admitted.
      expect(res.status, JSON.stringify(busy)).to.equal(200);
    }
    serving.add('n6');
    await pollUntil(async () => {
      const r = await fetch(`http://${c.addr('n1')}/cluster/decommission`, { method: 'POST', body: JSON.stringify({ id: 'n2' }) });
      return r.status === 200;
    }, { what: 'decommission of n2 admitted', timeoutMs: 60_000 });
    serving.delete('n2');
    await pollUntil(async () => (await states(c, 'n1'))['n2'] === undefined, { what: 'n2 removed', timeoutMs: 120_000 });
    expect(traffic?.wrong, 'reads that missed an acknowledged write').to.deep.equal([]);
    expect(traffic?.errors, 'failed reads').to.deep.equal([]);
  });

  it('reads every acknowledged write back at r=2 through every remaining node', async () => {
    await traffic?.stop();
    const acked = [...(traffic?.acked ?? new Map<string, string>())];
    expect(acked.length).to.be.greaterThan(300);
    expect(traffic?.reads, 'reads checked during the changes').to.be.greaterThan(100);
    const wrong: string[] = [];
    for (const id of [...serving]) {
      const cl = c.client([id]);
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < acked.length) {
          const [key, version] = acked[next++] as [string, string];
          const got = await cl.get(key, { r: 2 });
          if (got?.value.toString() !== `v-${key}` || got.version < version) wrong.push(`${key} through ${id}: ${got ? got.version : 'not found'} (acked ${version})`);
        }
      }));
    }
    expect(wrong, 'acknowledged writes that do not read back').to.deep.equal([]);
  });
});
