/**
 * `kv token`: make a client token. The token (shown once) goes to stdout; its hashed line
 * is appended to `--tokens-file FILE` (created mode 0600), which running nodes reload by
 * themselves, or printed to stderr for you to place. README "Security" has the rotation steps.
 */
import { KvError } from '../errors.ts';
import { ROLES, appendTokenLine, newToken, tokenLine, type Role } from '../api/tokens.ts';
import type { ParsedArgs } from './args.ts';

export const TOKEN_USAGE = 'usage: kv token [--role read|write|admin] [--label NAME] [--tokens-file FILE]';

export async function tokenCommand(args: ParsedArgs): Promise<number> {
  if (args.flags['help'] === true) {
    process.stdout.write(`${TOKEN_USAGE}\n`);
    return 0;
  }
  for (const k of Object.keys(args.flags)) {
    if (!['role', 'label', 'tokens-file'].includes(k)) throw new KvError('KV_INVALID_ARGUMENT', `unknown option --${k}\n${TOKEN_USAGE}`);
  }
  const role = (args.flags['role'] ?? 'write') as Role;
  if (!ROLES.includes(role)) throw new KvError('KV_INVALID_ARGUMENT', `--role must be read, write or admin\n${TOKEN_USAGE}`);
  const label = typeof args.flags['label'] === 'string' ? args.flags['label'] : '';
  if (!/^[A-Za-z0-9_.@-]{0,64}$/.test(label)) throw new KvError('KV_INVALID_ARGUMENT', '--label: up to 64 of A-Z a-z 0-9 _ . @ -');
  const token = newToken();
  const line = tokenLine(token, role, label);
  const file = args.flags['tokens-file'];
  if (typeof file === 'string') {
    appendTokenLine(file, line);
    process.stderr.write(`added a ${role} token to ${file} (nodes reading it pick it up within a second or two)\n`);
  } else {
    process.stderr.write(`tokens file line:\n${line}\n`);
  }
  process.stdout.write(`${token}\n`);
  return 0;
}
