/**
 * Compare-and-set by Paxos (lib/core/paxos) under the deterministic simulator. The
 * simulator checks agreement, validity, commit safety and honest outcomes after every
 * event, and linearizability of each history at the end (see paxos-sim.ts).
 * Seeds: SIM_SEEDS (default below); replay one: SEED=<n>.
 */
import { expect } from 'chai';
import { handleRequest } from '../../lib/core/paxos/acceptor.ts';
import type { AcceptorStep } from '../../lib/core/paxos/acceptor.ts';
import type { CasOutcome } from '../../lib/core/paxos/cas-operation.ts';
import {
  PaxosSim, PaxosSimViolation, RELIABLE_NET, forSeeds, randomOptions, runSeed, seedList,
  type HistoryOp, type SimOptions, type SimStats,
} from './paxos-sim.ts';
import { checkRegister, type CheckedOp } from './paxos-register-check.ts';

/** npm test runs at least this many random histories; `npm run sim -- --only paxos` runs more. */
const RANDOM_SEEDS = 2000;
const SCENARIO_SEEDS = 10;
/** Histories with plain writes mixed in (reported, not all linearizable). */
const MIXED_SEEDS = 200;
const ENC = new TextEncoder();

function calm(seed: number, over: Partial<SimOptions> = {}): SimOptions {
  return {
    seed, acceptors: 3, clients: 1, opsPerClient: 30, net: RELIABLE_NET, acceptorCrashRate: 0, clientCrashRate: 0,
    refuseRate: 0, persistMaxMs: 1, thinkMaxMs: 0, clockSkewMaxMs: 0, attemptTimeoutMs: 100, opTimeoutMs: 2000,
    plainClients: 0, ...over,
  };
}

/** Runs the clients to the end with no faults, then checks the history is linearizable. */
function runCalm(o: SimOptions): PaxosSim {
  const sim = new PaxosSim(o);
  sim.startClients();
  expect(sim.runUntil(() => sim.clientsDone, 60_000), `seed=${o.seed}: clients did not finish`).to.equal(true);
  const v = checkRegister(sim.checkedOps());
  expect(v.ok, `seed=${o.seed}: ${v.ok ? '' : v.reason}`).to.equal(true);
  return sim;
}

