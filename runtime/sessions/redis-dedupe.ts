/**
 * Exactly-once across the processes of one bot, for events that reach two of them: around a shard
 * move the platform replays, from the resume point, events the previous owner may already have taken.
 *
 * Each event key (see `dedupeKeys`) is claimed in Redis with the fencing token of the shard lease it
 * arrived under, and marked done when its handlers have finished:
 * - no record: claim it, handle it;
 * - done: a duplicate, drop it;
 * - claimed under a lower token: the process that claimed it has since lost the shard (it died or was
 *   paused past its lease) before finishing: take the claim over and handle it, so a kill -9 loses
 *   nothing (replies are guarded separately, see RedisReplyLedger);
 * - claimed under the same or a higher token: a duplicate.
 * Webhook events carry no lease and claim with token 0: first claim wins.
 *
 * When Redis cannot answer, `claim` says `unknown` and the caller lets the event through: a Redis outage
 * stops shard moves too (nobody can take a lease), so there is no second process to duplicate it.
 */
import { dedupeKeys } from '../gateway/dedupe.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { RedisConnection } from './redis-connection.ts';

// value: 'd' done, or '<fence>' / '<fence>:<owner>' a claim in progress
const CLAIM = `
local mine = tonumber(ARGV[1])
local owner = ARGV[3]
local stale = 0
for _, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if v then
    if v == 'd' then return 0 end
    local fence, holder = string.match(v, '^(%d+):?(.*)$')
    fence = tonumber(fence)
    if holder ~= owner then return 0 end
    if owner == '' then
      if fence >= mine then return 0 end
      stale = 1
    elseif fence > mine then return 0
    elseif fence < mine then stale = 1 end
  end
end
local value = ARGV[1]
if owner ~= '' then value = value .. ':' .. owner end
for _, key in ipairs(KEYS) do redis.call('SET', key, value, 'PX', ARGV[2]) end
return 1 + stale
`;

export type ClaimResult = 'new' | 'taken-over' | 'duplicate' | 'unknown';

export interface RedisEventDedupeOptions {
  redis: RedisConnection;
  /** key prefix for this bot, e.g. `qqbot:1020000001` */
  prefix: string;
  /** how long an event is remembered; default 10 min (covers resume replays and webhook retries) */
  ttlMs?: number;
}

export class RedisEventDedupe {
  readonly #redis: RedisConnection;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #claim: (keys: string[], args: Array<string | number>) => Promise<number>;

  constructor(options: RedisEventDedupeOptions) {
    this.#redis = options.redis;
    this.#prefix = `${options.prefix}:ev:`;
    this.#ttlMs = options.ttlMs ?? 10 * 60_000;
    this.#claim = options.redis.script<number>('event_claim', 'any', CLAIM);
  }

  /**
   * `owner`: the one copy of the event whose deliveries may take over its claim (a Stream entry id). A
   * claim held by another owner is a duplicate whatever its fence: that copy's handling, or its own
   * redelivery, finishes the event. Asked again by its holder at the same fence, a claim is still its.
   */
  async claim(dispatch: GatewayDispatch, owner?: string): Promise<ClaimResult> {
    const keys = dedupeKeys(dispatch);
    if (keys.length === 0) return 'new';
    if (!this.#redis.up) return 'unknown';
    try {
      const result = await this.#claim(keys.map((k) => this.#prefix + k), [dispatch.fence ?? 0, this.#ttlMs, owner ?? '']);
      return result === 0 ? 'duplicate' : result === 2 ? 'taken-over' : 'new';
    } catch {
      return 'unknown';
    }
  }

  /** The event's handlers finished: a later copy is a duplicate whatever lease it comes under. */
  async done(dispatch: GatewayDispatch): Promise<void> {
    if (!this.#redis.up) return;
    const client = this.#redis.client;
    await Promise.all(dedupeKeys(dispatch).map((k) => client.set(this.#prefix + k, 'd', 'PX', this.#ttlMs))).catch(() => undefined);
  }
}
