/**
 * The pure pieces of conditional writes, TTL and listing at the HTTP edge and in the
 * coordinator: header and parameter syntax, the acceptor set during an ownership change,
 * the listing cursor, and the merge of replica scans.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { KvError } from '../../lib/errors.ts';
import { makeVersion } from '../../lib/core/hlc.ts';
import { parseCondition, parseListQuery, parseTtl, TTL_MAX_SECONDS } from '../../lib/api/kv-params.ts';
import { acceptorSet } from '../../lib/node/cas.ts';
import { decodeCursor, encodeCursor, mergeScans, type ScanAnswer } from '../../lib/core/listing.ts';

const V1 = makeVersion({ wall: 1_700_000_000_000, logical: 3 }, 'n1');
const V2 = makeVersion({ wall: 1_700_000_000_500, logical: 0 }, 'n2');

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof KvError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('conditional-write headers', () => {
  it('takes If-Match with one version, bare or in ETag quotes, and If-None-Match: * on PUT', () => {
    expect(parseCondition('PUT', V1, undefined)).to.deep.equal({ ifMatch: V1 });
    expect(parseCondition('DELETE', `"${V1}"`, undefined)).to.deep.equal({ ifMatch: V1 });
    expect(parseCondition('PUT', undefined, '*')).to.deep.equal({ ifNoneMatch: true });
    expect(parseCondition('PUT', undefined, ' * ')).to.deep.equal({ ifNoneMatch: true });
    expect(parseCondition('PUT', undefined, undefined)).to.equal(undefined);
  });

  it('refuses both headers at once, lists, wildcards in If-Match, anything but * in If-None-Match, and If-None-Match on DELETE', () => {
    for (const [m, im, inm] of [
      ['PUT', V1, '*'], ['PUT', `${V1}, ${V2}`, undefined], ['PUT', '*', undefined], ['PUT', 'W/"x"', undefined], ['PUT', '', undefined],
      ['PUT', undefined, V1], ['PUT', undefined, '"*"'], ['DELETE', undefined, '*'], ['PUT', [V1, V2], undefined],
    ] as const) {
      expect(code(() => parseCondition(m, im as string | string[] | undefined, inm)), `${m} ${String(im)} ${String(inm)}`).to.equal('KV_INVALID_ARGUMENT');
    }
  });

  it('takes ttl as whole seconds 1..10 years and nothing else', () => {
    expect(parseTtl(undefined)).to.equal(undefined);
    expect(parseTtl('1')).to.equal(1000);
    expect(parseTtl(String(TTL_MAX_SECONDS))).to.equal(TTL_MAX_SECONDS * 1000);
    for (const bad of ['0', '-1', '1.5', '1e3', '', ' 5', String(TTL_MAX_SECONDS + 1), '99999999999', 'abc']) {
      expect(code(() => parseTtl(bad)), bad).to.equal('KV_INVALID_ARGUMENT');
    }
  });

  it('parses listing parameters with a default and a maximum limit', () => {
    expect(parseListQuery(new Map(), 3, 1024)).to.deep.equal({ prefix: '', limit: 100 });
    expect(parseListQuery(new Map([['prefix', 'a/'], ['limit', '1000'], ['cursor', 'abc'], ['r', 'all']]), 3, 1024))
      .to.deep.equal({ prefix: 'a/', limit: 1000, cursor: 'abc', r: 'all' });
    for (const q of [[['limit', '0']], [['limit', '1001']], [['limit', 'x']], [['cursor', '']], [['r', '4']], [['prefix', 'p'.repeat(1025)]]]) {
      expect(code(() => parseListQuery(new Map(q as [string, string][]), 3, 1024)), JSON.stringify(q)).to.equal('KV_INVALID_ARGUMENT');
    }
  });
});

describe('CAS acceptor set', () => {
  it('is the replicas while the owners do not change', () => {
    expect(acceptorSet(['a', 'b', 'c'], ['a', 'b', 'c'])).to.deep.equal({ replicas: ['a', 'b', 'c'] });
    expect(acceptorSet(['a', 'b', 'c'], ['c', 'b', 'a'])).to.deep.equal({ replicas: ['a', 'b', 'c'] });
  });

  it('is the union of old and new owners for one swapped node, and busy when one majority cannot cover both', () => {
    expect(acceptorSet(['a', 'b', 'c'], ['b', 'c', 'd'])).to.deep.equal({ replicas: ['a', 'b', 'c', 'd'] });
    expect(acceptorSet(['a', 'b', 'c', 'd', 'e'], ['a', 'b', 'c', 'd', 'f'])).to.deep.equal({ replicas: ['a', 'b', 'c', 'd', 'e', 'f'] });
    expect(acceptorSet(['a', 'b', 'c'], ['a', 'd', 'e'])).to.have.property('busy');
    // N even: {a, c} is a majority of {a, b, c} but not of {b, c}.
    expect(acceptorSet(['a', 'b'], ['b', 'c'])).to.have.property('busy');
    // A shrinking set (a node leaves a 3-node cluster): {b, c} is a majority of the old owners, not of {a, b}.
    expect(acceptorSet(['a', 'b', 'c'], ['a', 'b'])).to.have.property('busy');
  });

  it('whenever it answers a set, every majority of it is a majority of the old and of the new owners', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const set = fc.uniqueArray(fc.constantFrom(...ids), { minLength: 1, maxLength: 5 });
    fc.assert(fc.property(set, set, (cur, fut) => {
      const s = acceptorSet(cur, fut);
      if ('busy' in s) return true;
      const u = s.replicas;
      const q = Math.floor(u.length / 2) + 1;
      // Every q-subset: check the worst one for each side (the subset avoiding that side most).
      for (const side of [cur, fut]) {
        const inSide = u.filter((id) => side.includes(id)).length;
        const worst = q - (u.length - inSide);
        if (worst < Math.floor(side.length / 2) + 1) return false;
      }
      return new Set(u).size === u.length && [...cur, ...fut].every((id) => u.includes(id));
    }), { numRuns: 500 });
  });
});

describe('listing cursor and merge', () => {
  const limits = { partitions: 1024, maxKeyBytes: 1024 };

  it('round-trips a position, and refuses it for another prefix, out of range, or tampered', () => {
    for (const c of [{ partition: 0, after: null }, { partition: 1023, after: 'k/ü/\u0000x' }]) {
      expect(decodeCursor(encodeCursor(c, 'k/'), 'k/', limits)).to.deep.equal(c);
    }
    const cur = encodeCursor({ partition: 7, after: 'a' }, 'p');
    expect(code(() => decodeCursor(cur, 'q', limits))).to.equal('KV_INVALID_ARGUMENT');
    expect(code(() => decodeCursor(cur, 'p', { partitions: 4, maxKeyBytes: 1024 }))).to.equal('KV_INVALID_ARGUMENT');
    for (const bad of ['x', '!!!', Buffer.from('[2,0,null,"x"]').toString('base64url'), Buffer.from('{"p":1}').toString('base64url'), 'A'.repeat(10_000)]) {
      expect(code(() => decodeCursor(bad, 'p', limits)), bad.slice(0, 20)).to.equal('KV_INVALID_ARGUMENT');
    }
  });

  const order = (k: string): string => k; // scan order = key order in these examples
  const live = (key: string, version: string): { key: string; version: string; tombstone: boolean } => ({ key, version, tombstone: false });

  it('keeps only keys up to the shortest reach, the highest version of each, without tombstones and expired records', () => {
    const a: ScanAnswer = { entries: [live('a', V1), live('b', V2), live('d', V1), live('x', V1)], reached: 'x', done: false };
    const b: ScanAnswer = { entries: [{ key: 'b', version: V1, tombstone: false }, { key: 'c', version: V2, tombstone: true }, live('e', V1), { key: 'f', version: V1, tombstone: false, expiresAt: 5 }], reached: 'f', done: false };
    const m = mergeScans([a, b], order, 10);
    expect(m.keys).to.deep.equal([{ key: 'a', version: V1 }, { key: 'b', version: V2 }, { key: 'd', version: V1 }, { key: 'e', version: V1 }]);
    expect(m.next).to.equal('f');
    expect(m.done).to.equal(false);
  });

  it('lets a newer tombstone on one replica hide an older live value on the other, and is done only when every scan is', () => {
    const a: ScanAnswer = { entries: [live('k', V1)], reached: 'k', done: true };
    const b: ScanAnswer = { entries: [{ key: 'k', version: V2, tombstone: true }], reached: 'k', done: true };
    expect(mergeScans([a, b], order, 0)).to.deep.equal({ keys: [], next: null, done: true });
    const c: ScanAnswer = { entries: [], reached: null, done: true };
    expect(mergeScans([a, c], order, 0)).to.deep.equal({ keys: [{ key: 'k', version: V1 }], next: null, done: true });
  });

  it('never loses a key any replica holds, over random scans cut at random reaches', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.uniqueArray(fc.integer({ min: 0, max: 99 })), fc.integer({ min: 0, max: 120 })), { minLength: 1, maxLength: 3 }), (reps) => {
      const key = (i: number): string => `k${String(i).padStart(3, '0')}`;
      const answers: ScanAnswer[] = reps.map(([held, reach]) => {
        const sorted = [...held].sort((x, y) => x - y);
        const done = reach >= 100;
        const seen = sorted.filter((i) => done || i <= reach);
        return { entries: seen.map((i) => live(key(i), V1)), reached: done ? (seen.length ? key(seen[seen.length - 1] as number) : null) : key(Math.min(reach, 99)), done };
      });
      const m = mergeScans(answers, order, 0);
      const bound = m.done ? 'k999' : (m.next as string);
      const want = new Set(reps.flatMap(([held]) => held.map(key)).filter((k) => k <= bound));
      return m.keys.length === want.size && m.keys.every((k) => want.has(k.key));
    }), { numRuns: 300 });
  });
});
