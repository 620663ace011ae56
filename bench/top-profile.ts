/**
 * Top functions by self time in V8 .cpuprofile files (as written by
 * `node --cpu-prof --cpu-prof-dir=DIR`), with their source file:line.
 *
 *   node --import tsx bench/top-profile.ts FILE_OR_DIR... [--top 25] [--since-us T] [--until-us T]
 *
 * Several files (for example one per node of a cluster) are merged: a function's self
 * time is summed over all of them. --since-us/--until-us keep only samples taken in that
 * window of the monotonic clock (process.hrtime.bigint() / 1000n in any process on the
 * same Linux host reads the same clock as V8's profiler), so start-up and shut-down can
 * be left out.
 *
 * Project sources run through tsx, which compiles them with esbuild with
 * `minifyWhitespace`: the profile's line/column point into that one-line output. They
 * are mapped back to the .ts line by compiling the file again with the options tsx uses
 * and reading the source map. A line marked `~` could not be mapped (no esbuild, or the
 * file changed since the profile) and is the generated position.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface CallFrame { functionName: string; url: string; lineNumber: number; columnNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

export interface FunctionCost {
  name: string;
  /** file:line, relative to the current directory for local files. */
  where: string;
  /** Package, node built-in module or project file the function belongs to. */
  group: string;
  selfMs: number;
}

export interface ProfileSummary {
  files: number;
  /** Sampled time inside the window, idle included. */
  totalMs: number;
  idleMs: number;
  functions: FunctionCost[];
  groups: { group: string; selfMs: number }[];
}

export interface SummaryOptions { sinceUs?: number; untilUs?: number }

export function profileFiles(paths: string[]): string[] {
  return paths.flatMap((p) => statSync(p).isDirectory()
    ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).sort().map((f) => join(p, f))
    : [p]);
}

/** Decoded source map of one file: per generated line, sorted [column, original line]. */
type LineMap = [number, number][][];
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function decodeMappings(mappings: string): LineMap {
  const lines: LineMap = [];
  let srcLine = 0;
  for (const text of mappings.split(';')) {
    const segs: [number, number][] = [];
    let genCol = 0;
    for (const seg of text.split(',')) {
      if (!seg) continue;
      const fields: number[] = [];
      let value = 0;
      let shift = 0;
      for (const ch of seg) {
        const digit = B64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) { shift += 5; continue; }
        fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
      genCol += fields[0] ?? 0;
      if (fields.length >= 4) {
        srcLine += fields[2] as number;
        segs.push([genCol, srcLine]);
      }
    }
    lines.push(segs);
  }
  return lines;
}

type Esbuild = { transformSync: (code: string, o: Record<string, unknown>) => { map: string } };
let esbuild: Esbuild | null | undefined;
const maps = new Map<string, LineMap | null>();

/** Compile like tsx does (its esm transform: node target, source map, minified whitespace, kept names). */
async function lineMapFor(file: string): Promise<LineMap | null> {
  if (maps.has(file)) return maps.get(file) ?? null;
  let map: LineMap | null = null;
  try {
    // esbuild comes with tsx; without it, positions stay generated ones.
    esbuild ??= (await import('esbuild').catch(() => null)) as Esbuild | null;
    if (esbuild) {
      const out = esbuild.transformSync(readFileSync(file, 'utf8'), {
        loader: file.endsWith('.tsx') ? 'tsx' : 'ts', format: 'esm', target: `node${process.versions.node}`,
        sourcemap: true, minifyWhitespace: true, keepNames: true, sourcefile: file,
      });
      map = decodeMappings((JSON.parse(out.map) as { mappings: string }).mappings);
    }
  } catch {
    map = null;
  }
  maps.set(file, map);
  return map;
}

function originalLine(map: LineMap, line0: number, col0: number): number | undefined {
  const segs = map[line0];
  if (!segs || segs.length === 0) return undefined;
  let best: [number, number] | undefined;
  for (const s of segs) {
    if (s[0] > col0) break;
    best = s;
  }
  return (best ?? segs[0])?.[1];
}

function groupOf(url: string, file: string | undefined): string {
  if (!url) return '(native/V8)';
  if (url.startsWith('node:')) {
    const m = url.slice(5).replace(/^internal\//, '').replace(/^_/, '').split(/[/_.]/)[0];
    return `node:${m}`;
  }
  if (file) {
    const nm = file.lastIndexOf('/node_modules/');
    if (nm >= 0) {
      const parts = file.slice(nm + 14).split('/');
      return (parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]) ?? file;
    }
    return relative(process.cwd(), file);
  }
  return url;
}

