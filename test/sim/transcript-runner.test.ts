/**
 * The transcript runner itself: parsing, rewriting byte for byte, blank lines in
 * output, argument checking, errors, and the diff a mismatch shows.
 */
import { expect } from 'chai';
import { KvError } from '../../lib/errors.ts';
import { NodeEnv, TranscriptError, replayText, unifiedDiff, type Directive } from './transcript-runner.ts';

/** echo: prints its input lines and its `n=` argument; blank: output with an empty line. */
class EchoEnv extends NodeEnv<never> {
  protected handle(d: Directive): void {
    switch (d.cmd) {
      case 'echo': {
        const n = d.int('n', 0);
        const words = d.list('words', []);
        d.done();
        for (const line of d.input) this.print(line);
        if (n !== 0) this.print(`n=${n}`);
        if (words.length > 0) this.print(words.join('|'));
        break;
      }
      case 'blank':
        d.done();
        this.print('above');
        this.print('');
        this.print('below');
        break;
      case 'refuse':
        throw new KvError('KV_INVALID_ARGUMENT', 'refused', { details: { why: 'test' } });
      case 'crash':
        throw new Error('a bug');
      case 'nothing':
        break;
      default:
        d.fail('unknown command');
    }
  }
}

const replay = (text: string): string => replayText(text, 'test.txt', () => new EchoEnv()).actual;

const CANONICAL = `# a comment
echo n=3 words=(a,b)
line one
----
line one
n=3
a|b

# blank lines in output get the double separator
blank
----
----
above

below
----
----

refuse
----
error KV_INVALID_ARGUMENT: refused {"why":"test"}

nothing
----
ok
`;

describe('transcript runner', () => {
  it('rewrites a transcript that is up to date byte for byte, comments and blank lines included', () => {
    expect(replay(CANONICAL)).to.equal(CANONICAL);
    expect(replayText(CANONICAL, 'test.txt', () => new EchoEnv()).commands).to.equal(4);
  });

  it('replaces stale outputs and only those', () => {
    const stale = CANONICAL.replace('n=3\na|b', 'n=4').replace('ok\n', 'something else\n');
    const actual = replay(stale);
    expect(actual).to.equal(CANONICAL);
    expect(replay(actual)).to.equal(actual);
  });

  it('reads an output that ends at the end of the file', () => {
    expect(replay('echo n=1\n----\n')).to.equal('echo n=1\n----\nn=1\n');
  });

  it('fails with the position on a typo in an argument, an unknown command or a bug', () => {
    expect(() => replay('\necho m=1\n----\nn=1\n')).to.throw(TranscriptError, 'test.txt:2: echo: unknown argument(s) m');
    expect(() => replay('frobnicate\n----\nok\n')).to.throw(TranscriptError, 'test.txt:1: frobnicate: unknown command');
    expect(() => replay('crash\n----\nok\n')).to.throw(TranscriptError, /test\.txt:1: crash: Error: a bug/);
  });

  it('fails on a command without a separator or an unclosed double separator', () => {
    expect(() => replay('echo n=1\n')).to.throw(TranscriptError, 'without a ---- line');
    expect(() => replay('blank\n----\n----\nabove\n')).to.throw(TranscriptError, 'never closed');
  });

  it('shows a mismatch as a unified diff with context', () => {
    const expected = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'].join('\n');
    const actual = expected.replace('e', 'E').replace('j', 'J');
    expect(unifiedDiff(expected, actual, 'x.txt').split('\n')).to.deep.equal([
      '--- x.txt (expected)', '+++ x.txt (actual)',
      '@@ -2,9 +2,9 @@', ' b', ' c', ' d', '-e', '+E', ' f', ' g', ' h', ' i', '-j', '+J',
    ]);
  });
});
