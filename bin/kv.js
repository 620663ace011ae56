#!/usr/bin/env node
// The `kv` command. Sources are TypeScript, run through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('../lib/cli/main.ts');
