import { expect } from 'chai';
import { makeVersion } from '../../lib/core/hlc.ts';
import { VersionCache } from '../../lib/storage/version-cache.ts';

const v = (wall: number): string => makeVersion({ wall, logical: 0 }, 'n1');

describe('version cache', () => {
  it('answers the last version set for a cached key, null (absent) included, and undefined for others', () => {
    const c = new VersionCache(10);
    c.set('a', v(1));
    c.set('a', v(2));
    c.set('gone', null);
    expect(c.get('a')).to.equal(v(2));
    expect(c.get('gone')).to.equal(null);
    expect(c.get('never')).to.equal(undefined);
  });

  it('never holds more than its capacity, however many keys go through it', () => {
    for (const capacity of [1, 2, 3, 1000]) {
      const c = new VersionCache(capacity);
      for (let i = 0; i < 10 * capacity + 7; i++) {
        c.set(`k${i}`, v(i + 1));
        expect(c.size).to.be.at.most(capacity);
      }
    }
  });

  it('keeps a key in use across rotations and drops keys nobody asked for', () => {
    const c = new VersionCache(100);
    c.set('hot', v(1));
    for (let i = 0; i < 1000; i++) {
      c.set(`cold${i}`, v(i + 2));
      expect(c.get('hot'), `after ${i} other keys`).to.equal(v(1));
    }
    expect(c.get('cold0')).to.equal(undefined);
    expect(c.get('cold999')).to.equal(v(1001));
  });

  it('holds nothing with capacity 0', () => {
    const c = new VersionCache(0);
    c.set('a', v(1));
    expect(c.get('a')).to.equal(undefined);
    expect(c.size).to.equal(0);
  });

  it('costs about the same per write past its capacity as below it (eviction is O(1))', () => {
    // An LRU on one V8 Map (delete its first key past the bound) cost over 10x more per write past the
    // bound than below it: deleted entries stay holes that keys().next() walks. A ratio, not a timing bound.
    const time = (c: VersionCache, from: number): number => {
      const t0 = process.hrtime.bigint();
      for (let i = from; i < from + 100_000; i++) c.set(`key-${i}`, null);
      return Number(process.hrtime.bigint() - t0);
    };
    const roomy = new VersionCache(10_000_000);
    time(roomy, 0);
    const below = Math.min(time(roomy, 100_000), time(roomy, 200_000));
    const bounded = new VersionCache(100_000);
    for (let r = 0; r < 8; r++) time(bounded, r * 100_000);
    const past = Math.min(time(bounded, 800_000), time(bounded, 900_000));
    expect(past / below).to.be.below(4);
  });
});
