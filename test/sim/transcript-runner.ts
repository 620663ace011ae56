/**
 * Data-driven interaction transcripts (the shape of etcd-io/raft's testdata): a text file
 * of commands, each followed by the output it must produce, replayed against a pure core.
 * A behaviour change then shows up as a readable diff of a .txt file.
 *
 *   # a comment, kept on rewrite
 *   command pos1 pos2 key=value list=(a,b,c)
 *   optional input lines
 *   ----
 *   expected output, up to the next blank line
 *
 * Output that itself holds blank lines is framed by two separator lines above and below
 * (`----` `----` ... `----` `----`); the rewriter picks that form by itself.
 *
 * Replay: `npx mocha test/sim/transcripts.test.ts` (part of `npm test`), or
 * `npm run transcripts` for the same check outside mocha.
 * Rewrite: `npm run transcripts -- --rewrite` writes every output the code produces now,
 * byte for byte what a replay compares against; review it with `git diff test/sim/testdata`
 * and commit only changes you understand.
 *
 * One environment per protocol (transcript-raft.ts, transcript-swim.ts,
 * transcript-merkle.ts), chosen by the testdata subdirectory. Each file starts with a
 * fresh environment; commands run in order against the state the earlier ones left.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isKvError } from '../../lib/errors.ts';

export const TESTDATA_DIR = join(dirname(fileURLToPath(import.meta.url)), 'testdata');
export const REWRITE_COMMAND = 'npm run transcripts -- --rewrite';

const SEPARATOR = '----';

/** A malformed transcript or a command the environment cannot run: fails the replay. */
export class TranscriptError extends Error {}

/** One command of a transcript, with typed accessors that consume its arguments. */
export class Directive {
  readonly cmd: string;
  /** `file:line` of the command, for error messages. */
  readonly where: string;
  readonly input: readonly string[];
  readonly #positional: string[] = [];
  readonly #named = new Map<string, string>();

  constructor(line: string, input: readonly string[], where: string) {
    this.where = where;
    this.input = input;
    const tokens = line.trim().split(/\s+/);
    this.cmd = tokens.shift() as string;
    for (const tok of tokens) {
      const eq = tok.indexOf('=');
      if (eq <= 0) {
        this.#positional.push(tok);
        continue;
      }
      const key = tok.slice(0, eq);
      if (this.#named.has(key)) this.fail(`argument ${key} given twice`);
      this.#named.set(key, tok.slice(eq + 1));
    }
  }

  fail(message: string): never {
    throw new TranscriptError(`${this.where}: ${this.cmd}: ${message}`);
  }

  /** All positional arguments (consumed). */
  positional(min = 0): string[] {
    const out = this.#positional.splice(0);
    if (out.length < min) this.fail(`needs at least ${min} positional argument(s)`);
    return out;
  }

  has(key: string): boolean {
    return this.#named.has(key);
  }

  str(key: string, fallback?: string): string {
    const v = this.#named.get(key);
    this.#named.delete(key);
    if (v !== undefined) return v;
    if (fallback === undefined) this.fail(`missing argument ${key}=`);
    return fallback;
  }

  int(key: string, fallback?: number): number {
    const raw = this.#named.has(key) ? this.str(key) : undefined;
    if (raw === undefined) {
      if (fallback === undefined) this.fail(`missing argument ${key}=`);
      return fallback;
    }
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) this.fail(`${key} must be an integer, got ${raw}`);
    return n;
  }

  /** `key=(a,b,c)`; `key=()` is the empty list. */
  list(key: string, fallback?: string[]): string[] {
    const raw = this.#named.has(key) ? this.str(key) : undefined;
    if (raw === undefined) {
      if (fallback === undefined) this.fail(`missing argument ${key}=(...)`);
      return fallback;
    }
    if (!raw.startsWith('(') || !raw.endsWith(')')) this.fail(`${key} must be a list like (a,b)`);
    const body = raw.slice(1, -1);
    return body === '' ? [] : body.split(',');
  }

