/**
 * SWIM core unit tests: precedence (SWIM paper section 4.2), Lifeguard suspicion
 * timeouts and local health (memberlist PR #129), retransmit limits, the probe
 * cycle, refutation and the wire gate. Whole-cluster behaviour lives in
 * test/sim/swim.test.ts.
 */
import { expect } from 'chai';
import { isKvError } from '../../lib/errors.ts';
import { seededRng } from '../../lib/core/rng.ts';
import {
  BroadcastQueue,
  DEFAULT_SWIM_CONFIG,
  MAX_UPDATES_PER_MESSAGE,
  Suspicion,
  Swim,
  confirmationsWanted,
  overrides,
  retransmitLimit,
  suspicionBoundsMs,
  suspicionTimeoutMs,
  swimConfig,
  validateSwimConfig,
  validateSwimMessage,
  type SwimMessage,
  type SwimOutput,
  type SwimUpdate,
} from '../../lib/core/swim/index.ts';

const CFG = swimConfig();

function msg(type: 'ping' | 'ack' | 'nack', seq: number, updates: SwimUpdate[] = [], epoch = 0): SwimMessage {
  return { type, seq, epoch, updates };
}

function newSwim(ids = ['a', 'b', 'c', 'd', 'e'], self = 'a', cfg = CFG): Swim {
  const s = new Swim(cfg, self, seededRng(7));
  s.setMembers(ids, 0);
  return s;
}

/** Ticks every 50 ms from `from` to `to` inclusive, collecting every output. */
function tickRange(s: Swim, from: number, to: number): SwimOutput[] {
  const outs: SwimOutput[] = [];
  for (let t = from; t <= to; t += 50) outs.push(s.tick(t));
  return outs;
}

/**
 * Ticks every 50 ms from `from` to `to` inclusive as a healthy cluster would answer:
 * members not in `silent` ack pings at once, and relays ack a ping-req for a member
 * that answers and nack one for a silent member. Returns every output.
 */
function tickAnswering(s: Swim, from: number, to: number, silent: ReadonlySet<string> = new Set()): SwimOutput[] {
  const outs: SwimOutput[] = [];
  const answer = (out: SwimOutput, now: number): void => {
    outs.push(out);
    for (const m of out.messages) {
      if (silent.has(m.to)) continue;
      if (m.msg.type === 'ping') answer(s.receive(m.to, msg('ack', m.msg.seq), now), now);
      if (m.msg.type === 'ping-req') answer(s.receive(m.to, msg(silent.has(m.msg.target) ? 'nack' : 'ack', m.msg.seq), now), now);
    }
  };
  for (let t = from; t <= to; t += 50) answer(s.tick(t), t);
  return outs;
}

function sent(outs: SwimOutput[], type?: string): Array<{ to: string; msg: SwimMessage }> {
  return outs.flatMap((o) => o.messages).filter((m) => type === undefined || m.msg.type === type);
}

function firstPing(s: Swim): { at: number; to: string; seq: number } {
  for (let t = 0; t <= 2000; t += 50) {
    const ping = s.tick(t).messages.find((m) => m.msg.type === 'ping');
    if (ping !== undefined) return { at: t, to: ping.to, seq: ping.msg.seq };
  }
  throw new Error('no probe within two periods');
}

