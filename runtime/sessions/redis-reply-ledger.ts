/**
 * The platform refuses a repeated (`msg_id`/`event_id`, `msg_seq`) pair in groups and C2C; this extends
 * that rule to every scene and across the processes of one bot. Before a passive reply is sent, its pair
 * is claimed in Redis with SET NX; a second claim fails and the reply is not sent.
 *
 * It is what makes a shard move safe for replies: when a process loses a shard while an event is in a
 * handler (killed, or paused past its lease), the new owner handles the event again (see
 * RedisEventDedupe), and whichever process claims reply #n first is the only one that sends it. The one
 * window left: a process that claims and then dies before its request leaves loses that reply; it is
 * never sent twice.
 *
 * When Redis cannot answer, the reply goes out: no shard can move while Redis is away.
 */
import type { RedisConnection } from './redis-connection.ts';

export interface RedisReplyLedgerOptions {
  redis: RedisConnection;
  /** key prefix for this bot, e.g. `qqbot:1020000001` */
  prefix: string;
  /** how long a claim is kept: the longest passive-reply window (C2C, 60 min) */
  ttlMs?: number;
}

export class RedisReplyLedger {
  readonly #redis: RedisConnection;
  readonly #prefix: string;
  readonly #ttlMs: number;

  constructor(options: RedisReplyLedgerOptions) {
    this.#redis = options.redis;
    this.#prefix = `${options.prefix}:reply:`;
    this.#ttlMs = options.ttlMs ?? 60 * 60_000;
  }

  /**
   * True when this process may send the reply (first claim, or Redis could not say); false when another
   * process of the bot already claimed the same reply. Bodies without a passive-reply id always pass.
   */
  async claim(body: unknown): Promise<boolean> {
    const pair = replyPair(body);
    if (pair === undefined || !this.#redis.up) return true;
    try {
      return (await this.#redis.client.set(this.#prefix + pair, '1', 'PX', this.#ttlMs, 'NX')) === 'OK';
    } catch {
      return true;
    }
  }

  /** The platform refused the send: the reply was not used, a retry may claim it again. */
  async unclaim(body: unknown): Promise<void> {
    const pair = replyPair(body);
    if (pair === undefined || !this.#redis.up) return;
    await this.#redis.client.del(this.#prefix + pair).catch(() => undefined);
  }
}

function replyPair(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as { msg_id?: unknown; event_id?: unknown; msg_seq?: unknown };
  const seq = typeof b.msg_seq === 'number' ? b.msg_seq : 1;
  if (typeof b.msg_id === 'string' && b.msg_id !== '') return `m:${b.msg_id}:${seq}`;
  if (typeof b.event_id === 'string' && b.event_id !== '') return `e:${b.event_id}:${seq}`;
  return undefined;
}
