/** The Raft core for the membership/epoch log; see node.ts for the protocol notes. */
export { RaftNode } from './node.ts';
export type { RaftNodeOptions } from './node.ts';
export { validateRaftMessage, validateConfig, validateSnapshot, isNodeId, MAX_ENTRIES_PER_MESSAGE, MAX_CONFIG_MEMBERS } from './validate.ts';
export type * from './types.ts';
