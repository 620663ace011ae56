/**
 * In-process twin of WsTransport for tests: the same Transport interface, the same
 * framing, batching, limits, validation and request bookkeeping (both extend
 * BaseTransport), with links that are function calls instead of sockets.
 *
 * Every transport on a MemoryNetwork is linked to every other one unless partitioned.
 * Frames are delivered asynchronously (setImmediate, FIFO per link), never re-entrantly
 * inside send(). Partitions close links, so pending requests across them reject as
 * maybe-delivered exactly like a dropped WebSocket; heal() re-links.
 */
import { KvError, assert } from '../errors.ts';
import { NODE_ID_RE } from '../core/hlc.ts';
import type { Rng } from '../core/rng.ts';
import { BaseTransport } from './base-transport.ts';
import type { BaseTransportOptions, Link } from './base-transport.ts';

class MemoryLink implements Link {
  closed = false;
  /** Bytes sent but not yet delivered, reported as bufferedBytes like ws bufferedAmount. */
  inFlight = 0;
  twin!: MemoryLink;

  constructor(readonly owner: MemoryTransport, readonly peerId: string, private readonly net: MemoryNetwork) {}

  sendFrame(frame: Buffer): void {
    if (this.closed) return;
    this.net.deliver(this, frame);
  }

  bufferedBytes(): number {
    return this.inFlight;
  }

  close(code: number, reason: string): void {
    this.net.unlink(this, `closed ${code} ${reason}`);
  }
}

export class MemoryTransport extends BaseTransport {
  /** Close code and reason of links this transport's peers closed (for tests). */
  readonly closeLog: { peer: string; code: number; reason: string }[] = [];

  constructor(private readonly net: MemoryNetwork, opts: BaseTransportOptions) {
    super(opts);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal */ _adopt(link: Link): void {
    this.adoptLink(link);
  }

  /** @internal */ _down(link: Link, reason: string): void {
    this.linkDown(link, reason);
  }

  /** @internal */ _receive(link: Link, frame: Buffer): void {
    this.receiveFrame(link, frame);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closeBase();
      this.net.leave(this);
    }
    return Promise.resolve();
  }
}

export class MemoryNetwork {
  private readonly nodes = new Map<string, MemoryTransport>();
  /** Links by "owner->peer". */
  private readonly links = new Map<string, MemoryLink>();
  /** Unordered pairs "a|b" (a < b) that may not talk. */
  private readonly cut = new Set<string>();
  private dropRate = 0;
  private rng: Rng | null = null;
  /** Frames dropped by setDropRate. */
  framesDropped = 0;

  /** Creates a transport and links it to every reachable member (asynchronously). */
  transport(opts: BaseTransportOptions): MemoryTransport {
    assert(NODE_ID_RE.test(opts.selfId), `invalid node id ${opts.selfId}`);
    const existing = this.nodes.get(opts.selfId);
    if (existing !== undefined && !existing.isClosed) {
      throw new KvError('KV_CONFIG', `node ${opts.selfId} is already on this network`);
    }
    const t = new MemoryTransport(this, opts);
    this.nodes.set(opts.selfId, t);
    queueMicrotask(() => this.relinkAll());
    return t;
  }

  /** Blocks traffic between every node of `a` and every node of `b`; links between them close. */
  partition(a: readonly string[], b: readonly string[]): void {
    for (const x of a) for (const y of b) if (x !== y) this.cut.add(pairKey(x, y));
    for (const link of [...this.links.values()]) {
      if (this.cut.has(pairKey(link.owner.selfId, link.peerId))) this.unlink(link, 'partitioned');
    }
  }

  /** Cuts one node off from all others. */
  isolate(id: string): void {
    this.partition([id], [...this.nodes.keys()]);
  }

  /** Removes every partition and re-links (asynchronously, like a reconnect). */
  heal(): void {
    this.cut.clear();
    queueMicrotask(() => this.relinkAll());
  }

  /** Drops each frame with probability `rate`, drawn from the seeded `rng`. */
  setDropRate(rate: number, rng: Rng): void {
    assert(rate >= 0 && rate <= 1, 'drop rate in [0, 1]');
    this.dropRate = rate;
    this.rng = rng;
  }

  /** Delivers raw bytes as if `from` had sent them on its link to `to` (for fault tests). */
  injectFrame(from: string, to: string, frame: Buffer): void {
    const link = this.links.get(`${from}->${to}`);
    assert(link !== undefined, `no link ${from}->${to}`);
    this.deliver(link, frame);
  }

  /** @internal */ deliver(from: MemoryLink, frame: Buffer): void {
    if (this.dropRate > 0 && this.rng !== null && this.rng.next() < this.dropRate) {
      this.framesDropped++;
      return;
    }
    from.inFlight += frame.length;
    setImmediate(() => {
      from.inFlight -= frame.length;
      const to = from.twin;
      if (!to.closed) to.owner._receive(to, frame);
    });
  }

  /** @internal */ unlink(link: MemoryLink, reason: string): void {
    if (link.closed) return;
    const twin = link.twin;
    link.closed = true;
    twin.closed = true;
    this.links.delete(`${link.owner.selfId}->${link.peerId}`);
    this.links.delete(`${twin.owner.selfId}->${twin.peerId}`);
    const code = Number(/^closed (\d+)/.exec(reason)?.[1] ?? 1006);
    twin.owner.closeLog.push({ peer: link.owner.selfId, code, reason });
    link.owner._down(link, reason);
    twin.owner._down(twin, reason);
  }

  /** @internal */ leave(t: MemoryTransport): void {
    for (const link of [...this.links.values()]) {
      if (link.owner === t || link.peerId === t.selfId) this.unlink(link, 'closed 1001 shutting down');
    }
    if (this.nodes.get(t.selfId) === t) this.nodes.delete(t.selfId);
  }

  private relinkAll(): void {
    const ids = [...this.nodes.keys()].sort();
    for (let i = 0; i < ids.length; i++) {
      for (let j = i + 1; j < ids.length; j++) {
        const a = this.nodes.get(ids[i] as string);
        const b = this.nodes.get(ids[j] as string);
        if (a === undefined || b === undefined || a.isClosed || b.isClosed) continue;
        if (this.cut.has(pairKey(a.selfId, b.selfId)) || this.links.has(`${a.selfId}->${b.selfId}`)) continue;
        const ab = new MemoryLink(a, b.selfId, this);
        const ba = new MemoryLink(b, a.selfId, this);
        ab.twin = ba;
        ba.twin = ab;
        this.links.set(`${a.selfId}->${b.selfId}`, ab);
        this.links.set(`${b.selfId}->${a.selfId}`, ba);
        a._adopt(ab);
        b._adopt(ba);
      }
    }
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
