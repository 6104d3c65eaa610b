/**
 * Opens the stores behind `ctx.storage`: one SQLite database under dataDir for every bot on
 * `storage: file` (the data of the older JSON file store is moved into it on first open), and one
 * Redis connection per distinct URL. A Redis outage fails storage calls fast (no offline queue),
 * so a plugin gets an error instead of a handler that hangs until its deadline.
 */
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { StorageConfig } from '../config/types.ts';
import { QQBotError } from '../errors.ts';
import type { Logger } from '../logging/logger.ts';
import { importFileStore } from '../plugins/storage/file-store-import.ts';
import type { KeyValueStore } from '../plugins/storage/key-value-store.ts';
import { RedisKeyValueStore } from '../plugins/storage/redis-store.ts';
import { SqliteKeyValueStore } from '../plugins/storage/sqlite-store.ts';
import { redactRedisUrl as redactUrl } from '../sessions/redis-connection.ts';

export class StorageUnavailableError extends QQBotError {}

export class StorageBackends {
  readonly #dataDir: string;
  readonly #log: Logger;
  #local: Promise<SqliteKeyValueStore> | undefined;
  readonly #redis = new Map<string, Promise<{ client: Redis; store: RedisKeyValueStore }>>();

  constructor(options: { dataDir: string; logger: Logger }) {
    this.#dataDir = options.dataDir;
    this.#log = options.logger;
  }

  async open(config: StorageConfig, bot: string): Promise<KeyValueStore> {
    if (config.kind === 'file') {
      this.#local ??= this.#openLocal();
      try {
        return await this.#local;
      } catch (error) {
        throw new StorageUnavailableError('E_STORAGE_UNAVAILABLE', `bot "${bot}": cannot open the storage database in ${this.#dataDir}: ${(error as Error).message}`, { bot });
      }
    }
    let opening = this.#redis.get(config.url);
    if (!opening) {
      opening = this.#connect(config.url);
      this.#redis.set(config.url, opening);
      opening.catch(() => this.#redis.delete(config.url));
    }
    try {
      return (await opening).store;
    } catch (error) {
      throw new StorageUnavailableError('E_STORAGE_UNAVAILABLE', `bot "${bot}": cannot reach the Redis storage at ${redactUrl(config.url)}: ${(error as Error).message}`, { bot });
    }
  }

  async close(): Promise<void> {
    await (await this.#local?.catch(() => undefined))?.close();
    this.#local = undefined;
    for (const opening of this.#redis.values()) {
      const opened = await opening.catch(() => undefined);
      if (!opened) continue;
      await opened.store.close();
      opened.client.disconnect();
    }
    this.#redis.clear();
  }

  async #openLocal(): Promise<SqliteKeyValueStore> {
    const store = new SqliteKeyValueStore({ file: join(this.#dataDir, 'storage.sqlite') });
    try {
      const moved = await importFileStore(join(this.#dataDir, 'storage'), store, this.#log);
      if (moved.namespaces > 0 || moved.swept > 0) this.#log.info(moved, 'storage: moved the file store into storage.sqlite');
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  async #connect(url: string): Promise<{ client: Redis; store: RedisKeyValueStore }> {
    const client = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 5000 });
    const shown = redactUrl(url);
    let down = false;
    client.on('error', (error: Error) => {
      if (!down) this.#log.warn({ redis: shown, err: error.message }, 'storage redis unreachable; plugin storage calls fail until it is back');
      down = true;
    });
    client.on('ready', () => {
      if (down) this.#log.info({ redis: shown }, 'storage redis reachable again');
      down = false;
    });
    try {
      await client.connect();
    } catch (error) {
      client.disconnect();
      throw error;
    }
    return { client, store: new RedisKeyValueStore({ redis: client }) };
  }
}
