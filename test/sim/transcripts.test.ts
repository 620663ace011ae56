/**
 * Replays every transcript under test/sim/testdata (see transcript-runner.ts for the
 * format). A mismatch fails with a diff of the file; if the change is intended, run
 * `npm run transcripts -- --rewrite` and review `git diff test/sim/testdata`.
 */
import { expect } from 'chai';
import { listTranscripts, mismatchReport, replayFile } from './transcript-runner.ts';
import { TRANSCRIPT_ENVS } from './transcript-envs.ts';

describe('transcripts (test/sim/testdata)', () => {
  const files = listTranscripts(TRANSCRIPT_ENVS);

  it('has transcripts for each protocol', () => {
    const dirs = new Set(files.map((f) => f.path.split('/').at(-2)));
    expect([...dirs].sort()).to.deep.equal(Object.keys(TRANSCRIPT_ENVS).sort());
  });

  for (const { path, makeEnv } of files) {
    it(`replays ${path.split('/').slice(-2).join('/')}`, () => {
      const result = replayFile(path, makeEnv);
      if (result.actual !== result.expected) expect.fail(mismatchReport(result));
    });
  }
});
