/**
 * SWIM + Lifeguard configuration. Defaults start from hashicorp/memberlist's
 * DefaultLANConfig (a LAN round trip is well under 10 ms, so every figure below has
 * a wide margin); each says why it has its value, and where it departs from
 * memberlist, why (docs/liveness.md works the formulas through).
 *
 * The one departure: the minimum suspicion timeout is 2 probe periods, not 4, so a
 * killed node is declared dead within 3 s. What keeps that safe is what memberlist's
 * defaults have no equivalent of: the transport's view of the connection. A killed
 * process's kernel closes its sockets at once, which starts an urgent probe (swim.ts,
 * linkDown) and leaves the suspicion at the bare Lifeguard timeout; a stalled process
 * keeps its connections open, is seen only by the regular probes (a full period
 * later), and while our connection to a suspect is open its timeout has one probe
 * period of grace on top. And the Lifeguard confirmations (suspicionConfirmations) stay
 * at memberlist's 2 instead of falling to 0 with the smaller multiplier, so a lone
 * accuser still waits 12 s (13 s with the grace).
 */
import { KvError } from '../../errors.ts';

/** Hard wire limit on updates in one message (see messages.ts); config must fit under it. */
export const MAX_UPDATES_PER_MESSAGE = 64;

export interface SwimConfig {
  /** Time between probes of one member each. */
  probeIntervalMs: number;
  /** Wait for a direct ack before asking others to probe indirectly; < probeIntervalMs. */
  probeTimeoutMs: number;
  /** Members asked to probe indirectly (ping-req) when the direct ping goes unanswered. */
  indirectChecks: number;
  /** Scales the minimum suspicion timeout: suspicionMult · max(1, log10 n) · probeIntervalMs. */
  suspicionMult: number;
  /** Maximum suspicion timeout as a multiple of the minimum. */
  suspicionMaxTimeoutMult: number;
  /**
   * Independent confirmations (accusers besides the first) that bring the suspicion
   * timeout down to its minimum; capped at the n - 2 members able to confirm.
   */
  suspicionConfirmations: number;
  /** Retransmits per update: retransmitMult · ceil(log10(n + 1)). */
  retransmitMult: number;
  /** Local health score range is 0..awarenessMax-1; timeouts scale by (score + 1). */
  awarenessMax: number;
  /** Gossip updates piggybacked on one message, besides the sender's own record and the notice to the recipient. */
  maxPiggyback: number;
  /** Reported event-loop lag at or above this raises the local health score. */
  lagThresholdMs: number;
  /**
   * A tick later than this after the earliest deadline the core asked to be ticked for
   * (nextTickAtMs) means our own event loop stalled: the probe in flight is voided.
   */
  tickGapMaxMs: number;
  /** Indirect probes (ping-req) we relay at once for others; more are ignored. */
  maxPendingRelays: number;
}

