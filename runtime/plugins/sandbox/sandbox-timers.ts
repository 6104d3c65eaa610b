/**
 * `setTimeout`/`setInterval` inside an isolate: the isolate has no clock of its own, so every timer
 * is a host timer whose firing is an entry into the isolate. Capped in number, intervals floored,
 * and a firing whose previous entry still waits is skipped rather than queued twice.
 */

import type { RefusalCode } from './prelude/boundary.ts';

/** Floor for setInterval: each firing is an entry, so a 0 ms interval would be a busy loop. */
const MIN_INTERVAL_MS = 10;

export class SandboxTimers {
  readonly #max: number;
  /** runs the timer's entry; resolves when it has run */
  readonly #fire: (id: number) => Promise<void>;
  readonly #timers = new Map<number, NodeJS.Timeout>();
  /** timers whose entry is queued */
  readonly #queued = new Set<number>();
  #stopped = false;

  constructor(max: number, fire: (id: number) => Promise<void>) {
    this.#max = max;
    this.#fire = fire;
  }

  /** `$timer` from the prelude: `{ ms, repeat }`. Returns a refusal code, or null when set. */
  set(id: number, json: string): RefusalCode | null {
    if (this.#stopped) return 'E_DISPOSED';
    if (this.#timers.size >= this.#max) return 'E_TIMER_LIMIT';
    let ms = 0;
    let repeat = false;
    try {
      const o = JSON.parse(json) as { ms?: unknown; repeat?: unknown };
      ms = typeof o.ms === 'number' && Number.isFinite(o.ms) ? Math.min(o.ms, 2 ** 31 - 1) : 0;
      repeat = o.repeat === true;
    } catch {
      return 'E_CAPABILITY';
    }
    if (repeat) ms = Math.max(ms, MIN_INTERVAL_MS);
    const fire = (): void => {
      if (this.#stopped) return;
      if (!repeat) this.#timers.delete(id);
      else this.#timers.set(id, setTimeout(fire, ms));
      // Intervals that fire faster than the isolate serves them would grow the entry chain without bound.
      if (this.#queued.has(id)) return;
      this.#queued.add(id);
      void this.#fire(id).finally(() => this.#queued.delete(id));
    };
    this.#timers.set(id, setTimeout(fire, ms));
    return null;
  }

  clear(id: number): void {
    const t = this.#timers.get(id);
    if (t) clearTimeout(t);
    this.#timers.delete(id);
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    this.#queued.clear();
  }
}
