/**
 * SWIM simulation scenarios. Each runs one seed and throws Violation (with the seed
 * and the tail of the trace) at the first broken invariant or missed bound. The
 * bounds are computed from the config, the cluster size and the simulated runtime
 * (tick jitter, network delay), never tuned to observed runs.
 */
import { swimConfig, type SwimConfig } from '../../lib/core/swim/config.ts';
import { suspicionBoundsMs } from '../../lib/core/swim/suspicion.ts';
import { seededRng } from '../../lib/core/rng.ts';
import { CATCH_UP_MAX_MS, FAULT_FREE_NET, SwimSim, TICK_LATE_MAX_MS, Violation, type CrashKind, type NetOptions } from './swim-sim.ts';

export type Scenario = (seed: number) => void;

const CONFIG: SwimConfig = swimConfig();

function sizeFor(seed: number, maxN = 7): number {
  // 3..7 members: 3 is the small-cluster corner (REFERENCES: confirmations), 7 keeps
  // a seed fast while rounds already take several periods.
  return 3 + seededRng(seed ^ 0x5157).int(maxN - 2);
}

function newSim(seed: number, net: NetOptions = FAULT_FREE_NET, config: SwimConfig = CONFIG, maxN = 7): SwimSim {
  return new SwimSim({ seed, n: sizeFor(seed, maxN), config, net });
}

/** One probe period as the runtime can stretch it: interval plus a late tick. */
function periodMs(c: SwimConfig): number {
  return c.probeIntervalMs + TICK_LATE_MAX_MS;
}

/**
 * Shuffled round-robin puts any member at most 2(n-1) periods apart in one prober's
 * schedule (first in one round, last in the next), so every node's own probe of a
 * silent member fails within this long.
 */
export function probeReachMs(c: SwimConfig, n: number): number {
  return 2 * (n - 1) * periodMs(c);
}

/**
 * A crash is declared dead by every live node within: the node's own probe fails
 * (probeReachMs; hearing the rumour first only starts the timer earlier), then at
 * most the maximum suspicion timeout plus the period of grace a suspect with an open
 * connection gets, then one tick to notice it expired.
 */
export function crashDetectionBoundMs(c: SwimConfig, n: number): number {
  return probeReachMs(c, n) + suspicionBoundsMs(c, n).maxMs + c.probeIntervalMs + TICK_LATE_MAX_MS;
}

/**
 * A killed member (its connections close at once) is declared dead by every live node
 * at health score 0 within: the close reaching it (one network delay), its urgent
 * probe's period (the probe timeout) and a late tick, so it suspects by then; every
 * other live node does the same at about the same time and pushes its accusation, so
 * all k confirmations arrive within another network delay, long before the minimum
 * timeout runs out; then the minimum timeout (no grace: the connection is closed),
 * and a late tick to notice it.
 */
export function killDetectionBoundMs(c: SwimConfig, n: number, net: NetOptions): number {
  return net.maxDelayMs + c.probeTimeoutMs + TICK_LATE_MAX_MS + suspicionBoundsMs(c, n).minMs + TICK_LATE_MAX_MS;
}

/**
 * The longest stall of one node that no timing of it can get declared dead (health
 * scores 0, no link closed, the stall shorter than the transport's ping close): its
 * earliest suspicion is a probe whose ping was in flight as the stall began, failing
 * a period after it was sent; with every confirmation in, the minimum timeout plus the
 * open-connection grace of one period follows. On waking it reads the notices, refutes
 * and pushes that to everyone, one network delay. So a stall is safe while
 *   stall + maxDelay < (probeInterval - maxDelay) + minimum timeout + probeInterval.
 * With the defaults and a 20 ms network: 3,960 ms, twice the 2 s the issue demands.
 */
export function safeStallMs(c: SwimConfig, n: number, net: NetOptions): number {
  return 2 * c.probeIntervalMs + suspicionBoundsMs(c, n).minMs - 2 * net.maxDelayMs - 1;
}

/**
 * Once every link works again, a member reaches every view after: the next probe
 * between any two nodes (probeReachMs at the slowest health score), and one more
 * exchange for a refutation that probe triggered to come back; network delay and
 * catch-up slack are within the tick margin per period.
 */
export function reunionBoundMs(c: SwimConfig, n: number, maxScore: number): number {
  return (maxScore + 1) * (probeReachMs(c, n) + 2 * periodMs(c));
}

/**
 * The highest health score a node may reach once the network is healthy: today's
 * worst, plus the one step a refutation costs (a node refutes at most once per
 * heal: its new incarnation outbids every rumour from before).
 */
function worstScoreAfter(sim: SwimSim): number {
  const worst = Math.max(...sim.upIds().map((id) => sim.swim(id).healthScore));
  return Math.min(CONFIG.awarenessMax - 1, worst + 1);
}