export const DEFAULT_SWIM_CONFIG: Readonly<SwimConfig> = Object.freeze({
  // memberlist LAN: one probe a second finds a crashed node within a few seconds at
  // a cost of one ping + ack per node per second, whatever the cluster size.
  probeIntervalMs: 1000,
  // memberlist LAN: far above a LAN round trip, yet leaves half the period for the
  // indirect probes to answer before the period ends.
  probeTimeoutMs: 500,
  // memberlist LAN: three independent paths make a single lossy link (ours or the
  // target's) unlikely to cause a suspicion.
  indirectChecks: 3,
  // memberlist LAN has 4: a 4 s minimum, and with the period or so until someone
  // suspects, a crash is declared after 5-6 s. Ours is 2 (a 2 s minimum at n <= 10,
  // 2 * log10(n) s above). A killed process closes its sockets and is suspected after
  // one probe timeout (linkDown), so it is dead 0.5 + 2 = 2.5 s after the kill. A
  // stalled one keeps them open: its first suspicion comes a full period after the
  // stall began at the earliest, and even with every confirmation in, death takes the
  // 2 s minimum plus the open-connection grace of 1 period: 4 s into the stall, so a
  // 2 s stall is refuted (pushed to everyone, so within a round trip) with about two
  // seconds to spare. A silent crash (power, cable) is dead after about
  // 1 + 2 + 1 = 4 s with confirmations, sooner once the transport's ping closes the link.
  suspicionMult: 2,
  // memberlist LAN (Lifeguard): a lone accuser must wait 6x the minimum (12 s);
  // independent confirmations bring it down to the minimum.
  suspicionMaxTimeoutMult: 6,
  // memberlist takes k = suspicionMult - 2 = 2 at its defaults; with our multiplier of
  // 2 that formula would give 0 (a flat 2 s for a lone accuser), so k is its own knob
  // at memberlist's value. Capped at n - 2, so at n = 3 one confirmation suffices,
  // and at n = 2, where nobody can confirm, the timeout is flat at the minimum.
  suspicionConfirmations: 2,
  // memberlist LAN: 4 · ceil(log10(n + 1)) transmits reach every node with high
  // probability in an infection-style spread.
  retransmitMult: 4,
  // memberlist LAN (Lifeguard): a node that is itself slow may stretch its timeouts
  // up to 8x instead of accusing healthy peers.
  awarenessMax: 8,
  // Sixteen compact updates keep one gossip message near 1 KiB (memberlist packs its
  // piggyback into a 1400-byte UDP packet) and still drain a partition's backlog fast.
  maxPiggyback: 16,
  // Half the probe timeout: lag beyond it can push an ack past the timeout, so it is
  // our own slowness, not the peer's, that a failed probe would then measure.
  lagThresholdMs: 250,
  // The runtime ticks when the core asks (nextTickAtMs), a timer's usual lateness is
  // a few ms and at most tens under load; a deadline passed by half a second means
  // the loop was blocked across it, so the probe's timing says nothing about the peer.
  tickGapMaxMs: 500,
  // A ping-req costs one entry until its nack timer fires (< one period); 64 covers
  // every member of a large cluster probing through us at once and caps a flood.
  maxPendingRelays: 64,
});

function intIn(c: SwimConfig, field: keyof SwimConfig, min: number, max: number): void {
  const v = c[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new KvError('KV_CONFIG', `swim.${field} must be an integer in [${min}, ${max}], got ${String(v)}`, {
      details: { field: `swim.${field}` },
    });
  }
}

/** Checks every field and the combinations; throws KvError('KV_CONFIG') naming the bad field. */
export function validateSwimConfig(c: SwimConfig): SwimConfig {
  if (typeof c !== 'object' || c === null) throw new KvError('KV_CONFIG', 'swim config must be an object');
  intIn(c, 'probeIntervalMs', 10, 60_000);
  intIn(c, 'probeTimeoutMs', 1, 60_000);
  if (c.probeTimeoutMs >= c.probeIntervalMs) {
    throw new KvError('KV_CONFIG', 'swim.probeTimeoutMs must be less than swim.probeIntervalMs (indirect probes need the rest of the period)', {
      details: { field: 'swim.probeTimeoutMs' },
    });
  }
  intIn(c, 'indirectChecks', 0, 16);
  intIn(c, 'suspicionMult', 1, 100);
  intIn(c, 'suspicionMaxTimeoutMult', 1, 100);
  intIn(c, 'suspicionConfirmations', 0, 100);
  intIn(c, 'retransmitMult', 1, 100);
  intIn(c, 'awarenessMax', 1, 100);
  intIn(c, 'maxPiggyback', 0, MAX_UPDATES_PER_MESSAGE - 2);
  intIn(c, 'lagThresholdMs', 1, 600_000);
  intIn(c, 'tickGapMaxMs', 1, 600_000);
  intIn(c, 'maxPendingRelays', 0, 100_000);
  return c;
}

/** Defaults with overrides applied, validated. */
export function swimConfig(overrides: Partial<SwimConfig> = {}): SwimConfig {
  return validateSwimConfig({ ...DEFAULT_SWIM_CONFIG, ...overrides });
}
