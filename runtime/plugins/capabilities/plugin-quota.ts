/**
 * Per-plugin quota: per-instance token buckets, one per capability group. A call over the rate is
 * refused at once (E_RATE_LIMITED with a retry hint) rather than queued: queues are how floods hurt
 * the host. (Not the OpenAPI client's rate limits: those pace the bot's requests to the platform.)
 */

export interface RateLimit {
  /** burst size */
  capacity: number;
  /** tokens added per second */
  perSecond: number;
}

/**
 * Bucket names: a permission (`messages.send`, `members.manage`, `net.fetch`, `storage`, …). These
 * stop a runaway plugin, not a busy one, so passive replies (`event.reply`, and `api.send*` naming an
 * event the bot received) and interaction acks are not counted here at all: they are bounded by the
 * events the bot gets, the platform's rules per message (enforced by the reply router), the channel
 * pacing of the OpenAPI client, and the pending-call cap of each sandbox. `messages.send` counts the
 * rest: proactive sends, which the platform itself allows only a few of per day.
 */
export const DEFAULT_RATE_LIMITS: Readonly<Record<string, RateLimit>> = {
  'messages.send': { capacity: 1000, perSecond: 500 },
  'messages.recall': { capacity: 20, perSecond: 5 },
  'guilds.read': { capacity: 100, perSecond: 50 },
  'members.read': { capacity: 100, perSecond: 50 },
  'members.manage': { capacity: 10, perSecond: 2 },
  'channels.manage': { capacity: 10, perSecond: 2 },
  'roles.manage': { capacity: 10, perSecond: 2 },
  'net.fetch': { capacity: 20, perSecond: 5 },
  storage: { capacity: 500, perSecond: 200 },
};

export class TokenBucket {
  readonly #limit: RateLimit;
  #tokens: number;
  #updatedAt: number;

  constructor(limit: RateLimit, now = Date.now()) {
    this.#limit = limit;
    this.#tokens = limit.capacity;
    this.#updatedAt = now;
  }

  /** Takes one token; returns 0 when granted, else the milliseconds until one is available. */
  take(now = Date.now()): number {
    const elapsed = Math.max(0, now - this.#updatedAt) / 1000;
    this.#tokens = Math.min(this.#limit.capacity, this.#tokens + elapsed * this.#limit.perSecond);
    this.#updatedAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) / this.#limit.perSecond) * 1000);
  }
}

export class PluginQuota {
  readonly #limits: Record<string, RateLimit>;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(overrides: Record<string, RateLimit> = {}) {
    this.#limits = { ...DEFAULT_RATE_LIMITS, ...overrides };
  }

  /** 0 when the call may proceed, else milliseconds to wait. Unknown buckets are unlimited. */
  take(instanceId: string, bucket: string, now = Date.now()): number {
    const limit = this.#limits[bucket];
    if (!limit) return 0;
    const key = `${instanceId}\u0000${bucket}`;
    let b = this.#buckets.get(key);
    if (!b) {
      b = new TokenBucket(limit, now);
      this.#buckets.set(key, b);
    }
    return b.take(now);
  }

  forget(instanceId: string): void {
    const prefix = `${instanceId}\u0000`;
    for (const key of this.#buckets.keys()) if (key.startsWith(prefix)) this.#buckets.delete(key);
  }
}
