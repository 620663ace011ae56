import { expect } from 'chai';
import { pack, unpack } from 'msgpackr';
import xxhash from 'xxhash-wasm';
import { isKvError } from '../../lib/errors.ts';
import { makeVersion, type Version } from '../../lib/core/hlc.ts';
import { MerkleTree, type Hash64 } from '../../lib/core/merkle.ts';
import {
  DEFAULT_MERKLE_EXCHANGE_LIMITS, MerkleExchange, encodeHash, encodedSize, validateExchangeLimits,
  validateMerkleMessage, type ExchangeStep, type MerkleMessage,
} from '../../lib/core/merkle-exchange.ts';
import { SimReplica, runExchange } from '../sim/merkle-sim.ts';

const v = (n: number, node = 'n1'): Version => makeVersion({ wall: 1_700_000_000_000 + n, logical: 0 }, node);
const V1 = v(1);
const label = (ver: Version): number => parseInt(ver.slice(0, 12), 16) - 1_700_000_000_000;

function codeOf(fn: () => unknown): string | null {
  try {
    fn();
  } catch (err) {
    return isKvError(err) ? err.code : `not a KvError: ${String(err)}`;
  }
  return null;
}

function replicas(hash: Hash64, n: number, shape = { segments: 1024, width: 32 }): [SimReplica, SimReplica] {
  const a = new SimReplica('a', hash, shape);
  const b = new SimReplica('b', hash, shape);
  for (let i = 0; i < n; i++) {
    const rec = { version: v(i), deleted: false };
    a.write(`key-${i}`, rec);
    b.write(`key-${i}`, rec);
  }
  return [a, b];
}

const kinds = (ms: readonly MerkleMessage[]): string[] => ms.map((m) => (m.t === 'mt-end' ? `mt-end:${m.reason}` : m.t));