export async function summarise(paths: string[], o: SummaryOptions = {}): Promise<ProfileSummary> {
  const files = profileFiles(paths);
  const byKey = new Map<string, FunctionCost>();
  const groups = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const path of files) {
    const prof = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    // Sample i lasts until sample i+1 (DevTools' reading); the last one until endTime.
    let t = prof.startTime;
    const times = prof.timeDeltas.map((d) => (t += d));
    for (let i = 0; i < prof.samples.length; i++) {
      const at = times[i] as number;
      if ((o.sinceUs !== undefined && at < o.sinceUs) || (o.untilUs !== undefined && at > o.untilUs)) continue;
      const dur = (times[i + 1] ?? prof.endTime) - at;
      const id = prof.samples[i] as number;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dur));
    }
    for (const [id, us] of selfUs) {
      const cf = (nodes.get(id) as ProfileNode).callFrame;
      totalUs += us;
      if (cf.functionName === '(idle)') { idleUs += us; continue; }
      const file = cf.url.startsWith('file://') ? fileURLToPath(cf.url) : undefined;
      let where: string;
      if (file && /\.tsx?$/.test(file) && !file.includes('/node_modules/')) {
        const map = await lineMapFor(file);
        const line = map ? originalLine(map, cf.lineNumber, cf.columnNumber) : undefined;
        where = line === undefined ? `${relative(process.cwd(), file)}:~${cf.lineNumber + 1}` : `${relative(process.cwd(), file)}:${line + 1}`;
      } else if (file) {
        where = `${relative(process.cwd(), file)}:${cf.lineNumber + 1}`;
      } else {
        where = cf.url ? `${cf.url}:${cf.lineNumber + 1}` : '';
      }
      const name = cf.functionName || '(anonymous)';
      const key = `${name}\u0000${where}`;
      const group = groupOf(cf.url, file);
      const fc = byKey.get(key) ?? { name, where, group, selfMs: 0 };
      fc.selfMs += us / 1000;
      byKey.set(key, fc);
      groups.set(group, (groups.get(group) ?? 0) + us / 1000);
    }
  }
  return {
    files: files.length, totalMs: totalUs / 1000, idleMs: idleUs / 1000,
    functions: [...byKey.values()].sort((a, b) => b.selfMs - a.selfMs),
    groups: [...groups.entries()].map(([group, selfMs]) => ({ group, selfMs })).sort((a, b) => b.selfMs - a.selfMs),
  };
}

export function formatSummary(s: ProfileSummary, top = 25): string {
  const busy = s.totalMs - s.idleMs;
  const pct = (ms: number): string => `${((100 * ms) / (busy || 1)).toFixed(1).padStart(5)}%`;
  const out = [`${s.files} profile(s): ${(s.totalMs / 1000).toFixed(2)} s sampled, ${(busy / 1000).toFixed(2)} s busy (percentages are of busy time)`,
    '', `top ${top} functions by self time:`, `${'self ms'.padStart(9)} ${'%'.padStart(6)}  function  (file:line)`];
  for (const f of s.functions.slice(0, top)) out.push(`${f.selfMs.toFixed(1).padStart(9)} ${pct(f.selfMs)}  ${f.name}  ${f.where ? `(${f.where})` : ''}`);
  out.push('', 'self time by package / module / project file:');
  for (const g of s.groups.slice(0, top)) out.push(`${g.selfMs.toFixed(1).padStart(9)} ${pct(g.selfMs)}  ${g.group}`);
  return out.join('\n');
}

if (process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  const argv = process.argv.slice(2);
  const paths: string[] = [];
  const opt: SummaryOptions = {};
  let top = 25;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const v = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n)) throw new Error(`${a} needs a number`);
      return n;
    };
    if (a === '--top') top = v();
    else if (a === '--since-us') opt.sinceUs = v();
    else if (a === '--until-us') opt.untilUs = v();
    else paths.push(a);
  }
  if (paths.length === 0) {
    process.stderr.write('usage: node --import tsx bench/top-profile.ts FILE_OR_DIR... [--top 25] [--since-us T] [--until-us T]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatSummary(await summarise(paths, opt), top)}\n`);
}
