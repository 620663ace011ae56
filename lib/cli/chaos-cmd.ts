/** `kv chaos`: placeholder until the chaos runner lands. */
import { KvError } from '../errors.ts';
import type { ParsedArgs } from './args.ts';

export async function chaosCommand(_args: ParsedArgs): Promise<number> {
  throw new KvError('KV_UNAVAILABLE', 'kv chaos is not available in this build yet');
}
