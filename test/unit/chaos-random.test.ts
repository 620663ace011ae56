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

/** Two acked writes where the first completed before the second was invoked. */
function orderedPair(acked: readonly Op[]): [Op, Op] | undefined {
  for (const a of acked) {
    const b = acked.find((x) => (a.completeMs as number) < x.invokeMs);
    if (b !== undefined) return [a, b];
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

  it(`accept every multi-writer history, final state as the last read, in few search steps (${SEEDS} seeds from ${FIRST_SEED})`, () => {
    let multi = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const rng = seededRng(seed);
      // One or two keys written by 4..9 clients at once: every key has many writers.
      const run = simulateRegisterHistory(rng, { keys: 1 + rng.int(2), processes: 4 + rng.int(6), opsPerProcess: 20 + rng.int(30), maxDurationMs: 4 + rng.int(12) });
      const res = linearizable(run.ops, { finalState: run.finalState });
      expect(res.ok, `SEED=${seed}\n${res.violations.map((v) => v.message).join('\n')}`).to.equal(true);
      expect(res.stats['multiWriterLinearizable'], `SEED=${seed}`).to.equal(res.stats['multiWriterKeys']);
      expect(res.stats['unknown'], `SEED=${seed}: search gave up`).to.equal(0);
      // Versions fix the order of the writes: the search stays near-linear in the ops.
      expect(res.stats['steps'], `SEED=${seed}`).to.be.below(50 * run.ops.length);
      multi += res.stats['multiWriterKeys'] ?? 0;
    }
    expect(multi).to.be.above(SEEDS);
  });

  it('count a key one client writes as single-writer, and accept its histories too', () => {
    for (let seed = FIRST_SEED; seed < FIRST_SEED + 50; seed++) {
      const run = simulateRegisterHistory(seededRng(seed), { keys: 3, processes: 1, opsPerProcess: 30 });
      const res = linearizable(run.ops, { finalState: run.finalState });
      expect(res.ok, `SEED=${seed}`).to.equal(true);
      expect(res.stats['multiWriterKeys'], `SEED=${seed}`).to.equal(0);
      expect(res.stats['singleWriterLinearizable'], `SEED=${seed}`).to.equal(res.stats['keys']);
    }
  });

  it('reject each multi-writer history once two writes ordered in real time swap versions', () => {
    let mutated = 0;
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const rng = seededRng(seed);
      const run = simulateRegisterHistory(rng, { keys: 1, processes: 4 + rng.int(4), opsPerProcess: 10 + rng.int(10) });
      const acked = run.ops.filter((o) => o.kind === 'write' && o.status === 'ok');
      // The later write of a pair gets the earlier one's version and vice versa: the
      // clock of the later write's coordinator was behind (the lost write of issue 11).
      const pair = orderedPair(acked);
      if (pair === undefined) continue;
      mutated++;
      const [early, late] = pair;
      const swapped = new Map([[early.value, late.version], [late.value, early.version]]);
      const ops = run.ops.map((o) => {
        const v = o.kind === 'write' ? swapped.get(o.value) : o.kind === 'read' && o.readValue !== null ? swapped.get(o.readValue ?? undefined) : undefined;
        return v === undefined ? o : { ...o, version: v };
      });
      const final = Object.fromEntries(Object.entries(run.finalState).map(([key, nodes]) => [key, Object.fromEntries(Object.entries(nodes).map(
        ([n, r]) => [n, r.value !== null && swapped.has(r.value) ? { ...r, version: swapped.get(r.value) as string } : r]))]));
      const res = linearizable(ops, { finalState: final });
      expect(res.ok, `SEED=${seed}: #${late.id} stamped below #${early.id} accepted`).to.equal(false);
      // Only the versions tell: without them the same history is a valid register's.
      const plain = ops.map(({ version: _v, ...o }) => o);
      expect(linearizable(plain, { finalState: final }).ok, `SEED=${seed}: without versions`).to.equal(true);
    }
    expect(mutated).to.be.above(SEEDS / 2);
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

/** Plain and compare-and-set keys side by side, the mix of the chaos workload. */
function simulateCas(seed: number): SimulatedRun {
  const rng: Rng = seededRng(seed);
  return simulateRegisterHistory(rng, {
    keys: 1 + rng.int(2),
    casKeys: 1 + rng.int(3),
    casRatio: 0.4 + rng.next() * 0.5,
    processes: 2 + rng.int(7),
    opsPerProcess: 10 + rng.int(30),
    maxDurationMs: 2 + rng.int(12),
  });
}

const isCas = (op: Op): boolean => op.key.startsWith('c');

/** An acked compare-and-set write whose value an acked If-Match consumed before `before` was invoked. */
function consumedBefore(ops: readonly Op[], before: Op): Op | undefined {
  for (const m of ops) {
    if (m.key !== before.key || m.status !== 'ok' || m.ifMatch === undefined || !((m.completeMs as number) < before.invokeMs)) continue;
    const w = ops.find((o) => o.key === m.key && o.kind === 'write' && o.status === 'ok' && o.version === m.ifMatch);
    if (w !== undefined) return w;
  }
  return undefined;
}

/**
 * Replaces one op of each simulated history that `mutation` picks and expects that key,
 * and only it, rejected (the search alone too); returns how many seeds had such an op.
 */
function rejectEachMutated(what: string, mutation: (run: SimulatedRun) => { op: Op; into: Op } | undefined): number {
  let mutated = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
    const run = simulateCas(seed);
    const m = mutation(run);
    if (m === undefined) continue;
    mutated++;
    const ops = run.ops.map((o) => (o.id === m.op.id ? m.into : o));
    const res = linearizable(ops, { finalState: run.finalState });
    expect(res.ok, `SEED=${seed}: #${m.op.id} ${what} was accepted`).to.equal(false);
    expect(res.violations.map((v) => v.key), `SEED=${seed}`).to.deep.equal([m.op.key]);
    const searched = checkRegisterHistory(m.op.key, ops.filter((o) => o.key === m.op.key), { staleReadPrecheck: false });
    expect(searched.verdict, `SEED=${seed}: search alone`).to.equal('not-linearizable');
  }
  return mutated;
}

describe('chaos checkers on randomized histories of a correct compare-and-set register', () => {
  it(`accept every history with compare-and-set keys: serial reads, If-Match, If-None-Match, 412s (${SEEDS} seeds from ${FIRST_SEED})`, () => {
    const seen = { casKeys: 0, okCas: 0, precondition: 0, unknownCas: 0, ifNoneMatch: 0, casDeletes: 0, unresolved412: 0 };
    for (let seed = FIRST_SEED; seed < FIRST_SEED + SEEDS; seed++) {
      const run = simulateCas(seed);
      const report = checkAll(run.ops, run.finalState);
      expect(report.ok, `SEED=${seed}\n${formatReport(report)}`).to.equal(true);
      const lin = report.results.find((r) => r.name === 'linearizable');
      expect(lin?.stats['unknown'], `SEED=${seed}: search gave up`).to.equal(0);
      expect(lin?.stats['casLinearizable'], `SEED=${seed}`).to.equal(lin?.stats['casKeys']);
      for (const key of Object.keys(run.finalState).filter((k) => k.startsWith('c'))) {
        const searched = checkRegisterHistory(key, run.ops.filter((o) => o.key === key), { staleReadPrecheck: false });
        expect(searched.verdict, `SEED=${seed} key ${key}: search alone`).to.equal('linearizable');
      }
      const cas = run.ops.filter(isCas);
      seen.casKeys += lin?.stats['casKeys'] ?? 0;
      seen.okCas += cas.filter((o) => o.kind !== 'read' && o.status === 'ok').length;
      seen.precondition += cas.filter((o) => o.status === 'precondition').length;
      seen.unknownCas += cas.filter((o) => o.status === 'unknown').length;
      seen.ifNoneMatch += cas.filter((o) => o.ifNoneMatch === true && o.status === 'ok').length;
      seen.casDeletes += cas.filter((o) => o.kind === 'delete' && o.status === 'ok').length;
      seen.unresolved412 += lin?.stats['unresolved412'] ?? 0;
      // The plain keys of the same history never count as compare-and-set keys.
      expect(lin?.stats['casKeys'], `SEED=${seed}`).to.equal(new Set(cas.map((o) => o.key)).size);
    }
    // The generator must exercise every outcome for the claim to mean anything.
    for (const [what, n] of Object.entries(seen)) if (what !== 'unresolved412') expect(n, what).to.be.above(SEEDS / 3);
    // Every If-Match names a version a read or an ack tied to a value; a 412 may not (an unknown write nobody read).
    expect(seen.unresolved412).to.be.below(seen.precondition / 10);
  });

  it('reject each of those histories once a compare-and-set answered 412 is made to succeed on the same expected version', () => {
    const mutated = rejectEachMutated('succeeding too', (run) => {
      // A 412 whose If-Match another op matched and replaced: only one op can follow a value.
      const winner = (o: Op): boolean => run.ops.some((w) => w.key === o.key && w.status === 'ok' && w.ifMatch === o.ifMatch && w.id !== o.id);
      const loser = run.ops.find((o) => o.status === 'precondition' && o.ifMatch !== undefined && winner(o));
      if (loser === undefined) return undefined;
      const top = run.ops.filter((o) => o.version !== undefined).map((o) => o.version as string).sort(compareVersions).at(-1) as string;
      const fresh = `${(BigInt(`0x${top.slice(0, 16)}`) + 1n).toString(16).padStart(16, '0')}:n9`;
      return { op: loser, into: { ...loser, status: 'ok', version: fresh } };
    });
    expect(mutated).to.be.above(SEEDS / 2);
  });

  it('reject each of those histories once a 412 names a version replaced before it began', () => {
    const mutated = rejectEachMutated('naming a replaced version', (run) => {
      for (const op of run.ops) {
        const old = op.status === 'precondition' ? consumedBefore(run.ops, op) : undefined;
        if (old !== undefined && old.version !== op.ifMatch && old.version !== op.version) return { op, into: { ...op, version: old.version as string } };
      }
      return undefined;
    });
    expect(mutated).to.be.above(SEEDS / 3);
  });

  it('reject each of those histories once a successful If-Match names a version replaced before it began', () => {
    const mutated = rejectEachMutated('matching a replaced version', (run) => {
      for (const op of run.ops) {
        const old = op.status === 'ok' && op.ifMatch !== undefined ? consumedBefore(run.ops, op) : undefined;
        if (old !== undefined && old.version !== op.ifMatch) return { op, into: { ...op, ifMatch: old.version as string } };
      }
      return undefined;
    });
    expect(mutated).to.be.above(SEEDS / 3);
  });
});
