/**
 * Merkle anti-entropy simulation (see merkle-sim.ts for the invariants).
 *   SIM_SEEDS=<n>  seeds to run (default 400, ~4 s)
 *   SEED=<n>       replay one seed and print its problems
 */
import { expect } from 'chai';
import xxhash from 'xxhash-wasm';
import { runMerkleSeed, runMerkleSeeds } from './merkle-sim.ts';

const SEEDS_DEFAULT = 400;

function seedCount(): number {
  const raw = process.env.SIM_SEEDS;
  if (raw === undefined || raw === '') return SEEDS_DEFAULT;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`SIM_SEEDS must be a positive integer, got ${raw}`);
  return n;
}

function report(violations: ReadonlyArray<{ seed: number; problems: string[] }>): string {
  return violations.slice(0, 5)
    .map((v) => `seed ${v.seed} (replay: SEED=${v.seed} npx mocha test/sim/merkle.test.ts):\n  ${v.problems.slice(0, 5).join('\n  ')}`)
    .join('\n');
}

describe('sim: merkle anti-entropy', () => {
  const replay = process.env.SEED;

  if (replay !== undefined && replay !== '') {
    it(`replays seed ${replay}`, () => {
      const res = runMerkleSeed(Number(replay));
      for (const p of res.problems) console.log(`  seed ${replay}: ${p}`);
      expect(res.problems, `seed ${replay}`).to.deep.equal([]);
    });
    return;
  }

  it('converges every replica pair in one exchange, within the byte bound, in every seed', () => {
    const res = runMerkleSeeds({ seeds: seedCount() });
    expect(res.violations.length, report(res.violations)).to.equal(0);
  });

  it('stays within the bound on seeds that once broke it (1 key per message: chunk headers re-listed)', () => {
    for (const seed of [2009, 4234]) expect(runMerkleSeed(seed).problems, `seed ${seed}`).to.deep.equal([]);
  });

  it('holds with xxh64, the hash the node uses', async () => {
    const { h64 } = await xxhash();
    const res = runMerkleSeeds({ seeds: 40, startSeed: 100_000, hash: h64 });
    expect(res.violations.length, report(res.violations)).to.equal(0);
  });
});
