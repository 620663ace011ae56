import { expect } from 'chai';
import { faultTable, formatReport, progressLine } from '../../lib/chaos/report.ts';
import { casSummary, check, replayCommand } from '../../lib/chaos/runner.ts';
import type { Op } from '../../lib/chaos/history.ts';
import type { FaultEvent, FaultKind } from '../../lib/chaos/faults.ts';

const counts = (c: Partial<Record<FaultKind, number>>): Record<FaultKind, number> =>
  ({ kill: 0, pause: 0, partition: 0, skew: 0, topology: 0, ...c });

describe('chaos output: replay command, fault table, progress line', () => {
  it('replays with the seed and every option that changes the experiment, the defaults left out', () => {
    const base = { seed: 7, durationS: 40, nodes: 5, clients: 8, faults: ['kill', 'pause', 'partition'] as FaultKind[] };
    expect(replayCommand(base)).to.equal('kv chaos --seed 7 --duration 40');
    expect(replayCommand({ ...base, faults: ['kill', 'pause', 'partition', 'skew', 'topology'] }))
      .to.equal('kv chaos --seed 7 --duration 40 --faults kill,pause,partition,skew,topology');
    expect(replayCommand({ ...base, nodes: 4, clients: 2, faults: [] })).to.equal('kv chaos --seed 7 --duration 40 --nodes 4 --clients 2 --faults none');
  });

  it('tells each fault kind\'s story: skew offsets and jumps, topology changes and how long they took', () => {
    const events: FaultEvent[] = [
      { atMs: 100, kind: 'kill', nodes: ['n1'], durationMs: 1500 },
      { atMs: 900, kind: 'skew', nodes: ['n2'], durationMs: 6000, how: 'restart', offsetsMs: [-3200, 4100] },
      { atMs: 1900, kind: 'skew', nodes: ['n3'], durationMs: 4000, how: 'jump', offsetsMs: [2500, -1000] },
      { atMs: 2500, kind: 'topology', nodes: ['n6'], durationMs: 12_300, change: 'join', settledMs: 12_300 },
      { atMs: 20_000, kind: 'topology', nodes: ['n2'], durationMs: 0, change: 'decommission' },
    ];
    const text = faultTable({
      events, counts: counts({ kill: 1, skew: 2, topology: 2 }), kinds: ['kill', 'pause', 'partition', 'skew', 'topology'],
      topology: { joins: 1, decommissions: 1, refusedBusy: 3, deferred: 4 },
    });
    const rows = text.split('\n');
    expect(rows.map((r) => r.split(/\s+/)[0])).to.deep.equal(['fault', 'kill', 'pause', 'partition', 'skew', 'topology']);
    expect(text).to.match(/^kill\s+1\s+1\.5 s in total$/m);
    expect(text).to.match(/^pause\s+0$/m);
    expect(text).to.match(/^skew\s+2\s+10\.0 s in total; restarted onto the clock 1, jumped 3; offsets -3\.2s to \+4\.1s$/m);
    expect(text).to.match(/^topology\s+2\s+joins 1, decommissions 1; completed 1\/2, longest 12\.3 s; refused busy 3, deferred 4$/m);
  });

  it('lists the kinds a run did not ask for only when they are default ones', () => {
    const text = faultTable({ events: [], counts: counts({}), kinds: ['kill'], topology: undefined });
    expect(text.split('\n').map((r) => r.split(/\s+/)[0])).to.deep.equal(['fault', 'kill', 'pause', 'partition']);
    const line = progressLine(12_345, { ok: 10, fail: 1, unknown: 2, precondition: 3 }, undefined, ['kill', 'skew']);
    expect(line).to.equal('[  12s] ops ok 10 fail 1 unknown 2 412 3 | faults kill 0 pause 0 partition 0 skew 0 | down - paused - cut - skewed -');
  });

  it('sums up the compare-and-set ops apart, and says nothing of them in a run without any', () => {
    const v = '018bcfe568010000:n1';
    const at = { invokeMs: 0, completeMs: 1 };
    const ops: Op[] = [
      { id: 0, process: 1, kind: 'write', key: 'c-0', value: 'a', ifNoneMatch: true, ...at, status: 'ok', version: v },
      { id: 1, process: 2, kind: 'write', key: 'c-0', value: 'b', ifNoneMatch: true, ...at, status: 'precondition', version: v },
      { id: 2, process: 2, kind: 'read', key: 'c-1', serial: true, ...at, status: 'ok', readValue: null },
      { id: 3, process: 3, kind: 'delete', key: 'c-0', ifMatch: v, ...at, status: 'ok', version: v.replace('1', '2') },
      { id: 4, process: 3, kind: 'delete', key: 'c-0', ifMatch: v, ...at, status: 'unknown' },
      { id: 5, process: 3, kind: 'write', key: 'u-3-0', value: 'x', ...at, status: 'ok', version: v },
    ];
    expect(casSummary(ops)).to.equal('cas: 5 ops on 2 keys; conditional writes ok 2 (deletes 1), 412 1, fail 0, unknown 1; serial reads ok 1, fail 0, unknown 0');
    expect(casSummary(ops.slice(5))).to.equal(undefined);
  });

  it('fails a run whose node crashed, naming the node and its error, whatever the history says', () => {
    const crash = { id: 'n2', at: '2026-12-01T21:55:33.011Z', code: 1, signal: null, reason: 'Error: assertion failed: swim clock must not go backwards' };
    const clean = check([], {}, { crashes: [] });
    expect(clean.ok).to.equal(true);
    expect(clean.results.map((r) => r.name)).to.include('noCrashes');
    const crashed = check([], {}, { crashes: [crash] });
    expect(crashed.ok).to.equal(false);
    expect(crashed.summary.failedCheckers).to.deep.equal(['noCrashes']);
    expect(formatReport(crashed)).to.contain('[noCrashes] n2 exited on its own at 2026-12-01T21:55:33.011Z (code 1): Error: assertion failed: swim clock must not go backwards');
  });
});
