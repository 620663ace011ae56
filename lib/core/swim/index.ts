/** SWIM failure detection core: one import for the runtime. */
export * from './config.ts';
export * from './messages.ts';
export * from './state.ts';
export * from './suspicion.ts';
export * from './awareness.ts';
export * from './broadcast.ts';
export * from './swim.ts';
