/** Reconnect delay bounds. */
export interface BackoffOptions {
  /** first delay; default 1 000 ms */
  minMs?: number;
  /** cap; default 60 000 ms */
  maxMs?: number;
}

/**
 * Jittered exponential backoff ("equal jitter": half fixed, half random) so a fleet of shards that
 * dropped together does not reconnect together. `reset()` after a successful READY/RESUMED.
 */
export class Backoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#minMs = Math.max(1, options.minMs ?? 1_000);
    this.#maxMs = Math.max(this.#minMs, options.maxMs ?? 60_000);
  }

  get attempts(): number {
    return this.#attempt;
  }

  /** The next delay in ms; each call doubles the ceiling up to maxMs. */
  next(random: () => number = Math.random): number {
    const ceiling = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(ceiling / 2 + random() * (ceiling / 2));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
