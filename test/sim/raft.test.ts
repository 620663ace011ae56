/**
 * Raft under the deterministic simulator. Every scenario runs many seeds; the
 * simulator checks election safety, leader append-only, log matching, leader
 * completeness, state-machine safety and commit monotonicity after every event.
 * Seeds per test: SIM_SEEDS (default below); replay one: SEED=<n>.
 */
import { expect } from 'chai';
import { RaftSim, UNRELIABLE_NET, forSeeds, runRandomSeed, seedList } from './raft-sim.ts';

const SCENARIO_SEEDS = 20;
/** With 11 scenarios × 20 seeds this makes npm test run over 2,000 seeds in total. */
const RANDOM_SEEDS = 1800;

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `n${i + 1}`);

function electLeader(sim: RaftSim, maxMs = 3000): string {
  expect(sim.runUntil(() => sim.leader() !== null, maxMs), `seed=${sim.seed}: no leader elected`).to.equal(true);
  return sim.leader() as string;
}

/** Proposes on the current leader until one value is applied by all of `members`. */
function commitOne(sim: RaftSim, members: string[], maxMs = 5000): string {
  let value = null as string | null;
  let index = null as number | null;
  const ok = sim.runUntil(() => {
    if (value !== null && members.every((id) => sim.isUp(id) && sim.hasApplied(id, value as string))) return true;
    const leader = sim.leader();
    if (leader !== null && (index === null || sim.raft(leader).lastIndex < index)) {
      index = sim.propose(leader);
      if (index !== null) value = sim.lastValue;
    }
    return false;
  }, maxMs);
  expect(ok, `seed=${sim.seed}: value ${String(value)} not applied on ${members.join(',')}`).to.equal(true);
  return value as string;
}

