/**
 * The access token shared by the processes of one bot through Redis (see TokenShare): fetches run one at a
 * time under a RedisLock, and the last token fetched is kept for the others to adopt, expiring with it.
 * Redis holds what the bot's sessions already trust it with; the token never reaches a log line here.
 * Without Redis (unreachable, or the lock not had in time) a process fetches on its own: a reply is
 * never held up by coordination.
 */
import type { CachedToken, TokenShare } from '../openapi/index.ts';
import type { RedisConnection } from './redis-connection.ts';
import { RedisLock } from './redis-lock.ts';

export interface RedisTokenShareOptions {
  redis: RedisConnection;
  /** key prefix for this bot, e.g. `qqbot:1020000001` */
  prefix: string;
  /** the longest one fetch (one token request) may hold the lock; default 30 s */
  lockTtlMs?: number;
}

export class RedisTokenShare implements TokenShare {
  readonly #redis: RedisConnection;
  readonly #lock: RedisLock;
  readonly #key: string;
  readonly #ttlMs: number;

  constructor(options: RedisTokenShareOptions) {
    this.#redis = options.redis;
    this.#lock = new RedisLock({ redis: options.redis, prefix: options.prefix });
    this.#key = `${options.prefix}:token`;
    this.#ttlMs = options.lockTtlMs ?? 30_000;
  }

  async fetch(work: (latest: CachedToken | undefined) => Promise<CachedToken>): Promise<CachedToken> {
    if (!this.#redis.up) return work(undefined);
    const lease = await this.#lock.acquireWait('token', { ttlMs: this.#ttlMs, timeoutMs: this.#ttlMs, retryMs: 50 }).catch(() => undefined);
    if (!lease) return work(undefined);
    try {
      const latest = parse(await this.#redis.client.get(this.#key).catch(() => null));
      const token = await work(latest);
      const ttl = Math.round(token.expiresAt - Date.now());
      if (token !== latest && ttl > 0) await this.#redis.client.set(this.#key, JSON.stringify(token), 'PX', ttl).catch(() => undefined);
      return token;
    } finally {
      await lease.release().catch(() => undefined);
    }
  }
}

function parse(text: string | null): CachedToken | undefined {
  if (!text) return undefined;
  try {
    const t = JSON.parse(text) as CachedToken;
    return typeof t.value === 'string' && typeof t.expiresAt === 'number' ? t : undefined;
  } catch {
    return undefined;
  }
}
