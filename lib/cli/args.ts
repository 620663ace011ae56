import { KvError } from '../errors.ts';

/** Minimal argv parsing: positionals, `--name value`, `--name=value`, bare boolean `--flag`. */
export interface ParsedArgs {
  positionals: string[];
  flags: Record<string, string | boolean>;
}

export function parseArgs(argv: readonly string[], booleans: ReadonlySet<string>): ParsedArgs {
  const positionals: string[] = [];
  const flags: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('--')) { positionals.push(a); continue; }
    const eq = a.indexOf('=');
    if (eq > 0) { flags[a.slice(2, eq)] = a.slice(eq + 1); continue; }
    const name = a.slice(2);
    const next = argv[i + 1];
    if (booleans.has(name) && (next === undefined || (next !== 'true' && next !== 'false'))) { flags[name] = true; continue; }
    if (next === undefined || next.startsWith('--')) { flags[name] = true; continue; }
    flags[name] = next;
    i++;
  }
  return { positionals, flags };
}

/** An integer flag in [min, max], or the default; KV_INVALID_ARGUMENT otherwise. */
export function intFlag(args: ParsedArgs, name: string, def: number, min: number, max: number): number {
  const raw = args.flags[name];
  if (raw === undefined) return def;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) throw new KvError('KV_INVALID_ARGUMENT', `--${name} must be an integer in ${min}..${max}`);
  return v;
}