describe('raft simulation', function () {
  this.timeout(120_000);

  it('elects exactly one stable leader at start-up', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const sim = new RaftSim({ seed, ids: ids(seed % 2 === 0 ? 3 : 5) });
      const leader = electLeader(sim, 2000);
      const term = sim.raft(leader).term;
      sim.runFor(2000);
      // A healthy cluster keeps its leader: no spurious elections.
      expect(sim.leader()).to.equal(leader);
      expect(sim.raft(leader).term).to.equal(term);
      for (const id of sim.upIds()) expect(sim.raft(id).leader, id).to.equal(leader);
    });
  });

  it('re-elects a leader after the leader crashes, and the old one rejoins as follower', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(seed % 2 === 0 ? 3 : 5);
      const sim = new RaftSim({ seed, ids: all });
      const old = electLeader(sim);
      const oldTerm = sim.raft(old).term;
      commitOne(sim, all);
      sim.crash(old);
      const next = electLeader(sim);
      expect(next).to.not.equal(old);
      expect(sim.raft(next).term).to.be.greaterThan(oldTerm);
      const value = commitOne(sim, all.filter((id) => id !== old));
      sim.restart(old);
      const newTerm = sim.raft(next).term;
      expect(sim.runUntil(() => sim.hasApplied(old, value), 3000)).to.equal(true);
      expect(sim.raft(old).role).to.equal('follower');
      expect(sim.leader()).to.equal(next);
      expect(sim.raft(next).term).to.equal(newTerm);
    });
  });

  it('commits nothing without a majority, and the minority entries vanish on healing', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(5);
      const sim = new RaftSim({ seed, ids: all });
      const leader = electLeader(sim);
      commitOne(sim, all);
      const buddy = all.find((id) => id !== leader) as string;
      const majority = all.filter((id) => id !== leader && id !== buddy);
      sim.partition([leader, buddy], majority);
      const commitBefore = sim.raft(leader).commitIndex;
      const lost: string[] = [];
      for (let i = 0; i < 5; i++) {
        if (sim.propose(leader) !== null) lost.push(sim.lastValue);
      }
      expect(lost).to.have.length(5);
      sim.runFor(2000);
      expect(sim.raft(leader).commitIndex).to.equal(commitBefore);
      expect(sim.raft(buddy).commitIndex).to.be.at.most(commitBefore);
      // CheckQuorum: the cut-off leader stepped down.
      expect(sim.raft(leader).role).to.not.equal('leader');
      commitOne(sim, majority);
      sim.heal();
      const after = commitOne(sim, all);
      for (const id of all) {
        expect(sim.hasApplied(id, after)).to.equal(true);
        for (const v of lost) expect(sim.hasApplied(id, v), `${id} applied minority value ${v}`).to.equal(false);
      }
    });
  });

  it('a partitioned leader steps down, and on rejoining follows the new leader', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(3);
      const sim = new RaftSim({ seed, ids: all });
      const old = electLeader(sim);
      commitOne(sim, all);
      sim.isolate(old);
      expect(sim.propose(old)).to.not.equal(null);
      const stale = sim.lastValue;
      const others = all.filter((id) => id !== old);
      expect(sim.runUntil(() => sim.leader() !== null && sim.leader() !== old, 3000)).to.equal(true);
      const next = sim.leader() as string;
      commitOne(sim, others);
      sim.runFor(500);
      // CheckQuorum deposed it; cut off, it may only try pre-votes, which cannot succeed.
      expect(sim.raft(old).role).to.be.oneOf(['follower', 'precandidate']);
      sim.heal();
      const value = commitOne(sim, all);
      expect(sim.leader()).to.equal(next);
      expect(sim.hasApplied(old, value)).to.equal(true);
      for (const id of all) expect(sim.hasApplied(id, stale)).to.equal(false);
    });
  });

  it('PreVote: a rejoining partitioned follower does not depose the leader or raise the term', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(seed % 2 === 0 ? 3 : 5);
      const sim = new RaftSim({ seed, ids: all });
      const leader = electLeader(sim);
      const term = sim.raft(leader).term;
      expect(sim.runUntil(() => all.every((id) => sim.raft(id).leader === leader), 1000)).to.equal(true);
      const follower = all.find((id) => id !== leader) as string;
      sim.isolate(follower);
      sim.runFor(3000); // many election timeouts
      expect(sim.raft(follower).term).to.equal(term);
      sim.heal();
      commitOne(sim, all);
      sim.runFor(1000);
      expect(sim.leader()).to.equal(leader);
      for (const id of all) expect(sim.raft(id).term).to.equal(term);
    });
  });

  it('a follower far behind catches up from the log', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(3);
      const sim = new RaftSim({ seed, ids: all, maxEntriesPerAppend: 8 });
      const leader = electLeader(sim);
      const lagger = all.find((id) => id !== leader) as string;
      sim.crash(lagger);
      for (let i = 0; i < 150; i++) {
        sim.propose();
        sim.runFor(2);
      }
      const last = commitOne(sim, all.filter((id) => id !== lagger));
      sim.restart(lagger);
      expect(sim.runUntil(() => sim.hasApplied(lagger, last), 5000)).to.equal(true);
      expect(sim.node(lagger).snapshotsInstalled).to.equal(0);
      expect(sim.appliedValues(lagger)).to.deep.equal(sim.appliedValues(leader).slice(0, sim.appliedValues(lagger).length));
    });
  });

  it('a follower behind the compacted log catches up through a snapshot', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(3);
      const sim = new RaftSim({ seed, ids: all, compactEvery: 20 });
      const leader = electLeader(sim);
      const lagger = all.find((id) => id !== leader) as string;
      commitOne(sim, all);
      sim.isolate(lagger);
      for (let i = 0; i < 100; i++) {
        sim.propose();
        sim.runFor(3);
      }
      const last = commitOne(sim, all.filter((id) => id !== lagger));
      expect(sim.raft(sim.leader() as string).snapshotIndex).to.be.greaterThan(sim.raft(lagger).lastIndex);
      sim.heal();
      expect(sim.runUntil(() => sim.hasApplied(lagger, last), 5000)).to.equal(true);
      expect(sim.node(lagger).snapshotsInstalled).to.be.greaterThan(0);
      const after = commitOne(sim, all);
      for (const id of all) expect(sim.hasApplied(id, after)).to.equal(true);
    });
  });

  it('figure 8 with an unreliable network: leaders crash often, no committed entry is lost', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(5);
      const sim = new RaftSim({ seed, ids: all, net: UNRELIABLE_NET, maxEntriesPerAppend: 1 });
      const rng = sim.rng;
      for (let iter = 0; iter < 150; iter++) {
        const leader = sim.leader();
        if (leader !== null) sim.propose(leader);
        sim.runFor(rng.int(10) < 1 ? rng.int(500) : rng.int(15));
        if (leader !== null && sim.isUp(leader) && rng.int(2) === 0) sim.crash(leader);
        if (sim.upIds().length < 3) {
          const down = all.filter((id) => !sim.isUp(id));
          sim.restart(down[rng.int(down.length)] as string);
        }
      }
      for (const id of all) sim.restart(id);
      sim.net = { ...sim.net, dropRate: 0, longDelayRate: 0 };
      const value = commitOne(sim, all, 10_000);
      for (const id of all) expect(sim.hasApplied(id, value)).to.equal(true);
    });
  });

  it('keeps committed entries across crashes of followers, the leader and all nodes', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(3);
      const sim = new RaftSim({ seed, ids: all, compactEvery: seed % 2 === 0 ? 5 : 0 });
      const committed: string[] = [];
      let leader = electLeader(sim);
      committed.push(commitOne(sim, all));
      for (const f of all.filter((id) => id !== leader)) sim.crash(f);
      sim.runFor(300);
      for (const f of all) sim.restart(f);
      committed.push(commitOne(sim, all));
      leader = electLeader(sim);
      sim.crash(leader);
      committed.push(commitOne(sim, all.filter((id) => id !== leader)));
      sim.restart(leader);
      committed.push(commitOne(sim, all));
      for (const id of all) sim.crash(id);
      sim.runFor(100);
      for (const id of all) sim.restart(id);
      committed.push(commitOne(sim, all));
      for (const id of all) {
        for (const v of committed) expect(sim.hasApplied(id, v), `${id} lost ${v}`).to.equal(true);
      }
    });
  });

  it('survives churn: random crashes, restarts and partitions while proposing', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(5);
      const sim = new RaftSim({ seed, ids: all, net: { dropRate: 0.05, maxDelayMs: 20 }, compactEvery: 10 });
      const rng = sim.rng;
      for (let iter = 0; iter < 80; iter++) {
        sim.propose();
        sim.runFor(rng.int(40));
        const r = rng.int(10);
        if (r === 0) sim.crash(all[rng.int(5)] as string);
        else if (r === 1) sim.restart(all[rng.int(5)] as string);
        else if (r === 2) sim.isolate(all[rng.int(5)] as string);
        else if (r === 3) sim.blockOneWay(all[rng.int(5)] as string, all[rng.int(5)] as string);
        else if (r === 4) sim.heal();
      }
      sim.heal();
      for (const id of all) sim.restart(id);
      const value = commitOne(sim, all, 10_000);
      for (const id of all) expect(sim.hasApplied(id, value)).to.equal(true);
    });
  });

  it('changes voters one at a time: add learner, promote, remove a voter, remove the leader', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(4);
      const sim = new RaftSim({ seed, ids: all, initial: { voters: ['n1'], learners: [] } });
      expect(electLeader(sim)).to.equal('n1');
      commitOne(sim, ['n1']);
      const change = (type: 'addVoter' | 'addLearner' | 'remove', id: string, members: string[]): void => {
        let index: number | null = null;
        const ok = sim.runUntil(() => {
          if (index === null) index = sim.confChange({ type, id });
          return index !== null && sim.allApplied(members, index);
        }, 5000);
        expect(ok, `seed=${seed}: ${type} ${id} not applied`).to.equal(true);
      };
      for (const id of ['n2', 'n3', 'n4']) {
        const members = all.slice(0, Number(id.slice(1)));
        change('addLearner', id, members);
        // Promote only once the learner has caught up, as the runtime does.
        const caughtUp = (): boolean => {
          const l = sim.leader();
          if (l === null) return false;
          const p = sim.raft(l).progress().find((x) => x.id === id);
          return p !== undefined && p.match >= sim.raft(l).commitIndex;
        };
        expect(sim.runUntil(caughtUp, 3000)).to.equal(true);
        change('addVoter', id, members);
      }
      for (const id of all) expect(sim.raft(id).config.voters.slice().sort()).to.deep.equal(all);
      change('remove', 'n2', ['n1', 'n3', 'n4']);
      const leader = sim.leader() as string;
      const rest = ['n1', 'n3', 'n4'].filter((id) => id !== leader);
      change('remove', leader, rest);
      expect(sim.runUntil(() => sim.leader() !== null && sim.leader() !== leader, 3000)).to.equal(true);
      commitOne(sim, rest);
      for (const id of rest) expect(sim.raft(id).config.voters.slice().sort()).to.deep.equal(rest);
      const removedTerm = sim.raft(leader).term;
      sim.runFor(1000);
      // The removed leader stepped down and, no longer a voter, never campaigns again.
      expect(sim.raft(leader).role).to.equal('follower');
      expect(sim.raft(leader).term).to.equal(removedTerm);
    });
  });

  it('learners never vote, campaign or count toward commit', () => {
    forSeeds(seedList(SCENARIO_SEEDS), (seed) => {
      const all = ids(5);
      const sim = new RaftSim({ seed, ids: all, initial: { voters: ['n1', 'n2', 'n3'], learners: ['n4', 'n5'] }, net: { dropRate: 0.05 } });
      const leader = electLeader(sim);
      commitOne(sim, all);
      // Churn among voters: learners must stay learners throughout.
      for (let i = 0; i < 5; i++) {
        const l = sim.leader();
        if (l !== null) sim.crash(l);
        sim.runFor(400);
        for (const id of all) sim.restart(id);
        sim.runFor(200);
      }
      commitOne(sim, all);
      const voter = sim.leader() as string;
      expect(voter).to.be.oneOf(['n1', 'n2', 'n3']);
      // Two voters gone: the leader plus two learners are not a quorum.
      for (const v of ['n1', 'n2', 'n3'].filter((id) => id !== voter)) sim.crash(v);
      const commitBefore = sim.raft(voter).commitIndex;
      sim.propose(voter);
      sim.runFor(2000);
      expect(sim.raft(voter).commitIndex).to.equal(commitBefore);
      expect(sim.leader()).to.equal(null);
      for (const id of ['n4', 'n5']) {
        // 'follower' only before the configuration reached it.
        const roles = [...sim.node(id).everRoles];
        expect(roles, `${id} roles`).to.include('learner');
        expect(roles, `${id} roles`).to.not.include.oneOf(['precandidate', 'candidate', 'leader']);
      }
      expect(leader).to.be.oneOf(['n1', 'n2', 'n3']);
    });
  });

  it(`holds every invariant over random histories (${RANDOM_SEEDS} seeds by default)`, () => {
    const seeds = seedList(RANDOM_SEEDS, 10_001);
    let applied = 0;
    forSeeds(seeds, (seed) => {
      applied += runRandomSeed(seed).applied;
    });
    // Each history ends by committing a value on every member.
    expect(applied).to.be.at.least(seeds.length);
  });
});