describe('SWIM precedence (SWIM paper 4.2, by incarnation then alive < suspect < dead)', () => {
  const r = (liveness: 'alive' | 'suspect' | 'dead', incarnation: number) => ({ liveness, incarnation });
  it('alive(i) overrides suspect(j) and dead(j) only if i > j', () => {
    expect(overrides(r('alive', 2), r('suspect', 1))).to.equal(true);
    expect(overrides(r('alive', 1), r('suspect', 1))).to.equal(false);
    expect(overrides(r('alive', 2), r('dead', 1))).to.equal(true);
    expect(overrides(r('alive', 1), r('dead', 1))).to.equal(false);
    expect(overrides(r('alive', 1), r('alive', 1))).to.equal(false);
  });
  it('suspect(i) overrides alive(j) if i >= j, and dead(j) only if i > j', () => {
    expect(overrides(r('suspect', 1), r('alive', 1))).to.equal(true);
    expect(overrides(r('suspect', 0), r('alive', 1))).to.equal(false);
    expect(overrides(r('suspect', 1), r('dead', 1))).to.equal(false);
    expect(overrides(r('suspect', 2), r('dead', 1))).to.equal(true);
    expect(overrides(r('suspect', 1), r('suspect', 1))).to.equal(false);
  });
  it('dead(i) overrides alive(j) and suspect(j) if i >= j', () => {
    expect(overrides(r('dead', 1), r('alive', 1))).to.equal(true);
    expect(overrides(r('dead', 1), r('suspect', 1))).to.equal(true);
    expect(overrides(r('dead', 0), r('suspect', 1))).to.equal(false);
    expect(overrides(r('dead', 1), r('dead', 1))).to.equal(false);
  });
  it('applies the rules to received rumours and reports each liveness change once', () => {
    const s = newSwim();
    const out1 = s.receive('c', msg('ack', 1, [{ id: 'b', liveness: 'suspect', incarnation: 0, from: 'c' }]), 10);
    expect(out1.events).to.deep.equal([{ type: 'suspect', id: 'b', incarnation: 0 }]);
    const out2 = s.receive('c', msg('ack', 2, [{ id: 'b', liveness: 'alive', incarnation: 0 }]), 20);
    expect(out2.events).to.deep.equal([]);
    expect(s.member('b')).to.deep.equal({ liveness: 'suspect', incarnation: 0 });
    const out3 = s.receive('d', msg('ack', 3, [{ id: 'b', liveness: 'alive', incarnation: 1 }]), 30);
    expect(out3.events).to.deep.equal([{ type: 'alive', id: 'b', incarnation: 1 }]);
    s.receive('d', msg('ack', 4, [{ id: 'b', liveness: 'dead', incarnation: 1 }]), 40);
    expect(s.member('b')).to.deep.equal({ liveness: 'dead', incarnation: 1 });
    // A restarted member comes back only with a higher incarnation.
    s.receive('d', msg('ack', 5, [{ id: 'b', liveness: 'alive', incarnation: 1 }]), 50);
    expect(s.member('b')?.liveness).to.equal('dead');
    const back = s.receive('b', msg('ack', 6, [{ id: 'b', liveness: 'alive', incarnation: 2 }]), 60);
    expect(back.events).to.deep.equal([{ type: 'alive', id: 'b', incarnation: 2 }]);
  });
  it('ignores rumours about and messages from ids outside the Raft member list', () => {
    const s = newSwim();
    const out = s.receive('c', msg('ack', 1, [{ id: 'zz', liveness: 'dead', incarnation: 9 }]), 10);
    expect(out.events).to.deep.equal([]);
    expect(s.member('zz')).to.equal(undefined);
    expect(s.receive('zz', msg('ping', 1), 20).messages).to.deep.equal([]);
  });
});

describe('SWIM refutation', () => {
  it('outbids a suspicion of itself and carries the new incarnation on every message', () => {
    const s = newSwim();
    const out = s.receive('b', msg('ping', 9, [{ id: 'a', liveness: 'suspect', incarnation: 3, from: 'b' }]), 10);
    expect(s.incarnation).to.equal(4);
    const ack = out.messages.find((m) => m.to === 'b' && m.msg.type === 'ack');
    expect(ack?.msg.seq).to.equal(9);
    expect(ack?.msg.updates).to.deep.include({ id: 'a', liveness: 'alive', incarnation: 4 });
    expect(s.member('a')).to.deep.equal({ liveness: 'alive', incarnation: 4 });
  });
  it('comes back after a restart that lost its incarnation: dead(5) is refuted with 6', () => {
    const s = newSwim();
    expect(s.incarnation).to.equal(0);
    s.receive('c', msg('ack', 1, [{ id: 'a', liveness: 'dead', incarnation: 5 }]), 10);
    expect(s.incarnation).to.equal(6);
  });
  it('ignores a stale rumour about itself and answers an accusation made in an ack with a ping', () => {
    const s = newSwim();
    s.receive('c', msg('ack', 1, [{ id: 'a', liveness: 'suspect', incarnation: 2, from: 'c' }]), 10);
    expect(s.incarnation).to.equal(3);
    const stale = s.receive('d', msg('ack', 2, [{ id: 'a', liveness: 'dead', incarnation: 2 }]), 20);
    expect(s.incarnation).to.equal(3);
    expect(stale.messages).to.deep.equal([]);
    const accused = s.receive('e', msg('ack', 3, [{ id: 'a', liveness: 'dead', incarnation: 3 }]), 30);
    expect(s.incarnation).to.equal(4);
    expect(accused.messages.map((m) => [m.to, m.msg.type])).to.deep.equal([['e', 'ping']]);
  });
  it('tells a member it holds suspect that it is suspected, when that member speaks', () => {
    const s = newSwim();
    s.receive('c', msg('ack', 1, [{ id: 'b', liveness: 'suspect', incarnation: 0, from: 'c' }]), 10);
    const out = s.receive('b', msg('ack', 77), 20);
    const notice = out.messages.find((m) => m.to === 'b');
    expect(notice?.msg.updates).to.deep.include({ id: 'b', liveness: 'suspect', incarnation: 0, from: 'c' });
    // Rate-limited: not again within a probe interval.
    expect(s.receive('b', msg('ack', 78), 30).messages).to.deep.equal([]);
  });
});

