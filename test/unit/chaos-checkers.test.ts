import { expect } from 'chai';
import { makeVersion } from '../../lib/core/hlc.ts';
import {
  checkAll, converged, honestOutcomes, noLostWrites, noResurrection, wellFormed,
} from '../../lib/chaos/checkers.ts';
import { History } from '../../lib/chaos/history.ts';
import type { NodeReading, Op, OpStatus } from '../../lib/chaos/history.ts';
import { formatReport } from '../../lib/chaos/report.ts';

const ver = (n: number): string => makeVersion({ wall: 1_700_000_000_000 + n, logical: 0 }, 'n1');
const NODES = ['n1', 'n2', 'n3'];

/** History builder: versions are explicit so each test states the version order it needs. */
class Ops {
  readonly list: Op[] = [];
  push(op: Omit<Op, 'id'>): Op {
    const full = { ...op, id: this.list.length };
    this.list.push(full);
    return full;
  }
  write(key: string, value: string, at: [number, number], status: OpStatus, v?: number): Op {
    return this.push({
      process: 1, kind: 'write', key, value, invokeMs: at[0], completeMs: at[1], status,
      ...(v !== undefined ? { version: ver(v) } : {}),
    });
  }
  del(key: string, at: [number, number], status: OpStatus, v?: number): Op {
    return this.push({
      process: 2, kind: 'delete', key, invokeMs: at[0], completeMs: at[1], status,
      ...(v !== undefined ? { version: ver(v) } : {}),
    });
  }
  read(key: string, readValue: string | null, at: [number, number], v?: number): Op {
    return this.push({
      process: 3, kind: 'read', key, invokeMs: at[0], completeMs: at[1], status: 'ok', readValue,
      ...(v !== undefined ? { version: ver(v) } : {}),
    });
  }
}

/** Every node agrees: key → [value, version number or null]. */
function agreed(entries: Record<string, [string | null, number | null]>): Record<string, Record<string, NodeReading>> {
  const out: Record<string, Record<string, NodeReading>> = {};
  for (const [key, [value, v]] of Object.entries(entries)) {
    out[key] = Object.fromEntries(NODES.map((n) => [n, { value, version: v === null ? null : ver(v) }]));
  }
  return out;
}

