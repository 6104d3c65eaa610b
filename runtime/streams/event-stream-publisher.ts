/**
 * Gateway side of the Stream: every event the bot takes in is appended (`XADD … MAXLEN ~ maxLen`), in
 * the order it came. Events wait in memory, up to `bufferBytes`, while Redis cannot take them, so an
 * outage never touches the platform sessions; past the bound an event is dropped, loudly and counted
 * (`buffer_full`). An event counts as published only once Redis answered for it; the caller settles
 * the shard's resume point then, so a gateway that dies with a buffer resumes before those events.
 */
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { Logger } from '../logging/logger.ts';
import type { RedisConnection } from '../sessions/redis-connection.ts';
import { encodeDispatch, EVENT_FIELD } from './stream-keys.ts';
import { sleep } from '../time/sleep.ts';

export type PublishDropReason = 'buffer_full' | 'shutdown';

export interface EventStreamPublisherOptions {
  redis: RedisConnection;
  key: string;
  maxLen: number;
  bufferBytes: number;
  logger: Logger;
  onPublished: (dispatch: GatewayDispatch) => void;
  onDropped: (dispatch: GatewayDispatch, reason: PublishDropReason) => void;
  /** bytes waiting now (after every change) */
  onBuffered?: (bytes: number) => void;
}

interface Waiting {
  dispatch: GatewayDispatch;
  payload: string;
  bytes: number;
}

/** entries per pipeline: large enough to keep up with a burst, small enough to retry cheaply */
const BATCH = 200;
const RETRY_MS = 250;

export class EventStreamPublisher {
  readonly #options: EventStreamPublisherOptions;
  readonly #log: Logger;
  readonly #waiting: Waiting[] = [];
  #head = 0;
  #bytes = 0;
  #flushing: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #published = 0;
  #dropped = 0;
  /** an outage is said once, when the first event has to wait */
  #buffering = false;
  #closed = false;
  readonly #onUp = (): void => this.#kick();

  constructor(options: EventStreamPublisherOptions) {
    this.#options = options;
    this.#log = options.logger.child({ part: 'stream-publisher' });
    options.redis.on('up', this.#onUp);
  }

  /** published = taken by Redis; dropped = never will be; buffered = waiting now */
  get counts(): { published: number; dropped: number; buffered: number; bufferedBytes: number } {
    return { published: this.#published, dropped: this.#dropped, buffered: this.#waiting.length - this.#head, bufferedBytes: this.#bytes };
  }

  publish(dispatch: GatewayDispatch): void {
    const payload = encodeDispatch(dispatch);
    const bytes = Buffer.byteLength(payload);
    if (this.#bytes + bytes > this.#options.bufferBytes) {
      this.#drop(dispatch, 'buffer_full');
      return;
    }
    this.#waiting.push({ dispatch, payload, bytes });
    this.#bytes += bytes;
    this.#kick();
  }

  /** Tries for `timeoutMs` to hand what waits to Redis; what is left is dropped (`shutdown`). */
  async close(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#head < this.#waiting.length && Date.now() < deadline) {
      this.#kick();
      await sleep(20);
    }
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#options.redis.off('up', this.#onUp);
    await this.#flushing;
    const left = this.#waiting.splice(this.#head);
    this.#head = 0;
    this.#waiting.length = 0;
    if (left.length > 0) this.#log.error({ events: left.length }, 'stopping with events Redis never took: dropped');
    for (const entry of left) {
      this.#bytes -= entry.bytes;
      this.#drop(entry.dispatch, 'shutdown');
    }
  }

  #kick(): void {
    if (this.#closed || this.#flushing || this.#head >= this.#waiting.length) return;
    this.#flushing = this.#flush().catch((error: Error) => {
      this.#log.error({ err: error.message }, 'publishing to the stream failed; trying again');
      this.#retryLater();
      return true;
    }).then((stalled) => {
      this.#flushing = undefined;
      // more may have come while the last batch was out. After a failure only the retry timer or Redis
      // coming back kicks again: a pipeline refused at once (the connection just dropped, `up` not yet
      // false) would otherwise loop in microtasks and starve the very event that marks Redis down
      if (!stalled && this.#head < this.#waiting.length && this.#options.redis.up) this.#kick();
    });
  }

  /** Resolves true when it stopped on a failure (Redis away or refusing), false when the queue ran dry. */
  async #flush(): Promise<boolean> {
    const { redis, key, maxLen } = this.#options;
    while (!this.#closed && this.#head < this.#waiting.length) {
      if (!redis.up) {
        this.#startBuffering('redis unreachable');
        return true;
      }
      const batch = this.#waiting.slice(this.#head, this.#head + BATCH);
      const pipeline = redis.client.pipeline();
      for (const entry of batch) pipeline.xadd(key, 'MAXLEN', '~', maxLen, '*', EVENT_FIELD, entry.payload);
      let results: Array<[Error | null, unknown]> | null;
      try {
        results = await pipeline.exec();
      } catch (error) {
        results = null;
        void error;
      }
      // in order: what follows a failed entry is sent again (the workers' dedupe drops a second copy)
      let taken = 0;
      while (results && taken < batch.length && results[taken] && !results[taken]![0]) taken++;
      for (let i = 0; i < taken; i++) this.#taken(batch[i]!);
      this.#compact();
      if (taken < batch.length) {
        const reason = results?.[taken]?.[0]?.message ?? 'no answer';
        this.#startBuffering(reason);
        this.#retryLater();
        return true;
      }
    }
    if (this.#buffering && this.#head >= this.#waiting.length) {
      this.#buffering = false;
      this.#log.warn('redis takes events again: the buffered ones are in the stream, in order');
    }
    return false;
  }

  #retryLater(): void {
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.#kick(), RETRY_MS);
    this.#retry.unref();
  }

  #taken(entry: Waiting): void {
    this.#head++;
    this.#bytes -= entry.bytes;
    this.#published++;
    this.#options.onPublished(entry.dispatch);
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting.splice(0, this.#head);
      this.#head = 0;
    }
    this.#options.onBuffered?.(this.#bytes);
  }

  #startBuffering(reason: string): void {
    this.#options.onBuffered?.(this.#bytes);
    if (this.#buffering) return;
    this.#buffering = true;
    this.#log.error({ reason, bufferBytes: this.#options.bufferBytes }, 'cannot publish events to the stream: keeping the sessions, buffering events in memory until redis takes them');
  }

  #drop(dispatch: GatewayDispatch, reason: PublishDropReason): void {
    this.#dropped++;
    this.#options.onDropped(dispatch, reason);
  }
}
