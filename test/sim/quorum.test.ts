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

interface Target { id: string; replica: string; counts: boolean; applied: boolean; outcome: ReplicaOutcome | 'pending' }

/** A newer version some replicas may hold (ours is 'v5'). */
const NEWER = 'v9';

function randomWrite(rng: Rng): { need: number; targets: Target[]; replicas: string[] } {
  const n = 1 + rng.int(5);
  const need = 1 + rng.int(n);
  const replicas = Array.from({ length: n }, (_, i) => `r${i}`);
  const targets: Target[] = replicas.map((id) => ({ id, replica: id, counts: true, applied: false, outcome: 'pending' }));
  if (rng.next() < 0.3) targets.push({ id: 'pending-owner', replica: 'p0', counts: false, applied: false, outcome: 'pending' });
  if (rng.next() < 0.2) targets.push({ id: 'hint-for-r0', replica: 'r0', counts: true, applied: false, outcome: 'pending' });
  const newerSomewhere = rng.next() < 0.3;
  for (const t of targets) {
    // Hidden truth first, then what the coordinator gets to hear about it.
    t.applied = rng.next() < 0.6;
    const r = rng.next();
    if (t.applied) t.outcome = r < 0.6 ? { kind: 'applied' } : r < 0.85 ? { kind: 'lost' } : 'pending';
    else if (newerSomewhere && r < 0.4) t.outcome = { kind: 'newer', held: NEWER };
    else t.outcome = r < 0.5 ? { kind: 'refused', ...(rng.next() < 0.2 ? { staleEpoch: 1 + rng.int(9) } : {}) } : r < 0.8 ? { kind: 'lost' } : 'pending';
  }
  return { need, targets, replicas };
}

function checkWrite(tr: WriteTracker, need: number, targets: Target[], answered: Set<string>, expired: boolean): void {
  const d = expired ? tr.expire() : tr.decision();
  if (!d) return;
  const appliedCounting = targets.filter((t) => t.counts && t.applied).length;
  if (d.result === 'ok') {
    expect(tr.appliedCount).to.be.at.least(need);
    expect(appliedCounting, 'ok means W counting targets applied it').to.be.at.least(need);
  }
  if (d.result === 'failed') {
    expect(targets.some((t) => t.applied), 'failed means nothing was applied anywhere').to.equal(false);
    expect(tr.hintTargets(targets.map((t) => t.replica)), 'a failed write leaves no hints').to.deep.equal([]);
  }
  if (d.result === 'outdated') {
    expect(d.held, 'outdated names a version some replica really holds').to.equal(NEWER);
    expect(targets.some((t) => answered.has(t.id) && t.outcome !== 'pending' && t.outcome.kind === 'newer')).to.equal(true);
    const couldStillApply = targets.filter((t) => t.counts && !answered.has(t.id)).length;
    expect(tr.appliedCount + couldStillApply, 'outdated only once W is out of reach').to.be.below(need);
  }
  if (d.result === 'unknown' && d.reason === 'quorum') expect(tr.pending).to.equal(0);
  const holding = new Set(targets.filter((t) => answered.has(t.id) && t.outcome !== 'pending' && (t.outcome.kind === 'applied' || t.outcome.kind === 'newer')).map((t) => t.replica));
  for (const id of tr.hintTargets([...targets.map((t) => t.replica), 'down-replica'])) {
    expect(holding.has(id), `hint only for an owner that neither applied it nor holds newer (${id})`).to.equal(false);
  }
}

describe('quorum decisions (seeded simulation)', () => {
  it(`never reports failed for a write some replica applied, ok only with W applied, outdated only when W is out of reach (${ONLY ?? SEEDS} seeds)`, () => {
    forSeeds((rng) => {
      const { need, targets } = randomWrite(rng);
      const tr = new WriteTracker(need);
      const index = new Map(targets.map((t) => [t.id, tr.add({ replica: t.replica, countsTowardW: t.counts })]));
      const answered = new Set<string>();
      const order = shuffle(targets.filter((t) => t.outcome !== 'pending'), rng);
      const deadlineAt = rng.int(order.length + 2);
      for (let i = 0; i < order.length; i++) {
        if (i === deadlineAt) break;
        const t = order[i] as Target;
        tr.record(index.get(t.id) as number, t.outcome as ReplicaOutcome);
        if (rng.next() < 0.1) tr.record(index.get(t.id) as number, t.outcome as ReplicaOutcome); // duplicate answer
        answered.add(t.id);
        checkWrite(tr, need, targets, answered, false);
      }
      checkWrite(tr, need, targets, answered, true);
    });
  });

  it(`a session read returns at least the session's version whenever a replica holding it answers (${ONLY ?? SEEDS} seeds)`, () => {
    forSeeds((rng) => {
      const n = 1 + rng.int(5);
      const ids = Array.from({ length: n }, (_, i) => `r${i}`);
      const R = 1 + rng.int(n);
      // The client observed 'v5' of the key; some replicas hold it (or newer), others older or nothing.
      const holders = new Set(shuffle([...ids], rng).slice(0, 1 + rng.int(n)));
      const held = new Map(ids.map((id) => [id, holders.has(id) ? (rng.next() < 0.3 ? 'v7' : 'v5') : ['v1', 'v3', null][rng.int(3)] ?? null]));
      const down = new Set(ids.filter(() => rng.next() < 0.3));
      const live = ids.filter((id) => !down.has(id));
      if (live.length < R) return;
      const failing = new Set(live.filter(() => rng.next() < 0.2));
      const tr = new ReadTracker(R, shuffle([...live], rng), { want: 'v5', everyReplica: down.size === 0 });
      const queue = [...tr.start()];
      while (queue.length > 0) {
        const id = queue.splice(rng.int(queue.length), 1)[0] as string;
        if (failing.has(id)) queue.push(...tr.fail(id));
        else tr.reply(id, held.get(id) ?? null);
        if (tr.behind()) queue.push(...tr.speculate());
        const d = tr.decision();
        if (d === 'ok') {
          const best = tr.best.version;
          const everyoneAnswered = down.size === 0 && tr.replies.size === n;
          expect((best !== null && best >= 'v5') || everyoneAnswered, 'ok below the session only when every replica answered').to.equal(true);
          if (everyoneAnswered) expect(best !== null && best >= 'v5', 'a holder answered').to.equal(true);
          break;
        }
        if (d === 'behind') {
          const reachableHolders = [...holders].filter((h) => !down.has(h) && !failing.has(h));
          expect(reachableHolders, 'behind only when every holder is down or failing').to.deep.equal([]);
          break;
        }
      }
      expect(tr.decision(), 'every answer in: the read decided').to.not.equal(undefined);
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
    const a = tr.add({ replica: 'a', countsTowardW: true });
    const b = tr.add({ replica: 'b', countsTowardW: true });
    tr.record(a, { kind: 'lost' });
    tr.record(b, { kind: 'refused' });
    const d = tr.decision();
    expect(d?.result).to.equal('unknown');
    expect(() => checkWrite(Object.assign(Object.create(WriteTracker.prototype), tr, { decision: () => ({ result: 'failed', staleEpoch: undefined }) }) as WriteTracker,
      2, [{ id: 'a', replica: 'a', counts: true, applied: true, outcome: { kind: 'lost' } }], new Set(), false)).to.throw(/nothing was applied/);
  });
});
