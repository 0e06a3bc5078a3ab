/**
 * pocketsync-server as a library: `createServer` runs the sync server in your own Node process
 * (the CLI, `pocketsync-server`, is a thin layer over it). Everything not exported here is internal.
 */
export { createServer, type RunningServer, type ServerOptions } from './server.js';
export { DEFAULT_LIMITS, DEFAULT_RETENTION, type Retention, type ServerLimits } from './limits.js';
export type { Conflict, ConflictSide, Resolver, RowState, Strategy } from './merge.js';
export type { Project, Store } from './store/store.js';
export { SqliteStore } from './store/sqlite-store.js';
