/**
 * Failure detection with real processes (DESIGN.md §6, gossip plane): five `kv node`
 * processes with the shipped SWIM defaults. kill -9 of one → every other node marks it
 * dead; a restart → alive again everywhere; a 2 s SIGSTOP of one → nobody else is
 * suspected by anyone (Lifeguard: the paused node does not blame others when it wakes)
 * and it ends alive everywhere; SIGSTOP until every other node has declared the paused
 * node dead, then SIGCONT → it refutes with a higher incarnation and is alive again
 * everywhere. Throughout, liveness never touches ownership: every view seen carries the
 * epoch and ring checksum of the start. Timings (how fast, and that a 2 s pause is
 * never declared dead) are measured in bench/failure-detection.ts, never asserted here.
 *
 * Wall time: about 30-50 s on a quiet 2-core machine (mostly starting five nodes).
 */
import { expect } from 'chai';
import { TestCluster, type ClusterView } from '../helpers/cluster.ts';
import { pollUntil } from '../helpers/poll.ts';

/** A paused peer must not hang a poll: every HTTP call here gives up after this. */
const HTTP_TIMEOUT_MS = 2000;
/** Generous for loaded CI machines: a kill takes ~2.5 s, a silent failure at most ~20 s at the defaults. */
const LIVENESS_DEADLINE_MS = 40_000;
/** The pause the failure detector must ride out (issue 14). */
const SHORT_PAUSE_MS = 2000;

type Liveness = 'alive' | 'suspect' | 'dead';

