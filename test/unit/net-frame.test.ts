/**
 * Codec and handshake pieces without sockets: bytes in, envelopes or close codes out.
 */
import { expect } from 'chai';
import { Packr } from 'msgpackr';
import { computeMac, fromWire, macEquals, newNonce, toWire } from '../../lib/net/auth.ts';
import type { AuthConfig } from '../../lib/net/auth.ts';
import { CloseCode, FrameCodec, FrameError, batchHeader, decodeBatch, joinBatch } from '../../lib/net/frame.ts';
import type { DecodeOptions } from '../../lib/net/frame.ts';
import { DEFAULT_TRANSPORT_LIMITS, resolveLimits } from '../../lib/net/limits.ts';

const HLC = '018c3f2a1b2c0001';
const opts: DecodeOptions = { peerId: 'n1', maxBatchEnvelopes: 16, knowsType: (t) => t === 'raft' };
const packr = new Packr({ useRecords: false });

function closeCodeOf(data: Buffer): number | null {
  try {
    decodeBatch(new FrameCodec(), data, opts);
    return null;
  } catch (err) {
    expect(err).to.be.instanceOf(FrameError);
    return (err as FrameError).closeCode;
  }
}

describe('net: frame codec', () => {
  it('round-trips a batch of separately encoded envelopes as one msgpack array', () => {
    const codec = new FrameCodec();
    for (const n of [1, 15, 16, 300]) {
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        parts.push(codec.encode(i % 2 ? 'req' : 'msg', 'raft', i % 2 ? i : 0, 'n1', 3, HLC, { i, b: Buffer.from([i & 0xff]) }));
      }
      const frame = joinBatch(parts, parts.reduce((s, p) => s + p.length, 0));
      // Any msgpack decoder sees a plain array.
      expect(packr.unpack(frame)).to.have.length(n);
      const envs = decodeBatch(codec, frame, { ...opts, maxBatchEnvelopes: 1000 });
      expect(envs).to.have.length(n);
      expect(envs[n - 1]).to.deep.include({ type: 'raft', from: 'n1', epoch: 3, hlc: HLC });
      expect((envs[n - 1]?.payload as { i: number }).i).to.equal(n - 1);
      expect(envs[1]?.kind).to.equal(n > 1 ? 'req' : undefined);
    }
  });

  it('keeps earlier encoded envelopes intact while later ones are encoded', () => {
    const codec = new FrameCodec();
    const first = codec.encode('msg', 'raft', 0, 'n1', 0, HLC, 'x'.repeat(100));
    const copy = Buffer.from(first);
    for (let i = 0; i < 2000; i++) codec.encode('msg', 'raft', 0, 'n1', 0, HLC, 'y'.repeat(100));
    expect(first.equals(copy)).to.equal(true);
  });

  it('writes the array header in the smallest form', () => {
    expect([...batchHeader(15)]).to.deep.equal([0x9f]);
    expect([...batchHeader(16)]).to.deep.equal([0xdc, 0, 16]);
    expect([...batchHeader(65535)]).to.deep.equal([0xdc, 0xff, 0xff]);
  });

  const bad: [string, () => Buffer, number][] = [
    ['undecodable bytes', () => Buffer.from([0xc1]), CloseCode.FRAME_INVALID],
    ['truncated msgpack', () => packr.pack([[0, 'raft', 0, 'n1', 0, HLC, 'abc']]).subarray(0, 10), CloseCode.FRAME_INVALID],
    ['a map instead of a batch', () => packr.pack({ a: 1 }), CloseCode.FRAME_INVALID],
    ['too many envelopes', () => packr.pack(Array(17).fill([0, 'raft', 0, 'n1', 0, HLC, 1])), CloseCode.FRAME_INVALID],
    ['an unknown kind', () => packr.pack([[7, 'raft', 0, 'n1', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['a request without an id', () => packr.pack([[1, 'raft', 0, 'n1', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['a message with an id', () => packr.pack([[0, 'raft', 4, 'n1', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['a fractional id', () => packr.pack([[1, 'raft', 1.5, 'n1', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['an uppercase type', () => packr.pack([[0, 'Raft', 0, 'n1', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['an overlong type', () => packr.pack([[0, 'r'.repeat(65), 0, 'n1', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['a spoofed sender', () => packr.pack([[0, 'raft', 0, 'n2', 0, HLC, 1]]), CloseCode.FRAME_INVALID],
    ['a string epoch', () => packr.pack([[0, 'raft', 0, 'n1', '1', HLC, 1]]), CloseCode.FRAME_INVALID],
    ['an uppercase HLC', () => packr.pack([[0, 'raft', 0, 'n1', 0, HLC.toUpperCase() + 'A', 1]]), CloseCode.FRAME_INVALID],
    ['an error response without a code', () => packr.pack([[3, 'raft', 2, 'n1', 0, HLC, { message: 'x' }]]), CloseCode.FRAME_INVALID],
    ['an unknown one-way type', () => packr.pack([[0, 'swim', 0, 'n1', 0, HLC, 1]]), CloseCode.UNKNOWN_TYPE],
  ];
  for (const [name, frame, code] of bad) {
    it(`rejects ${name} with close code ${code}`, () => {
      expect(closeCodeOf(frame())).to.equal(code);
    });
  }

  it('admits requests of unknown types (they are answered with an error, not a close)', () => {
    expect(closeCodeOf(packr.pack([[1, 'swim', 9, 'n1', 0, HLC, 1]]))).to.equal(null);
  });

  it('survives random bytes without throwing anything but FrameError', () => {
    let seed = 1;
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.from(Array.from({ length: 1 + (rnd() % 64) }, () => rnd() & 0xff));
      closeCodeOf(buf);
    }
  });
});

describe('net: handshake MACs', () => {
  const cfg: AuthConfig = { clusterId: 'c1', secret: Buffer.from('0123456789abcdef0123') };
  const nA = newNonce();
  const nD = newNonce();
  const mac = computeMac(cfg, 'dialer', 'a', 'b', nA, nD);

  it('verifies the same transcript', () => {
    expect(macEquals(mac, computeMac(cfg, 'dialer', 'a', 'b', nA, nD))).to.equal(true);
  });

  it('binds role, ids, nonces, cluster id and secret', () => {
    const variants = [
      computeMac(cfg, 'acceptor', 'a', 'b', nA, nD),
      computeMac(cfg, 'dialer', 'b', 'a', nA, nD),
      computeMac(cfg, 'dialer', 'a', 'c', nA, nD),
      computeMac(cfg, 'dialer', 'a', 'b', newNonce(), nD),
      computeMac(cfg, 'dialer', 'a', 'b', nA, newNonce()),
      computeMac(cfg, 'dialer', 'a', 'b', nD, nA),
      computeMac({ ...cfg, clusterId: 'c2' }, 'dialer', 'a', 'b', nA, nD),
      computeMac({ ...cfg, secret: Buffer.from('0123456789abcdef0124') }, 'dialer', 'a', 'b', nA, nD),
    ];
    for (const v of variants) expect(macEquals(mac, v)).to.equal(false);
  });

  it('does not confuse field boundaries ("ab"+"c" vs "a"+"bc")', () => {
    expect(macEquals(computeMac(cfg, 'dialer', 'ab', 'c', nA, nD), computeMac(cfg, 'dialer', 'a', 'bc', nA, nD))).to.equal(false);
  });

  it('parses only well-formed handshake messages', () => {
    expect(fromWire(packr.unpack(packr.pack(toWire({ t: 'challenge', nonce: nA })))))
      .to.deep.equal({ t: 'challenge', nonce: nA });
    expect(fromWire(['kv-peer/1', 'challenge', Buffer.alloc(8)])).to.equal(null);
    expect(fromWire(['kv-peer/2', 'challenge', nA])).to.equal(null);
    expect(fromWire(['kv-peer/1', 'auth', 'a b', 'b', nD, mac])).to.equal(null);
    expect(fromWire({ t: 'auth' })).to.equal(null);
    expect(macEquals(Buffer.alloc(3), Buffer.alloc(3))).to.equal(false);
  });
});

describe('net: limits', () => {
  it('accepts the defaults and rejects impossible combinations', () => {
    expect(resolveLimits()).to.deep.equal(DEFAULT_TRANSPORT_LIMITS);
    expect(() => resolveLimits({ maxPendingRequestsPerPeer: 0 })).to.throw(/positive integer/);
    expect(() => resolveLimits({ maxBatchEnvelopes: 70000 })).to.throw(/65535/);
    expect(() => resolveLimits({ maxBufferedBytesPerPeer: 1024 })).to.throw(/at least one frame/);
    expect(() => resolveLimits({ reconnectBaseMs: 10_000, reconnectMaxMs: 100 })).to.throw(/reconnectMaxMs/);
  });
});