describe('merkle exchange messages', () => {
  const good: Record<string, MerkleMessage> = {
    root: { t: 'mt-root', partition: 3, segments: 1024, width: 32, root: encodeHash(42n) },
    nodes: { t: 'mt-nodes', partition: 3, level: 1, parents: [0], hashes: new Uint8Array(8 * 32) },
    keys: {
      t: 'mt-keys', partition: 3, last: false, chunks: [
        { segment: 4, after: 'a', upTo: null, entries: [['b', V1], ['c', V1]] },
        { segment: 9, after: null, upTo: 'q', entries: [['p', V1], ['q', V1]] },
      ],
    },
    diff: { t: 'mt-diff', partition: 3, give: [['x', V1]], want: [], resume: { segment: 9, after: null } },
    end: { t: 'mt-end', partition: 3, reason: 'in-sync' },
  };

  for (const [name, msg] of Object.entries(good)) {
    it(`accepts a well-formed ${name} message after a msgpack round trip`, () => {
      const back = validateMerkleMessage(unpack(pack(msg)));
      expect(back.t).to.equal(msg.t);
      expect(encodedSize(msg)).to.equal(pack(msg).length);
    });
  }

  const bad: Array<[string, unknown]> = [
    ['null', null],
    ['an array', [1, 2]],
    ['a class instance', new (class X { t = 'mt-end'; partition = 1; reason = 'in-sync'; })()],
    ['an unknown type', { t: 'mt-nope', partition: 1 }],
    ['a missing partition', { t: 'mt-end', reason: 'in-sync' }],
    ['a negative partition', { ...good.end, partition: -1 }],
    ['a fractional partition', { ...good.end, partition: 1.5 }],
    ['an unknown end reason', { ...good.end, reason: 'bored' }],
    ['a 7-byte root', { ...good.root, root: new Uint8Array(7) }],
    ['a hex-string root', { ...good.root, root: '000000000000002a' }],
    ['width 1', { ...good.root, width: 1 }],
    ['level 0 nodes', { ...good.nodes, level: 0 }],
    ['no parents', { ...good.nodes, parents: [], hashes: new Uint8Array(0) }],
    ['unsorted parents', { ...good.nodes, parents: [3, 1], hashes: new Uint8Array(16) }],
    ['hashes not a multiple of the parents', { ...good.nodes, parents: [0, 1], hashes: new Uint8Array(24) }],
    ['hashes as an array', { ...good.nodes, hashes: [1, 2, 3] }],
    ['no chunks', { ...good.keys, chunks: [] }],
    ['a missing last flag', { t: 'mt-keys', partition: 1, chunks: (good.keys as { chunks: unknown }).chunks }],
    ['descending chunk segments', { ...good.keys, chunks: [{ segment: 5, after: null, upTo: null, entries: [] }, { segment: 4, after: null, upTo: null, entries: [] }] }],
    ['`after` on a later chunk', { ...good.keys, chunks: [{ segment: 1, after: null, upTo: null, entries: [] }, { segment: 4, after: 'a', upTo: null, entries: [] }] }],
    ['`upTo` on an earlier chunk', { ...good.keys, chunks: [{ segment: 1, after: null, upTo: 'a', entries: [['a', V1]] }, { segment: 4, after: null, upTo: null, entries: [] }] }],
    ['`upTo` that is not the last key', { ...good.keys, chunks: [{ segment: 1, after: null, upTo: 'z', entries: [['a', V1]] }] }],
    ['entries at or before `after`', { ...good.keys, chunks: [{ segment: 1, after: 'b', upTo: null, entries: [['b', V1]] }] }],
    ['keys out of order', { ...good.keys, chunks: [{ segment: 1, after: null, upTo: null, entries: [['b', V1], ['a', V1]] }] }],
    ['a duplicate key', { ...good.keys, chunks: [{ segment: 1, after: null, upTo: null, entries: [['a', V1], ['a', V1]] }] }],
    ['an empty key', { ...good.diff, give: [['', V1]] }],
    ['a malformed version', { ...good.diff, give: [['a', '12:n1']] }],
    ['an entry as an object', { ...good.diff, want: [{ key: 'a', version: V1 }] }],
    ['too many entries', { ...good.diff, give: Array.from({ length: 65537 }, (_, i) => [`k${i}`, V1]) }],
    ['a malformed resume', { ...good.diff, resume: { segment: 'x', after: null } }],
    ['a missing resume', { t: 'mt-diff', partition: 1, give: [], want: [] }],
  ];

  for (const [name, x] of bad) {
    it(`rejects ${name} with KV_FRAME_INVALID`, () => {
      expect(codeOf(() => validateMerkleMessage(x))).to.equal('KV_FRAME_INVALID');
    });
  }

  it('encodedSize matches msgpackr for multi-byte, astral and long keys', () => {
    const keys = ['é', '日本', '😀x', '\ud800lone', 'k'.repeat(40), 'k'.repeat(300), 'ü'.repeat(40000)];
    const msg: MerkleMessage = { t: 'mt-diff', partition: 70_000, give: keys.map((k) => [k, V1] as const), want: [], resume: { segment: 300, after: 'é' } };
    expect(encodedSize(msg)).to.equal(pack(msg).length);
  });

  it('validateExchangeLimits rejects zero, fractional and oversized limits with KV_CONFIG', () => {
    expect(codeOf(() => validateExchangeLimits({ maxKeysPerMessage: 0, maxSegmentsPerRound: 1 }))).to.equal('KV_CONFIG');
    expect(codeOf(() => validateExchangeLimits({ maxKeysPerMessage: 1.5, maxSegmentsPerRound: 1 }))).to.equal('KV_CONFIG');
    expect(codeOf(() => validateExchangeLimits({ maxKeysPerMessage: 1, maxSegmentsPerRound: 5000 }))).to.equal('KV_CONFIG');
    expect(validateExchangeLimits(DEFAULT_MERKLE_EXCHANGE_LIMITS)).to.equal(DEFAULT_MERKLE_EXCHANGE_LIMITS);
  });
});

