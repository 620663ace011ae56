/**
 * `npm run transcripts [-- --rewrite] [NAME...]`: replays the transcripts under
 * test/sim/testdata (all, or those whose path contains a NAME) and prints a diff for each
 * one that no longer matches; exits non-zero if any does. With --rewrite it writes what
 * the code prints now instead (byte-identical when nothing changed), for review with
 * `git diff test/sim/testdata`.
 */
import { parseArgs } from '../../lib/cli/args.ts';
import { listTranscripts, mismatchReport, replayFile, rewriteFile } from './transcript-runner.ts';
import { TRANSCRIPT_ENVS } from './transcript-envs.ts';

const { flags, positionals } = parseArgs(process.argv.slice(2), new Set(['rewrite']));
const rewrite = flags['rewrite'] === true;
const files = listTranscripts(TRANSCRIPT_ENVS).filter((f) => positionals.length === 0 || positionals.some((p) => f.path.includes(p)));
let mismatches = 0;
for (const { path, makeEnv } of files) {
  const result = replayFile(path, makeEnv);
  const same = result.actual === result.expected;
  if (rewrite) {
    process.stdout.write(`${rewriteFile(result) ? 'rewrote  ' : 'unchanged'} ${result.name} (${result.commands} commands)\n`);
  } else if (same) {
    process.stdout.write(`ok        ${result.name} (${result.commands} commands)\n`);
  } else {
    mismatches++;
    process.stdout.write(`FAIL      ${result.name}\n${mismatchReport(result)}\n\n`);
  }
}
process.stdout.write(`${files.length} transcript(s)${rewrite ? '' : `, ${mismatches} mismatching`}\n`);
process.exitCode = mismatches > 0 ? 1 : 0;