function noDeathOf(sim: SwimSim, isLive: (id: string) => boolean): void {
  const prev = sim.onEvent;
  sim.onEvent = (observer, ev) => {
    prev?.(observer, ev);
    if (ev.type === 'dead' && isLive(ev.id)) sim.fail(`${observer} declared live ${ev.id} dead`);
  };
}

/** Fault-free network, healthy event loops: nobody is ever even suspected. */
export const faultFree: Scenario = (seed) => {
  const sim = newSim(seed);
  sim.onEvent = (observer, ev) => {
    if (ev.type !== 'alive') sim.fail(`${observer} saw ${ev.id} ${ev.type} on a fault-free network`);
  };
  sim.runUntil(40_000);
  if (!sim.converged()) sim.fail('views differ at the end of a fault-free run');
};

/**
 * Fault-free network, but one node's event loop stalls twice: once for exactly 2 s
 * (the stall the failure detector must ride out, issue 14) and once for a random
 * 0.5 s up to safeStallMs, in either order, in clusters of 3 to 9. It may be
 * suspected; it never suspects others when it wakes (Lifeguard), nobody is ever
 * declared dead, and everyone sees everyone alive afterwards.
 */
export const stalledLoop: Scenario = (seed) => {
  const sim = newSim(seed, FAULT_FREE_NET, CONFIG, 9);
  const rng = seededRng(seed ^ 0x57a1);
  const victim = sim.ids[rng.int(sim.ids.length)] as string;
  // Lifeguard: the node that stalled must not blame others for its own pause when
  // it wakes, so only the victim can ever be suspected.
  sim.onEvent = (observer, ev) => {
    if (ev.type === 'dead') sim.fail(`${observer} declared live ${ev.id} dead`);
    if (ev.type === 'suspect' && ev.id !== victim) sim.fail(`${observer} suspected ${ev.id}, but only ${victim} stalled`);
  };
  if (safeStallMs(CONFIG, sim.ids.length, FAULT_FREE_NET) < 2000) sim.fail('the defaults cannot ride out a 2 s stall');
  const longest = safeStallMs(CONFIG, sim.ids.length, FAULT_FREE_NET);
  const other = 500 + rng.int(longest - 500 + 1);
  const stalls = rng.int(2) === 0 ? [2000, other] : [other, 2000];
  let t = 3000 + rng.int(3000);
  for (const stallMs of stalls) {
    sim.at(t, () => sim.stall(victim, stallMs));
    t += stallMs + 10_000 + rng.int(5000);
  }
  sim.runUntil(t + 10_000);
  if (!sim.converged()) sim.fail('views differ after the stalls ended');
};

/**
 * One member crashes (`kind`) at a random time; every live node must show it dead
 * within `boundMs(n)` of the crash, and nobody else may ever be declared dead.
 */
function crashIsDetected(seed: number, kind: CrashKind, maxN: number, boundMs: (n: number) => number): void {
  const sim = newSim(seed, FAULT_FREE_NET, CONFIG, maxN);
  const rng = seededRng(seed ^ (kind === 'kill' ? 0x6b11 : 0xc4a5));
  const victim = sim.ids[rng.int(sim.ids.length)] as string;
  const crashAt = 3000 + rng.int(5000);
  const bound = boundMs(sim.ids.length);
  noDeathOf(sim, (id) => sim.isUp(id));
  sim.at(crashAt, () => sim.crash(victim, kind));
  sim.checks.push(() => {
    if (sim.now <= crashAt + bound) return undefined;
    for (const id of sim.upIds()) {
      if (sim.swim(id).member(victim)?.liveness !== 'dead') return `${id} still sees crashed (${kind}) ${victim} as not dead ${sim.now - crashAt}ms after the crash (bound ${bound}ms)`;
    }
    return undefined;
  });
  sim.runUntil(crashAt + bound + 2000);
}

/**
 * A member that goes silent (power, cable: its connections stay open until the
 * transport's ping gives up) is declared dead by every live node within
 * crashDetectionBoundMs.
 */
export const crashDetected: Scenario = (seed) => crashIsDetected(seed, 'silent', 7, (n) => crashDetectionBoundMs(CONFIG, n));

/**
 * kill -9 of a member: its connections close at once, so every live node probes it
 * urgently and every node shows it dead within killDetectionBoundMs (about 2.6 s with
 * the defaults). Clusters of 3 to 9.
 */
export const crashKilled: Scenario = (seed) => crashIsDetected(seed, 'kill', 9, (n) => killDetectionBoundMs(CONFIG, n, FAULT_FREE_NET));

/**
 * A live member gets suspected (its loop stalls until someone suspects it, then a
 * little longer) and refutes: it is never declared dead, its incarnation rose, and
 * everyone sees it alive again.
 */