describe('SWIM probe cycle', () => {
  it('pings one member per period, each member once per round', () => {
    const s = newSwim();
    const targets: string[] = [];
    for (let t = 0; t <= 8200; t += 50) {
      const out = s.tick(t);
      for (const m of out.messages) {
        if (m.msg.type !== 'ping') continue;
        targets.push(m.to);
        s.receive(m.to, msg('ack', m.msg.seq), t);
      }
    }
    expect(targets.length).to.be.within(8, 9);
    expect([...targets.slice(0, 4)].sort()).to.deep.equal(['b', 'c', 'd', 'e']);
    expect([...targets.slice(4, 8)].sort()).to.deep.equal(['b', 'c', 'd', 'e']);
  });
  it('asks k others to probe after the probe timeout and suspects the target at the end of the period', () => {
    const s = newSwim();
    const p = firstPing(s);
    const before = tickRange(s, p.at + 50, p.at + CFG.probeTimeoutMs - 50);
    expect(sent(before, 'ping-req')).to.have.length(0);
    const mid = tickRange(s, p.at + CFG.probeTimeoutMs, p.at + CFG.probeTimeoutMs);
    const reqs = sent(mid, 'ping-req');
    expect(reqs).to.have.length(3);
    expect(reqs.map((r) => r.to)).to.not.include(p.to);
    for (const r of reqs) {
      expect(r.msg).to.include({ seq: p.seq, target: p.to });
      s.receive(r.to, msg('nack', p.seq), p.at + CFG.probeTimeoutMs);
    }
    const end = tickRange(s, p.at + CFG.probeTimeoutMs + 50, p.at + CFG.probeIntervalMs);
    expect(end.flatMap((o) => o.events)).to.deep.equal([{ type: 'suspect', id: p.to, incarnation: 0 }]);
    // Every relay nacked: the target is at fault, not us.
    expect(s.healthScore).to.equal(0);
  });
  it('accepts an ack relayed by an indirect prober', () => {
    const s = newSwim();
    const p = firstPing(s);
    const reqs = sent(tickRange(s, p.at + 50, p.at + CFG.probeTimeoutMs), 'ping-req');
    const relay = reqs[0]?.to as string;
    s.receive(relay, msg('ack', p.seq), p.at + 600);
    const end = tickRange(s, p.at + 650, p.at + CFG.probeIntervalMs - 50);
    expect(end.flatMap((o) => o.events)).to.deep.equal([]);
    expect(s.member(p.to)?.liveness).to.equal('alive');
  });
  it('relays a ping-req: pings the target, relays its ack, nacks when it is late', () => {
    const s = newSwim();
    const out = s.receive('b', { type: 'ping-req', seq: 41, epoch: 0, updates: [], target: 'c', timeoutMs: 200 }, 1000);
    const ping = out.messages.find((m) => m.to === 'c' && m.msg.type === 'ping');
    expect(ping).to.not.equal(undefined);
    const nacks = sent(tickRange(s, 1050, 1200), 'nack');
    expect(nacks.map((n) => [n.to, n.msg.seq])).to.deep.equal([['b', 41]]);
    const relayed = s.receive('c', msg('ack', ping?.msg.seq as number), 1250);
    expect(relayed.messages.map((m) => [m.to, m.msg.type, m.msg.seq])).to.deep.equal([['b', 'ack', 41]]);
  });
  it('does not accuse anyone on the tick after its own event loop stalled', () => {
    const s = newSwim();
    const p = firstPing(s);
    const out = s.tick(p.at + 3000);
    expect(out.events).to.deep.equal([]);
    expect(out.messages).to.deep.equal([]);
    expect(s.member(p.to)?.liveness).to.equal('alive');
  });
});

