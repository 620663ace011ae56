/** The transcript environments, by testdata subdirectory. */
import type { EnvRegistry } from './transcript-runner.ts';
import { MerkleTranscriptEnv } from './transcript-merkle.ts';
import { RaftTranscriptEnv } from './transcript-raft.ts';
import { SwimTranscriptEnv } from './transcript-swim.ts';

export const TRANSCRIPT_ENVS: EnvRegistry = Object.freeze({
  merkle: () => new MerkleTranscriptEnv(),
  raft: () => new RaftTranscriptEnv(),
  swim: () => new SwimTranscriptEnv(),
});
