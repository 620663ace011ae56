/**
 * Plain-text rendering of a CheckReport for the `kv chaos` command: one table row per
 * checker, then the first violations (a long run can produce thousands; the first few
 * are what a human reads, the JSON report keeps the rest).
 */
import type { CheckReport } from './checkers.ts';

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
    `history: ${s.ops} ops on ${s.keys} keys (ok ${s.okOps}, fail ${s.failOps}, unknown ${s.unknownOps})`,
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
      out.push(`  [${checker}] key ${JSON.stringify(v.key)}: ${v.message}`);
    }
  }
  return out.join('\n') + '\n';
}