export const suspectRefutes: Scenario = (seed) => {
  const sim = newSim(seed);
  const rng = seededRng(seed ^ 0x2ef7);
  const victim = sim.ids[rng.int(sim.ids.length)] as string;
  noDeathOf(sim, () => true);
  let suspectedAt: number | undefined;
  const prev = sim.onEvent;
  sim.onEvent = (observer, ev) => {
    prev?.(observer, ev);
    if (ev.id === victim && ev.type === 'suspect' && suspectedAt === undefined) {
      suspectedAt = sim.now;
      sim.at(sim.now + rng.int(1000), () => sim.resume(victim));
    }
  };
  const stallAt = 3000 + rng.int(3000);
  sim.at(stallAt, () => sim.stall(victim));
  // Every other node's probe of the victim fails within probeReachMs.
  const giveUp = stallAt + probeReachMs(CONFIG, sim.ids.length) + CONFIG.probeIntervalMs;
  sim.runUntil(giveUp);
  if (suspectedAt === undefined) sim.fail(`${victim} was stalled until ${giveUp}ms and never suspected`);
  sim.runUntil((suspectedAt as number) + 20_000);
  if (sim.swim(victim).incarnation < 1) sim.fail(`${victim} never refuted (incarnation ${sim.swim(victim).incarnation})`);
  if (!sim.converged()) sim.fail(`views did not converge after ${victim} refuted`);
};

/**
 * Two sides partitioned long enough to declare each other dead, then healed: every
 * view converges (everyone alive at its own incarnation) within reunionBoundMs.
 */
export const partitionHeals: Scenario = (seed) => {
  const sim = newSim(seed);
  const rng = seededRng(seed ^ 0x9a27);
  const n = sim.ids.length;
  const split = 1 + rng.int(n - 1);
  const shuffled = sim.ids.map((id) => ({ id, k: rng.next() })).sort((a, b) => a.k - b.k).map((x) => x.id);
  const groups = [shuffled.slice(0, split), shuffled.slice(split)];
  const start = 3000 + rng.int(3000);
  const healAt = start + crashDetectionBoundMs(CONFIG, n) + rng.int(10_000);
  sim.at(start, () => sim.partition(groups));
  sim.at(healAt, () => sim.heal());
  sim.runUntil(healAt);
  const bound = reunionBoundMs(CONFIG, n, worstScoreAfter(sim));
  let convergedAt: number | undefined;
  sim.checks.push(() => {
    if (convergedAt === undefined && sim.converged()) convergedAt = sim.now;
    if (convergedAt === undefined && sim.now > healAt + bound) return `views not converged ${sim.now - healAt}ms after the heal (bound ${bound}ms)`;
    return undefined;
  });
  sim.runUntil(healAt + bound + 1000);
  if (convergedAt === undefined) sim.fail('never converged');
  // Once converged on a healthy network nobody may fall out again.
  if (!sim.converged()) sim.fail('views diverged again after converging');
};

/** A crashed member restarts with its incarnation forgotten and is alive everywhere again. */
export const crashRestart: Scenario = (seed) => {
  const sim = newSim(seed);
  const rng = seededRng(seed ^ 0x7e57);
  const n = sim.ids.length;
  const victim = sim.ids[rng.int(n)] as string;
  const crashAt = 3000 + rng.int(3000);
  // Sometimes before it is declared dead, mostly after.
  const restartAt = crashAt + rng.int(crashDetectionBoundMs(CONFIG, n) + 5000);
  const kind = rng.int(2) === 0 ? 'kill' : 'silent';
  sim.at(crashAt, () => sim.crash(victim, kind));
  sim.at(restartAt, () => sim.restart(victim));
  // The victim's death is real (it may even be declared just after it restarted,
  // before its refutation lands); only the others must never be declared dead.
  noDeathOf(sim, (id) => id !== victim);
  sim.runUntil(restartAt);
  const bound = reunionBoundMs(CONFIG, n, 0);
  let back: number | undefined;
  sim.checks.push(() => {
    if (back === undefined && sim.converged()) back = sim.now;
    if (back === undefined && sim.now > restartAt + bound) return `restarted ${victim} not alive everywhere ${sim.now - restartAt}ms after restart (bound ${bound}ms)`;
    return undefined;
  });
  sim.runUntil(restartAt + bound + 1000);
  if (!sim.converged()) sim.fail(`views diverged after ${victim} came back`);
};

/**
 * A node commits newer epochs; every node learns it from gossip (epochBehind) and
 * catches up within one probe reach of the last bump, plus catch-up time.
 */
