/**
 * `max_concurrency` identifies per window for a bot, shared by all of its processes through Redis: a
 * sorted set of recent grants, trimmed and checked by one Lua script on Redis' clock (so hosts' clocks do
 * not matter). The platform counts identifies when they arrive, and a grant is followed by a token fetch
 * and a send, so the shard reports the moment its identify went out (`sent()`) and the window is measured
 * from there; the margin covers what is left (network, the platform's own clock).
 *
 * While Redis is unreachable no identify is granted: identifies are rare, resumes are not paced here, and
 * a new session started without the lease table could be a second session for a shard someone else runs.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logging/logger.ts';
import { silentLogger } from '../logging/logger.ts';
import type { RedisConnection } from './redis-connection.ts';
import { sleep } from '../time/sleep.ts';

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

const TAKE = `${NOW}
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
`;

const SENT = `${NOW}
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
`;

export interface RedisIdentifyThrottleOptions {
  redis: RedisConnection;
  /** the sorted set, e.g. `qqbot:{appId}:identify` */
  key: string;
  maxConcurrency: number;
  /** the platform's window; default 5 000 ms */
  windowMs?: number;
  /** added to the window; default 5% of it, at least 100 ms */
  marginMs?: number;
  logger?: Logger;
}

/** A grant: call `sent()` when the identify has gone out. */
export interface StartGrant {
  sent(): void;
}

export class RedisIdentifyThrottle {
  readonly #redis: RedisConnection;
  readonly #key: string;
  readonly #max: number;
  readonly #windowMs: number;
  readonly #log: Logger;
  readonly #take: (keys: string[], args: Array<string | number>) => Promise<number>;
  readonly #sent: (keys: string[], args: Array<string | number>) => Promise<number>;
  // this process's waiters queue up locally, so they do not race one another for each grant
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: RedisIdentifyThrottleOptions) {
    this.#redis = options.redis;
    this.#key = options.key;
    this.#max = Math.max(1, Math.floor(options.maxConcurrency));
    const windowMs = options.windowMs ?? 5_000;
    this.#windowMs = windowMs + (options.marginMs ?? Math.max(100, Math.round(windowMs * 0.05)));
    this.#log = options.logger ?? silentLogger;
    this.#take = options.redis.script('identify_take', 1, TAKE);
    this.#sent = options.redis.script('identify_sent', 1, SENT);
  }

  wait(signal?: AbortSignal): Promise<StartGrant> {
    const turn = this.#queue.then(() => this.#grant(signal));
    this.#queue = turn.catch(() => undefined);
    return turn;
  }

  async #grant(signal?: AbortSignal): Promise<StartGrant> {
    const id = randomUUID();
    for (;;) {
      signal?.throwIfAborted();
      if (!this.#redis.up) {
        this.#log.info('identify waits for redis: identify pacing is shared through it');
        await this.#redis.ready(signal);
      }
      let wait: number;
      try {
        wait = await this.#take([this.#key], [this.#max, this.#windowMs, id]);
      } catch {
        await sleep(200, signal);
        continue;
      }
      if (wait === 0) {
        return {
          sent: () => {
            this.#sent([this.#key], [id, this.#windowMs]).catch(() => undefined);
          },
        };
      }
      await sleep(wait, signal);
    }
  }
}
