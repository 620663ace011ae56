import { expect } from 'chai';
import { compareVersions } from '../../lib/core/hlc.ts';
import { seededRng } from '../../lib/core/rng.ts';
import type { Rng } from '../../lib/core/rng.ts';
import { checkAll, linearizable, noLostWrites } from '../../lib/chaos/checkers.ts';
import type { Op } from '../../lib/chaos/history.ts';
import { checkRegisterHistory } from '../../lib/chaos/linearizability.ts';
import { simulateRegisterHistory } from '../../lib/chaos/register-sim.ts';
import type { SimulatedRun } from '../../lib/chaos/register-sim.ts';
import { formatReport } from '../../lib/chaos/report.ts';

const SEEDS = Number(process.env['SEEDS'] ?? 300);
const FIRST_SEED = Number(process.env['SEED'] ?? 1);

function simulate(seed: number): SimulatedRun {
  const rng: Rng = seededRng(seed);
  return simulateRegisterHistory(rng, {
    keys: 1 + rng.int(3),
    processes: 2 + rng.int(5),
    opsPerProcess: 5 + rng.int(20),
    maxDurationMs: 2 + rng.int(12),
  });
}

/**
 * A read that can be made stale for sure: some acked write `old` completed before
 * another acked write/delete began, which completed before the read began. Returning
 * `old`'s value then needs `old` to be linearized after a write that followed it.
 */
function staleCandidate(ops: readonly Op[]): { read: Op; old: Op } | undefined {
  const acked = ops.filter((o) => o.status === 'ok' && o.kind !== 'read');
  for (const read of ops) {
    if (read.kind !== 'read' || read.status !== 'ok') continue;
    for (const newer of acked) {
      if (newer.key !== read.key || !((newer.completeMs as number) < read.invokeMs)) continue;
      const old = acked.find((o) => o.key === read.key && o.kind === 'write' && o.value !== read.readValue &&
        (o.completeMs as number) < newer.invokeMs);
      if (old !== undefined) return { read, old };
    }
  }
  return undefined;
}

describe('chaos checkers on randomized histories of a correct register', () => {
  it(`accept every history a linearizable register produces (${SEEDS} seeds from ${FIRST_SEED})`, () => {
    let unknownOps = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const run = simulate(seed);
      unknownOps += run.ops.filter((o) => o.status === 'unknown').length;
      const report = checkAll(run.ops, run.finalState);
      expect(report.ok, `SEED=${seed}\n${formatReport(report)}`).to.equal(true);
      for (const key of Object.keys(run.finalState)) {
        const searched = checkRegisterHistory(key, run.ops.filter((o) => o.key === key), { staleReadPrecheck: false });
        expect(searched.verdict, `SEED=${seed} key ${key}: search alone`).to.equal('linearizable');
      }
      const lin = report.results.find((r) => r.name === 'linearizable');
      expect(lin?.stats['unknown'], `SEED=${seed}: search gave up`).to.equal(0);
    }
    // The generator must actually exercise unknown outcomes for the claim to mean anything.
    expect(unknownOps).to.be.above(SEEDS);
  });

  it('reject each of those histories once one read is made stale', () => {
    let mutated = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const run = simulate(seed);
      const c = staleCandidate(run.ops);
      if (c === undefined) continue;
      mutated++;
      const ops = run.ops.map((o) => (o.id === c.read.id ? { ...o, readValue: c.old.value, version: c.old.version } : o));
      const res = linearizable(ops);
      expect(res.ok, `SEED=${seed}: stale read #${c.read.id} accepted`).to.equal(false);
      expect(res.violations.map((v) => v.key), `SEED=${seed}`).to.deep.equal([c.read.key]);
      expect(checkAll(ops, run.finalState).ok, `SEED=${seed}`).to.equal(false);
      // The same verdict from the search alone, without the stale-read shortcut.
      const searched = checkRegisterHistory(c.read.key, ops.filter((o) => o.key === c.read.key), { staleReadPrecheck: false });
      expect(searched.verdict, `SEED=${seed}: search alone`).to.equal('not-linearizable');
    }
    expect(mutated).to.be.above(SEEDS / 2);
  });

  it('reject each of those histories once a key converges to its oldest acked write', () => {
    let mutated = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const run = simulate(seed);
      for (const [key, nodes] of Object.entries(run.finalState)) {
        const acked = run.ops
          .filter((o) => o.key === key && o.status === 'ok' && o.kind !== 'read')
          .sort((a, b) => compareVersions(a.version as string, b.version as string));
        const oldest = acked[0];
        if (acked.length < 2 || oldest?.kind !== 'write') continue;
        mutated++;
        const final = {
          ...run.finalState,
          [key]: Object.fromEntries(Object.keys(nodes).map((n) => [n, { value: oldest.value as string, version: oldest.version as string }])),
        };
        const res = noLostWrites(run.ops, final);
        expect(res.ok, `SEED=${seed} key ${key}`).to.equal(false);
        expect(res.violations[0]?.opIds?.[0], `SEED=${seed}`).to.equal(acked[acked.length - 1]?.id);
        break;
      }
    }
    expect(mutated).to.be.above(SEEDS / 2);
  });
});
