/**
 * `npm run sim -- --seeds N [--start S] [--only raft|swim|merkle]`: run more seeds of
 * the deterministic simulations than `npm test` does. Prints seeds run and violations
 * per simulator (with each failing seed, replayable with SEED=<n> in the test files);
 * exits non-zero on any violation.
 */
import { parseArgs } from '../../lib/cli/args.ts';
import { runRaftSeeds } from './raft-sim.ts';
import { runSwimSeeds } from './swim-scenarios.ts';
import { runMerkleSeeds } from './merkle-sim.ts';
import { runPaxosSeeds } from './paxos-sim.ts';

const flags = parseArgs(process.argv.slice(2), new Set()).flags;
const seeds = Number(flags['seeds'] ?? 1000);
const startSeed = Number(flags['start'] ?? 1);
const only = typeof flags['only'] === 'string' ? flags['only'].split(',') : ['raft', 'swim', 'merkle'];
if (!Number.isInteger(seeds) || seeds < 1 || !Number.isInteger(startSeed)) {
  process.stderr.write('usage: npm run sim -- --seeds N [--start S] [--only raft,swim,merkle]\n');
  process.exit(2);
}

let failed = 0;
const report = (name: string, ran: number, bad: Array<{ seed: number }>, ms: number): void => {
  failed += bad.length;
  process.stdout.write(`${name.padEnd(7)} seeds ${ran}  violations ${bad.length}  (${(ms / 1000).toFixed(1)} s)${bad.length ? `  failing seeds: ${bad.slice(0, 20).map((b) => b.seed).join(', ')}` : ''}\n`);
};
for (const name of only) {
  const t0 = Date.now();
  if (name === 'raft') { const r = runRaftSeeds({ seeds, startSeed }); report(name, r.seeds, r.failures, Date.now() - t0); }
  else if (name === 'swim') { const r = runSwimSeeds({ seeds, startSeed }); report(name, r.seeds, r.violations, Date.now() - t0); }
  else if (name === 'merkle') { const r = runMerkleSeeds({ seeds, startSeed }); report(name, r.seeds, r.violations, Date.now() - t0); }
  else if (name === 'paxos') { const r = runPaxosSeeds({ seeds, startSeed }); report(name, r.seeds, r.violations, Date.now() - t0); }
  else { process.stderr.write(`unknown simulator ${name}\n`); process.exit(2); }
}
process.exitCode = failed > 0 ? 1 : 0;