describe('chaos checkers', () => {
  describe('noLostWrites', () => {
    it('rejects a history whose acked write is neither final nor superseded', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      const lost = h.write('k', 'b', [20, 30], 'ok', 2);
      const res = noLostWrites(h.list, agreed({ k: ['a', 1] }));
      expect(res.ok).to.equal(false);
      expect(res.violations).to.have.length(1);
      expect(res.violations[0]?.opIds?.[0]).to.equal(lost.id);
      expect(res.stats).to.include({ acked: 2, final: 1, lost: 1 });
    });

    it('rejects an acked write superseded by a higher version from a write that completed before it was invoked', () => {
      // The skewed-coordinator loss: b began after a was acked, yet was stamped lower.
      const h = new Ops();
      const early = h.write('k', 'a', [0, 10], 'ok', 5);
      const later = h.write('k', 'b', [20, 30], 'ok', 3);
      const res = noLostWrites(h.list, agreed({ k: ['a', 5] }));
      expect(res.ok).to.equal(false);
      expect(res.stats).to.include({ acked: 2, final: 1, lost: 1, lostToEarlier: 1 });
      expect(res.violations[0]?.opIds).to.deep.equal([later.id]);
      expect(res.violations[0]?.message).to.contain('completed before it was invoked').and.contain(`#${early.id} `);
    });

    it('rejects a later acked write undone by an earlier delete stamped higher', () => {
      const h = new Ops();
      h.del('k', [0, 10], 'ok', 9);
      const later = h.write('k', 'b', [20, 30], 'ok', 4);
      const res = noLostWrites(h.list, agreed({ k: [null, 9] }));
      expect(res.ok).to.equal(false);
      expect(res.violations[0]?.opIds).to.deep.equal([later.id]);
      expect(res.stats.lostToEarlier).to.equal(1);
    });

    it('accepts an acked write superseded by a concurrent write, whichever was stamped higher', () => {
      for (const [va, vb, final] of [[3, 5, 'b'], [5, 3, 'a']] as const) {
        const h = new Ops();
        h.write('k', 'a', [0, 10], 'ok', va);
        h.write('k', 'b', [5, 15], 'ok', vb);
        const res = noLostWrites(h.list, agreed({ k: [final, Math.max(va, vb)] }));
        expect(res.ok, `a@${va} b@${vb}`).to.equal(true);
        expect(res.stats).to.include({ final: 1, superseded: 1, lost: 0, lostToEarlier: 0 });
      }
    });

    it('accepts an acked write superseded by a write invoked after it completed', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 3);
      h.write('k', 'b', [20, 30], 'unknown');
      expect(noLostWrites(h.list, agreed({ k: ['b', 4] })).ok).to.equal(true);
    });

    it('rejects an acked write beaten by a write that was reported failed (the sloppy-quorum loss)', () => {
      const h = new Ops();
      const acked = h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [5, 8], 'fail');
      const res = noLostWrites(h.list, agreed({ k: ['b', 2] }));
      expect(res.ok).to.equal(false);
      expect(res.violations[0]?.opIds?.[0]).to.equal(acked.id);
      expect(res.violations[0]?.message).to.contain('no acked or unknown write produced');
    });

    it('accepts acked writes superseded by a higher acked write or by an unknown write that landed', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [20, 30], 'ok', 2);
      h.write('k', 'c', [40, 50], 'unknown');
      const res = noLostWrites(h.list, agreed({ k: ['c', 3] }));
      expect(res.ok).to.equal(true);
      expect(res.stats).to.include({ acked: 2, superseded: 2, lost: 0 });
    });

    it('treats an acked compare-and-set like an acked write, and a 412 as nothing to keep', () => {
      const h = new Ops();
      h.push({ process: 1, kind: 'write', key: 'c', value: 'a', ifNoneMatch: true, invokeMs: 0, completeMs: 10, status: 'ok', version: ver(1) });
      const cas = h.push({ process: 2, kind: 'write', key: 'c', value: 'b', ifMatch: ver(1), invokeMs: 20, completeMs: 30, status: 'ok', version: ver(2) });
      h.push({ process: 3, kind: 'write', key: 'c', value: 'x', ifMatch: ver(1), invokeMs: 20, completeMs: 30, status: 'precondition', version: ver(2) });
      const kept = noLostWrites(h.list, agreed({ c: ['b', 2] }));
      expect(kept.ok).to.equal(true);
      expect(kept.stats).to.include({ acked: 2, final: 1, superseded: 1 });
      const lost = noLostWrites(h.list, agreed({ c: ['a', 1] }));
      expect(lost.ok).to.equal(false);
      expect(lost.violations[0]?.opIds).to.deep.equal([cas.id]);
      // Replicas settled on the value of the write answered 412: no write that may have applied produced it.
      expect(noLostWrites(h.list, agreed({ c: ['x', 3] })).ok).to.equal(false);
    });

    it('rejects two acked writes stamped with the same version (one silently lost)', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [0, 10], 'ok', 1);
      expect(noLostWrites(h.list, agreed({ k: ['b', 1] })).stats.lost).to.equal(1);
    });

    it('counts acked deletes: not found satisfies them, an older value does not', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      const d = h.del('k', [20, 30], 'ok', 2);
      expect(noLostWrites(h.list, agreed({ k: [null, 2] })).ok).to.equal(true);
      expect(noLostWrites(h.list, agreed({ k: [null, null] })).ok).to.equal(true);
      const undone = noLostWrites(h.list, agreed({ k: ['a', 1] }));
      expect(undone.ok).to.equal(false);
      expect(undone.violations[0]?.opIds?.[0]).to.equal(d.id);
    });

    it('accepts an acked delete superseded by a later write', () => {
      const h = new Ops();
      h.del('k', [0, 10], 'ok', 1);
      h.write('k', 'a', [20, 30], 'unknown');
      expect(noLostWrites(h.list, agreed({ k: ['a', 2] })).ok).to.equal(true);
    });

    it('rejects an acked write that vanished with no delete to explain it', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      expect(noLostWrites(h.list, agreed({ k: [null, null] })).ok).to.equal(false);
      expect(noLostWrites(h.list, {}).ok).to.equal(false);
    });

    it('accepts a vanished write when an unknown delete may have removed it, and counts it unverifiable', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.del('k', [20, 30], 'unknown');
      const res = noLostWrites(h.list, agreed({ k: [null, null] }));
      expect(res.ok).to.equal(true);
      expect(res.stats.unverifiable).to.equal(1);
    });
  });

  describe('noResurrection', () => {
    it('rejects a deleted value found again in the final state', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      const d = h.del('k', [20, 30], 'ok', 2);
      const final = agreed({ k: [null, 2] });
      final['k']!['n3'] = { value: 'a', version: ver(1) };
      const res = noResurrection(h.list, final);
      expect(res.ok).to.equal(false);
      expect(res.violations[0]?.nodes).to.deep.equal(['n3']);
      expect(res.violations[0]?.opIds).to.deep.equal([d.id]);
    });

    it('rejects a read that returned the deleted value after the delete was acked', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.del('k', [20, 30], 'ok', 2);
      const r = h.read('k', 'a', [40, 50], 1);
      const res = noResurrection(h.list, agreed({ k: [null, 2] }));
      expect(res.ok).to.equal(false);
      expect(res.violations[0]?.opIds?.[0]).to.equal(r.id);
    });

    it('accepts a newer write after the delete, and old values read while the delete was in flight', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.del('k', [20, 30], 'ok', 2);
      h.read('k', 'a', [25, 35], 1); // concurrent with the delete
      h.write('k', 'b', [40, 50], 'unknown');
      h.read('k', 'b', [60, 70], 3);
      const res = noResurrection(h.list, agreed({ k: ['b', 3] }));
      expect(res.ok).to.equal(true);
      expect(res.stats).to.include({ ackedDeletes: 1, readsChecked: 1 });
    });
  });

  describe('converged', () => {
    it('rejects replicas that disagree after healing', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [20, 30], 'ok', 2);
      const final = agreed({ k: ['b', 2] });
      final['k']!['n2'] = { value: 'a', version: ver(1) };
      const res = converged(h.list, final);
      expect(res.ok).to.equal(false);
      expect(res.stats.divergent).to.equal(1);
      expect(res.violations[0]?.message).to.match(/diverge/);
    });

    it('rejects agreement on a version below one a read observed', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [20, 30], 'unknown');
      const saw = h.read('k', 'b', [40, 50], 2);
      const res = converged(h.list, agreed({ k: ['a', 1] }));
      expect(res.ok).to.equal(false);
      expect(res.violations[0]?.opIds).to.deep.equal([saw.id]);
    });

    it('rejects agreement on a value whose write was reported failed', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [20, 30], 'fail');
      expect(converged(h.list, agreed({ k: ['b', 2] })).ok).to.equal(false);
    });

    it('rejects nodes that cannot answer and keys missing from the final state', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('j', 'x', [0, 10], 'ok', 1);
      const final = agreed({ k: ['a', 1] });
      final['k']!['n1'] = { value: null, version: null, error: 'KV_TIMEOUT' };
      const res = converged(h.list, final);
      expect(res.stats).to.include({ nodeErrors: 1, missing: 1 });
      expect(res.violations.map((v) => v.key).sort()).to.deep.equal(['j', 'k']);
    });

    it('accepts agreement on the highest version, including an unknown write nobody read', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [20, 30], 'unknown');
      h.read('k', 'a', [40, 50], 1);
      h.write('j', 'x', [0, 10], 'unknown');
      const res = converged(h.list, agreed({ k: ['b', 2], j: [null, null] }));
      expect(res.ok).to.equal(true);
      expect(res.stats).to.include({ keys: 2, converged: 2 });
    });
  });

  describe('honestOutcomes', () => {
    it('rejects a read that observed a write reported failed, or a value never written', () => {
      const h = new Ops();
      const failed = h.write('k', 'a', [0, 10], 'fail');
      h.read('k', 'a', [20, 30], 1);
      h.read('k', 'zzz', [20, 30], 1);
      const res = honestOutcomes(h.list);
      expect(res.stats).to.include({ failedObserved: 1, phantom: 1 });
      expect(res.violations[0]?.opIds?.[0]).to.equal(failed.id);
    });

    it('rejects a serial read that observed a conditional write answered 412 (nothing written)', () => {
      const h = new Ops();
      const refused = h.push({ process: 1, kind: 'write', key: 'c', value: 'a', ifNoneMatch: true, invokeMs: 0, completeMs: 10, status: 'precondition', version: ver(1) });
      h.push({ process: 2, kind: 'read', key: 'c', serial: true, invokeMs: 20, completeMs: 30, status: 'ok', readValue: 'a', version: ver(2) });
      const res = honestOutcomes(h.list);
      expect(res.stats).to.include({ failedObserved: 1 });
      expect(res.violations[0]?.message).to.contain('was reported not applied (412)');
      expect(res.violations[0]?.opIds).to.deep.equal([refused.id, 1]);
    });

    it('rejects a read reporting a version other than the one its write was acked with', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.read('k', 'a', [20, 30], 7);
      expect(honestOutcomes(h.list).stats.versionMismatch).to.equal(1);
    });

    it('accepts a read during the write that saw an earlier stamp of it (re-stamped above a newer replica), not one after its ack', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 50], 'ok', 9);
      h.read('k', 'a', [10, 30], 3); // began before the ack: the first stamp, since replaced
      expect(honestOutcomes(h.list).stats).to.include({ versionMismatch: 0, earlierStampSeen: 1 });
      h.read('k', 'a', [60, 70], 3); // began after the ack: the acked stamp must be what it sees
      h.read('k', 'a', [20, 40], 12); // a higher version than the ack is never an earlier stamp
      const res = honestOutcomes(h.list);
      expect(res.stats).to.include({ versionMismatch: 2, earlierStampSeen: 1 });
      expect(res.violations).to.have.length(2);
    });
  });

  describe('wellFormed', () => {
    it('rejects records that break the history model', () => {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok'); // acked without a version
      h.write('k', 'a', [20, 30], 'unknown'); // value reused
      h.read('k', null, [50, 40]); // completes before it began
      const res = wellFormed(h.list);
      expect(res.violations).to.have.length(3);
      expect(wellFormed([]).ok).to.equal(true);
    });

    it('rejects conditions where the store takes none, and 412s on unconditional ops', () => {
      const h = new Ops();
      const at = { invokeMs: 0, completeMs: 1 };
      h.push({ process: 1, kind: 'read', key: 'c', ifMatch: ver(1), ...at, status: 'ok', readValue: null });
      h.push({ process: 1, kind: 'delete', key: 'c', ifNoneMatch: true, ...at, status: 'ok', version: ver(2) });
      h.push({ process: 1, kind: 'write', key: 'c', value: 'a', ifMatch: 'not-a-version', ...at, status: 'unknown' });
      h.push({ process: 1, kind: 'write', key: 'c', value: 'b', serial: true, ...at, status: 'unknown' });
      h.push({ process: 1, kind: 'write', key: 'c', value: 'c', ...at, status: 'precondition' });
      const res = wellFormed(h.list);
      expect(res.violations.map((v) => v.opIds?.[0])).to.deep.equal([0, 1, 2, 3, 4]);
      const good = new Ops();
      good.push({ process: 1, kind: 'write', key: 'c', value: 'a', ifNoneMatch: true, ...at, status: 'ok', version: ver(1) });
      good.push({ process: 1, kind: 'delete', key: 'c', ifMatch: ver(1), ...at, status: 'precondition' });
      good.push({ process: 1, kind: 'read', key: 'c', serial: true, ...at, status: 'ok', readValue: 'a', version: ver(1) });
      expect(wellFormed(good.list).ok).to.equal(true);
    });
  });

  describe('checkAll and the report', () => {
    function correctHistory(): { ops: Op[]; final: Record<string, Record<string, NodeReading>> } {
      const h = new Ops();
      h.write('k', 'a', [0, 10], 'ok', 1);
      h.write('k', 'b', [5, 15], 'ok', 2); // concurrent with a; higher version wins
      h.read('k', 'b', [20, 25], 2);
      h.write('k', 'c', [30, 35], 'unknown'); // landed later
      h.write('k', 'd', [40, 45], 'unknown'); // never landed
      h.write('k', 'e', [40, 45], 'fail');
      h.read('k', 'c', [50, 60], 3);
      h.write('j', 'x', [0, 10], 'ok', 4);
      h.del('j', [20, 30], 'ok', 5);
      h.read('j', null, [40, 50]);
      return { ops: h.list, final: agreed({ k: ['c', 3], j: [null, 5] }) };
    }

    it('accepts a correct history with concurrency and unknown ops that did and did not land', () => {
      const { ops, final } = correctHistory();
      const report = checkAll(ops, final);
      expect(report.results.filter((r) => !r.ok).map((r) => r.name)).to.deep.equal([]);
      expect(report.ok).to.equal(true);
      expect(report.results.map((r) => r.name)).to.deep.equal(
        ['wellFormed', 'noLostWrites', 'linearizable', 'converged', 'noResurrection', 'honestOutcomes']);
      expect(report.summary).to.include({ ops: 10, keys: 2, okOps: 7, failOps: 1, unknownOps: 2, violations: 0 });
      expect(formatReport(report)).to.contain('RESULT: PASS');
    });

    it('fails and lists each violation when the final state lost a write', () => {
      const { ops, final } = correctHistory();
      const broken = { ...final, k: Object.fromEntries(NODES.map((n) => [n, { value: 'a', version: ver(1) }])) };
      const report = checkAll(ops, broken);
      expect(report.ok).to.equal(false);
      expect(report.summary.failedCheckers).to.include.members(['noLostWrites', 'converged']);
      const text = formatReport(report, { maxViolations: 1 });
      expect(text).to.match(/noLostWrites\s+FAIL/);
      // The final state is the last read: an older value there is not linearizable either.
      expect(text).to.match(/linearizable\s+FAIL/);
      expect(text).to.contain(`first 1 of ${report.summary.violations}`);
    });

    it('skips the checkers it is told to skip', () => {
      const { ops, final } = correctHistory();
      const report = checkAll(ops, final, { skip: ['linearizable'] });
      expect(report.results.map((r) => r.name)).to.not.include('linearizable');
    });

    it('checks a history recorded with the History class, pending ops counted unknown', () => {
      let now = 0;
      const rec = new History(() => now);
      const w = rec.invoke(1, 'write', 'k', { value: 'a' });
      now = 5;
      rec.ok(w, { version: ver(1) });
      const lost = rec.invoke(2, 'write', 'k', { value: 'b' });
      now = 8;
      rec.unknown(lost, 'KV_TIMEOUT');
      rec.invoke(3, 'write', 'k', { value: 'c' }); // never answered
      const r = rec.invoke(4, 'read', 'k');
      now = 12;
      rec.ok(r, { readValue: 'c', version: ver(3) });
      expect(rec.pendingCount).to.equal(1);
      const ops = rec.ops();
      expect(ops.map((o) => o.status)).to.deep.equal(['ok', 'unknown', 'unknown', 'ok']);
      expect(checkAll(rec, agreed({ k: ['c', 3] })).ok).to.equal(true);
      expect(checkAll(rec, agreed({ k: ['b', 2] })).ok).to.equal(false);
      expect(() => rec.ok(w)).to.throw(/not pending/);
    });
  });
});
