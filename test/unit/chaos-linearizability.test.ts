import { expect } from 'chai';
import { makeVersion } from '../../lib/core/hlc.ts';
import { linearizable } from '../../lib/chaos/checkers.ts';
import { checkRegisterHistory } from '../../lib/chaos/linearizability.ts';
import type { Op, OpStatus } from '../../lib/chaos/history.ts';

const ver = (n: number): string => makeVersion({ wall: 1_700_000_000_000 + n, logical: 0 }, 'n1');

/**
 * Builds one key's history without versions, so the search sees the plain register
 * model (every op on its own process); the version order has its own tests below.
 */
class Ops {
  readonly list: Op[] = [];
  private push(op: Omit<Op, 'id'>): Op {
    const full = { ...op, id: this.list.length };
    this.list.push(full);
    return full;
  }
  write(value: string, [invokeMs, completeMs]: [number, number], status: OpStatus = 'ok', key = 'k'): Op {
    return this.push({ process: this.list.length, kind: 'write', key, value, invokeMs, completeMs, status });
  }
  del([invokeMs, completeMs]: [number, number], status: OpStatus = 'ok', key = 'k'): Op {
    return this.push({ process: this.list.length, kind: 'delete', key, invokeMs, completeMs, status });
  }
  read(readValue: string | null, [invokeMs, completeMs]: [number, number], key = 'k'): Op {
    return this.push({ process: this.list.length, kind: 'read', key, invokeMs, completeMs, status: 'ok', readValue });
  }
}

const verdictOf = (h: Ops): string => checkRegisterHistory('k', h.list).verdict;

