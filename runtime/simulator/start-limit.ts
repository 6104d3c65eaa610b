/** One bot's daily session-start budget; `resetAt` is wall-clock epoch ms so it survives a restart. */
export interface StartBudget { remaining: number; resetAt: number }

export interface SessionStartLimitInfo { total: number; remaining: number; reset_after: number; max_concurrency: number }

/**
 * `session_start_limit` (§3): `total` identifies per bot per window, counted down by every
 * accepted identify, back to `total` once `reset_after` has run out.
 */
export class SessionStartLimit {
  readonly #total: number;
  readonly #initial: number;
  readonly #maxConcurrency: number;
  readonly #resetAfterMs: number;
  readonly #budgets = new Map<string, StartBudget>();

  constructor(
    limit: { total: number; remaining: number; maxConcurrency: number; resetAfterMs: number },
    appIds: string[],
    restored: Record<string, StartBudget> = {},
    now = Date.now(),
  ) {
    this.#total = limit.total;
    this.#initial = limit.remaining;
    this.#maxConcurrency = limit.maxConcurrency;
    this.#resetAfterMs = limit.resetAfterMs;
    for (const appId of appIds) {
      const r = restored[appId];
      this.#budgets.set(appId, r ? { remaining: Math.min(r.remaining, this.#total), resetAt: r.resetAt } : { remaining: this.#initial, resetAt: now + this.#resetAfterMs });
    }
  }

  info(appId: string, now = Date.now()): SessionStartLimitInfo {
    const b = this.#budget(appId, now);
    return { total: this.#total, remaining: b.remaining, reset_after: Math.max(0, b.resetAt - now), max_concurrency: this.#maxConcurrency };
  }

  /** Spends one start; false when none is left in the current window. */
  take(appId: string, now = Date.now()): boolean {
    const b = this.#budget(appId, now);
    if (b.remaining <= 0) return false;
    b.remaining--;
    return true;
  }

  snapshot(now = Date.now()): Record<string, StartBudget> {
    const out: Record<string, StartBudget> = {};
    for (const appId of this.#budgets.keys()) out[appId] = { ...this.#budget(appId, now) };
    return out;
  }

  #budget(appId: string, now: number): StartBudget {
    let b = this.#budgets.get(appId);
    if (!b) {
      b = { remaining: this.#initial, resetAt: now + this.#resetAfterMs };
      this.#budgets.set(appId, b);
    }
    if (now >= b.resetAt) {
      // whole windows may have passed while nobody asked (or while the simulator was down)
      const windows = Math.floor((now - b.resetAt) / this.#resetAfterMs) + 1;
      b.remaining = this.#total;
      b.resetAt += windows * this.#resetAfterMs;
    }
    return b;
  }
}
