/**
 * The Redis connection behind the runtime's coordination (shard leases, identify pacing, cross-process
 * dedupe), built for outages rather than for the happy path:
 *
 * - commands fail at once while Redis is away (no offline queue) and a command that was in flight when
 *   the connection broke is not re-sent later (a lease renewal replayed seconds late is worse than one
 *   that failed); callers treat a failed command as "unknown", never as "lost";
 * - reconnects use jittered exponential backoff capped at `maxBackoffMs`, forever;
 * - each outage is reported once (`down`, then `up`), with a log line each way, instead of an error per
 *   command; `up` fires again after every reconnect so callers can reconcile (an empty restarted Redis
 *   included).
 */
import { Redis } from 'ioredis';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import { EventEmitter } from 'node:events';
import { backoffDelay } from '../time/backoff.ts';

export interface RedisConnectionOptions {
  /** `redis://` or `rediss://` URL; a password in it never reaches a log line */
  url: string;
  /** shown in log lines and as the Redis client name, e.g. `sessions:demo` */
  name: string;
  logger?: Logger;
  /** a command without a reply after this fails (and counts as "unknown"); default 2 000 ms */
  commandTimeoutMs?: number;
  /** reconnect backoff ceiling; default 1 000 ms, so a Redis that is back is noticed within a second */
  maxBackoffMs?: number;
}

export interface RedisConnectionEvents {
  /** connected and ready (first time and after every reconnect) */
  up: [];
  /** the connection broke or could not be made */
  down: [reason: string];
}

/** `redis://user:pass@host` → `redis://user:***@host`. */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** the default cap on the wait between reconnect attempts: every connection is back this long after Redis is */
export const REDIS_MAX_BACKOFF_MS = 1_000;

export class RedisConnection extends EventEmitter<RedisConnectionEvents> {
  readonly client: Redis;
  /** the URL with any password masked */
  readonly shownUrl: string;
  readonly #log: Logger;
  #up = false;
  #downSince: number | undefined = Date.now();
  #outages = 0;
  #lastError = '';
  #closed = false;
  #reportedStart = false;

  constructor(options: RedisConnectionOptions) {
    super();
    this.setMaxListeners(0);
    this.shownUrl = redactRedisUrl(options.url);
    this.#log = (options.logger ?? silentLogger).child({ redis: this.shownUrl, part: options.name });
    const maxBackoffMs = options.maxBackoffMs ?? REDIS_MAX_BACKOFF_MS;
    this.client = new Redis(options.url, {
      connectionName: `qqbot:${options.name}`.replace(/[^\w:.-]/g, '_'),
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2_000,
      connectTimeout: 2_000,
      enableAutoPipelining: true,
      retryStrategy: (times) => backoffDelay(times + 1, { baseMs: 50, maxMs: maxBackoffMs }),
    });
    this.client.on('ready', () => this.#onUp());
    this.client.on('error', (error: Error) => {
      this.#lastError = error.message;
    });
    this.client.on('close', () => this.#onDown(this.#lastError || 'connection closed'));
    this.client.on('end', () => this.#onDown('connection ended'));
  }

  /** Connected and ready to take commands. */
  get up(): boolean {
    return this.#up;
  }

  /** epoch ms since when Redis has been unreachable (undefined while up) */
  get downSince(): number | undefined {
    return this.#downSince;
  }

  /** outages seen since start (the first connection does not count) */
  get outages(): number {
    return this.#outages;
  }

  /** Resolves once Redis is up (at once if it is); rejects with the signal's reason. */
  ready(signal?: AbortSignal): Promise<void> {
    if (this.#up) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onUp = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.off('up', onUp);
        reject(signal!.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.once('up', onUp);
    });
  }

  /**
   * A Lua script as a function of (keys, args). Sent by EVALSHA, re-sent in full when Redis answers
   * NOSCRIPT (a restarted Redis has lost its script cache).
   */
  script<R>(name: string, keys: number | 'any', lua: string): (keyNames: string[], args: Array<string | number>) => Promise<R> {
    return defineScript<R>(this.client, name, keys, lua);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#up = false;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }

  #onUp(): void {
    if (this.#up) return;
    const wasDown = this.#outages > 0 || this.#reportedStart;
    this.#reportedStart = true;
    const downFor = this.#downSince === undefined ? 0 : Date.now() - this.#downSince;
    this.#up = true;
    this.#downSince = undefined;
    this.#lastError = '';
    if (wasDown) this.#log.warn({ downMs: downFor }, 'redis reachable again: reconciling');
    else this.#log.info('redis connected');
    this.emit('up');
  }

  #onDown(reason: string): void {
    if (this.#closed) return;
    if (!this.#up) {
      // still down (a failed reconnect): one line per outage, not one per attempt
      if (!this.#reportedStart) {
        this.#reportedStart = true;
        this.#log.error({ reason }, 'redis unreachable at start: waiting for it, retrying with backoff');
        this.emit('down', reason);
      }
      return;
    }
    this.#up = false;
    this.#downSince = Date.now();
    this.#outages++;
    this.#log.error({ reason }, 'redis unreachable: keeping the shards held here, retrying with backoff');
    this.emit('down', reason);
  }
}

const defined = new WeakMap<Redis, Set<string>>();

/**
 * A Lua script on any ioredis client (users pass their own to RedisLock) as a function of (keys, args).
 * `keys: 'any'` takes a varying number of keys.
 */
export function defineScript<R>(client: Redis, name: string, keys: number | 'any', lua: string): (keyNames: string[], args: Array<string | number>) => Promise<R> {
  let names = defined.get(client);
  if (!names) {
    names = new Set();
    defined.set(client, names);
  }
  const command = `qqbot_${name}`;
  if (!names.has(command)) {
    client.defineCommand(command, keys === 'any' ? { lua } : { numberOfKeys: keys, lua });
    names.add(command);
  }
  const call = (client as unknown as Record<string, (...args: Array<string | number>) => Promise<R>>)[command]!;
  return (keyNames, args) => {
    if (keys === 'any') return call.call(client, keyNames.length, ...keyNames, ...args);
    if (keyNames.length !== keys) throw new Error(`script ${name} takes ${keys} keys, got ${keyNames.length}`);
    return call.call(client, ...keyNames, ...args);
  };
}