describe('chaos linearizability checker (register model)', () => {
  it('rejects a stale read: an older value after a newer write was acked, with no write in between', () => {
    const h = new Ops();
    h.write('a', [0, 10]);
    const newer = h.write('b', [20, 30]);
    const stale = h.read('a', [40, 50]);
    const v = checkRegisterHistory('k', h.list);
    expect(v.verdict).to.equal('not-linearizable');
    expect(v.blockingOpId).to.equal(stale.id);
    expect(v.staleReadIds).to.deep.equal([stale.id]);
    expect(v.message).to.contain(`#${stale.id} p${stale.process} read → "a"`).and.contain(`#${newer.id} `);
    expect(linearizable(h.list).violations[0]?.opIds?.[0]).to.equal(stale.id);
  });

  it('names the read that saw a value its writer could not have left there, when only a search can tell', () => {
    // Neither read is stale on its own; together they need b before a and a before b.
    const h = new Ops();
    h.write('a', [0, 10]);
    h.write('b', [5, 15]);
    h.read('a', [16, 17]);
    const flip = h.read('b', [18, 19]);
    const v = checkRegisterHistory('k', h.list);
    expect(v.verdict).to.equal('not-linearizable');
    expect(v.steps).to.be.above(0);
    expect(v.message).to.contain('no linearization exists');
    expect(v.staleReadIds).to.include(flip.id);
  });

  it('accepts overlapping writes observed in either order while they overlap', () => {
    const h = new Ops();
    h.write('a', [0, 10]);
    h.write('b', [5, 15]);
    h.read('b', [6, 8]); // b took effect first ...
    h.read('a', [12, 20]); // ... then a, still inside b's interval
    h.read('a', [21, 22]);
    expect(verdictOf(h)).to.equal('linearizable');
  });

  it('accepts an unknown write that landed, even long after the client timed out', () => {
    const h = new Ops();
    h.write('a', [0, 5]);
    h.write('b', [10, 15], 'unknown');
    h.read('a', [20, 30]);
    h.read('b', [100, 110]);
    h.read('b', [120, 130]);
    expect(verdictOf(h)).to.equal('linearizable');
  });

  it('accepts an unknown write that never landed', () => {
    const h = new Ops();
    h.write('a', [0, 5]);
    h.write('b', [10, 15], 'unknown');
    h.read('a', [20, 30]);
    h.read('a', [100, 110]);
    expect(verdictOf(h)).to.equal('linearizable');
  });

  it('rejects an unknown write that was observed and then un-happened', () => {
    const h = new Ops();
    h.write('a', [0, 5]);
    h.write('b', [10, 15], 'unknown');
    h.read('b', [20, 30]);
    h.read('a', [40, 50]);
    expect(verdictOf(h)).to.equal('not-linearizable');
  });

  it('rejects a read that saw a value before its write was invoked', () => {
    const h = new Ops();
    h.read('a', [0, 5]);
    h.write('a', [10, 15], 'unknown');
    expect(verdictOf(h)).to.equal('not-linearizable');
  });

  it('rejects a read of a write that was reported failed, and ignores failed writes otherwise', () => {
    const seen = new Ops();
    seen.write('a', [0, 5], 'fail');
    seen.read('a', [10, 15]);
    expect(verdictOf(seen)).to.equal('not-linearizable');

    const unseen = new Ops();
    unseen.write('a', [0, 5], 'fail');
    unseen.read(null, [10, 15]);
    expect(verdictOf(unseen)).to.equal('linearizable');
  });

  it('models deletes: not found after an acked delete, never the deleted value', () => {
    const ok = new Ops();
    ok.write('a', [0, 5]);
    ok.del([10, 15]);
    ok.read(null, [20, 25]);
    expect(verdictOf(ok)).to.equal('linearizable');

    const resurrected = new Ops();
    resurrected.write('a', [0, 5]);
    resurrected.del([10, 15]);
    resurrected.read('a', [20, 25]);
    expect(verdictOf(resurrected)).to.equal('not-linearizable');
  });

  it('lets an unknown delete explain a not-found read only after it was invoked', () => {
    const landed = new Ops();
    landed.write('a', [0, 5]);
    landed.del([10, 12], 'unknown');
    landed.read(null, [20, 25]);
    expect(verdictOf(landed)).to.equal('linearizable');

    const early = new Ops();
    early.write('a', [0, 5]);
    early.read(null, [6, 8]);
    early.del([10, 12], 'unknown');
    expect(verdictOf(early)).to.equal('not-linearizable');
  });

  it('treats intervals that touch at the same millisecond as concurrent', () => {
    const touching = new Ops();
    touching.write('a', [0, 10]);
    touching.read(null, [10, 12]);
    expect(verdictOf(touching)).to.equal('linearizable');

    const apart = new Ops();
    apart.write('a', [0, 10]);
    apart.read(null, [11, 12]);
    expect(verdictOf(apart)).to.equal('not-linearizable');
  });

  it('gives up with verdict unknown on a pathological history instead of hanging', () => {
    // 18 fully concurrent writes, then two reads that no order satisfies: proving it
    // means visiting every (subset, last write) pair, about 2.4 million of them.
    const h = new Ops();
    for (let i = 0; i < 18; i++) h.write(`v${i}`, [0, 100]);
    h.read('v0', [200, 210]);
    h.read('v1', [300, 310]);
    const v = checkRegisterHistory('k', h.list, { maxStepsPerKey: 50_000 });
    expect(v.verdict).to.equal('unknown');
    expect(v.steps).to.equal(50_000);

    const res = linearizable(h.list, { maxStepsPerKey: 50_000 });
    expect(res.ok).to.equal(true);
    expect(res.stats.unknown).to.equal(1);
    expect(linearizable(h.list, { maxStepsPerKey: 50_000, failOnUnknown: true }).ok).to.equal(false);
  });

  it('decides a long sequential history with many unknown writes in linear-ish steps', () => {
    // Dozens of unknown writes interleaved with reads would be 2^n optional subsets
    // without the reduction of unknown ops.
    const h = new Ops();
    let t = 0;
    let current = 'w0';
    h.write(current, [t, t + 1]);
    for (let i = 1; i < 2000; i++) {
      t += 2;
      if (i % 3 === 0) {
        h.write(`u${i}`, [t, t + 1], 'unknown'); // never observed: never landed
      } else if (i % 3 === 1) {
        current = `w${i}`;
        h.write(current, [t, t + 1]);
      } else {
        h.read(current, [t, t + 1]);
      }
    }
    const v = checkRegisterHistory('k', h.list);
    expect(v.verdict).to.equal('linearizable');
    expect(v.steps).to.be.below(20_000);
  });

  it('splits the history by key and counts verdicts per key', () => {
    const h = new Ops();
    h.write('a', [0, 10], 'ok', 'x');
    h.read('a', [20, 30], 'x');
    h.write('b', [0, 10], 'ok', 'y');
    h.write('c', [20, 30], 'ok', 'y');
    h.read('b', [40, 50], 'y');
    const res = linearizable(h.list);
    expect(res.ok).to.equal(false);
    expect(res.stats).to.include({ keys: 2, linearizable: 1, notLinearizable: 1, unknown: 0 });
    expect(res.violations.map((v) => v.key)).to.deep.equal(['y']);
    expect(res.verdicts.find((v) => v.key === 'x')?.verdict).to.equal('linearizable');
  });
});

