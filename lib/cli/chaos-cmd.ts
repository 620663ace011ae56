/**
 * `kv chaos`: kills, pauses, partitions, clock skew and topology changes under load,
 * then checks the history. See docs/chaos.md. Exit status: 0 when every checker
 * passes, 1 otherwise.
 */
import { randomInt } from 'node:crypto';
import { KvError } from '../errors.ts';
import { runChaos } from '../chaos/runner.ts';
import { DEFAULT_FAULT_KINDS, FAULT_KINDS, type FaultKind } from '../chaos/faults.ts';
import { intFlag, type ParsedArgs } from './args.ts';

function strFlag(args: ParsedArgs, name: string): string | undefined {
  const raw = args.flags[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') throw new KvError('KV_INVALID_ARGUMENT', `--${name} needs a value`);
  return raw;
}

const KNOWN = new Set(['duration', 'seed', 'nodes', 'clients', 'base-port', 'data', 'keep', 'attach', 'no-partitions',
  'faults', 'fault-interval-ms', 'json', 'help']);

export const CHAOS_USAGE = `usage: kv chaos [--duration 60] [--seed N] [--nodes 5] [--clients 8]
                [--faults kill,pause,partition[,skew,topology] | none] [--no-partitions] [--fault-interval-ms 2000]
                [--base-port P] [--data DIR] [--keep] [--attach HOST:PORT,...] [--json FILE]`;

export async function chaosCommand(args: ParsedArgs): Promise<number> {
  if (args.flags['help'] === true) {
    process.stdout.write(`${CHAOS_USAGE}\n`);
    return 0;
  }
  for (const name of Object.keys(args.flags)) {
    if (!KNOWN.has(name)) throw new KvError('KV_INVALID_ARGUMENT', `unknown option --${name}\n${CHAOS_USAGE}`);
  }
  let faults: FaultKind[] = [...DEFAULT_FAULT_KINDS];
  const faultsFlag = strFlag(args, 'faults');
  if (faultsFlag !== undefined) {
    faults = faultsFlag === 'none' ? [] : faultsFlag.split(',').map((f) => f.trim()) as FaultKind[];
    for (const f of faults) {
      if (!FAULT_KINDS.includes(f)) throw new KvError('KV_INVALID_ARGUMENT', `--faults: unknown fault "${f}" (${FAULT_KINDS.join(', ')} or none)`);
    }
  }
  if (args.flags['no-partitions'] === true) faults = faults.filter((f) => f !== 'partition');
  const attach = strFlag(args, 'attach')?.split(',').map((a) => a.trim()).filter((a) => a !== '');
  const keep = args.flags['keep'] === true;
  // `json` is a boolean flag for other commands, so `--json FILE` leaves FILE as a positional.
  let jsonFile = args.flags['json'] === true ? args.positionals[0] : strFlag(args, 'json');
  if (args.flags['json'] === true && jsonFile === undefined) throw new KvError('KV_INVALID_ARGUMENT', '--json needs a file name');
  if (args.positionals.length > (args.flags['json'] === true ? 1 : 0)) {
    throw new KvError('KV_INVALID_ARGUMENT', `unexpected argument "${args.positionals.at(-1)}"\n${CHAOS_USAGE}`);
  }
  jsonFile = jsonFile === '' ? undefined : jsonFile;
  const basePort = args.flags['base-port'] === undefined ? undefined : intFlag(args, 'base-port', 0, 1, 65_000);
  const result = await runChaos({
    durationS: intFlag(args, 'duration', 60, 1, 7 * 24 * 3600),
    seed: intFlag(args, 'seed', randomInt(1, 2 ** 31), 0, 2 ** 32 - 1),
    nodes: intFlag(args, 'nodes', 5, 3, 32),
    clients: intFlag(args, 'clients', 8, 1, 256),
    ...(basePort !== undefined ? { basePort } : {}),
    ...(strFlag(args, 'data') !== undefined ? { dataDir: strFlag(args, 'data') as string } : {}),
    keep,
    ...(attach !== undefined ? { attach } : {}),
    faults,
    faultIntervalMs: intFlag(args, 'fault-interval-ms', 2000, 50, 3_600_000),
    ...(jsonFile !== undefined ? { jsonFile } : {}),
    print: (line) => process.stdout.write(`${line}\n`),
    tty: process.stdout.isTTY === true,
    writeRaw: (s) => { if (process.stdout.isTTY) process.stdout.write(s); },
  });
  return result.ok ? 0 : 1;
}
