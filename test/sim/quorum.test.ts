/**
 * Seeded simulation of the quorum decisions (lib/core/quorum.ts): random replica counts,
 * quorums, outcomes, answer orders and deadlines. After every event it checks the
 * guarantees of DESIGN.md §2 against the hidden truth of which replicas applied what.
 * A failure prints its seed; `SEED=<n>` replays one, `SIM_SEEDS=<n>` runs more.
 */
import { expect } from 'chai';
import { seededRng, shuffle, type Rng } from '../../lib/core/rng.ts';
import { ReadTracker, WriteTracker, type ReplicaOutcome } from '../../lib/core/quorum.ts';

const SEEDS = Number(process.env['SIM_SEEDS'] ?? 2000);
const ONLY = process.env['SEED'] === undefined ? undefined : Number(process.env['SEED']);

function seeds(): number[] {
  return ONLY !== undefined ? [ONLY] : Array.from({ length: SEEDS }, (_, i) => i + 1);
}

function forSeeds(run: (rng: Rng, seed: number) => void): void {
  for (const seed of seeds()) {
    try {
      run(seededRng(seed), seed);
    } catch (err) {
      (err as Error).message = `seed=${seed} (replay: SEED=${seed}): ${(err as Error).message}`;
      throw err;
    }
  }
}

interface Target { id: string; counts: boolean; applied: boolean; outcome: ReplicaOutcome | 'pending' }

function randomWrite(rng: Rng): { need: number; targets: Target[]; replicas: string[] } {
  const n = 1 + rng.int(5);
  const need = 1 + rng.int(n);
  const replicas = Array.from({ length: n }, (_, i) => `r${i}`);
  const targets: Target[] = replicas.map((id) => ({ id, counts: true, applied: false, outcome: 'pending' }));
  if (rng.next() < 0.3) targets.push({ id: 'extra', counts: false, applied: false, outcome: 'pending' });
  if (rng.next() < 0.2) targets.push({ id: `hint:r0`, counts: true, applied: false, outcome: 'pending' });
  for (const t of targets) {
    // Hidden truth first, then what the coordinator gets to hear about it.
    t.applied = rng.next() < 0.6;
    const r = rng.next();
    if (t.applied) t.outcome = r < 0.6 ? { kind: 'ack' } : r < 0.85 ? { kind: 'lost' } : 'pending';
    else t.outcome = r < 0.5 ? { kind: 'refused', ...(rng.next() < 0.2 ? { staleEpoch: 1 + rng.int(9) } : {}) } : r < 0.8 ? { kind: 'lost' } : 'pending';
  }
  return { need, targets, replicas };
}

function checkWrite(tr: WriteTracker, need: number, targets: Target[], answered: Set<string>, expired: boolean): void {
  const d = expired ? tr.expire() : tr.decision();
  if (!d) return;
  const appliedCounting = targets.filter((t) => t.counts && t.applied).length;
  if (d.result === 'ok') {
    expect(tr.ackCount).to.be.at.least(need);
    expect(appliedCounting, 'ok means W counting targets hold it').to.be.at.least(need);
  }
  if (d.result === 'failed') {
    expect(targets.some((t) => t.applied), 'failed means nothing was applied anywhere').to.equal(false);
    expect(tr.hintTargets(targets.map((t) => t.id)), 'a failed write leaves no hints').to.deep.equal([]);
  }
  if (d.result === 'unknown' && d.reason === 'quorum') expect(tr.pending).to.equal(0);
  for (const id of tr.hintTargets(targets.filter((t) => t.counts).map((t) => t.id))) {
    expect(tr.hasAcked(id), `hint only for a target that did not ack (${id})`).to.equal(false);
  }
  void answered;
}