/** A history with explicit clients and versions: what the store reports on a shared key. */
class Stamped {
  readonly list: Op[] = [];
  private push(op: Omit<Op, 'id' | 'key'>): Op {
    const full = { ...op, key: 'k', id: this.list.length };
    this.list.push(full);
    return full;
  }
  write(process: number, value: string, [invokeMs, completeMs]: [number, number], v: number, status: OpStatus = 'ok'): Op {
    return this.push({ process, kind: 'write', value, invokeMs, completeMs, status, ...(status === 'ok' ? { version: ver(v) } : {}) });
  }
  read(process: number, readValue: string | null, [invokeMs, completeMs]: [number, number], v?: number): Op {
    return this.push({ process, kind: 'read', invokeMs, completeMs, status: 'ok', readValue, ...(v !== undefined ? { version: ver(v) } : {}) });
  }
}

describe('chaos linearizability checker (versions order the writes)', () => {
  it('rejects a multi-writer history whose reads go back in version order while the writes overlap', () => {
    // Without versions, b then a is a valid order (both writes still in flight); with
    // a stamped below b, a store that showed b can never show a again.
    const h = new Stamped();
    h.write(1, 'a', [0, 100], 1);
    h.write(2, 'b', [0, 100], 2);
    const forward = h.read(3, 'b', [20, 25], 2);
    const back = h.read(4, 'a', [30, 35], 1);
    const v = checkRegisterHistory('k', h.list);
    expect(v.verdict).to.equal('not-linearizable');
    expect([forward.id, back.id]).to.include(v.blockingOpId);
    const plain = h.list.map(({ version: _v, ...op }) => op);
    expect(checkRegisterHistory('k', plain).verdict).to.equal('linearizable');
  });

  it('rejects a later write stamped below one that completed before it began', () => {
    const h = new Stamped();
    h.write(1, 'a', [0, 10], 5);
    h.write(2, 'b', [20, 30], 3);
    h.read(3, 'b', [40, 50], 3);
    const v = checkRegisterHistory('k', h.list, { staleReadPrecheck: false });
    expect(v.verdict).to.equal('not-linearizable');
    expect(v.message).to.contain('no linearization exists');
  });

  it('accepts concurrent writers whose reads follow version order', () => {
    const h = new Stamped();
    h.write(1, 'a', [0, 30], 2);
    h.write(2, 'b', [5, 15], 1);
    h.read(3, 'b', [6, 8], 1); // b first (the lower version) ...
    h.read(4, 'a', [20, 40], 2); // ... then a, inside a's interval
    h.write(3, 'c', [41, 50], 3);
    h.read(1, 'c', [60, 70], 3);
    expect(checkRegisterHistory('k', h.list).verdict).to.equal('linearizable');
  });

  it('places an unknown write by the version a read reported for it', () => {
    const h = new Stamped();
    h.write(1, 'a', [0, 10], 2);
    h.write(2, 'u', [0, 10], 0, 'unknown');
    h.read(3, 'u', [20, 30], 1); // u is below a: seeing it after a was acked is going back
    expect(checkRegisterHistory('k', h.list).verdict).to.equal('not-linearizable');

    const above = new Stamped();
    above.write(1, 'a', [0, 10], 2);
    above.write(2, 'u', [0, 10], 0, 'unknown');
    above.read(3, 'u', [20, 30], 3);
    expect(checkRegisterHistory('k', above.list).verdict).to.equal('linearizable');
  });

  it('checks the final state as a last read and counts keys by class', () => {
    const h = new Stamped();
    h.write(1, 'a', [0, 10], 1);
    h.write(2, 'b', [20, 30], 2);
    h.read(1, 'b', [40, 50], 2);
    const single = [
      { id: 10, process: 5, kind: 'write', key: 'own', value: 'x', invokeMs: 0, completeMs: 5, status: 'ok', version: ver(1) },
      { id: 11, process: 5, kind: 'read', key: 'own', invokeMs: 6, completeMs: 7, status: 'ok', readValue: 'x', version: ver(1) },
    ] satisfies Op[];
    const ops = [...h.list, ...single];
    const nodes = (value: string, v: number): Record<string, { value: string; version: string }> =>
      ({ n1: { value, version: ver(v) }, n2: { value, version: ver(v) } });
    const good = linearizable(ops, { finalState: { k: nodes('b', 2), own: nodes('x', 1) } });
    expect(good.ok).to.equal(true);
    expect(good.stats).to.include({ singleWriterKeys: 1, singleWriterLinearizable: 1, multiWriterKeys: 1, multiWriterLinearizable: 1 });

    // Every read was fine, but the final state went back to a: lost, and not linearizable.
    const back = linearizable(ops, { finalState: { k: nodes('a', 1), own: nodes('x', 1) } });
    expect(back.ok).to.equal(false);
    expect(back.stats).to.include({ multiWriterKeys: 1, multiWriterLinearizable: 0, singleWriterLinearizable: 1 });
    expect(back.violations[0]?.key).to.equal('k');
    expect(back.violations[0]?.message).to.contain('the final state "a"');
  });
});

