import { backoffDelay } from '../../time/backoff.ts';

/**
 * When a failed plugin instance (or a crashed plugin host) comes back, and when it is given up on.
 * Pure: the clock is injected, so tests drive it without forking anything.
 */

export interface RestartPolicyOptions {
  /** the first restart waits `min`; each failure since the last stable period doubles it, up to `max` */
  backoffMs: { min: number; max: number };
  /** more than `restarts` failures within `windowMs` → quarantined (given up on) */
  quarantine: { restarts: number; windowMs: number };
  /** this long without a failure and the backoff starts again from `min` */
  stableMs: number;
}

export type RestartDecision =
  | { action: 'restart'; delayMs: number; failures: number }
  | { action: 'quarantine'; failures: number };

export const DEFAULT_RESTART_POLICY: RestartPolicyOptions = {
  backoffMs: { min: 1000, max: 5 * 60_000 },
  quarantine: { restarts: 5, windowMs: 10 * 60_000 },
  stableMs: 60_000,
};

export class RestartPolicy {
  readonly #options: RestartPolicyOptions;
  readonly #now: () => number;
  /** failure times within the quarantine window */
  #failures: number[] = [];
  /** failures since the last stable period: drives the backoff */
  #streak = 0;
  #lastFailure = Number.NEGATIVE_INFINITY;

  constructor(options: RestartPolicyOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /** Records a failure and says what to do about it. */
  failed(): RestartDecision {
    const now = this.#now();
    const { backoffMs, quarantine, stableMs } = this.#options;
    if (now - this.#lastFailure >= stableMs) this.#streak = 0;
    this.#lastFailure = now;
    this.#streak++;
    this.#failures = this.#failures.filter((t) => now - t < quarantine.windowMs);
    this.#failures.push(now);
    if (this.#failures.length > quarantine.restarts) return { action: 'quarantine', failures: this.#failures.length };
    const delayMs = backoffDelay(this.#streak, { baseMs: backoffMs.min, maxMs: backoffMs.max, spread: [1, 1] });
    return { action: 'restart', delayMs, failures: this.#failures.length };
  }

  /** A fresh start (a new version was loaded): nothing held against it. */
  reset(): void {
    this.#failures = [];
    this.#streak = 0;
    this.#lastFailure = Number.NEGATIVE_INFINITY;
  }
}
