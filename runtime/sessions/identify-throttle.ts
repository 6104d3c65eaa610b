import { sleep } from '../time/sleep.ts';

export interface IdentifyThrottleOptions {
  /** session starts allowed per window (`session_start_limit.max_concurrency`) */
  maxConcurrency: number;
  /** window length; default 5 000 ms (docs/protocol.md §7) */
  windowMs?: number;
  /**
   * extra spacing added to each window, because the server measures arrival times and our sends
   * jitter by a few ms; default 2% of the window, at least 25 ms
   */
  marginMs?: number;
}

/**
 * A sliding-window token bucket: at most `maxConcurrency` grants in any `windowMs`, handed out in
 * FIFO order. One instance is shared by every shard of a bot, so restarts after a mass disconnect
 * queue up instead of tripping the platform's identify limit.
 */
export class IdentifyThrottle {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #granted: number[] = [];
  #queue: Promise<void> = Promise.resolve();

  constructor(options: IdentifyThrottleOptions) {
    this.#max = Math.max(1, Math.floor(options.maxConcurrency));
    const windowMs = options.windowMs ?? 5_000;
    this.#windowMs = windowMs + (options.marginMs ?? Math.max(25, Math.round(windowMs * 0.02)));
  }

  /**
   * Resolves with the grant's timestamp when the caller may start a session; rejects with the
   * signal's reason if aborted first.
   */
  wait(signal?: AbortSignal): Promise<number> {
    const turn = this.#queue.then(() => this.#take(signal));
    // a cancelled waiter must not block the ones behind it
    this.#queue = turn.then(() => undefined, () => undefined);
    return turn;
  }

  async #take(signal?: AbortSignal): Promise<number> {
    for (;;) {
      signal?.throwIfAborted();
      const now = Date.now();
      while (this.#granted.length > 0 && this.#granted[0]! + this.#windowMs <= now) this.#granted.shift();
      if (this.#granted.length < this.#max) {
        this.#granted.push(now);
        return now;
      }
      await sleep(this.#granted[0]! + this.#windowMs - now, signal);
    }
  }
}