/** What a conditional op was answered: ok with its version, 412 naming the current version (null: none), fail, unknown. */
type CasAnswer = { ok: number } | { precondition: number | null } | 'fail' | 'unknown';

/** One compare-and-set key's history: conditional writes and deletes, serial reads. */
class Cas {
  readonly list: Op[] = [];
  private push(op: Omit<Op, 'id' | 'key'>): Op {
    const full = { ...op, key: 'c', id: this.list.length };
    this.list.push(full);
    return full;
  }
  private answered(answer: CasAnswer): Pick<Op, 'status' | 'version'> {
    if (answer === 'fail' || answer === 'unknown') return { status: answer };
    if ('ok' in answer) return { status: 'ok', version: ver(answer.ok) };
    return { status: 'precondition', ...(answer.precondition === null ? {} : { version: ver(answer.precondition) }) };
  }
  /** PUT with If-Match ver(ifMatch), or If-None-Match when ifMatch is null. */
  put(process: number, value: string, ifMatch: number | null, [invokeMs, completeMs]: [number, number], answer: CasAnswer): Op {
    const condition = ifMatch === null ? { ifNoneMatch: true as const } : { ifMatch: ver(ifMatch) };
    return this.push({ process, kind: 'write', value, ...condition, invokeMs, completeMs, ...this.answered(answer) });
  }
  del(process: number, ifMatch: number, [invokeMs, completeMs]: [number, number], answer: CasAnswer): Op {
    return this.push({ process, kind: 'delete', ifMatch: ver(ifMatch), invokeMs, completeMs, ...this.answered(answer) });
  }
  read(process: number, readValue: string | null, [invokeMs, completeMs]: [number, number], v?: number): Op {
    return this.push({
      process, kind: 'read', serial: true, invokeMs, completeMs, status: 'ok', readValue, ...(v !== undefined ? { version: ver(v) } : {}),
    });
  }
}

/** The verdict with and without the stale-read precheck: the search alone must agree. */
function casVerdicts(h: Cas): [string, string] {
  return [checkRegisterHistory('c', h.list).verdict, checkRegisterHistory('c', h.list, { staleReadPrecheck: false }).verdict];
}