describe('liveness: SWIM failure detection (5 real processes)', function () {
  this.timeout(90_000);
  let c: TestCluster;
  let baseline: { epoch: number; ringChecksum: string };
  /** Every view any poll saw whose epoch or ring differed from the baseline. */
  const ownershipChanges: string[] = [];
  /** Nodes not to ask: killed or paused (a stopped process would hang a request). */
  const away = new Set<string>();

  async function view(id: string): Promise<ClusterView> {
    const res = await fetch(`http://${c.addr(id)}/cluster`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`/cluster on ${id}: ${res.status}`);
    const v = (await res.json()) as ClusterView;
    if (v.epoch !== baseline.epoch || v.ringChecksum !== baseline.ringChecksum) {
      ownershipChanges.push(`${id}: epoch ${v.epoch} ring ${v.ringChecksum}`);
    }
    return v;
  }

  function memberOf(v: ClusterView, id: string): ClusterView['members'][number] {
    const m = v.members.find((x) => x.id === id);
    if (!m) throw new Error(`${v.id} does not list ${id}`);
    return m;
  }

  /** Polls until every node not away (and not `target`) reports `target` with `liveness`. */
  async function everyOtherSees(target: string, liveness: Liveness): Promise<ClusterView[]> {
    return pollUntil(async () => {
      const ids = c.running().filter((id) => id !== target && !away.has(id));
      const views = await Promise.all(ids.map((id) => view(id)));
      return views.every((v) => memberOf(v, target).liveness === liveness) ? views : undefined;
    }, { timeoutMs: LIVENESS_DEADLINE_MS, intervalMs: 100, what: `every other node to see ${target} ${liveness}` });
  }

  async function metrics(id: string): Promise<string> {
    const res = await fetch(`http://${c.addr(id)}/metrics`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    expect(res.status).to.equal(200);
    return res.text();
  }

  /** The value of one Prometheus sample line, e.g. sample(text, 'kv_swim_members{liveness="dead"}'). */
  function sample(text: string, series: string): number | undefined {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  }

  /** Liveness changes node `id` logged after byte `from` of its output, as [member, liveness]. */
  function livenessLog(id: string, from: number): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const line of (c.nodes.get(id)?.output() ?? '').slice(from).split('\n')) {
      if (!line.includes('member liveness changed')) continue;
      const rec = JSON.parse(line) as { member: string; liveness: string };
      out.push([rec.member, rec.liveness]);
    }
    return out;
  }

  before(async () => {
    // Info level for the 'member liveness changed' lines.
    c = await TestCluster.start(5, { env: { KV_LOG_LEVEL: 'info' } });
    const views = await c.waitConverged(5);
    const v0 = views[0] as ClusterView;
    baseline = { epoch: v0.epoch, ringChecksum: v0.ringChecksum };
    // Members start alive in every view, but wait until every pair has actually spoken
    // so that a later "alive" is news from the node and not the initial assumption.
    await pollUntil(async () => {
      const vs = await Promise.all(c.running().map((id) => view(id)));
      return vs.every((v) => v.members.every((m) => m.id === v.id || (m.liveness === 'alive' && typeof (m as { lastHeardMs?: unknown }).lastHeardMs === 'number')));
    }, { timeoutMs: LIVENESS_DEADLINE_MS, what: 'every node to have heard from every other' });
  });

  after(async () => {
    await c?.stop();
  });

  it('marks a kill -9\'d node dead on every other node, and /metrics counts it', async () => {
    await c.kill('n3');
    away.add('n3');
    const views = await everyOtherSees('n3', 'dead');
    expect(views).to.have.length(4);
    for (const v of views) {
      expect(v.members.filter((m) => m.liveness === 'dead').map((m) => m.id)).to.deep.equal(['n3']);
      // Liveness is not membership: the dead node still owns its partitions.
      expect(memberOf(v, 'n3').state).to.equal('normal');
    }
    const text = await metrics('n1');
    expect(text).to.match(/^# TYPE kv_swim_members gauge$/m);
    expect(text).to.match(/^# TYPE kv_swim_events_total counter$/m);
    expect(sample(text, 'kv_swim_members{liveness="dead"}')).to.equal(1);
    expect(sample(text, 'kv_swim_members{liveness="alive"}')).to.equal(4); // self included
    expect(sample(text, 'kv_swim_events_total{type="dead"}')).to.be.at.least(1);
  });

  it('brings a restarted node back alive on every other node', async () => {
    await c.restart('n3');
    away.delete('n3');
    const views = await everyOtherSees('n3', 'alive');
    for (const v of views) expect(v.members.every((m) => m.liveness === 'alive'), `${v.id} sees all alive`).to.equal(true);
    // The restarted node's own view settles too (it starts believing everyone alive,
    // so check it has really heard from each of them since).
    await pollUntil(async () => {
      const v = await view('n3');
      return v.members.every((m) => m.id === 'n3' || (m.liveness === 'alive' && typeof (m as { lastHeardMs?: unknown }).lastHeardMs === 'number'));
    }, { timeoutMs: LIVENESS_DEADLINE_MS, what: 'n3 to have heard from every other node' });
    const text = await metrics('n1');
    expect(sample(text, 'kv_swim_members{liveness="alive"}')).to.equal(5);
    expect(sample(text, 'kv_swim_events_total{type="alive"}')).to.be.at.least(1);
  });

  it('gets nobody but a node paused for 2 s suspected, and has it alive everywhere afterwards', async () => {
    const ids = c.running();
    const marks = new Map(ids.map((id) => [id, c.nodes.get(id)?.output().length ?? 0]));
    c.signal('n2', 'SIGSTOP');
    away.add('n2');
    try {
      await new Promise((r) => setTimeout(r, SHORT_PAUSE_MS));
    } finally {
      c.signal('n2', 'SIGCONT');
      away.delete('n2');
    }
    const views = await everyOtherSees('n2', 'alive');
    for (const v of views) expect(v.members.every((m) => m.liveness === 'alive'), `${v.id} sees all alive`).to.equal(true);
    // n2's own view: it must not have accused anyone for its own pause.
    const own = await view('n2');
    expect(own.members.filter((m) => m.liveness !== 'alive').map((m) => m.id)).to.deep.equal([]);
    for (const id of ids) {
      const accused = livenessLog(id, marks.get(id) ?? 0).filter(([member, liveness]) => member !== 'n2' && liveness !== 'alive');
      expect(accused, `liveness changes of others logged by ${id}`).to.deep.equal([]);
    }
  });

  it('lets a node paused past its suspicion timeout refute on SIGCONT and come back alive', async () => {
    const before = memberOf(await view('n1'), 'n4').incarnation;
    c.signal('n4', 'SIGSTOP');
    away.add('n4');
    try {
      // Dead everywhere means every other node's suspicion timer ran out: the pause
      // lasted longer than the suspicion timeout, however long that was on this machine.
      await everyOtherSees('n4', 'dead');
    } finally {
      c.signal('n4', 'SIGCONT');
    }
    away.delete('n4');
    const views = await everyOtherSees('n4', 'alive');
    for (const v of views) {
      // Only a refutation (a higher incarnation) can override "dead" (SWIM §4.2).
      expect(memberOf(v, 'n4').incarnation, `n4's incarnation in ${v.id}'s view`).to.be.greaterThan(before);
    }
    expect((await view('n4')).members.map((m) => m.id).sort()).to.deep.equal(['n1', 'n2', 'n3', 'n4', 'n5']);
  });

  it('never changed the epoch or the ring through kill, restart, pause and resume', async () => {
    const views = await c.waitConverged(5);
    for (const v of views) {
      expect(v.epoch).to.equal(baseline.epoch);
      expect(v.ringChecksum).to.equal(baseline.ringChecksum);
    }
    expect(ownershipChanges).to.deep.equal([]);
  });
});
