/**
 * What the console and `/metrics` show of a bot's Stream, read from Redis every few seconds by every
 * process of the bot (gateway or worker): its length, the dead-letter count, and per consumer group the
 * lag (entries not yet read by any worker) and pending entries (read, not yet acknowledged) per consumer.
 */
import type { RedisConnection } from '../sessions/redis-connection.ts';

export interface StreamView {
  key: string;
  group: string;
  /** undefined until the first read */
  length?: number;
  dead?: number;
  /** entries added but not yet delivered to the group (undefined: no worker has created the group yet) */
  lag?: number;
  pending?: number;
  consumers: Array<{ name: string; pending: number; idleMs: number }>;
  /** false while Redis cannot be read */
  redisUp: boolean;
}

export interface StreamStatsOptions {
  redis: RedisConnection;
  key: string;
  deadKey: string;
  group: string;
  everyMs?: number;
  onRead?: (view: StreamView) => void;
}

export class StreamStats {
  readonly #o: StreamStatsOptions;
  #view: StreamView;
  #timer: NodeJS.Timeout | undefined;
  #reading = false;

  constructor(options: StreamStatsOptions) {
    this.#o = options;
    this.#view = { key: options.key, group: options.group, consumers: [], redisUp: options.redis.up };
  }

  get view(): StreamView {
    return { ...this.#view, redisUp: this.#o.redis.up };
  }

  start(): void {
    void this.read();
    this.#timer = setInterval(() => void this.read(), this.#o.everyMs ?? 2_000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async read(): Promise<StreamView> {
    const { redis, key, deadKey, group } = this.#o;
    if (this.#reading || !redis.up) return this.view;
    this.#reading = true;
    try {
      const [length, dead, groups] = await Promise.all([redis.client.xlen(key), redis.client.xlen(deadKey), redis.client.xinfo('GROUPS', key).catch(() => [])]);
      const info = (groups as unknown[][]).map(pairs).find((g) => g['name'] === group);
      let consumers: StreamView['consumers'] = [];
      if (info) {
        const list = (await redis.client.xinfo('CONSUMERS', key, group)) as unknown[][];
        consumers = list.map(pairs).map((c) => ({ name: String(c['name']), pending: Number(c['pending']), idleMs: Number(c['idle']) }));
      }
      this.#view = {
        key,
        group,
        length,
        dead,
        ...(info ? { lag: info['lag'] === null || info['lag'] === undefined ? undefined : Number(info['lag']), pending: Number(info['pending']) } : {}),
        consumers,
        redisUp: true,
      } as StreamView;
      this.#o.onRead?.(this.#view);
    } catch {
      // unreachable for now: the last view stands, marked by redisUp
    } finally {
      this.#reading = false;
    }
    return this.view;
  }
}

function pairs(list: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = list[i + 1];
  return out;
}