describe('SWIM link loss (the transport reports a closed connection)', () => {
  it('probes through the relays at once and suspects after one probe timeout when none reaches the target', () => {
    const s = newSwim();
    tickAnswering(s, 0, 1000);
    const down = s.linkDown('c', 1010);
    // No direct ping over a closed link: straight to the relays, never via c itself.
    expect(down.messages.filter((m) => m.msg.type === 'ping')).to.deep.equal([]);
    const reqs = sent([down], 'ping-req');
    expect(reqs).to.have.length(3);
    expect(reqs.map((r) => r.to)).to.not.include('c');
    for (const r of reqs) {
      expect(r.msg).to.include({ target: 'c', timeoutMs: CFG.probeTimeoutMs / 2 });
      s.receive(r.to, msg('nack', r.msg.seq), 1300);
    }
    expect(s.tick(1010 + CFG.probeTimeoutMs - 10).events).to.deep.equal([]);
    const out = s.tick(1010 + CFG.probeTimeoutMs);
    expect(out.events).to.deep.equal([{ type: 'suspect', id: 'c', incarnation: 0 }]);
    // Every relay nacked: no health penalty.
    expect(s.healthScore).to.equal(0);
  });
  it('does not suspect a member that a relay still reaches (only our link broke)', () => {
    const s = newSwim();
    tickAnswering(s, 0, 1000);
    const reqs = sent([s.linkDown('c', 1010)], 'ping-req');
    s.receive(reqs[0]?.to as string, msg('ack', reqs[0]?.msg.seq as number), 1020);
    const outs = tickAnswering(s, 1050, 3000);
    expect(outs.flatMap((o) => o.events)).to.deep.equal([]);
    expect(s.member('c')?.liveness).to.equal('alive');
  });
  it('sends the urgent probe\'s direct ping when the link comes back, and takes its ack', () => {
    const s = newSwim();
    tickAnswering(s, 0, 1000);
    const seq = sent([s.linkDown('c', 1010)], 'ping-req')[0]?.msg.seq as number;
    const up = s.linkUp('c', 1100);
    expect(up.messages.map((m) => [m.to, m.msg.type, m.msg.seq])).to.deep.equal([['c', 'ping', seq]]);
    s.receive('c', msg('ack', seq), 1101);
    expect(tickAnswering(s, 1150, 3000).flatMap((o) => o.events)).to.deep.equal([]);
  });
  it('tells a member it holds dead that it is dead as soon as its link is back (a restart refutes at once)', () => {
    const s = newSwim();
    s.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'dead', incarnation: 2 }]), 10);
    const up = s.linkUp('c', 20);
    expect(up.messages.map((m) => [m.to, m.msg.type])).to.deep.equal([['c', 'ping']]);
    expect(up.messages[0]?.msg.updates).to.deep.include({ id: 'c', liveness: 'dead', incarnation: 2 });
  });
  it('asks no relay whose own link is down (its nack could never come back)', () => {
    const s = newSwim();
    tickAnswering(s, 0, 1000);
    s.linkDown('b', 1001);
    s.linkDown('d', 1002);
    const reqs = sent([s.linkDown('c', 1003)], 'ping-req');
    expect(reqs.map((r) => r.to).sort()).to.deep.equal(['e']);
  });
  it('gives a suspect whose connection is open one period of grace, and takes it back when the connection closes', () => {
    const s = newSwim(['a', 'b', 'c']);
    s.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'suspect', incarnation: 0, from: 'b' }]), 0);
    const { maxMs } = suspicionBoundsMs(CFG, 3);
    expect(s.suspicion('c')?.deadlineMs).to.equal(maxMs + CFG.probeIntervalMs);
    s.linkDown('c', 10);
    expect(s.suspicion('c')?.deadlineMs).to.equal(maxMs);
    s.linkUp('c', 20);
    expect(s.suspicion('c')?.deadlineMs).to.equal(maxMs + CFG.probeIntervalMs);
    // A suspicion that starts while the connection is closed has none.
    const t = newSwim(['a', 'b', 'c']);
    t.linkDown('c', 0);
    t.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'suspect', incarnation: 0, from: 'b' }]), 5);
    expect(t.suspicion('c')?.deadlineMs).to.equal(5 + maxMs);
  });
  it('ignores a link loss of a member it already holds dead, and of strangers', () => {
    const s = newSwim();
    s.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'dead', incarnation: 0 }]), 10);
    expect(s.linkDown('c', 20).messages).to.deep.equal([]);
    expect(s.linkDown('zz', 30).messages).to.deep.equal([]);
    expect(s.linkProbes()).to.deep.equal([]);
  });
});