describe('chaos linearizability checker (compare-and-set register)', () => {
  it('accepts a correct history: create, If-Match chains across clients, 412s that saw the current version, delete and create again', () => {
    const h = new Cas();
    h.put(1, '1.0', null, [0, 10], { ok: 1 });
    h.put(2, '2.0', null, [2, 12], { precondition: 1 }); // lost the race to create
    h.read(3, '1.0', [15, 20], 1);
    h.put(3, '3.0', 1, [21, 30], { ok: 2 });
    h.put(1, '1.1', 1, [22, 32], { precondition: 2 }); // same expected version: only one wins
    h.read(2, '3.0', [33, 35], 2);
    h.del(2, 2, [36, 40], { ok: 3 });
    h.put(1, '1.2', 2, [41, 45], { precondition: null }); // deleted: no live value
    h.put(3, '3.1', null, [46, 50], { ok: 4 });
    h.read(1, '3.1', [51, 55], 4);
    expect(casVerdicts(h)).to.deep.equal(['linearizable', 'linearizable']);
    const res = linearizable(h.list);
    expect(res.stats).to.include({ casKeys: 1, casLinearizable: 1, singleWriterKeys: 0, multiWriterKeys: 0 });
  });

  it('accepts concurrent compare-and-sets in the order the versions and the 412s tell, not the order they were invoked', () => {
    const h = new Cas();
    h.put(1, '1.0', null, [0, 5], { ok: 1 });
    h.put(2, '2.0', 1, [10, 40], { precondition: 2 }); // invoked first, evaluated after 3.0 was chosen
    h.put(3, '3.0', 1, [12, 20], { ok: 2 });
    h.put(4, '4.0', 2, [25, 50], { ok: 3 });
    h.read(1, '4.0', [60, 61], 3);
    expect(casVerdicts(h)).to.deep.equal(['linearizable', 'linearizable']);
  });

  it('rejects two compare-and-sets on the same expected version that both succeeded', () => {
    const concurrent = new Cas();
    concurrent.put(1, '1.0', null, [0, 5], { ok: 1 });
    concurrent.put(2, '2.0', 1, [10, 30], { ok: 2 });
    concurrent.put(3, '3.0', 1, [12, 32], { ok: 3 });
    expect(casVerdicts(concurrent)).to.deep.equal(['not-linearizable', 'not-linearizable']);

    const sequential = new Cas();
    sequential.put(1, '1.0', null, [0, 5], { ok: 1 });
    sequential.put(2, '2.0', 1, [10, 20], { ok: 2 });
    const first = sequential.list[1] as Op;
    const second = sequential.put(3, '3.0', 1, [30, 40], { ok: 3 });
    const v = checkRegisterHistory('c', sequential.list, { staleReadPrecheck: false });
    expect(v.verdict).to.equal('not-linearizable');
    // Whichever of the two the search could not place, the message names both.
    expect([first.id, second.id]).to.include(v.blockingOpId);
    expect(v.message).to.contain(`#${first.id} p2 write "2.0" if-match ${ver(1)}`).and.contain(`#${second.id} p3 write "3.0" if-match ${ver(1)}`)
      .and.contain('it expects the same value as');
    // Two creates of an absent key, with no delete between them, are the same mistake.
    const creates = new Cas();
    creates.put(1, '1.0', null, [0, 5], { ok: 1 });
    creates.put(2, '2.0', null, [10, 20], { ok: 2 });
    expect(casVerdicts(creates)).to.deep.equal(['not-linearizable', 'not-linearizable']);
  });

  it('rejects a successful If-Match on a version overwritten before it began, and a delete that matched a stale version', () => {
    const h = new Cas();
    h.put(1, '1.0', null, [0, 5], { ok: 1 });
    h.put(2, '2.0', 1, [10, 20], { ok: 2 });
    h.put(3, '3.0', 1, [30, 40], { precondition: 2 });
    h.del(3, 1, [50, 60], { ok: 3 });
    expect(casVerdicts(h)).to.deep.equal(['not-linearizable', 'not-linearizable']);
  });

  it('rejects a 412 that contradicts the order: it names a version already replaced, or no value while one was live', () => {
    const back = new Cas();
    back.put(1, '1.0', null, [0, 5], { ok: 1 });
    back.put(2, '2.0', 1, [10, 20], { ok: 2 });
    const stale = back.put(3, '3.0', 5, [30, 40], { precondition: 1 }); // 2.0 was current since 20
    const v = checkRegisterHistory('c', back.list);
    expect(v.verdict).to.equal('not-linearizable');
    expect(v.blockingOpId).to.equal(stale.id);
    expect(v.message).to.contain(`#${stale.id} p3 write "3.0" if-match ${ver(5)} [30,40] precondition @${ver(1)} is stale`);
    expect(checkRegisterHistory('c', back.list, { staleReadPrecheck: false }).verdict).to.equal('not-linearizable');

    const none = new Cas();
    none.put(1, '1.0', null, [0, 5], { ok: 1 });
    none.put(2, '2.0', 7, [10, 20], { precondition: null });
    expect(casVerdicts(none)).to.deep.equal(['not-linearizable', 'not-linearizable']);

    // The same 412s inside the writes' intervals are fine.
    const during = new Cas();
    during.put(1, '1.0', null, [0, 5], { ok: 1 });
    during.put(2, '2.0', 1, [10, 40], { ok: 2 });
    during.put(3, '3.0', 5, [30, 35], { precondition: 1 });
    expect(casVerdicts(during)).to.deep.equal(['linearizable', 'linearizable']);
  });

  it('rejects a 412 that contradicts itself, naming it', () => {
    const matched = new Cas();
    matched.put(1, '1.0', null, [0, 5], { ok: 1 });
    const self = matched.put(2, '2.0', 1, [10, 20], { precondition: 1 });
    const v = checkRegisterHistory('c', matched.list);
    expect(v.verdict).to.equal('not-linearizable');
    expect(v.blockingOpId).to.equal(self.id);
    expect(v.message).to.contain('the current version it names is the one its If-Match expected');

    const noVersion = new Cas();
    noVersion.put(1, '1.0', null, [0, 5], { precondition: null });
    expect(checkRegisterHistory('c', noVersion.list).message).to.contain('without naming that value\'s version');
  });

  it('holds unknown compare-and-sets to their conditions: one that landed needed its version current, one that did not is free', () => {
    const landed = new Cas();
    landed.put(1, '1.0', null, [0, 5], { ok: 1 });
    landed.put(2, '2.0', 1, [10, 20], 'unknown');
    landed.put(3, '3.0', 1, [30, 40], { precondition: 2 }); // the unknown one took effect ...
    landed.read(1, '2.0', [50, 60], 2); // ... and is read
    expect(casVerdicts(landed)).to.deep.equal(['linearizable', 'linearizable']);

    const tooLate = new Cas();
    tooLate.put(1, '1.0', null, [0, 5], { ok: 1 });
    tooLate.put(2, '2.0', 1, [10, 20], { ok: 2 });
    tooLate.put(3, '3.0', 1, [30, 40], 'unknown'); // 1.0 was gone before it began ...
    tooLate.read(1, '3.0', [50, 60], 3); // ... so it cannot have been applied
    expect(casVerdicts(tooLate)).to.deep.equal(['not-linearizable', 'not-linearizable']);

    const never = new Cas();
    never.put(1, '1.0', null, [0, 5], { ok: 1 });
    never.put(2, '2.0', 1, [10, 20], 'unknown');
    never.put(3, '3.0', 1, [30, 40], { ok: 3 }); // the unknown one never took effect
    never.read(1, '3.0', [50, 60], 3);
    expect(casVerdicts(never)).to.deep.equal(['linearizable', 'linearizable']);
  });

  it('lets an unknown conditional delete explain an If-None-Match that succeeded, only if its own condition held', () => {
    const h = new Cas();
    h.put(1, '1.0', null, [0, 5], { ok: 1 });
    h.del(2, 1, [6, 8], 'unknown'); // invoked first, but 1.0 went first ...
    h.put(3, '3.0', 1, [10, 20], { ok: 2 });
    h.del(2, 2, [21, 22], 'unknown'); // ... this one deleted 3.0
    h.put(1, '1.1', null, [30, 40], { ok: 3 });
    expect(casVerdicts(h)).to.deep.equal(['linearizable', 'linearizable']);

    const stale = new Cas();
    stale.put(1, '1.0', null, [0, 5], { ok: 1 });
    stale.put(3, '3.0', 1, [10, 20], { ok: 2 });
    stale.del(2, 1, [21, 22], 'unknown'); // expects 1.0, long gone
    stale.put(1, '1.1', null, [30, 40], { ok: 3 });
    expect(casVerdicts(stale)).to.deep.equal(['not-linearizable', 'not-linearizable']);
  });

  it('leaves out a 412 naming a version no op ties to a value, and counts it', () => {
    const h = new Cas();
    h.put(1, '1.0', null, [0, 5], { ok: 1 });
    h.put(2, '2.0', 1, [10, 20], 'unknown'); // stamped 9, which nobody read with its value
    h.put(3, '3.0', 1, [30, 40], { precondition: 9 });
    const v = checkRegisterHistory('c', h.list);
    expect(v.verdict).to.equal('linearizable');
    expect(v.unresolved412s).to.equal(1);
    expect(linearizable(h.list).stats['unresolved412']).to.equal(1);
  });
});
