/**
 * Redis-backed storage for bots that run on Redis: one hash per namespace,
 * `<prefix><bot>:<plugin>` (names URI-encoded so neither can forge the other's key), which also
 * holds the namespace's byte total under a reserved field. Writes and deletes run as Lua scripts,
 * atomic in Redis, so writers in several processes cannot overshoot a quota either.
 */
import type { Redis } from 'ioredis';
import type { KeyValueStore, QuotaExceeded, StorageNamespace, StorageQuota, StorageUsage } from './key-value-store.ts';

/** Hash field of the byte total; the capability layer refuses keys containing NUL, so no plugin key can be it. */
const TOTAL_FIELD = '\u0000bytes';

// KEYS[1] = the namespace hash, ARGV[1] = TOTAL_FIELD. Lua's string.len counts bytes, as entryBytes
// does. A missing total (data written before it existed) is computed once from the hash.
const USED = `
local used = redis.call('HGET', KEYS[1], ARGV[1])
if used then used = tonumber(used) else
  used = 0
  for _, s in ipairs(redis.call('HGETALL', KEYS[1])) do used = used + string.len(s) end
end
local count = redis.call('HLEN', KEYS[1])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then count = count - 1 end`;

// ARGV[2..5]: key, value, maxKeys, maxBytes ('' = no quota) → nil, or {limit, wouldUse}
const SET = `${USED}
local old = redis.call('HGET', KEYS[1], ARGV[2])
local delta = string.len(ARGV[2]) + string.len(ARGV[3])
if old then delta = delta - string.len(ARGV[2]) - string.len(old) end
if ARGV[4] ~= '' then
  if not old and count >= tonumber(ARGV[4]) then return {'keys', count + 1} end
  if delta > 0 and used + delta > tonumber(ARGV[5]) then return {'bytes', used + delta} end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], ARGV[1], used + delta)
return false`;

// ARGV[2]: key → 1 deleted, 0 absent
const DELETE = `${USED}
local old = redis.call('HGET', KEYS[1], ARGV[2])
if not old then return 0 end
if count == 1 then redis.call('DEL', KEYS[1])
else redis.call('HDEL', KEYS[1], ARGV[2]); redis.call('HSET', KEYS[1], ARGV[1], used - string.len(ARGV[2]) - string.len(old)) end
return 1`;

const USAGE = `${USED}
return {count, used}`;

export class RedisKeyValueStore implements KeyValueStore {
  readonly #redis: Redis;
  readonly #prefix: string;

  /** The store does not own `redis`; `close()` leaves the connection to its owner. */
  constructor(options: { redis: Redis; prefix?: string }) {
    this.#redis = options.redis;
    this.#prefix = options.prefix ?? 'qqbot:storage:';
  }

  keyOf(ns: StorageNamespace): string {
    return `${this.#prefix}${encodeURIComponent(ns.bot)}:${encodeURIComponent(ns.plugin)}`;
  }

  async get(ns: StorageNamespace, key: string): Promise<string | undefined> {
    if (key === TOTAL_FIELD) return undefined;
    return (await this.#redis.hget(this.keyOf(ns), key)) ?? undefined;
  }

  async set(ns: StorageNamespace, key: string, value: string, quota?: StorageQuota): Promise<QuotaExceeded | undefined> {
    if (key === TOTAL_FIELD) throw new Error('storage key is reserved');
    const result = await this.#redis.eval(SET, 1, this.keyOf(ns), TOTAL_FIELD, key, value, quota?.maxKeys ?? '', quota?.maxBytes ?? '') as [string, number] | null;
    return result === null ? undefined : { limit: result[0] as QuotaExceeded['limit'], wouldUse: Number(result[1]) };
  }

  async delete(ns: StorageNamespace, key: string): Promise<boolean> {
    if (key === TOTAL_FIELD) return false;
    return (await this.#redis.eval(DELETE, 1, this.keyOf(ns), TOTAL_FIELD, key)) === 1;
  }

  async keys(ns: StorageNamespace, prefix = ''): Promise<string[]> {
    return (await this.#redis.hkeys(this.keyOf(ns))).filter((k) => k !== TOTAL_FIELD && k.startsWith(prefix)).sort();
  }

  async usage(ns: StorageNamespace): Promise<StorageUsage> {
    const [keys, bytes] = await this.#redis.eval(USAGE, 1, this.keyOf(ns), TOTAL_FIELD) as [number, number];
    return { keys: Number(keys), bytes: Number(bytes) };
  }

  async close(): Promise<void> {}
}
