/**
 * Seeded SWIM simulations (swim-scenarios.ts). SIM_SEEDS sets the seed count per
 * scenario; SEED=<n> replays one seed of every scenario.
 */
import { expect } from 'chai';
import { SCENARIOS, runScenario, type SeedViolation } from './swim-scenarios.ts';

const replay = process.env.SEED === undefined ? undefined : Number(process.env.SEED);
const seeds = Number(process.env.SIM_SEEDS ?? 20);
const seedList = replay !== undefined ? [replay] : Array.from({ length: seeds }, (_, i) => i + 1);

function runAll(name: string): SeedViolation[] {
  const scenario = SCENARIOS[name];
  if (scenario === undefined) throw new Error(`no scenario ${name}`);
  const out: SeedViolation[] = [];
  for (const seed of seedList) {
    const v = runScenario(name, scenario, seed);
    if (v !== undefined) {
      out.push(v);
      console.error(`swim sim ${name} failed on seed ${seed}: ${v.message}\n${v.trace}`);
    }
  }
  return out;
}

describe(`SWIM simulation (${seedList.length} seed(s) each)`, () => {
  const cases: Array<[string, string]> = [
    ['faultFree', 'a fault-free network never suspects or declares anyone dead'],
    ['stalledLoop', 'an event-loop stall of 2 s never gets anyone declared dead, nor anyone but the stalled node suspected'],
    ['crashDetected', 'a crashed member is declared dead by every live node within the computed bound'],
    ['crashKilled', 'a killed member (connections closed) is declared dead by every live node within the fast bound'],
    ['suspectRefutes', 'a suspected member that is alive refutes and stays alive everywhere'],
    ['partitionHeals', 'after a partition heals all views converge within the computed bound'],
    ['crashRestart', 'a crashed member that restarts without its incarnation becomes alive everywhere'],
    ['epochSpreads', 'a newer epoch reaches every node within the computed bound'],
    ['chaos', 'under drops, duplicates, partitions, crashes and stalls safety holds, and views converge once faults heal'],
  ];
  for (const [name, title] of cases) {
    it(title, () => {
      expect(runAll(name).map((v) => `${v.seed}: ${v.message}`)).to.deep.equal([]);
    });
  }
});