  /** Fails on any argument no accessor asked for, so a typo never passes silently. */
  done(): void {
    if (this.#positional.length > 0) this.fail(`unexpected argument(s) ${this.#positional.join(' ')}`);
    if (this.#named.size > 0) this.fail(`unknown argument(s) ${[...this.#named.keys()].join(', ')}`);
  }
}

/** Runs one command and returns its output (no trailing newline). */
export interface TranscriptEnv {
  run(d: Directive): string;
}

/**
 * Common ground of the environments: named nodes, id arguments checked against them,
 * and the output of the command being run.
 */
export abstract class NodeEnv<N> implements TranscriptEnv {
  protected readonly nodes = new Map<string, N>();
  #out: string[] = [];

  run(d: Directive): string {
    this.#out = [];
    this.handle(d);
    return this.#out.join('\n');
  }

  /** Runs one command, printing its output. */
  protected abstract handle(d: Directive): void;

  protected print(line: string): void {
    this.#out.push(line);
  }

  protected node(d: Directive, id: string): N {
    return this.nodes.get(id) ?? d.fail(`no node ${id}`);
  }

  /** The positional arguments, each the id of a node. */
  protected ids(d: Directive, min = 1, max = Infinity): string[] {
    const ids = d.positional(min);
    if (ids.length > max) d.fail(`takes at most ${max} node id(s)`);
    for (const id of ids) this.node(d, id);
    return ids;
  }

  /** Node ids and no other argument. */
  protected idsOnly(d: Directive, min = 1, max = Infinity): string[] {
    const ids = this.ids(d, min, max);
    d.done();
    return ids;
  }
}

/**
 * Who cannot reach whom in a transcript's network: whole nodes cut off, or single links
 * (both directions). Shared by the environments so `cut`, `cut-link` and `heal` mean
 * the same everywhere.
 */
export class Cuts {
  readonly #nodes = new Set<string>();
  readonly #links = new Set<string>();

  static #link(a: string, b: string): string {
    return a < b ? `${a} ${b}` : `${b} ${a}`;
  }

  /** `cut ID...`: every link of each node. */
  cutNodes(ids: readonly string[]): void {
    for (const id of ids) this.#nodes.add(id);
  }

  /** `cut-link A B`: the link between two nodes only. */
  cutLink(a: string, b: string): void {
    this.#links.add(Cuts.#link(a, b));
  }

  /** `heal` alone heals everything; `heal ID...` the cuts of those nodes and their links. */
  heal(ids: readonly string[]): void {
    if (ids.length === 0) {
      this.#nodes.clear();
      this.#links.clear();
      return;
    }
    for (const id of ids) this.#nodes.delete(id);
    for (const link of [...this.#links]) if (link.split(' ').some((x) => ids.includes(x))) this.#links.delete(link);
  }

  isCut(from: string, to: string): boolean {
    return this.#nodes.has(from) || this.#nodes.has(to) || this.#links.has(Cuts.#link(from, to));
  }
}

type Block =
  | { kind: 'text'; line: string }
  | { kind: 'case'; line: number; directive: string; input: string[]; output: string };

function parse(text: string, file: string): Block[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const blocks: Block[] = [];
  let i = 0;
  const at = (n: number): string => `${file}:${n + 1}`;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '' || line.startsWith('#')) {
      blocks.push({ kind: 'text', line });
      i++;
      continue;
    }
    const start = i++;
    const input: string[] = [];
    while (i < lines.length && lines[i] !== SEPARATOR) input.push(lines[i++] as string);
    if (i >= lines.length) throw new TranscriptError(`${at(start)}: command without a ${SEPARATOR} line`);
    i++;
    const output: string[] = [];
    if (lines[i] === SEPARATOR) {
      i++;
      while (i < lines.length && !(lines[i] === SEPARATOR && lines[i + 1] === SEPARATOR)) output.push(lines[i++] as string);
      if (i >= lines.length) throw new TranscriptError(`${at(start)}: output opened with two ${SEPARATOR} lines is never closed`);
      i += 2;
    } else {
      while (i < lines.length && (lines[i] as string).trim() !== '') output.push(lines[i++] as string);
    }
    blocks.push({ kind: 'case', line: start, directive: line, input, output: output.join('\n') });
  }
  return blocks;
}

function render(blocks: readonly Block[]): string {
  const out: string[] = [];
  for (const b of blocks) {
    if (b.kind === 'text') {
      out.push(b.line);
      continue;
    }
    out.push(b.directive, ...b.input, SEPARATOR);
    if (b.output.split('\n').some((l) => l.trim() === '')) out.push(SEPARATOR, b.output, SEPARATOR, SEPARATOR);
    else out.push(b.output);
  }
  return `${out.join('\n')}\n`;
}

export interface TranscriptResult {
  /** Path relative to the testdata directory. */
  readonly name: string;
  readonly path: string;
  readonly commands: number;
  /** The file as it is, and as the code rewrites it now. */
  readonly expected: string;
  readonly actual: string;
}

/**
 * Replays transcript text against a fresh environment: the command count and the text
 * with every output replaced by what the environment printed now.
 */
export function replayText(text: string, name: string, makeEnv: () => TranscriptEnv): { commands: number; actual: string } {
  const blocks = parse(text, name);
  const env = makeEnv();
  let commands = 0;
  const replayed = blocks.map((b): Block => {
    if (b.kind === 'text') return b;
    commands++;
    const d = new Directive(b.directive, b.input, `${name}:${b.line + 1}`);
    let output: string;
    try {
      output = env.run(d);
    } catch (err) {
      // A stable KvError is behaviour worth pinning; anything else is a bug or a bad transcript.
      if (!isKvError(err)) {
        if (err instanceof TranscriptError) throw err;
        throw new TranscriptError(`${d.where}: ${d.cmd}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      }
      const details = err.details === undefined ? '' : ` ${JSON.stringify(err.details)}`;
      output = `error ${err.code}: ${err.message}${details}`;
    }
    const trimmed = output.replace(/\s+$/, '');
    return { ...b, output: trimmed === '' ? 'ok' : trimmed };
  });
  return { commands, actual: render(replayed) };
}

/** Replays one file against a fresh environment; never writes. */
export function replayFile(path: string, makeEnv: () => TranscriptEnv): TranscriptResult {
  const name = relative(TESTDATA_DIR, path);
  const expected = readFileSync(path, 'utf8');
  const { commands, actual } = replayText(expected, name, makeEnv);
  return { name, path, commands, expected, actual };
}

/** The protocol environments, by testdata subdirectory. */
export type EnvRegistry = Readonly<Record<string, () => TranscriptEnv>>;

/** Every transcript under testdata/<protocol>/*.txt, sorted, with its environment. */
export function listTranscripts(envs: EnvRegistry): Array<{ path: string; makeEnv: () => TranscriptEnv }> {
  const out: Array<{ path: string; makeEnv: () => TranscriptEnv }> = [];
  for (const dir of readdirSync(TESTDATA_DIR).sort()) {
    const makeEnv = envs[dir];
    if (makeEnv === undefined) throw new TranscriptError(`testdata/${dir}: no transcript environment of that name`);
    for (const file of readdirSync(join(TESTDATA_DIR, dir)).sort()) {
      if (!file.endsWith('.txt')) throw new TranscriptError(`testdata/${dir}/${file}: transcripts end in .txt`);
      out.push({ path: join(TESTDATA_DIR, dir, file), makeEnv });
    }
  }
  return out;
}

/** Writes the rewritten file if it differs; true when it did. */
export function rewriteFile(result: TranscriptResult): boolean {
  if (result.actual === result.expected) return false;
  writeFileSync(result.path, result.actual);
  return true;
}

// ---------------------------------------------------------------------------------------
// Line diff for failure messages
// ---------------------------------------------------------------------------------------

/** Longest-common-subsequence table above this many cells: show the changed middle whole. */
const DIFF_CELLS_MAX = 4_000_000;
const CONTEXT_LINES = 3;

type Op = { op: ' ' | '-' | '+'; text: string; a: number; b: number };

function diffOps(a: string[], b: string[]): Op[] {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const ops: Op[] = [];
  for (let i = 0; i < pre; i++) ops.push({ op: ' ', text: a[i] as string, a: i, b: i });
  if ((am.length + 1) * (bm.length + 1) > DIFF_CELLS_MAX) {
    am.forEach((text, i) => ops.push({ op: '-', text, a: pre + i, b: pre }));
    bm.forEach((text, j) => ops.push({ op: '+', text, a: pre + am.length, b: pre + j }));
  } else {
    // lcs[i][j]: length of the LCS of am[i..] and bm[j..].
    const w = bm.length + 1;
    const lcs = new Uint32Array((am.length + 1) * w);
    for (let i = am.length - 1; i >= 0; i--) {
      for (let j = bm.length - 1; j >= 0; j--) {
        lcs[i * w + j] = am[i] === bm[j] ? (lcs[(i + 1) * w + j + 1] as number) + 1
          : Math.max(lcs[(i + 1) * w + j] as number, lcs[i * w + j + 1] as number);
      }
    }
    let i = 0;
    let j = 0;
    while (i < am.length || j < bm.length) {
      if (i < am.length && j < bm.length && am[i] === bm[j]) {
        ops.push({ op: ' ', text: am[i] as string, a: pre + i++, b: pre + j++ });
      } else if (i < am.length && (j >= bm.length || (lcs[(i + 1) * w + j] as number) >= (lcs[i * w + j + 1] as number))) {
        ops.push({ op: '-', text: am[i] as string, a: pre + i++, b: pre + j });
      } else {
        ops.push({ op: '+', text: bm[j] as string, a: pre + i, b: pre + j++ });
      }
    }
  }
  for (let k = 0; k < suf; k++) {
    ops.push({ op: ' ', text: a[a.length - suf + k] as string, a: a.length - suf + k, b: b.length - suf + k });
  }
  return ops;
}

/** A unified diff (3 lines of context) from the file as it is to the file as replayed. */
export function unifiedDiff(expected: string, actual: string, name: string): string {
  const ops = diffOps(expected.split('\n'), actual.split('\n'));
  const out = [`--- ${name} (expected)`, `+++ ${name} (actual)`];
  let k = 0;
  while (k < ops.length) {
    if ((ops[k] as Op).op === ' ') {
      k++;
      continue;
    }
    const lo = Math.max(0, k - CONTEXT_LINES);
    let hi = k;
    // Extend the hunk while the next change is within twice the context.
    for (;;) {
      while (hi < ops.length && (ops[hi] as Op).op !== ' ') hi++;
      let next = hi;
      while (next < ops.length && (ops[next] as Op).op === ' ') next++;
      if (next < ops.length && next - hi <= 2 * CONTEXT_LINES) {
        hi = next;
        continue;
      }
      hi = Math.min(ops.length, hi + CONTEXT_LINES);
      break;
    }
    const hunk = ops.slice(lo, hi);
    const first = hunk[0] as Op;
    const aLen = hunk.filter((o) => o.op !== '+').length;
    const bLen = hunk.filter((o) => o.op !== '-').length;
    out.push(`@@ -${first.a + 1},${aLen} +${first.b + 1},${bLen} @@`);
    for (const o of hunk) out.push(`${o.op}${o.text}`);
    k = hi;
  }
  return out.join('\n');
}

/** The failure message of a mismatching replay: the diff and how to accept it. */
export function mismatchReport(result: TranscriptResult): string {
  return `${unifiedDiff(result.expected, result.actual, `testdata/${result.name}`)}\n\n` +
    `transcript ${basename(result.path)} no longer replays as written. If the change is intended, ` +
    `rewrite it with \`${REWRITE_COMMAND}\` and review \`git diff test/sim/testdata\`.`;
}