describe('merkle exchange protocol', () => {
  let h64: Hash64;
  before(async () => {
    h64 = (await xxhash()).h64;
  });

  it('identical replicas exchange only the root comparison', () => {
    const [a, b] = replicas(h64, 2000);
    const run = runExchange(a, b, 5, DEFAULT_MERKLE_EXCHANGE_LIMITS);
    expect(run.problems).to.deep.equal([]);
    expect(kinds(run.messages)).to.deep.equal(['mt-root', 'mt-end:in-sync']);
    expect(run.bytes).to.be.lessThan(100);
  });

  it('descends one level per message, then lists only the differing segment', () => {
    const [a, b] = replicas(h64, 2000);
    a.write('key-7', { version: v(5000), deleted: false }); // newer on a
    b.write('only-b', { version: v(5001), deleted: false }); // missing on a
    const sameSegment = a.tree.segmentOf('key-7') === a.tree.segmentOf('only-b');
    const run = runExchange(a, b, 5, DEFAULT_MERKLE_EXCHANGE_LIMITS);
    expect(run.problems).to.deep.equal([]);
    expect(kinds(run.messages)).to.deep.equal(['mt-root', 'mt-nodes', 'mt-nodes', 'mt-keys', 'mt-diff']);
    const keysMsg = run.messages[3];
    if (keysMsg?.t !== 'mt-keys') throw new Error('expected mt-keys');
    expect(keysMsg.chunks.length).to.equal(sameSegment ? 1 : 2);
    expect(a.records.get('key-7')?.version).to.equal(v(5000));
    expect(b.records.get('key-7')?.version).to.equal(v(5000));
    expect(a.records.get('only-b')?.version).to.equal(v(5001));
    expect(a.tree.root()).to.equal(b.tree.root());
  });

  it('reports the same push/pull lists to both sides, mirrored', () => {
    const shape = { segments: 16, width: 4 };
    const ta = new MerkleTree(h64, shape);
    const tb = new MerkleTree(h64, shape);
    const A = new Map<string, Version>([['same', v(1)], ['a-newer', v(9)], ['b-newer', v(2)], ['only-a', v(3)]]);
    const B = new Map<string, Version>([['same', v(1)], ['a-newer', v(4)], ['b-newer', v(8)], ['only-b', v(5)]]);
    for (const [k, ver] of A) ta.update(k, null, ver);
    for (const [k, ver] of B) tb.update(k, null, ver);
    const src = (m: Map<string, Version>, t: MerkleTree) => (s: number) => [...m].filter(([k]) => t.segmentOf(k) === s);
    const { session: sa, send } = MerkleExchange.initiate(ta, 0);
    const sb = MerkleExchange.respond(tb, 0);
    const got = { a: { push: [] as string[], pull: [] as string[] }, b: { push: [] as string[], pull: [] as string[] } };
    let msg: MerkleMessage | null = send;
    let to: 'a' | 'b' = 'b';
    while (msg !== null) {
      const step: ExchangeStep = to === 'a' ? sa.receive(msg, src(A, ta)) : sb.receive(msg, src(B, tb));
      got[to].push.push(...step.push.map(([k, ver]) => `${k}@${label(ver)}`));
      got[to].pull.push(...step.pull.map(([k, ver]) => `${k}@${label(ver)}`));
      msg = step.send;
      to = to === 'a' ? 'b' : 'a';
    }
    expect(sa.done && sb.done).to.equal(true);
    expect(sa.outcome).to.equal('repaired');
    expect(got.a.push.sort()).to.deep.equal(['a-newer@9', 'only-a@3']);
    expect(got.a.pull.sort()).to.deep.equal(['b-newer@8', 'only-b@5']);
    expect(got.b.push.sort()).to.deep.equal(got.a.pull);
    expect(got.b.pull.sort()).to.deep.equal(got.a.push);
    expect(sa.stats.pushed + sb.stats.pushed).to.equal(4);
  });

  it('ends at once when the trees have different shapes', () => {
    const a = new MerkleTree(h64, { segments: 1024, width: 32 });
    const b = new MerkleTree(h64, { segments: 4096, width: 64 });
    const { session, send } = MerkleExchange.initiate(a, 1);
    const responder = MerkleExchange.respond(b, 1);
    const step = responder.receive(send, () => []);
    expect(step.send).to.deep.equal({ t: 'mt-end', partition: 1, reason: 'shape-mismatch' });
    expect(responder.outcome).to.equal('shape-mismatch');
    const last = session.receive(step.send as MerkleMessage, () => []);
    expect([last.send, last.done, session.outcome]).to.deep.equal([null, true, 'shape-mismatch']);
  });

  it('a huge divergence proceeds in bounded batches and converges in one exchange', () => {
    const shape = { segments: 64, width: 8 };
    const [a, b] = replicas(h64, 0, shape);
    for (let i = 0; i < 3000; i++) a.write(`key-${i}`, { version: v(i), deleted: i % 10 === 0 });
    const limits = { maxKeysPerMessage: 50, maxSegmentsPerRound: 8 };
    for (const [x, y] of [[a, b], [b, a]] as const) {
      // Lister empty: the comparer must stop early (resume); lister full: the lister splits segments.
      const [p, q] = [new SimReplica('p', h64, shape), new SimReplica('q', h64, shape)];
      for (const [k, r] of x.records) p.write(k, r);
      for (const [k, r] of y.records) q.write(k, r);
      const run = runExchange(p, q, 9, limits);
      expect(run.problems).to.deep.equal([]);
      expect(p.tree.root()).to.equal(q.tree.root());
      expect(q.records.size).to.equal(3000);
      for (const m of run.messages) {
        if (m.t === 'mt-keys') {
          expect(m.chunks.reduce((n, c) => n + c.entries.length, 0)).to.be.at.most(50);
          expect(m.chunks.length).to.be.at.most(8);
        }
        if (m.t === 'mt-diff') expect(m.give.length + m.want.length).to.be.at.most(50);
      }
      const resumed = run.messages.some((m) => m.t === 'mt-diff' && m.resume !== null);
      const split = run.messages.some((m) => m.t === 'mt-keys' && m.chunks.some((c) => c.upTo !== null));
      expect(resumed || split).to.equal(true);
    }
  });

  it('traffic follows the divergence, not the data size', () => {
    const bytes: number[] = [];
    for (const n of [2000, 20_000]) {
      const [a, b] = replicas(h64, n);
      for (const i of [3, 500, 1999]) b.write(`key-${i}`, { version: v(100_000 + i), deleted: i === 500 });
      const run = runExchange(a, b, 0, DEFAULT_MERKLE_EXCHANGE_LIMITS);
      expect(run.problems).to.deep.equal([]);
      expect(a.tree.root()).to.equal(b.tree.root());
      bytes.push(run.bytes);
    }
    // 3 differing keys: 3 branch vectors (3 × 32 × 8 B) plus ~20 keys per segment at 20 k keys,
    // against ~700 KB to list the whole partition.
    expect(bytes[0]).to.be.lessThan(2500);
    expect(bytes[1]).to.be.lessThan(4500);
  });

  it('rejects out-of-protocol messages with KV_FRAME_INVALID', () => {
    const ta = new MerkleTree(h64);
    const tb = new MerkleTree(h64);
    ta.update('a', null, V1);
    const none = () => [];
    const { send } = MerkleExchange.initiate(ta, 2);
    expect(codeOf(() => MerkleExchange.respond(tb, 3).receive(send, none)), 'wrong partition').to.equal('KV_FRAME_INVALID');
    const end: MerkleMessage = { t: 'mt-end', partition: 2, reason: 'in-sync' };
    expect(codeOf(() => MerkleExchange.respond(tb, 2).receive(end, none)), 'end before root').to.equal('KV_FRAME_INVALID');

    const responder = MerkleExchange.respond(tb, 2);
    const step = responder.receive(send, none);
    expect(step.send?.t).to.equal('mt-nodes');
    expect(codeOf(() => responder.receive(send, none)), 'second root').to.equal('KV_FRAME_INVALID');
    const base: MerkleMessage = { t: 'mt-nodes', partition: 2, level: 2, parents: [5], hashes: new Uint8Array(8 * 32) };
    // responder offered level-1 nodes 0..31, so level-2 children of node 5 are fine; of node 40 are not.
    const offBranch: MerkleMessage = { ...base, parents: [40] };
    expect(codeOf(() => responder.segmentsToRead(offBranch)), 'parent never offered').to.equal('KV_FRAME_INVALID');
    const skipLevel: MerkleMessage = { ...base, level: 1, parents: [0] };
    expect(codeOf(() => responder.receive(skipLevel, none)), 'wrong level').to.equal('KV_FRAME_INVALID');
    const shortHashes: MerkleMessage = { ...base, hashes: new Uint8Array(8 * 16) };
    expect(codeOf(() => responder.receive(shortHashes, none)), 'short vector').to.equal('KV_FRAME_INVALID');
    const diff: MerkleMessage = { t: 'mt-diff', partition: 2, give: [], want: [], resume: null };
    expect(codeOf(() => responder.receive(diff, none)), 'diff before keys').to.equal('KV_FRAME_INVALID');
  });

  it('rejects a resume point that makes no progress', () => {
    const shape = { segments: 4, width: 4 };
    const ta = new MerkleTree(h64, shape);
    const tb = new MerkleTree(h64, shape);
    const entries: Array<[string, Version]> = [];
    for (let i = 0; i < 40; i++) entries.push([`k${i}`, v(i)]);
    for (const [k, ver] of entries) ta.update(k, null, ver);
    const srcA = (s: number) => entries.filter(([k]) => ta.segmentOf(k) === s);
    const { session: sa, send } = MerkleExchange.initiate(ta, 0);
    const sb = MerkleExchange.respond(tb, 0);
    const nodes = sb.receive(send, () => []).send as MerkleMessage;
    const keys = sa.receive(nodes, srcA).send;
    if (keys?.t !== 'mt-keys') throw new Error('expected mt-keys');
    const first = keys.chunks[0];
    if (first === undefined) throw new Error('expected a chunk');
    const stuck: MerkleMessage = { t: 'mt-diff', partition: 0, give: [], want: [], resume: { segment: first.segment, after: null } };
    expect(codeOf(() => sa.receive(stuck, srcA))).to.equal('KV_FRAME_INVALID');
    const outside: MerkleMessage = { ...stuck, resume: { segment: 99, after: null } };
    expect(codeOf(() => sa.receive(outside, srcA))).to.equal('KV_FRAME_INVALID');
    expect(sa.done).to.equal(false);
  });

  it('segmentsToRead is a dry run: it changes nothing and names every segment receive reads', () => {
    const shape = { segments: 16, width: 4 };
    const [a, b] = replicas(h64, 200, shape);
    for (let i = 0; i < 30; i++) b.forget(`key-${i}`);
    const { session: sa, send } = MerkleExchange.initiate(a.tree, 0);
    const sb = MerkleExchange.respond(b.tree, 0);
    let msg: MerkleMessage | null = send;
    let to: 'a' | 'b' = 'b';
    let reads = 0;
    while (msg !== null) {
      const s = to === 'a' ? sa : sb;
      const r = to === 'a' ? a : b;
      const announced = s.segmentsToRead(msg);
      expect(s.segmentsToRead(msg)).to.deep.equal(announced);
      const step = s.receive(msg, (seg) => {
        reads++;
        expect(announced).to.include(seg);
        return r.source(seg);
      });
      msg = step.send;
      to = to === 'a' ? 'b' : 'a';
    }
    expect(reads).to.be.greaterThan(0);
    expect(sa.done && sb.done).to.equal(true);
  });
});
