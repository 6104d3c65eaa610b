/**
 * A bot's end of its Redis Stream (see runtime/streams/), by role: a gateway publishes what its shards
 * take in; a worker reads in the group and guards its replies with the reply ledger, since an entry of a
 * worker that died mid-handler is handled again by another. Both read the Stream's stats for the console
 * and /metrics. The connection exists from the start: the bot's token share uses it before the Stream opens.
 */
import type { BotConfig, StreamConfig } from '../config/types.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { Logger } from '../logging/logger.ts';
import type { RuntimeMetrics } from '../metrics/metrics.ts';
import { RedisConnection } from '../sessions/redis-connection.ts';
import { RedisEventDedupe } from '../sessions/redis-dedupe.ts';
import { RedisReplyLedger } from '../sessions/redis-reply-ledger.ts';
import { EventStreamConsumer, type EarlierDeliveries, type HandleResult } from '../streams/event-stream-consumer.ts';
import { EventStreamPublisher } from '../streams/event-stream-publisher.ts';
import { streamKeys } from '../streams/stream-keys.ts';
import { StreamStats, type StreamView } from '../streams/stream-stats.ts';
import type { LossReporter } from './loss-reporter.ts';

export interface BotStreamOptions {
  config: BotConfig & { stream: StreamConfig };
  logger: Logger;
  losses: LossReporter;
  metrics?: RuntimeMetrics;
  /** only to name it in a warning about worker storage */
  dataDir?: string;
  /** gateway: Redis took the event, or never will (the drop is reported here): the bot settles it */
  settle: (dispatch: GatewayDispatch) => void;
  /** worker: one entry's event through the plugins not done with it on `earlier` deliveries */
  handle: (dispatch: GatewayDispatch, earlier: EarlierDeliveries) => Promise<HandleResult>;
}

export class BotStream {
  readonly redis: RedisConnection;
  readonly #o: BotStreamOptions;
  #reader: RedisConnection | undefined;
  #publisher: EventStreamPublisher | undefined;
  #consumer: EventStreamConsumer | undefined;
  #stats: StreamStats | undefined;
  #replies: RedisReplyLedger | undefined;

  constructor(options: BotStreamOptions) {
    this.#o = options;
    this.redis = new RedisConnection({ url: options.config.stream.url, name: `stream:${options.config.name}`, logger: options.logger });
  }

  /** the Stream as last read from Redis */
  get view(): StreamView | undefined {
    return this.#stats?.view;
  }

  /** gateway: published = taken by Redis, dropped = never will be, buffered = waiting for it */
  get published(): { published: number; dropped: number; buffered: number } | undefined {
    return this.#publisher?.counts;
  }

  /** worker: the ledger its replies are claimed in */
  get replies(): RedisReplyLedger | undefined {
    return this.#replies;
  }

  /** Opens the gateway's or the worker's end; a worker starts reading with `startReading`. */
  open(): void {
    const { config, metrics, logger } = this.#o;
    const { stream, name } = config;
    const keys = streamKeys(config);
    const redis = this.redis;
    this.#stats = new StreamStats({ redis, key: keys.events, deadKey: keys.dead, group: stream.group, onRead: (view) => metrics?.streamState(name, view) });
    this.#stats.start();
    if (config.role === 'gateway') {
      this.#publisher = new EventStreamPublisher({
        redis,
        key: keys.events,
        maxLen: stream.maxLen,
        bufferBytes: stream.bufferBytes,
        logger,
        onPublished: (dispatch) => {
          metrics?.streamPublished(name);
          this.#o.settle(dispatch);
        },
        onDropped: (dispatch, reason) => {
          metrics?.streamDropped(name, reason);
          this.#o.losses.lost('event', 'stream', reason, reason === 'buffer_full' ? `redis unreachable and ${stream.bufferBytes} bytes of events already waiting` : 'still waiting for redis at shutdown');
          this.#o.settle(dispatch);
        },
        onBuffered: (bytes) => metrics?.streamBuffered(name, bytes),
      });
      return;
    }
    if (config.storage.kind === 'file') {
      logger.warn({ dataDir: this.#o.dataDir }, 'a worker with plugin storage in local files: workers on other hosts (or with another --data-dir) see other data (use storage: { redis } or leave storage unset)');
    }
    this.#reader = new RedisConnection({ url: stream.url, name: `stream-reader:${name}`, logger, commandTimeoutMs: 5_000 });
    this.#replies = new RedisReplyLedger({ redis, prefix: keys.prefix });
    this.#consumer = new EventStreamConsumer({
      redis,
      reader: this.#reader,
      key: keys.events,
      deadKey: keys.dead,
      group: stream.group,
      claimIdleMs: stream.claimIdleMs,
      maxDeliveries: stream.maxDeliveries,
      maxLen: stream.maxLen,
      dedupe: new RedisEventDedupe({ redis, prefix: keys.prefix }),
      logger,
      handle: this.#o.handle,
      onAcked: () => metrics?.streamAcked(name),
      onClaimed: (entries) => metrics?.streamClaimed(name, entries),
      onDead: () => metrics?.streamDead(name),
      onDuplicate: () => metrics?.eventDeduplicated(name),
      onTrimmed: (entries) => metrics?.streamDropped(name, 'trimmed', entries),
    });
  }

  /** Gateway: appends the event; false when this end does not publish (a worker). */
  publish(dispatch: GatewayDispatch): boolean {
    if (!this.#publisher) return false;
    this.#publisher.publish(dispatch);
    return true;
  }

  startReading(): void {
    this.#consumer?.start();
  }

  /** Worker: stops reading and claiming; what it read is handled, what it did not stays for the others. */
  async stopReading(): Promise<void> {
    await this.#consumer?.stop();
  }

  /** Worker: waits (bounded) for the acks of what finished; returns how many entries were not settled. */
  async settled(timeoutMs: number): Promise<number> {
    return (await this.#consumer?.settled(timeoutMs)) ?? 0;
  }

  /** Gateway: hands what it buffered to Redis (bounded); what Redis never took is dropped, counted. */
  async closePublisher(timeoutMs: number): Promise<void> {
    await this.#publisher?.close(timeoutMs);
  }

  async close(): Promise<void> {
    this.#stats?.stop();
    await this.#reader?.close();
    await this.redis.close();
  }
}