describe('SWIM pushes its own verdicts to every member at once', () => {
  it('pushes its own suspicion to every member, the suspect included, in a gossip message', () => {
    const s = newSwim();
    tickAnswering(s, 0, 1000);
    s.linkDown('c', 1010);
    const out = s.tick(1010 + CFG.probeTimeoutMs);
    const pushes = sent([out], 'gossip');
    expect(pushes.map((m) => m.to).sort()).to.deep.equal(['b', 'd', 'e']);
    for (const m of pushes) expect(m.msg.updates).to.deep.include({ id: 'c', liveness: 'suspect', incarnation: 0, from: 'a' });
    // c's link is down: nothing would leave; it hears it when it is back (linkUp).
    expect(s.linkUp('c', 1600).messages.find((m) => m.to === 'c')?.msg.updates).to.deep.include({ id: 'c', liveness: 'suspect', incarnation: 0, from: 'a' });
  });
  it('pushes its own death verdict but not what it only heard from others', () => {
    const s = newSwim(['a', 'b', 'c']);
    const heard = s.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'suspect', incarnation: 0, from: 'b' }]), 0);
    expect(sent([heard], 'gossip')).to.deep.equal([]);
    s.tick(12_950);
    const out = s.tick(13_000);
    expect(out.events).to.deep.equal([{ type: 'dead', id: 'c', incarnation: 0 }]);
    expect(sent([out], 'gossip').map((m) => [m.to, m.msg.updates.find((u) => u.id === 'c')])).to.deep.equal([
      ['b', { id: 'c', liveness: 'dead', incarnation: 0 }],
      ['c', { id: 'c', liveness: 'dead', incarnation: 0 }],
    ]);
    const again = s.receive('b', msg('ack', 2, [{ id: 'c', liveness: 'dead', incarnation: 0 }]), 13_010);
    expect(sent([again], 'gossip')).to.deep.equal([]);
  });
  it('pushes a refutation to every member, at most once per probe interval', () => {
    const s = newSwim();
    const first = s.receive('b', msg('ack', 1, [{ id: 'a', liveness: 'suspect', incarnation: 0, from: 'b' }]), 10);
    expect(sent([first], 'gossip').map((m) => m.to).sort()).to.deep.equal(['b', 'c', 'd', 'e']);
    for (const m of sent([first], 'gossip')) expect(m.msg.updates).to.deep.equal([{ id: 'a', liveness: 'alive', incarnation: 1 }]);
    const second = s.receive('c', msg('ack', 2, [{ id: 'a', liveness: 'suspect', incarnation: 1, from: 'c' }]), 20);
    expect(s.incarnation).to.equal(2);
    expect(sent([second], 'gossip')).to.deep.equal([]);
    // The accuser still hears it directly.
    expect(second.messages.map((m) => [m.to, m.msg.type])).to.deep.equal([['c', 'ping']]);
    const later = s.receive('d', msg('ack', 3, [{ id: 'a', liveness: 'dead', incarnation: 2 }]), 10 + CFG.probeIntervalMs);
    expect(sent([later], 'gossip')).to.have.length(4);
  });
  it('accepts a gossip message and answers nothing', () => {
    const s = newSwim();
    const out = s.receive('b', validateSwimMessage({ type: 'gossip', seq: 0, epoch: 0, updates: [{ id: 'c', liveness: 'suspect', incarnation: 0, from: 'b' }] }), 10);
    expect(out.messages).to.deep.equal([]);
    expect(s.member('c')?.liveness).to.equal('suspect');
  });
});

describe('SWIM tick scheduling (nextTickAtMs)', () => {
  it('asks for a tick at the next probe, the direct timeout, a relay\'s nack and a suspicion timer', () => {
    const s = newSwim();
    const p = firstPing(s);
    expect(s.nextTickAtMs()).to.equal(p.at + CFG.probeTimeoutMs);
    s.receive(p.to, msg('ack', p.seq), p.at + 1);
    expect(s.nextTickAtMs()).to.equal(p.at + CFG.probeIntervalMs);
    s.receive('b', { type: 'ping-req', seq: 41, epoch: 0, updates: [], target: 'c', timeoutMs: 200 }, p.at + 2);
    expect(s.nextTickAtMs()).to.equal(p.at + 202);
    s.receive('d', msg('ack', 2, [{ id: 'e', liveness: 'suspect', incarnation: 0, from: 'd' }]), p.at + 3);
    // Lone accuser: the maximum; still later than the relay's nack.
    expect(s.nextTickAtMs()).to.equal(p.at + 202);
  });
  it('runs the whole probe cycle when ticked only when it asks', () => {
    const s = newSwim(['a', 'b', 'c']);
    s.tick(0);
    const events: string[] = [];
    let ticks = 0;
    // c never answers; b always does.
    for (let now = s.nextTickAtMs(); now <= 40_000; now = s.nextTickAtMs()) {
      ticks++;
      const out = s.tick(now);
      expect(s.nextTickAtMs(), `due after the tick at ${now}`).to.be.greaterThan(now);
      for (const e of out.events) events.push(`${e.id} ${e.type}`);
      for (const m of out.messages) {
        if (m.to === 'b' && m.msg.type === 'ping') s.receive('b', msg('ack', m.msg.seq), now);
        if (m.to === 'b' && m.msg.type === 'ping-req') s.receive('b', msg('nack', m.msg.seq), now);
      }
    }
    expect(events).to.deep.equal(['c suspect', 'c dead']);
    expect(ticks).to.be.below(200);
  });
  it('voids the probe, judges nothing and asks for an immediate tick when ticked long after it asked', () => {
    const s = newSwim();
    const p = firstPing(s);
    const late = p.at + CFG.probeTimeoutMs + CFG.tickGapMaxMs + 1;
    const out = s.tick(late);
    expect(out.events).to.deep.equal([]);
    expect(out.messages).to.deep.equal([]);
    expect(s.probe()).to.equal(null);
    expect(s.nextTickAtMs()).to.equal(late);
    // The next tick, on time, probes again.
    expect(sent([s.tick(late)], 'ping')).to.have.length(1);
  });
});