function mean(xs: number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function perOp(ops: HistoryOp[]): string {
  return `${mean(ops.map((h) => h.roundTrips)).toFixed(2)} round trips, ${mean(ops.map((h) => h.messages)).toFixed(1)} requests, ` +
    `${mean(ops.map((h) => h.attempts)).toFixed(2)} attempts per op`;
}

function outcomeOf(h: HistoryOp): CasOutcome {
  expect(h.outcome, `op ${h.id} has no outcome`).to.not.equal(null);
  return h.outcome as CasOutcome;
}

describe('paxos simulation', function () {
  this.timeout(300_000);

  it(`random histories keep agreement, validity and honest outcomes after every event, and are linearizable (${seedList(RANDOM_SEEDS, true).length} seeds)`, () => {
    const total: Record<string, number> = {};
    let events = 0;
    let fiveAcceptors = 0;
    forSeeds(seedList(RANDOM_SEEDS, true), (seed) => {
      const o = randomOptions(seed);
      if (o.acceptors === 5) fiveAcceptors++;
      const r = runSeed(o);
      events += r.stats.events;
      for (const [k, v] of Object.entries(r.stats.outcomes)) total[k] = (total[k] ?? 0) + v;
    });
    if (process.env['SEED'] === undefined) {
      // The runs are not vacuous: every kind of answer, and 5-acceptor clusters, occur.
      for (const k of ['ok', 'recovered', 'precondition', 'read', 'unknown', 'failed', 'crashed']) {
        expect(total[k] ?? 0, `no ${k} outcome in ${RANDOM_SEEDS} seeds`).to.be.greaterThan(0);
      }
      expect(fiveAcceptors).to.be.greaterThan(0);
      console.log(`      ${events} events; outcomes ${JSON.stringify(total)}`);
    }
  });

  it('replays the seeds that once failed', () => {
    // 14787: a crashed client's prepare, still in flight after healing, pre-empted the final write.
    forSeeds([14787], (seed) => { runSeed(randomOptions(seed)); });
  });

  it('uncontended: a write takes two round trips and 3N requests, a serial read or a failed condition one round trip and N', () => {
    for (const acceptors of [3, 5]) {
      // Ops spaced so each commit lands before the next prepare (see the next test otherwise).
      const sim = runCalm(calm(7, { acceptors, thinkMinMs: 10, thinkMaxMs: 20 }));
      const writes = sim.history.filter((h) => h.kind === 'cas' && outcomeOf(h).kind === 'ok');
      const looks = sim.history.filter((h) => h.kind === 'read' || (h.kind === 'cas' && outcomeOf(h).kind === 'precondition'));
      expect(writes.length).to.be.greaterThan(5);
      expect(looks.length).to.be.greaterThan(5);
      for (const h of writes) {
        expect(h.roundTrips, `op ${h.id}`).to.equal(2);
        expect(h.messages, `op ${h.id}: prepare, propose and commit to each replica`).to.equal(3 * acceptors);
      }
      for (const h of looks) {
        expect(h.roundTrips, `op ${h.id}`).to.equal(1);
        expect(h.messages, `op ${h.id}`).to.equal(acceptors);
      }
      console.log(`      N=${acceptors} uncontended writes: ${perOp(writes)}; serial reads and failed conditions: ${perOp(looks)}`);
    }
  });

  it('back to back: a prepare that overtakes the previous commit completes it without an extra round trip', () => {
    for (const acceptors of [3, 5]) {
      const writes: HistoryOp[] = [];
      forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
        const sim = runCalm(calm(seed, { acceptors }));
        writes.push(...sim.history.filter((h) => h.kind === 'cas' && outcomeOf(h).kind === 'ok'));
      });
      for (const h of writes) {
        expect(h.roundTrips, `op ${h.id}`).to.equal(2);
        expect(h.messages, `op ${h.id}`).to.be.within(3 * acceptors, 4 * acceptors);
      }
      const extra = writes.filter((h) => h.messages > 3 * acceptors).length;
      expect(extra, 'some prepares overtake the previous commit').to.be.greaterThan(0);
      console.log(`      N=${acceptors} back-to-back writes: ${perOp(writes)}; ${extra} of ${writes.length} also carried the previous commit`);
    }
  });

  it('contended: duelling proposers on one key stay agreed and linearizable; cost per op reported', () => {
    for (const clients of [2, 4, 8]) {
      const writes: HistoryOp[] = [];
      const stats: SimStats[] = [];
      forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
        const sim = runCalm(calm(seed, { clients, opsPerClient: 15 }));
        stats.push(sim.stats);
        writes.push(...sim.history.filter((h) => h.kind === 'cas'));
      });
      const by: Record<string, number> = {};
      for (const h of writes) by[outcomeOf(h).kind] = (by[outcomeOf(h).kind] ?? 0) + 1;
      // Everything decided: no operation hangs, contention ends in an answer.
      expect(writes.every((h) => h.respond !== null)).to.equal(true);
      expect(by['ok'] ?? 0).to.be.greaterThan(0);
      const oks = writes.filter((h) => outcomeOf(h).kind === 'ok');
      console.log(`      ${clients} clients, N=3, no think time: all CAS writes ${perOp(writes)}; the ok ones ${perOp(oks)}; ${JSON.stringify(by)}`);
    }
  });

  /**
   * c1 proposes with some of its messages dropped (`drop`) until `ready`, then crashes; a3
   * goes down, so c2's prepare quorum is {a1, a2}; then c2 writes unconditionally.
   */
  function interrupted(seed: number, drop: (to: string, type: string) => boolean, ready: (sim: PaxosSim) => boolean): { sim: PaxosSim; first: HistoryOp; second: HistoryOp } {
    const sim = new PaxosSim(calm(seed, { clients: 2, opsPerClient: 0 }));
    const c1 = sim.clients.get('c1');
    const c2 = sim.clients.get('c2');
    if (c1 === undefined || c2 === undefined) throw new Error('clients missing');
    sim.dropIf = (from, to, p) => from === 'c1' && p.kind === 'paxos' && drop(to, p.msg.type);
    const first = sim.startCas(c1, { condition: { kind: 'if-none-match' }, write: { value: ENC.encode('first') } });
    expect(sim.runUntil(() => ready(sim), 1000), `seed=${seed}: c1's proposal did not land`).to.equal(true);
    sim.crashClient('c1');
    sim.crashAcceptor('a3');
    sim.dropIf = null;
    const second = sim.startCas(c2, { condition: { kind: 'always' }, write: { value: ENC.encode('second') } });
    expect(sim.runUntil(() => second.respond !== null, 2000), `seed=${seed}: c2's write did not finish`).to.equal(true);
    expect(first.outcome, 'a client that crashed mid-round never learns its outcome').to.deep.equal({ kind: 'crashed' });
    expect(outcomeOf(second).kind).to.equal('ok');
    return { sim, first, second };
  }
  const hasAccepted = (sim: PaxosSim, id: string): boolean => (sim.acceptors.get(id)?.state.accepted ?? null) !== null;

  it('finishes an unfinished proposal seen on a minority by re-proposing it: one extra round trip', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      // c1's propose reaches a1 only: one of c2's two promises shows it.
      const { sim, first, second } = interrupted(seed, (to, type) => type === 'propose' && to !== 'a1', (s) => hasAccepted(s, 'a1'));
      expect(second.roundTrips, 'prepare, re-propose, propose').to.equal(3);
      // The crashed client's proposal was finished first: it is chosen, then the new one.
      expect(sim.chain.map((e) => e.version)).to.deep.equal([first.maybeVersions[0], (outcomeOf(second) as { version: string }).version]);
    });
  });

  it('commits at once a proposal a majority shows accepted at one rank: no extra round trip', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      // c1's proposal is accepted by a1 and a2 (chosen), but none of its commits goes out.
      const { sim, second } = interrupted(seed, (to, type) => type === 'commit' || (type === 'propose' && to === 'a3'),
        (s) => hasAccepted(s, 'a1') && hasAccepted(s, 'a2'));
      expect(second.roundTrips, 'prepare, propose: the commit of the old proposal rides along').to.equal(2);
      expect(sim.chain).to.have.length(2);
    });
  });

  it('an acknowledged CAS whose commits are still in flight: a plain quorum read can miss it, a serial read cannot', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const sim = new PaxosSim(calm(seed, { clients: 2, opsPerClient: 0, plainClients: 1 }));
      const [c1, c2, w1] = ['c1', 'c2', 'w1'].map((id) => sim.clients.get(id));
      if (c1 === undefined || c2 === undefined || w1 === undefined) throw new Error('clients missing');
      // The commit reaches a1 only (the others are slow or lost); the CAS is answered ok anyway.
      sim.dropIf = (from, to, p) => from === 'c1' && to !== 'a1' && p.kind === 'paxos' && p.msg.type === 'commit';
      const cas = sim.startCas(c1, { condition: { kind: 'if-none-match' }, write: { value: ENC.encode('v') } });
      expect(sim.runUntil(() => cas.respond !== null, 1000)).to.equal(true);
      const version = (outcomeOf(cas) as { version: string }).version;
      // A plain read answered by a2 and a3 sees nothing yet.
      sim.crashAcceptor('a1');
      const plain = sim.startPlain(w1, false);
      expect(sim.runUntil(() => plain.respond !== null, 1000)).to.equal(true);
      expect(plain.outcome).to.deep.equal({ kind: 'plain', record: null });
      // A serial read through the same two replicas finds the accepted proposal and finishes it.
      const serial = sim.startCas(c2, { condition: { kind: 'always' }, write: null });
      expect(sim.runUntil(() => serial.respond !== null, 1000)).to.equal(true);
      const o = outcomeOf(serial);
      expect(o.kind === 'read' && o.current.record?.version).to.equal(version);
    });
  });

  it('plain writes mixed with CAS: CAS stays agreed and sees every plain write acknowledged before it; linearizability is lost', () => {
    let nonLinearizable = 0;
    let plainReads = 0;
    let staleReads = 0;
    const seeds = seedList(MIXED_SEEDS, true);
    forSeeds(seeds, (seed) => {
      const o = { ...randomOptions(seed), plainClients: 1 + (seed % 2) };
      // The simulator still checks agreement (against a head or a newer plain record),
      // validity, commit safety, ok ⇒ chosen, failed ⇒ never chosen, and that a CAS saw
      // every plain write acknowledged before it began; only linearizability is reported.
      const sim = new PaxosSim(o);
      sim.startClients();
      sim.startFaults();
      sim.runUntil(() => sim.clientsDone, 20_000);
      sim.heal();
      sim.finish();
      if (!checkRegister(sim.checkedOps()).ok) nonLinearizable++;
      // A plain read that began after a CAS was acknowledged, yet returned an older record:
      // the commit is asynchronous, and plain reads do not finish Paxos rounds.
      const acked = sim.history.filter((h) => h.kind === 'cas' && h.outcome?.kind === 'ok');
      for (const r of sim.history) {
        if (r.kind !== 'plain-get' || r.outcome?.kind !== 'plain') continue;
        plainReads++;
        const got = r.outcome.record?.version ?? '';
        const before = acked.filter((h) => (h.respond ?? Infinity) < r.invoke).map((h) => (h.outcome as { version: string }).version);
        if (before.some((v) => v > got)) staleReads++;
      }
    });
    console.log(`      ${seeds.length} mixed histories: ${nonLinearizable} not linearizable; ${staleReads} of ${plainReads} plain reads older than a CAS acknowledged before them`);
    if (seeds.length >= 100) expect(nonLinearizable, 'the simulation should show what mixing costs').to.be.greaterThan(0);
  });

  it('catches a broken acceptor (the simulation can fail)', () => {
    // An acceptor that accepts every proposal, promised or not.
    const broken = (s: Parameters<typeof handleRequest>[0], m: Parameters<typeof handleRequest>[1], cur: Parameters<typeof handleRequest>[2]): AcceptorStep => {
      if (m.type !== 'propose') return handleRequest(s, m, cur);
      const r = handleRequest({ ...s, promised: null }, m, cur);
      return r.reply.type === 'accept' ? r : handleRequest(s, m, cur);
    };
    let caught: PaxosSimViolation | null = null;
    for (let seed = 1; seed <= 200 && caught === null; seed++) {
      try {
        runSeed({ ...randomOptions(seed), acceptorStep: broken });
      } catch (err) {
        if (!(err instanceof PaxosSimViolation)) throw err;
        caught = err;
      }
    }
    expect(caught, 'no violation found with an acceptor that ignores promises').to.not.equal(null);
    expect((caught as PaxosSimViolation).message).to.match(/^seed=\d+ /);
  });

  it('the register checker rejects a lost update and accepts its linearizable twin', () => {
    const put = (id: number, invoke: number, respond: number, version: string, base: string | null): CheckedOp => ({
      id, invoke, respond, describe: `put ${version}`,
      step: (s) => (s.version === base ? [{ version, live: true }] : []),
    });
    // Two sequential If-Match writes on the same base: the second cannot succeed after the first.
    expect(checkRegister([put(1, 1, 2, 'v1', null), put(2, 3, 4, 'v2', null)]).ok).to.equal(false);
    expect(checkRegister([put(1, 1, 2, 'v1', null), put(2, 3, 4, 'v2', 'v1')]).ok).to.equal(true);
    // Concurrent, they may go in either order.
    expect(checkRegister([put(1, 1, 4, 'v1', 'v2'), put(2, 2, 3, 'v2', null)]).ok).to.equal(true);
  });
});