describe('quorum decisions (seeded simulation)', () => {
  it(`never reports failed for a write some replica applied, and ok only with W applied (${ONLY ?? SEEDS} seeds)`, () => {
    forSeeds((rng) => {
      const { need, targets } = randomWrite(rng);
      const tr = new WriteTracker(need);
      for (const t of targets) tr.send(t.id, t.counts);
      const answered = new Set<string>();
      const order = shuffle(targets.filter((t) => t.outcome !== 'pending'), rng);
      const deadlineAt = rng.int(order.length + 2);
      for (let i = 0; i < order.length; i++) {
        if (i === deadlineAt) break;
        const t = order[i] as Target;
        tr.record(t.id, t.outcome as ReplicaOutcome);
        if (rng.next() < 0.1) tr.record(t.id, t.outcome as ReplicaOutcome); // duplicate answer
        answered.add(t.id);
        checkWrite(tr, need, targets, answered, false);
      }
      checkWrite(tr, need, targets, answered, true);
    });
  });

  it(`reads see every write acknowledged by W when R + W > N, and repair exactly the replicas behind (${ONLY ?? SEEDS} seeds)`, () => {
    forSeeds((rng) => {
      const n = 1 + rng.int(5);
      const w = 1 + rng.int(n);
      const r = Math.max(1, n - w + 1 + rng.int(Math.max(1, w)));
      const R = Math.min(r, n);
      const ids = Array.from({ length: n }, (_, i) => `r${i}`);
      // The acked write (version 'v5') is on a W-set; others hold older, newer-concurrent or no versions.
      const ackedSet = new Set(shuffle([...ids], rng).slice(0, w));
      const held = new Map(ids.map((id) => [id, ackedSet.has(id) ? (rng.next() < 0.2 ? 'v7' : 'v5') : ['v1', 'v3', null][rng.int(3)] ?? null]));
      const failing = new Set(ids.filter(() => rng.next() < 0.25));
      const tr = new ReadTracker(R, shuffle([...ids], rng));
      const queue = [...tr.start()];
      let speculated = false;
      while (queue.length > 0 || (!speculated && tr.decision() === undefined)) {
        if (queue.length === 0 || rng.next() < 0.1) {
          speculated = true;
          queue.push(...tr.speculate());
          if (queue.length === 0) break;
        }
        const id = queue.splice(rng.int(queue.length), 1)[0] as string;
        if (failing.has(id)) queue.push(...tr.fail(id));
        else tr.reply(id, held.get(id) ?? null);
        const d = tr.decision();
        if (d === 'ok') {
          expect(tr.replies.size).to.be.at.least(R);
          if (R + w > n) expect(tr.best.version !== null && tr.best.version >= 'v5', 'read sees the acked write').to.equal(true);
          const best = tr.best.version;
          const expected = [...tr.replies].filter(([, v]) => best !== null && (v === null || v < best)).map(([x]) => x).sort();
          expect([...tr.repairTargets()].sort()).to.deep.equal(expected);
        }
        if (d === 'failed') expect(tr.replies.size).to.be.below(R);
      }
      const final = tr.decision();
      const reachable = ids.filter((id) => !failing.has(id)).length;
      if (reachable >= R) expect(final, 'enough reachable replicas means the read succeeds').to.equal('ok');
    });
  });

  it('catches a broken rule (the simulation can fail)', () => {
    // A tracker that calls a write failed while an answer was lost must be rejected by the checks.
    const tr = new WriteTracker(2);
    tr.send('a', true);
    tr.send('b', true);
    tr.record('a', { kind: 'lost' });
    tr.record('b', { kind: 'refused' });
    const d = tr.decision();
    expect(d?.result).to.equal('unknown');
    expect(() => checkWrite(Object.assign(Object.create(WriteTracker.prototype), tr, { decision: () => ({ result: 'failed', staleEpoch: undefined }) }) as WriteTracker,
      2, [{ id: 'a', counts: true, applied: true, outcome: { kind: 'lost' } }], new Set(), false)).to.throw(/nothing was applied/);
  });
});