describe('Lifeguard local health', () => {
  it('raises the score for each missed nack and stretches the probe period by (score + 1)', () => {
    const s = newSwim();
    const p = firstPing(s);
    tickRange(s, p.at + 50, p.at + CFG.probeIntervalMs - 50);
    expect(s.healthScore).to.equal(0);
    // The second probe starts as the first period ends and runs at 4x: ping-req
    // after 4 probe timeouts, next probe after 4 intervals.
    const pings: number[] = [];
    const reqs: number[] = [];
    for (let t = p.at + CFG.probeIntervalMs; t <= p.at + 6 * CFG.probeIntervalMs; t += 50) {
      const out = s.tick(t);
      if (out.messages.some((m) => m.msg.type === 'ping')) pings.push(t);
      if (out.messages.some((m) => m.msg.type === 'ping-req')) reqs.push(t);
    }
    const start = p.at + CFG.probeIntervalMs;
    // Two failed periods without a nack: three relays asked in the first, two in
    // the second (the first target, now suspect, is no relay).
    expect(s.healthScore).to.equal(5);
    expect(pings[0]).to.equal(start);
    expect(reqs[0]).to.equal(start + 4 * CFG.probeTimeoutMs);
    expect(pings[1]).to.equal(start + 4 * CFG.probeIntervalMs);
  });
  it('lowers the score by one per successful probe and stays within 0..awarenessMax-1', () => {
    const s = newSwim();
    s.reportLag(60_000);
    expect(s.healthScore).to.equal(CFG.awarenessMax - 1);
    s.reportLag(CFG.lagThresholdMs - 1);
    expect(s.healthScore).to.equal(CFG.awarenessMax - 1);
    const p = firstPing(s);
    s.receive(p.to, msg('ack', p.seq), p.at + 10);
    expect(s.healthScore).to.equal(CFG.awarenessMax - 2);
    for (let i = 0; i < 20; i++) {
      const q = firstPingAfter(s, (i + 1) * 10_000);
      s.receive(q.to, msg('ack', q.seq), q.at + 10);
    }
    expect(s.healthScore).to.equal(0);
  });
});

function firstPingAfter(s: Swim, from: number): { at: number; to: string; seq: number } {
  for (let t = from; t <= from + 9000; t += 50) {
    const ping = s.tick(t).messages.find((m) => m.msg.type === 'ping');
    if (ping !== undefined) return { at: t, to: ping.to, seq: ping.msg.seq };
  }
  throw new Error('no probe');
}

describe('Lifeguard suspicion timeout', () => {
  it('derives min and max from the cluster size with the node scale floored at 1', () => {
    expect(suspicionBoundsMs(CFG, 3)).to.deep.equal({ minMs: 2000, maxMs: 12_000 });
    expect(suspicionBoundsMs(CFG, 10)).to.deep.equal({ minMs: 2000, maxMs: 12_000 });
    expect(suspicionBoundsMs(CFG, 100)).to.deep.equal({ minMs: 4000, maxMs: 24_000 });
  });
  it('shrinks from max to min on log(c + 1) / log(k + 1)', () => {
    expect(suspicionTimeoutMs(0, 2, 4000, 24_000)).to.equal(24_000);
    expect(suspicionTimeoutMs(1, 2, 4000, 24_000)).to.equal(Math.floor(24_000 - (20_000 * Math.log(2)) / Math.log(3)));
    expect(suspicionTimeoutMs(2, 2, 4000, 24_000)).to.equal(4000);
    expect(suspicionTimeoutMs(5, 2, 4000, 24_000)).to.equal(4000);
    expect(suspicionTimeoutMs(0, 0, 4000, 24_000)).to.equal(4000);
  });
  it('wants k = suspicionConfirmations, capped by the n - 2 members able to confirm', () => {
    expect(confirmationsWanted(CFG, 2)).to.equal(0);
    expect(confirmationsWanted(CFG, 3)).to.equal(1);
    expect(confirmationsWanted(CFG, 4)).to.equal(2);
    expect(confirmationsWanted(CFG, 50)).to.equal(2);
  });
  it('counts each accuser once and no more than k', () => {
    const sus = new Suspicion('b', 2, 4000, 24_000, 1000);
    expect(sus.deadlineMs).to.equal(25_000);
    expect(sus.confirm('b')).to.equal(false);
    expect(sus.confirm('c')).to.equal(true);
    expect(sus.confirm('c')).to.equal(false);
    expect(sus.confirm('d')).to.equal(true);
    expect(sus.deadlineMs).to.equal(5000);
    expect(sus.confirm('e')).to.equal(false);
    expect(sus.confirmations).to.equal(2);
  });
  it('at n = 3 a lone accuser waits the maximum and a confirmation brings it to the minimum', () => {
    const lone = newSwim(['a', 'b', 'c']);
    lone.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'suspect', incarnation: 0, from: 'b' }]), 0);
    // The maximum, plus the period of grace of a suspect whose connection is open.
    expect(lone.tick(12_950).events).to.deep.equal([]);
    expect(lone.tick(13_000).events).to.deep.equal([{ type: 'dead', id: 'c', incarnation: 0 }]);

    // Our own failed probe of c is the independent confirmation.
    const confirmed = newSwim(['a', 'b', 'c']);
    confirmed.receive('b', msg('ack', 1, [{ id: 'c', liveness: 'suspect', incarnation: 0, from: 'b' }]), 0);
    let deadAt: number | undefined;
    for (let t = 50; t <= 13_000 && deadAt === undefined; t += 50) {
      const out = confirmed.tick(t);
      for (const m of out.messages) if (m.to === 'b' && m.msg.type === 'ping') confirmed.receive('b', msg('ack', m.msg.seq), t);
      if (out.events.some((e) => e.type === 'dead' && e.id === 'c')) deadAt = t;
    }
    expect(deadAt).to.be.within(3000, 5000);
  });
});

