/**
 * Redis-backed storage for bots that run on Redis: one hash per namespace,
 * `<prefix><bot>:<plugin>` (names URI-encoded so neither can forge the other's key).
 */
import type { Redis } from 'ioredis';
import type { KeyValueStore, StorageNamespace } from './key-value-store.ts';

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
    return (await this.#redis.hget(this.keyOf(ns), key)) ?? undefined;
  }

  async set(ns: StorageNamespace, key: string, value: string): Promise<void> {
    await this.#redis.hset(this.keyOf(ns), key, value);
  }

  async delete(ns: StorageNamespace, key: string): Promise<boolean> {
    return (await this.#redis.hdel(this.keyOf(ns), key)) > 0;
  }

  async keys(ns: StorageNamespace, prefix = ''): Promise<string[]> {
    return (await this.#redis.hkeys(this.keyOf(ns))).filter((k) => k.startsWith(prefix)).sort();
  }

  async count(ns: StorageNamespace): Promise<number> {
    return this.#redis.hlen(this.keyOf(ns));
  }

  async close(): Promise<void> {}
}
