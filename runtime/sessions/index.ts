/**
 * Session managers and the Redis coordination they are built on. The distributed lock is public API:
 *
 * ```ts
 * import { Redis } from 'ioredis';
 * import { RedisLock } from 'qqbot-runtime/runtime/sessions/index.ts';
 * ```
 */
export { LocalSessionManager, type LocalSessionManagerOptions, type SavedSession } from './local.ts';
export { RedisSessionManager, type RedisSessionManagerOptions } from './redis-session-manager.ts';
export type { ClusterView, ClusterProcess, LeaseChange, SessionManager, SessionManagerEvents, StopOptions } from './session-manager.ts';
export { RedisConnection, type RedisConnectionOptions } from './redis-connection.ts';
export { RedisLock, LockLease, LockError, type LockOptions, type RedisLockOptions } from './redis-lock.ts';
