/**
 * A distributed lock on one Redis server, with owner tokens and fencing tokens:
 *
 * - the lock is a key whose value is `{fence}@{owner}`, set with `SET NX PX`, so a holder that dies
 *   simply lets it expire;
 * - renew and release are compare-and-set Lua scripts: only the holder of that exact value can extend or
 *   delete it, so a holder that was paused past its TTL cannot release a lock someone else now holds;
 * - every acquisition gets a fencing token that is larger than every token handed out before for the
 *   same name — even after Redis restarted empty (see `NEXT_FENCE`) — so a resource that remembers the
 *   highest token it has seen can refuse a late writer;
 * - a holder knows, without asking Redis, until when the lock is certainly still its own: the local
 *   deadline is measured on the monotonic clock from the moment the acquire/renew was sent, minus a
 *   margin for clock drift between this host and Redis.
 *
 * Used by the Redis session manager for shard leases, and exported for users:
 *
 * ```ts
 * import { RedisLock } from 'qqbot-runtime/runtime/sessions/index.ts';
 * const locks = new RedisLock({ redis: new Redis(url) });
 * await locks.withLock('daily-report', { ttlMs: 10_000 }, async (lease) => {
 *   await writeReport({ fence: lease.fence, signal: lease.signal });
 * });
 * ```
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { QQBotError } from '../errors.ts';
import { defineScript, RedisConnection } from './redis-connection.ts';
import { sleep } from '../time/sleep.ts';

/** The lock is held by someone else, or was lost while the work ran. */
export class LockError extends QQBotError {}

/**
 * Lua: the next fencing token for counter KEYS[n]: one more than the last, and never less than Redis'
 * clock in ms. Counters are kept for ever, but if Redis lost them (restarted without persistence) the
 * clock still puts every new token above the old ones, which were all taken at earlier times.
 */
export const NEXT_FENCE = `
local function nextFence(key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local f = redis.call('INCR', key)
  if f < now then
    f = now
    redis.call('SET', key, string.format('%d', f))
  end
  return string.format('%d', f)
end
`;

const ACQUIRE = `${NEXT_FENCE}
local held = redis.call('GET', KEYS[1])
if held then return {0, held} end
local f = nextFence(KEYS[2])
redis.call('SET', KEYS[1], f .. '@' .. ARGV[1], 'PX', ARGV[2])
return {1, f}
`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;

export interface LockOptions {
  /** how long the lock lives without a renewal */
  ttlMs: number;
  /**
   * subtracted from the local deadline to cover clock drift and the time a renewal takes to land;
   * default 10% of the TTL, at least 100 ms
   */
  marginMs?: number;
}

export interface LeaseState {
  name: string;
  owner: string;
  fence: number;
}

/** `{fence}@{owner}` → its parts (undefined for anything else). */
export function parseLockValue(value: string | null | undefined): { fence: number; owner: string } | undefined {
  if (!value) return undefined;
  const at = value.indexOf('@');
  const fence = Number(value.slice(0, at));
  if (at < 1 || !Number.isSafeInteger(fence)) return undefined;
  return { fence, owner: value.slice(at + 1) };
}

/** One acquisition of a lock. Valid until `deadline` (monotonic ms) unless renewed. */
export class LockLease implements LeaseState {
  readonly name: string;
  readonly owner: string;
  readonly fence: number;
  readonly ttlMs: number;
  readonly #marginMs: number;
  readonly #key: string;
  readonly #renew: (keys: string[], args: Array<string | number>) => Promise<number>;
  readonly #release: (keys: string[], args: Array<string | number>) => Promise<number>;
  readonly #lost = new AbortController();
  #deadline: number;
  #released = false;

  constructor(init: {
    name: string; key: string; owner: string; fence: number; ttlMs: number; marginMs: number; sentAt: number;
    renew: (keys: string[], args: Array<string | number>) => Promise<number>;
    release: (keys: string[], args: Array<string | number>) => Promise<number>;
  }) {
    this.name = init.name;
    this.owner = init.owner;
    this.fence = init.fence;
    this.ttlMs = init.ttlMs;
    this.#marginMs = init.marginMs;
    this.#key = init.key;
    this.#renew = init.renew;
    this.#release = init.release;
    this.#deadline = init.sentAt + init.ttlMs - init.marginMs;
  }

  /** the value stored in Redis while this lease holds the lock */
  get value(): string {
    return `${this.fence}@${this.owner}`;
  }

  /** monotonic ms (`performance.now()`) until which the lock is certainly this lease's */
  get deadline(): number {
    return this.#deadline;
  }

  /** True while the local deadline has not passed (no Redis round trip). */
  get valid(): boolean {
    return !this.#released && !this.#lost.signal.aborted && performance.now() < this.#deadline;
  }