export const epochSpreads: Scenario = (seed) => {
  const sim = newSim(seed);
  const rng = seededRng(seed ^ 0xe90c);
  const n = sim.ids.length;
  let lastBump = 0;
  let target = 0;
  for (let i = 0; i < 3; i++) {
    const at = 2000 + i * 3000 + rng.int(3000);
    const who = sim.ids[rng.int(n)] as string;
    sim.at(at, () => {
      // Only a node already at the newest epoch can commit the next one.
      if (sim.nodeEpoch(who) !== target) return;
      sim.bumpEpoch(who);
      target++;
      lastBump = sim.now;
    });
  }
  const bound = probeReachMs(CONFIG, n) + CATCH_UP_MAX_MS + TICK_LATE_MAX_MS;
  sim.checks.push(() => {
    if (target === 0 || sim.now <= lastBump + bound) return undefined;
    const behind = sim.ids.filter((id) => sim.nodeEpoch(id) < target);
    return behind.length > 0 ? `${behind.join(',')} still below epoch ${target} ${sim.now - lastBump}ms after it was committed (bound ${bound}ms)` : undefined;
  });
  sim.runUntil(15_000 + bound + 1000);
  if (target === 0) sim.fail('no epoch was committed');
};

/**
 * Everything at once for a minute: drops, duplicates, long delays, partitions,
 * crashes, restarts and stalls. Only safety invariants hold meanwhile; once all
 * faults are healed and every node is up, views converge within reunionBoundMs.
 */
export const chaos: Scenario = (seed) => {
  const net: NetOptions = { minDelayMs: 1, maxDelayMs: 80, dropRate: 0.05, dupRate: 0.02 };
  const sim = newSim(seed, net);
  const rng = seededRng(seed ^ 0xc0a5);
  const n = sim.ids.length;
  const pick = (): string => sim.ids[rng.int(n)] as string;
  for (let t = 2000; t < 60_000; t += 1000 + rng.int(4000)) {
    const kind = rng.int(5);
    sim.at(t, () => {
      if (kind === 0) {
        const id = pick();
        if (sim.isUp(id)) sim.crash(id, rng.int(2) === 0 ? 'kill' : 'silent');
        else sim.restart(id);
      } else if (kind === 1) {
        sim.stall(pick(), 200 + rng.int(6000));
      } else if (kind === 2) {
        const a = sim.ids.filter(() => rng.next() < 0.5);
        sim.partition([a, sim.ids.filter((id) => !a.includes(id))]);
      } else if (kind === 3) {
        sim.heal();
      } else {
        sim.bumpEpoch(pick());
      }
    });
  }
  const calm = 62_000;
  sim.at(calm, () => {
    sim.heal();
    sim.net = FAULT_FREE_NET;
    for (const id of sim.ids) {
      if (!sim.isUp(id)) sim.restart(id);
      else sim.resume(id);
    }
  });
  sim.runUntil(calm);
  const bound = reunionBoundMs(CONFIG, n, worstScoreAfter(sim));
  let convergedAt: number | undefined;
  sim.checks.push(() => {
    if (convergedAt === undefined && sim.converged()) convergedAt = sim.now;
    if (convergedAt === undefined && sim.now > calm + bound) return `views not converged ${sim.now - calm}ms after all faults healed (bound ${bound}ms)`;
    return undefined;
  });
  sim.runUntil(calm + bound + 1000);
};

export const SCENARIOS: Readonly<Record<string, Scenario>> = Object.freeze({
  faultFree,
  stalledLoop,
  crashDetected,
  crashKilled,
  suspectRefutes,
  partitionHeals,
  crashRestart,
  epochSpreads,
  chaos,
});

export interface SeedViolation {
  scenario: string;
  seed: number;
  message: string;
  /** The last actions and liveness events before the violation. */
  trace: string;
}

/** Runs one scenario on one seed; a Violation becomes a report with the replay hint. */
export function runScenario(name: string, scenario: Scenario, seed: number): SeedViolation | undefined {
  try {
    scenario(seed);
    return undefined;
  } catch (err) {
    if (!(err instanceof Violation)) throw err;
    return { scenario: name, seed, message: `${err.message} (replay: SEED=${seed})`, trace: err.trace };
  }
}

/** Every scenario on seeds startSeed..startSeed+seeds-1 (the sim CLI's entry point). */
export function runSwimSeeds(opts: { seeds: number; startSeed?: number }): { seeds: number; violations: SeedViolation[] } {
  const start = opts.startSeed ?? 1;
  const violations: SeedViolation[] = [];
  for (let seed = start; seed < start + opts.seeds; seed++) {
    for (const [name, scenario] of Object.entries(SCENARIOS)) {
      const v = runScenario(name, scenario, seed);
      if (v !== undefined) violations.push(v);
    }
  }
  return { seeds: opts.seeds, violations };
}

