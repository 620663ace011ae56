/**
 * What an authenticated peer may send (DESIGN.md §2 guarantee 10). The cluster secret
 * proves a peer belongs to some cluster that knows it; only the committed membership says
 * whether it belongs to ours now. The transport asks `admit` for every inbound message and
 * request before any handler or the HLC sees it, so no handler can forget the rule:
 *
 * - a member (any state but removed) of the local topology may send anything;
 * - a fresh joiner has no topology yet: it admits the members named in its join answer
 *   (persisted, so a restart mid-join keeps them) until its own topology reaches the
 *   answer's epoch; from then on its topology knows at least as much as the answer did;
 * - everyone else is refused: a stranger with the secret, a joiner that other members have
 *   not seen added yet (its traffic is retried), a removed node (cut off for good).
 *
 * It also bounds the versions in read answers (`rep.get` responses), the one place records
 * from peers arrive where no handler of ours runs: a far-future version would win every
 * comparison and, through read repair, spread.
 */
import { checkVersionBound, isVersion } from '../core/hlc.ts';
import { isKvError } from '../errors.ts';
import type { Topology } from '../core/topology.ts';
import type { Envelope } from '../net/transport.ts';
import type { Metrics } from '../api/metrics.ts';

/** Where a refused version came from (label `source` of kv_versions_refused_total). */
export type VersionSource = 'read' | 'ae.push' | 'ae.pull' | 'hint';

export interface VersionGuard {
  /** Throws KV_CLOCK_SKEW (and counts it) when `version` is more than maxClockSkewMs ahead of local time. */
  check(version: string, source: VersionSource): void;
}

export function versionGuard(maxClockSkewMs: number, metrics: Metrics, now: () => number = Date.now): VersionGuard {
  return {
    check(version, source) {
      try {
        checkVersionBound(version, now(), maxClockSkewMs);
      } catch (err) {
        if (isKvError(err, 'KV_CLOCK_SKEW')) metrics.versionsRefused.labels({ source }).inc();
        throw err;
      }
    },
  };
}

export interface PeerGuardOptions {
  topology: () => Topology;
  /** The join answer of a node that joined (members to admit until the topology reaches its epoch). */
  joinAnswer: () => { epoch: number; members: readonly { id: string }[] } | undefined;
  versions: VersionGuard;
  metrics: Metrics;
}

export class PeerGuard {
  constructor(private readonly o: PeerGuardOptions) {}

  /** The transport's admission hook: null admits, a string says why not. */
  readonly admit = (env: Envelope): string | null => {
    const t = this.o.topology();
    const m = t.member(env.from);
    if (m !== undefined && m.state !== 'removed') return null;
    if (m === undefined) {
      const a = this.o.joinAnswer();
      if (a !== undefined && t.epoch < a.epoch && a.members.some((x) => x.id === env.from)) return null;
    }
    this.o.metrics.peerRefused.labels({ reason: m === undefined ? 'not-member' : 'removed' }).inc();
    return m === undefined ? `${env.from} is not a member at epoch ${t.epoch}` : `${env.from} was removed from the cluster`;
  };

  /** Part of the transport's onEnvelope hook: throws to refuse an answer. */
  inspect(env: Envelope): void {
    if (env.kind !== 'res' || env.type !== 'rep.get') return;
    const p = env.payload;
    if (Array.isArray(p) && isVersion(p[0])) this.o.versions.check(p[0], 'read');
  }
}