  /** Aborted when the lease is known lost (a renewal found someone else's value) or released. */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  /**
   * Extends the lock by its TTL if it is still this lease's. `false`: it is not (expired and maybe taken);
   * the signal aborts. Throws when Redis cannot say (unreachable): the lease is then neither kept nor lost.
   */
  async renew(): Promise<boolean> {
    if (this.#released || this.#lost.signal.aborted) return false;
    const sentAt = performance.now();
    const ok = (await this.#renew([this.#key], [this.value, this.ttlMs])) === 1;
    if (ok) this.#deadline = Math.max(this.#deadline, sentAt + this.ttlMs - this.#marginMs);
    else this.markLost('the lock expired and was renewed too late');
    return ok;
  }

  /** Deletes the lock if it is still this lease's; true if it was. */
  async release(): Promise<boolean> {
    if (this.#released) return false;
    this.#released = true;
    this.#deadline = 0;
    try {
      return (await this.#release([this.#key], [this.value])) === 1;
    } finally {
      if (!this.#lost.signal.aborted) this.#lost.abort(new LockError('E_LOCK_RELEASED', `lock "${this.name}" was released`, { name: this.name }));
    }
  }

  /** Records that the lock is gone (used by holders that learn it another way, e.g. a combined script). */
  markLost(reason: string): void {
    this.#deadline = 0;
    if (!this.#lost.signal.aborted) this.#lost.abort(new LockError('E_LOCK_LOST', `lock "${this.name}" lost: ${reason}`, { name: this.name, fence: this.fence }));
  }

  /** Moves the local deadline after a renewal done by a combined script sent at `sentAt`. */
  extendFrom(sentAt: number): void {
    if (!this.#released && !this.#lost.signal.aborted) this.#deadline = Math.max(this.#deadline, sentAt + this.ttlMs - this.#marginMs);
  }
}

export interface RedisLockOptions {
  /** a RedisConnection, or any ioredis client */
  redis: RedisConnection | Redis;
  /** key prefix; locks live at `{prefix}:lock:{name}`. Default `qqbot` */
  prefix?: string;
}

/** Acquires named locks. One instance can hold many locks; each acquisition gets its own owner token. */
export class RedisLock {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #acquire: (keys: string[], args: Array<string | number>) => Promise<[number, string]>;
  readonly #renew: (keys: string[], args: Array<string | number>) => Promise<number>;
  readonly #release: (keys: string[], args: Array<string | number>) => Promise<number>;

  constructor(options: RedisLockOptions) {
    this.#client = options.redis instanceof RedisConnection ? options.redis.client : options.redis;
    this.#prefix = options.prefix ?? 'qqbot';
    this.#acquire = defineScript(this.#client, 'lock_acquire', 2, ACQUIRE);
    this.#renew = defineScript(this.#client, 'lock_renew', 1, RENEW);
    this.#release = defineScript(this.#client, 'lock_release', 1, RELEASE);
  }

  /** Redis keys of a lock: the lock itself and its fencing counter. */
  keys(name: string): { lock: string; fence: string } {
    const lock = `${this.#prefix}:lock:${name}`;
    return { lock, fence: `${lock}:fence` };
  }

  /** One attempt. Undefined when someone else holds the lock. */
  async acquire(name: string, options: LockOptions & { owner?: string }): Promise<LockLease | undefined> {
    checkTtl(options.ttlMs);
    const owner = options.owner ?? randomUUID();
    if (owner.includes('@')) throw new LockError('E_LOCK_OWNER', 'a lock owner token must not contain "@"', { name });
    const keys = this.keys(name);
    const sentAt = performance.now();
    const [ok, fence] = await this.#acquire([keys.lock, keys.fence], [owner, options.ttlMs]);
    if (ok !== 1) return undefined;
    return this.lease(name, owner, Number(fence), options, sentAt);
  }

  /** Retries `acquire` every `retryMs` (default TTL/10, 50 ms at least) until `timeoutMs` or the signal. */
  async acquireWait(name: string, options: LockOptions & { owner?: string; timeoutMs: number; retryMs?: number; signal?: AbortSignal }): Promise<LockLease | undefined> {
    const until = performance.now() + options.timeoutMs;
    const retryMs = options.retryMs ?? Math.max(50, Math.round(options.ttlMs / 10));
    for (;;) {
      options.signal?.throwIfAborted();
      const lease = await this.acquire(name, options);
      if (lease) return lease;
      const left = until - performance.now();
      if (left <= 0) return undefined;
      await sleep(Math.min(retryMs, left), options.signal);
    }
  }

  /**
   * Runs `work` while holding the lock, renewing it every TTL/3. If a renewal finds the lock gone,
   * `lease.signal` aborts (the work should stop touching what the lock guards) and `withLock` rejects with
   * E_LOCK_LOST once the work returns. Throws E_LOCK_BUSY when the lock cannot be had within `waitMs`
   * (default 0: one attempt).
   */
  async withLock<T>(name: string, options: LockOptions & { waitMs?: number; signal?: AbortSignal }, work: (lease: LockLease) => Promise<T>): Promise<T> {
    const lease = options.waitMs
      ? await this.acquireWait(name, { ...options, timeoutMs: options.waitMs, ...(options.signal ? { signal: options.signal } : {}) })
      : await this.acquire(name, options);
    if (!lease) throw new LockError('E_LOCK_BUSY', `lock "${name}" is held by someone else`, { name });
    const renewer = setInterval(() => {
      lease.renew().catch(() => {
        // Redis unreachable: the lease stays valid until its local deadline; past it, it is treated as lost
        if (performance.now() >= lease.deadline) lease.markLost('Redis unreachable past the lease deadline');
      });
    }, Math.max(10, Math.floor(options.ttlMs / 3)));
    try {
      const result = await work(lease);
      if (lease.signal.aborted) throw lease.signal.reason;
      return result;
    } finally {
      clearInterval(renewer);
      await lease.release().catch(() => undefined);
    }
  }

  /** A lease for a value this instance already set (e.g. through a combined script). */
  lease(name: string, owner: string, fence: number, options: LockOptions, sentAt: number): LockLease {
    const marginMs = options.marginMs ?? Math.max(100, Math.round(options.ttlMs / 10));
    return new LockLease({ name, key: this.keys(name).lock, owner, fence, ttlMs: options.ttlMs, marginMs, sentAt, renew: this.#renew, release: this.#release });
  }

  /** Who holds a lock now (undefined when nobody does). */
  async holder(name: string): Promise<{ fence: number; owner: string } | undefined> {
    return parseLockValue(await this.#client.get(this.keys(name).lock));
  }
}

function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 10) throw new LockError('E_LOCK_TTL', `lock ttlMs must be an integer ≥ 10, got ${String(ttlMs)}`, { ttlMs });
}