describe('SWIM gossip retransmits', () => {
  it('limits retransmits to retransmitMult · ceil(log10(n + 1))', () => {
    expect(retransmitLimit(4, 1)).to.equal(4);
    expect(retransmitLimit(4, 3)).to.equal(4);
    expect(retransmitLimit(4, 9)).to.equal(4);
    expect(retransmitLimit(4, 10)).to.equal(8);
    expect(retransmitLimit(4, 100)).to.equal(12);
  });
  it('queues one update per member, least-sent first, each sent at most limit times', () => {
    const q = new BroadcastQueue();
    q.enqueue({ id: 'b', liveness: 'suspect', incarnation: 0, from: 'c' });
    q.enqueue({ id: 'b', liveness: 'dead', incarnation: 0 });
    expect(q.size).to.equal(1);
    expect(q.take(5, 2)).to.deep.equal([{ id: 'b', liveness: 'dead', incarnation: 0 }]);
    q.enqueue({ id: 'c', liveness: 'alive', incarnation: 3 });
    expect(q.take(1, 2).map((u) => u.id)).to.deep.equal(['c']);
    expect(q.take(5, 2).map((u) => u.id)).to.deep.equal(['c', 'b']);
    expect(q.take(5, 2)).to.deep.equal([]);
    expect(q.size).to.equal(0);
  });
  it('piggybacks a rumour on at most retransmitLimit messages and at most maxPiggyback updates per message', () => {
    const ids = ['a', ...Array.from({ length: 30 }, (_, i) => `m${i}`)];
    const s = newSwim(ids, 'a', swimConfig({ maxPiggyback: 4 }));
    const rumours = ids.slice(1, 11).map((id) => ({ id, liveness: 'suspect' as const, incarnation: 0, from: 'm20' }));
    s.receive('m20', msg('ack', 1, rumours), 0);
    let carried = 0;
    for (let i = 0; i < 100; i++) {
      const out = s.receive('m21', msg('ping', 100 + i), 10 + i);
      const upd = out.messages[0]?.msg.updates ?? [];
      // Own record + at most maxPiggyback gossip (m21 is alive: no notice).
      expect(upd.length).to.be.at.most(1 + 4);
      carried += upd.filter((u) => u.id === 'm1').length;
    }
    expect(carried).to.equal(retransmitLimit(CFG.retransmitMult, ids.length));
  });
});

describe('SWIM epoch gossip', () => {
  it('carries our epoch on every message and reports a peer that is ahead', () => {
    const s = newSwim();
    s.setLocalEpoch(4);
    const out = s.receive('b', msg('ping', 1, [], 7), 10);
    expect(out.epochBehind).to.deep.equal({ epoch: 7, from: 'b' });
    expect(out.messages[0]?.msg.epoch).to.equal(4);
    expect(s.receive('c', msg('ping', 2, [], 4), 20).epochBehind).to.equal(undefined);
  });
});

describe('SWIM members', () => {
  it('adds members alive at 0, drops removed ones, and always lists itself alive', () => {
    const s = newSwim(['a', 'b', 'c']);
    s.receive('b', msg('ack', 1), 5);
    s.setMembers(['a', 'b', 'd'], 10);
    const view = s.members().map((m) => [m.id, m.liveness, m.incarnation, m.lastHeardMs]);
    expect(view.sort()).to.deep.equal([
      ['a', 'alive', 0, undefined],
      ['b', 'alive', 0, 5],
      ['d', 'alive', 0, undefined],
    ]);
  });
});

