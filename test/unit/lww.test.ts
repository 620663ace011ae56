/**
 * The record store's last-writer-wins decision (lib/core/lww.ts), as properties over random
 * batches: fast-check generates keys, versions, purges and stored states.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { countAfter, decideBatch, type BatchItem } from '../../lib/core/lww.ts';

interface Rec { version: string; tag: number }

const version = fc.integer({ min: 1, max: 40 }).map((n) => `${n.toString(16).padStart(16, '0')}:n1`);
const key = fc.constantFrom('a', 'b', 'c', 'd');
const item = fc.record({
  key, partition: fc.constant(0), version, purge: fc.boolean(), tag: fc.nat(),
}).map(({ key: k, version: v, purge, tag }): BatchItem<Rec> => (purge ? { key: k, partition: 0, rec: null, purgeVersion: v } : { key: k, partition: 0, rec: { version: v, tag } }));
const stored = fc.dictionary(key, fc.option(version, { nil: null })).map((o) => new Map(Object.entries(o)));

/** The stored state, fully: `stored` plus null for keys of the batch it does not name. */
function before(items: readonly BatchItem<Rec>[], s: Map<string, string | null>): Map<string, string | null> {
  const m = new Map(s);
  for (const it of items) if (!m.has(it.key)) m.set(it.key, null);
  return m;
}

describe('last-writer-wins batch decision (properties)', () => {
  it('replays item by item: a write applies exactly when its version is above what is held at that point', () => {
    fc.assert(fc.property(fc.array(item, { maxLength: 30 }), stored, (items, s) => {
      const start = before(items, s);
      const d = decideBatch(items, start);
      const held = new Map(start);
      items.forEach((it, i) => {
        const cur = held.get(it.key) ?? null;
        const r = d.results[i];
        if (it.rec === null) {
          const ok = cur !== null && cur === it.purgeVersion;
          expect(r === undefined, 'a purge removes only the version it names').to.equal(!ok);
          if (ok) held.set(it.key, null);
        } else {
          const applies = cur === null || it.rec.version > cur;
          expect(r?.applied).to.equal(applies);
          if (applies) held.set(it.key, it.rec.version);
          expect(r?.version, 'the answer names the version stored after it').to.equal(held.get(it.key));
        }
      });
      expect([...d.versions].sort()).to.deep.equal([...held].sort());
    }));
  });

  it('never lowers a stored version, and writes exactly the keys whose version changed', () => {
    fc.assert(fc.property(fc.array(item, { maxLength: 30 }), stored, (items, s) => {
      const start = before(items, s);
      const d = decideBatch(items, start);
      for (const [k, v] of d.versions) {
        const was = start.get(k) ?? null;
        const purged = items.some((it) => it.key === k && it.rec === null);
        if (!purged && was !== null) expect(v !== null && v >= was, `${k}: ${v} from ${was}`).to.equal(true);
        if (v !== was) expect(d.writes.has(k), `${k} changed: it is written`).to.equal(true);
        const w = d.writes.get(k);
        if (w !== undefined) expect(w === null ? null : w.version).to.equal(v);
      }
    }));
  });

  it('counts keys as the changes say: present after minus present before', () => {
    fc.assert(fc.property(fc.array(item, { maxLength: 30 }), stored, fc.nat({ max: 1000 }), (items, s, base) => {
      const start = before(items, s);
      const d = decideBatch(items, start);
      const present = (m: ReadonlyMap<string, string | null>): number => [...m.values()].filter((v) => v !== null).length;
      expect(countAfter(base, d.changes.get(0) ?? [])).to.equal(base + present(d.versions) - present(start));
    }));
  });

  it('treats an equal version as the same write (idempotent, not re-applied)', () => {
    const rec = { version: `${'1'.padStart(16, '0')}:n1`, tag: 1 };
    const d = decideBatch([{ key: 'k', partition: 0, rec }, { key: 'k', partition: 0, rec: { ...rec, tag: 2 } }], new Map([['k', null]]));
    expect(d.results.map((r) => r?.applied)).to.deep.equal([true, false]);
    expect(d.writes.get('k')).to.equal(rec);
  });
});
