/**
 * The `kv` command: `kv <subcommand> [args] [--flags]`. See README "CLI".
 */
import { isKvError } from '../errors.ts';
import { DEFAULTS } from '../config.ts';
import { parseArgs, type ParsedArgs } from './args.ts';

const BOOLEAN_FLAGS = new Set([
  ...Object.entries(DEFAULTS).filter(([, v]) => typeof v === 'boolean').map(([k]) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)),
  'sloppy', 'json', 'help', 'keep', 'no-partitions', 'if-none-match', 'serial',
]);

const USAGE = `usage: kv <command> [options]

  kv start [--nodes 3] [--base-port 7001] [--data ./data]   run a local cluster in the foreground
  kv node --id ID --listen HOST:PORT --data DIR (--bootstrap | --join HOST:PORT[,...]) [--secret S] [--fsync]
  kv put KEY VALUE [--w W] [--sloppy] [--ttl SECONDS] [--if-match VERSION | --if-none-match] [--node HOST:PORT]
  kv get KEY [--r R | --serial] [--node HOST:PORT]
  kv del KEY [--w W] [--if-match VERSION] [--node HOST:PORT]
  kv ls [PREFIX] [--limit N] [--node HOST:PORT]
  kv status [--node HOST:PORT] [--json]
  kv decommission ID [--node HOST:PORT]
  kv chaos [--duration SECONDS] [--seed N] [--nodes 5] ...

Node options also come from KV_* environment variables and --config FILE (see README).`;

type Command = (args: ParsedArgs) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  node: async () => (await import('./node-cmd.ts')).nodeCommand,
  start: async () => (await import('./start.ts')).startCommand,
  put: async () => (await import('./client-cmds.ts')).putCommand,
  get: async () => (await import('./client-cmds.ts')).getCommand,
  del: async () => (await import('./client-cmds.ts')).delCommand,
  ls: async () => (await import('./client-cmds.ts')).lsCommand,
  status: async () => (await import('./client-cmds.ts')).statusCommand,
  decommission: async () => (await import('./client-cmds.ts')).decommissionCommand,
  chaos: async () => (await import('./chaos-cmd.ts')).chaosCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`kv: unknown command "${name}"\n${USAGE}\n`);
    return 2;
  }
  const cmd = await load();
  return cmd(parseArgs(rest, BOOLEAN_FLAGS));
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (isKvError(err)) process.stderr.write(`kv: ${err.code}: ${err.message}\n`);
    else process.stderr.write(`kv: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
