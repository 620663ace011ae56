/**
 * The `kv` command: `kv <subcommand> [args] [--flags]`. See README "CLI".
 */
import { isKvError } from '../errors.ts';
import { DEFAULTS } from '../config.ts';
import { parseArgs, type ParsedArgs } from './args.ts';

const BOOLEAN_FLAGS = new Set([
  ...Object.entries(DEFAULTS).filter(([, v]) => typeof v === 'boolean').map(([k]) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)),
  'sloppy', 'json', 'help', 'keep', 'no-partitions', 'tls', 'no-restart', 'no-wait', 'if-none-match', 'serial', 'no-session',
]);

const USAGE = `usage: kv <command> [options]

  kv start [--nodes 3] [--base-port 7001] [--data ./data] [--tls] [--restart-delay 5 | --no-restart]
                                          run a local cluster in the foreground, supervised
  kv node --id ID --listen HOST:PORT --data DIR (--bootstrap | --join HOST:PORT[,...]) [--secret S] [--fsync]
          [--tokens-file FILE | --auth none] [--tls-cert F --tls-key F --tls-ca F]
  kv node --replace ID --listen HOST:PORT --data FRESH_DIR --join HOST:PORT[,...]   take over a dead member's place
  kv token [--role read|write|admin] [--label NAME] [--tokens-file FILE]
  kv put KEY VALUE [--w W] [--sloppy] [--ttl SECONDS] [--if-match VERSION | --if-none-match] [--node HOST:PORT]
  kv get KEY [--r R | --serial] [--node HOST:PORT]
  kv del KEY [--w W] [--if-match VERSION] [--node HOST:PORT]
  kv ls [PREFIX] [--limit N] [--node HOST:PORT]
  kv status [--node HOST:PORT] [--json]            every member: state, liveness, Raft role, keys, disk, share, hints, last repair
  kv ring [--key KEY] [--node HOST:PORT] [--json]  partition → replicas; with --key, which replica holds which version
  kv repair [--node HOST:PORT] [--json]           anti-entropy walk of that node's partitions now, with progress
  kv decommission ID [--node HOST:PORT] [--no-wait] [--json]   a live member streams its data away, then leaves
  kv removenode ID [--node HOST:PORT] [--json]    a dead member leaves: its partitions are re-replicated first
  kv chaos [--duration SECONDS] [--seed N] [--nodes 5] ...

Client commands take --token T (else $KV_TOKEN, else ./data/admin.token) and --ca FILE for HTTPS;
put/get/del keep a session per cluster in $KV_SESSION_FILE (else ~/.local/state/kv/sessions.json), --no-session opts out.
Node options also come from KV_* environment variables and --config FILE (see README).`;

type Command = (args: ParsedArgs) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  node: async () => (await import('./node-cmd.ts')).nodeCommand,
  start: async () => (await import('./start.ts')).startCommand,
  put: async () => (await import('./client-cmds.ts')).putCommand,
  get: async () => (await import('./client-cmds.ts')).getCommand,
  del: async () => (await import('./client-cmds.ts')).delCommand,
  ls: async () => (await import('./client-cmds.ts')).lsCommand,
  status: async () => (await import('./ops-cmds.ts')).statusCommand,
  ring: async () => (await import('./ops-cmds.ts')).ringCommand,
  repair: async () => (await import('./ops-cmds.ts')).repairCommand,
  removenode: async () => (await import('./ops-cmds.ts')).removenodeCommand,
  decommission: async () => (await import('./ops-cmds.ts')).decommissionCommand,
  chaos: async () => (await import('./chaos-cmd.ts')).chaosCommand,
  token: async () => (await import('./token-cmd.ts')).tokenCommand,
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
    // Network and TLS failures (refused, reset, an unknown CA) are the user's to fix, not a crash: no stack.
    else if (typeof (err as NodeJS.ErrnoException)?.code === 'string') process.stderr.write(`kv: ${(err as NodeJS.ErrnoException).code}: ${(err as Error).message}\n`);
    else process.stderr.write(`kv: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