describe('validateSwimMessage', () => {
  const good = { type: 'ping-req', seq: 3, epoch: 2, target: 'n2', timeoutMs: 250, updates: [{ id: 'n3', liveness: 'suspect', incarnation: 4, from: 'n1' }] };
  it('accepts a well-formed message and drops unknown fields', () => {
    const v = validateSwimMessage({ ...good, extra: 'x' });
    expect(v).to.deep.equal(good);
    expect(validateSwimMessage({ type: 'ack', seq: 0, epoch: 0, updates: [] })).to.deep.equal({ type: 'ack', seq: 0, epoch: 0, updates: [] });
  });
  const bad: Array<[string, unknown]> = [
    ['null', null],
    ['an array', [good]],
    ['a string', 'ping'],
    ['an unknown type', { ...good, type: 'pong' }],
    ['a negative seq', { ...good, seq: -1 }],
    ['a fractional seq', { ...good, seq: 1.5 }],
    ['a seq beyond 2^32', { ...good, seq: 2 ** 32 }],
    ['a string epoch', { ...good, epoch: '2' }],
    ['a NaN epoch', { ...good, epoch: Number.NaN }],
    ['missing updates', { type: 'ping', seq: 1, epoch: 0 }],
    ['updates not an array', { ...good, updates: {} }],
    ['too many updates', { ...good, updates: Array.from({ length: MAX_UPDATES_PER_MESSAGE + 1 }, () => ({ id: 'n1', liveness: 'alive', incarnation: 0 })) }],
    ['an update with a bad id', { ...good, updates: [{ id: 'n 1', liveness: 'alive', incarnation: 0 }] }],
    ['an update with an unknown liveness', { ...good, updates: [{ id: 'n1', liveness: 'zombie', incarnation: 0 }] }],
    ['an update with a huge incarnation', { ...good, updates: [{ id: 'n1', liveness: 'alive', incarnation: 2 ** 53 }] }],
    ['a suspect update without its accuser', { ...good, updates: [{ id: 'n1', liveness: 'suspect', incarnation: 0 }] }],
    ['an update that is not an object', { ...good, updates: [7] }],
    ['a ping-req without target', { type: 'ping-req', seq: 1, epoch: 0, updates: [], timeoutMs: 10 }],
    ['a ping-req with a zero timeout', { ...good, timeoutMs: 0 }],
    ['a ping-req with a timeout over a minute', { ...good, timeoutMs: 60_001 }],
    ['a class instance', new (class X { type = 'ping'; seq = 1; epoch = 0; updates = []; })()],
  ];
  for (const [what, x] of bad) {
    it(`rejects ${what} with KV_FRAME_INVALID`, () => {
      expect(() => validateSwimMessage(x)).to.throw().that.satisfies((e: unknown) => isKvError(e, 'KV_FRAME_INVALID'));
    });
  }
});

describe('validateSwimConfig', () => {
  it('has memberlist-LAN defaults but for a 2-period minimum suspicion with memberlist\'s k = 2 kept', () => {
    expect(DEFAULT_SWIM_CONFIG).to.include({
      probeIntervalMs: 1000, probeTimeoutMs: 500, indirectChecks: 3, suspicionMult: 2, suspicionMaxTimeoutMult: 6,
      suspicionConfirmations: 2, retransmitMult: 4, awarenessMax: 8,
    });
    expect(validateSwimConfig({ ...DEFAULT_SWIM_CONFIG })).to.deep.equal(DEFAULT_SWIM_CONFIG);
  });
  const cases: Array<[string, Record<string, unknown>]> = [
    ['probeIntervalMs', { probeIntervalMs: 0 }],
    ['probeTimeoutMs', { probeTimeoutMs: 1000 }],
    ['indirectChecks', { indirectChecks: -1 }],
    ['suspicionMult', { suspicionMult: 1.5 }],
    ['suspicionConfirmations', { suspicionConfirmations: -1 }],
    ['awarenessMax', { awarenessMax: 0 }],
    ['maxPiggyback', { maxPiggyback: MAX_UPDATES_PER_MESSAGE }],
    ['lagThresholdMs', { lagThresholdMs: '250' }],
  ];
  for (const [field, override] of cases) {
    it(`rejects a bad ${field} with KV_CONFIG naming it`, () => {
      expect(() => swimConfig(override as never)).to.throw(field).that.satisfies((e: unknown) => isKvError(e, 'KV_CONFIG'));
    });
  }
});
