/**
 * Capped exponential back-off with jitter, one formula for every retry loop: attempt n (from 1)
 * has the ceiling min(maxMs, baseMs · 2^(n−1)), and the delay is a random point of
 * [ceiling · spread[0], ceiling · spread[1]]. The default spread [0.5, 1] is "equal jitter": half
 * fixed, half random, so a fleet that failed together does not retry together.
 */
export interface BackoffPolicy {
  /** ceiling of the first attempt */
  baseMs: number;
  /** ceiling of every later one */
  maxMs: number;
  /** the delay's range as fractions of the ceiling; [1, 1] for none. Default [0.5, 1] */
  spread?: readonly [number, number];
}

/** Random in [0, 1); injectable so tests can pin the jitter. */
export type Random = () => number;

export function backoffDelay(attempt: number, policy: BackoffPolicy, random: Random = Math.random): number {
  const [low, high] = policy.spread ?? [0.5, 1];
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.round(ceiling * (low + random() * (high - low)));
}

/** Reconnect delay bounds. */
export interface BackoffOptions {
  /** first delay's ceiling; default 1 000 ms */
  minMs?: number;
  /** cap; default 60 000 ms */
  maxMs?: number;
}

/** backoffDelay with the attempt counted: `next()` per failure, `reset()` after a success. */
export class Backoff {
  readonly #policy: BackoffPolicy;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    const baseMs = Math.max(1, options.minMs ?? 1_000);
    this.#policy = { baseMs, maxMs: Math.max(baseMs, options.maxMs ?? 60_000) };
  }

  get attempts(): number {
    return this.#attempt;
  }

  /** The next delay in ms; each call doubles the ceiling up to maxMs. */
  next(random: Random = Math.random): number {
    return backoffDelay(++this.#attempt, this.#policy, random);
  }

  reset(): void {
    this.#attempt = 0;
  }
}
