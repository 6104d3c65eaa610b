/**
 * Deadlines that are set in the order they fall due (the same offset from "now" each time), kept in
 * one FIFO with one Node timer for the earliest: the per-event async-tail limit costs a push and a
 * flag per event instead of a setTimeout/clearTimeout pair.
 */
export class DeadlineQueue<T> {
  readonly #items: Array<{ at: number; item: T }> = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #expired: (item: T) => void;
  readonly #done: (item: T) => boolean;

  /** `expired` runs for each item whose deadline passed while `done(item)` was still false. */
  constructor(expired: (item: T) => void, done: (item: T) => boolean) {
    this.#expired = expired;
    this.#done = done;
  }

  /** `at` (performance.now() ms) must not be earlier than that of the item pushed before. */
  push(item: T, at: number): void {
    while (this.#head < this.#items.length && this.#done(this.#items[this.#head]!.item)) this.#head++;
    this.#compact();
    this.#items.push({ at, item });
    if (!this.#timer) this.#arm();
  }

  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#items.length = 0;
    this.#head = 0;
  }

  #arm(): void {
    const next = this.#items[this.#head];
    if (!next) return;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, next.at - performance.now()));
    this.#timer.unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    const now = performance.now();
    while (this.#head < this.#items.length && this.#items[this.#head]!.at <= now) {
      const { item } = this.#items[this.#head++]!;
      if (!this.#done(item)) this.#expired(item);
    }
    this.#compact();
    this.#arm();
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    } else if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    }
  }
}
