/**
 * lib/core is pure protocol logic (DESIGN.md §3): no I/O modules, no runtime layers,
 * no wall clock, timers or Math.random. This test keeps that boundary from rotting.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const CORE = fileURLToPath(new URL('../../lib/core', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const FORBIDDEN_MODULES = /^(node:)?(fs|fs\/promises|net|http|https|http2|dgram|dns|child_process|cluster|worker_threads|timers|timers\/promises|os|process|readline|tls|perf_hooks)$|^(ws|level|classic-level|pino|prom-client)$/;
const FORBIDDEN_LAYERS = /\/(net|storage|node|api|client|cli)\//;
const FORBIDDEN_GLOBALS: Array<[RegExp, string]> = [
  [/\bDate\.now\s*\(/, 'Date.now()'],
  [/\bnew Date\s*\(/, 'new Date()'],
  [/\bMath\.random\s*\(/, 'Math.random()'],
  [/\bsetTimeout\s*\(/, 'setTimeout'],
  [/\bsetInterval\s*\(/, 'setInterval'],
  [/\bsetImmediate\s*\(/, 'setImmediate'],
  [/\bperformance\.now\s*\(/, 'performance.now()'],
  [/\bprocess\.(hrtime|env|nextTick)\b/, 'process.*'],
];

/** Strip comments and string contents so prose like "no Date.now()" does not trip the check. */
function codeOnly(src: string): string {
  return src
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:])\/\/.*$/gm, '$1')
    .replace(/`(?:\\.|[^`\\])*`/g, '``');
}

export function violations(path: string, src: string): string[] {
  const out: string[] = [];
  const importRe = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (const m of src.matchAll(importRe)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? '';
    if (FORBIDDEN_MODULES.test(spec)) out.push(`${path}: imports I/O module "${spec}"`);
    if (spec.startsWith('.') && FORBIDDEN_LAYERS.test(`/${join('lib/core', spec)}/`.replace(/\/+/g, '/'))) {
      out.push(`${path}: imports runtime layer "${spec}"`);
    }
  }
  const code = codeOnly(src);
  for (const [re, name] of FORBIDDEN_GLOBALS) if (re.test(code)) out.push(`${path}: uses ${name}`);
  return out;
}

describe('lib/core purity', () => {
  it('imports no I/O module or runtime layer and uses no clock, timer or Math.random', () => {
    const found = files(CORE).flatMap((f) => violations(relative(CORE, f), readFileSync(f, 'utf8')));
    expect(found).to.deep.equal([]);
  });

  it('catches a violation when one is present (the check can fail)', () => {
    const bad = "import { readFileSync } from 'node:fs';\nimport x from '../storage/backend.ts';\nconst t = Date.now();\nsetTimeout(() => 1, 5);\n";
    expect(violations('bad.ts', bad)).to.have.length(4);
    expect(violations('ok.ts', "// Date.now() is not used here\nimport { h } from './hlc.ts';\n")).to.deep.equal([]);
  });
});
