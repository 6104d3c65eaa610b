/**
 * The platform refuses a repeated (`msg_id`/`event_id`, `msg_seq`) pair in groups and C2C; this extends
 * that rule to every scene and across the processes of one bot, so an event handled again after its shard
 * moved (see RedisEventDedupe) is not answered twice.
 *
 * A reply is claimed right before its request leaves (not when it is queued: a paced queue can hold it
 * for seconds, and a process dying in that time must not take the reply with it). The claim holds a
 * deadline past the request's timeout; on success it becomes "sent", on a platform refusal it is released.
 * A process that dies mid-request leaves a claim whose deadline passes: whether that reply reached the
 * platform cannot be known, so the process that handles the event again gets `unknown` and says so
 * loudly, and only resends where the platform itself refuses a repeat (groups, C2C).
 *
 * When Redis cannot answer, the reply goes out: no shard can move while Redis is away.
 */
import { randomBytes } from 'node:crypto';
import { sleep } from '../time/sleep.ts';
import type { RedisConnection } from './redis-connection.ts';

export interface RedisReplyLedgerOptions {
  redis: RedisConnection;
  /** key prefix for this bot, e.g. `qqbot:1020000001` */
  prefix: string;
  /** how long a claim is kept: the longest passive-reply window (C2C, 60 min) */
  ttlMs?: number;
  /** how long a claimed request may take before its claim counts as abandoned: past the request timeout */
  holdMs?: number;
}

/** `send`: this process sends it; `duplicate`: another process sent it; `unknown`: another process died sending it. */
export type ReplyClaimOutcome = 'send' | 'duplicate' | 'unknown';

// value: `s` sent, `r` released, `p:<token>:<deadline ms>` a request in flight
const TAKE = `
local v = redis.call('get', KEYS[1])
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = 'p:' .. ARGV[1] .. ':'
if (not v) or v == 'r' or string.sub(v, 1, #mine) == mine then
  redis.call('set', KEYS[1], mine .. (now + tonumber(ARGV[2])), 'PX', ARGV[3])
  return 1
end
if string.sub(v, 1, 2) == 'p:' then
  local deadline = tonumber(string.match(v, ':(%d+)$'))
  if deadline and now < deadline then return 0 end
  if ARGV[4] == '1' then
    redis.call('set', KEYS[1], mine .. (now + tonumber(ARGV[2])), 'PX', ARGV[3])
    return 2
  end
  return 3
end
return -1`;

const RELEASE = `
if string.sub(redis.call('get', KEYS[1]) or '', 1, #ARGV[1] + 3) == 'p:' .. ARGV[1] .. ':' then
  redis.call('set', KEYS[1], 'r', 'PX', ARGV[2])
end
return 1`;

const WAIT_STEP_MS = 100;

export class RedisReplyLedger {
  readonly #redis: RedisConnection;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #holdMs: number;
  readonly #process = randomBytes(6).toString('hex');
  #requests = 0;

  constructor(options: RedisReplyLedgerOptions) {
    this.#redis = options.redis;
    this.#prefix = `${options.prefix}:reply:`;
    this.#ttlMs = options.ttlMs ?? 60 * 60_000;
    this.#holdMs = options.holdMs ?? 20_000;
  }

  /** A claim for one reply request; `undefined` for bodies that are not passive replies (they always go out). */
  claimFor(path: string, body: unknown): ReplyClaim | undefined {
    const pair = replyPair(path, body);
    return pair === undefined ? undefined : new ReplyClaim(this, this.#prefix + pair.key, `${this.#process}.${++this.#requests}`, pair.platformRefusesRepeats);
  }

  /** @internal */
  async take(key: string, token: string, resendWhenUnknown: boolean): Promise<ReplyClaimOutcome> {
    // a live holder's deadline bounds the wait; the step count only guards against a clock gone wrong
    for (let step = 0; step <= this.#holdMs / WAIT_STEP_MS + 10; step++) {
      if (!this.#redis.up) return 'send';
      let result: unknown;
      try {
        result = await this.#redis.client.eval(TAKE, 1, key, token, this.#holdMs, this.#ttlMs, resendWhenUnknown ? '1' : '0');
      } catch {
        return 'send';
      }
      if (result === 1 || result === 2) return 'send';
      if (result === 3) return 'unknown';
      if (result === -1) return 'duplicate';
      await sleep(WAIT_STEP_MS);
    }
    return 'unknown';
  }

  /** @internal */
  async mark(key: string, token: string, outcome: 'sent' | 'released'): Promise<void> {
    if (!this.#redis.up) return;
    const done = outcome === 'sent'
      ? this.#redis.client.set(key, 's', 'PX', this.#ttlMs)
      : this.#redis.client.eval(RELEASE, 1, key, token, this.#holdMs);
    await done.catch(() => undefined);
  }
}

/** One reply request's claim: taken before each attempt leaves, marked once the platform answered. */
export class ReplyClaim {
  readonly #ledger: RedisReplyLedger;
  readonly #key: string;
  readonly #token: string;
  readonly #platformRefusesRepeats: boolean;

  constructor(ledger: RedisReplyLedger, key: string, token: string, platformRefusesRepeats: boolean) {
    this.#ledger = ledger;
    this.#key = key;
    this.#token = token;
    this.#platformRefusesRepeats = platformRefusesRepeats;
  }

  take(): Promise<ReplyClaimOutcome> {
    return this.#ledger.take(this.#key, this.#token, this.#platformRefusesRepeats);
  }

  /** The platform accepted the reply: no other process sends it. */
  sent(): Promise<void> {
    return this.#ledger.mark(this.#key, this.#token, 'sent');
  }

  /** The platform refused the reply: nothing was sent, a retry may claim it again. */
  released(): Promise<void> {
    return this.#ledger.mark(this.#key, this.#token, 'released');
  }
}

function replyPair(path: string, body: unknown): { key: string; platformRefusesRepeats: boolean } | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as { msg_id?: unknown; event_id?: unknown; msg_seq?: unknown };
  const seq = typeof b.msg_seq === 'number' ? b.msg_seq : 1;
  // groups and C2C refuse a repeated (id, msg_seq) pair themselves; guild channels do not
  const refuses = path.startsWith('/v2/groups/') || path.startsWith('/v2/users/');
  if (typeof b.msg_id === 'string' && b.msg_id !== '') return { key: `m:${b.msg_id}:${seq}`, platformRefusesRepeats: refuses };
  if (typeof b.event_id === 'string' && b.event_id !== '') return { key: `e:${b.event_id}:${seq}`, platformRefusesRepeats: refuses };
  return undefined;
}
