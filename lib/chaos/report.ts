/**
 * Plain-text rendering for the `kv chaos` command: the CheckReport (one table row per
 * checker, then the first violations: a long run can produce thousands; the first few
 * are what a human reads, the JSON report keeps the rest), the fault table and the
 * live progress line.
 */
import type { CheckReport } from './checkers.ts';
import { DEFAULT_FAULT_KINDS, FAULT_KINDS, seconds } from './faults.ts';
import type { FaultEvent, FaultInjector, FaultKind } from './faults.ts';
import type { TopologyCounts } from './topology-fault.ts';
import type { WorkloadCounts } from './workload.ts';

const SECOND = 1000;

export interface FormatOptions {
  /** Violations listed after the table, across all checkers (default 20). */
  maxViolations?: number;
}

export function formatReport(report: CheckReport, opts: FormatOptions = {}): string {
  const maxViolations = opts.maxViolations ?? 20;
  const s = report.summary;
  const rows: string[][] = [['checker', 'result', 'violations', 'stats']];
  for (const r of report.results) {
    const stats = Object.entries(r.stats).map(([k, v]) => `${k}=${v}`).join(' ');
    rows.push([r.name, r.ok ? 'PASS' : 'FAIL', String(r.violations.length), stats]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => (row[c] ?? '').length)));
  const line = (row: string[]): string =>
    row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c] ?? 0))).join('  ').trimEnd();
  const out: string[] = [
    `history: ${s.ops} ops on ${s.keys} keys (ok ${s.okOps}, fail ${s.failOps}, unknown ${s.unknownOps}, 412 ${s.preconditionOps})`,
    '',
    line(rows[0]!),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.slice(1).map(line),
    '',
    report.ok ? 'RESULT: PASS' : `RESULT: FAIL (${s.violations} violation(s) in ${s.failedCheckers.join(', ')})`,
  ];
  if (!report.ok && maxViolations > 0) {
    const all = report.results.flatMap((r) => r.violations.map((v) => ({ checker: r.name, v })));
    out.push('', `violations${all.length > maxViolations ? ` (first ${maxViolations} of ${all.length})` : ''}:`);
    for (const { checker, v } of all.slice(0, maxViolations)) {
      out.push(`  [${checker}] ${v.key !== '' ? `key ${JSON.stringify(v.key)}: ` : ''}${v.message}`);
    }
  }
  return out.join('\n') + '\n';
}

function shownKinds(kinds: readonly FaultKind[]): FaultKind[] {
  return FAULT_KINDS.filter((k) => DEFAULT_FAULT_KINDS.includes(k) || kinds.includes(k));
}

/** The live progress line: ops so far, faults so far, and what is broken right now. */
export function progressLine(nowMs: number, ops: WorkloadCounts, faults: FaultInjector | undefined, kinds: readonly FaultKind[]): string {
  const f = faults?.counts;
  const s = faults?.status();
  const list = (xs: string[] | undefined): string => (xs === undefined || xs.length === 0 ? '-' : xs.join(','));
  const counts = shownKinds(kinds).map((k) => `${k} ${f?.[k] ?? 0}`).join(' ');
  return `[${String(Math.floor(nowMs / SECOND)).padStart(4)}s] ops ok ${ops.ok} fail ${ops.fail} unknown ${ops.unknown} 412 ${ops.precondition}` +
    ` | faults ${counts}` +
    ` | down ${list(s?.down)} paused ${list(s?.paused)} cut ${list(s?.partitioned)}` +
    (kinds.includes('skew') ? ` skewed ${list(s?.skewed)}` : '') +
    (kinds.includes('topology') ? ` changing ${list(s?.changing)}` : '');
}

export interface FaultTableInput {
  events: readonly FaultEvent[];
  counts: Record<FaultKind, number>;
  /** The kinds the run injected: the default ones always get a row, the others when on. */
  kinds: readonly FaultKind[];
  topology: TopologyCounts | undefined;
}

/** One row per fault kind: how many, for how long, and what each kind adds. */
export function faultTable({ events, counts, kinds, topology }: FaultTableInput): string {
  const rows: string[][] = [['fault', 'count', 'detail']];
  for (const kind of shownKinds(kinds)) {
    const evs = events.filter((e) => e.kind === kind);
    let detail = '';
    if (evs.length > 0 && kind !== 'topology') {
      const secs = evs.reduce((sum, e) => sum + e.durationMs, 0) / SECOND;
      detail = `${secs.toFixed(1)} s in total`;
    }
    if (kind === 'partition' && evs.length > 0) {
      const iso = evs.filter((e) => e.shape === 'isolate').length;
      const seen = evs.filter((e) => e.observed).length;
      detail += `; isolate ${iso}, split ${evs.length - iso}; seen by gossip on the other side ${seen}/${evs.length}`;
    }
    if (kind === 'skew' && evs.length > 0) {
      const offsets = evs.flatMap((e) => e.offsetsMs ?? []);
      const restarts = evs.filter((e) => e.how === 'restart').length;
      detail += `; restarted onto the clock ${restarts}, jumped ${offsets.length - restarts}; ` +
        `offsets ${seconds(Math.min(...offsets))} to ${seconds(Math.max(...offsets))}`;
    }
    if (kind === 'topology' && topology !== undefined) {
      const settled = evs.filter((e) => e.settledMs !== undefined).map((e) => e.settledMs as number);
      detail = `joins ${topology.joins}, decommissions ${topology.decommissions}; ` +
        `completed ${settled.length}/${evs.length}${settled.length > 0 ? `, longest ${(Math.max(...settled) / SECOND).toFixed(1)} s` : ''}; ` +
        `refused busy ${topology.refusedBusy}, deferred ${topology.deferred}`;
    }
    rows.push([kind, String(counts[kind]), detail]);
  }
  const w0 = Math.max(...rows.map((r) => (r[0] as string).length));
  const w1 = Math.max(...rows.map((r) => (r[1] as string).length));
  return rows.map((r) => `${(r[0] as string).padEnd(w0)}  ${(r[1] as string).padStart(w1)}  ${r[2]}`.trimEnd()).join('\n');
}
