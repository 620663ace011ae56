import { expect } from 'chai';
import fc from 'fast-check';
import { Hlc, compareTs, compareVersions, decodeTs, encodeTs, isVersion, makeVersion, parseVersion, type Timestamp } from '../../lib/core/hlc.ts';
import { isKvError } from '../../lib/errors.ts';

const SKEW = 10_000;

describe('HLC', () => {
  it('issues strictly increasing timestamps even when the wall clock goes backwards', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1_600_000_000_000, max: 1_600_000_100_000 }), { minLength: 1, maxLength: 300 }), (clock) => {
      const h = new Hlc({ maxClockSkewMs: SKEW });
      let prev: Timestamp | undefined;
      for (const pt of clock) {
        const ts = h.now(pt);
        if (prev) expect(compareTs(ts, prev)).to.equal(1);
        expect(ts.wall).to.be.at.least(pt);
        prev = ts;
      }
    }));
  });

  it('orders a receive after both the remote send and every earlier local event (skewed clocks)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ remote: fc.boolean(), skew: fc.integer({ min: -5000, max: 5000 }), step: fc.integer({ min: 0, max: 50 }) }), { minLength: 1, maxLength: 200 }),
      (events) => {
        const a = new Hlc({ maxClockSkewMs: SKEW });
        const b = new Hlc({ maxClockSkewMs: SKEW });
        let t = 1_700_000_000_000;
        let lastA: Timestamp | undefined;
        for (const e of events) {
          t += e.step;
          if (e.remote) {
            const sent = b.now(t + e.skew); // b's clock is skewed
            const recv = a.update(sent, t);
            expect(compareTs(recv, sent)).to.equal(1);
            if (lastA) expect(compareTs(recv, lastA)).to.equal(1);
            lastA = recv;
          } else {
            const ts = a.now(t);
            if (lastA) expect(compareTs(ts, lastA)).to.equal(1);
            lastA = ts;
          }
        }
      }));
  });

  it('rejects and counts remote timestamps beyond maxClockSkewMs', () => {
    const h = new Hlc({ maxClockSkewMs: SKEW });
    const before = h.now(1_000_000);
    let caught: unknown;
    try { h.update({ wall: 1_000_000 + SKEW + 1, logical: 0 }, 1_000_000); } catch (err) { caught = err; }
    expect(isKvError(caught, 'KV_CLOCK_SKEW')).to.equal(true);
    expect(h.rejectedSkew).to.equal(1);
    expect(h.peek()).to.deep.equal(before, 'a rejected timestamp does not move the clock');
    expect(() => h.update({ wall: 1_000_000 + SKEW, logical: 0 }, 1_000_000)).not.to.throw();
  });

  it('carries the logical counter into the next millisecond instead of overflowing', () => {
    const h = new Hlc({ maxClockSkewMs: SKEW });
    let prev = h.now(5000);
    for (let i = 0; i < 70_000; i++) {
      const ts = h.now(5000);
      expect(compareTs(ts, prev)).to.equal(1);
      prev = ts;
    }
    expect(prev.wall).to.equal(5001);
  });

  it('encodes versions so that string order equals (timestamp, node id) order', () => {
    const ts = fc.record({ wall: fc.integer({ min: 0, max: 2 ** 48 - 1 }), logical: fc.integer({ min: 0, max: 0xffff }) });
    const id = fc.stringMatching(/^[A-Za-z0-9_.-]{1,12}$/);
    fc.assert(fc.property(ts, id, ts, id, (t1, n1, t2, n2) => {
      const v1 = makeVersion(t1, n1);
      const v2 = makeVersion(t2, n2);
      const expected = compareTs(t1, t2) || (n1 < n2 ? -1 : n1 > n2 ? 1 : 0);
      expect(Math.sign(compareVersions(v1, v2))).to.equal(Math.sign(expected));
      expect(Math.sign(Buffer.compare(Buffer.from(v1), Buffer.from(v2)))).to.equal(Math.sign(expected), 'byte order too');
      expect(parseVersion(v1)).to.deep.equal({ ts: t1, nodeId: n1 });
      expect(decodeTs(encodeTs(t1))).to.deep.equal(t1);
    }));
  });

  it('refuses malformed versions and timestamps', () => {
    for (const bad of ['', 'zz', '018c3f2a1b2c0001', '018c3f2a1b2c0001:', '018C3F2A1B2C0001:n1', '018c3f2a1b2c001:n1', '018c3f2a1b2c0001:bad id', 42, null]) {
      expect(isVersion(bad), String(bad)).to.equal(false);
    }
    expect(() => decodeTs('nothex0000000000')).to.throw(/invalid HLC/);
  });
});
