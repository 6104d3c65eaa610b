/**
 * Counts refused requests and reports them as one line per interval: a flood of forged requests
 * must not become a flood of log lines (one per request wrote 5,000 lines in 4 s).
 */
export class RejectionTally<K extends string> {
  readonly #intervalMs: number;
  readonly #report: (counts: Partial<Record<K, number>>, total: number) => void;
  #counts: Partial<Record<K, number>> = {};
  #total = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `report` runs at most once per `intervalMs`, and only after something was counted. */
  constructor(intervalMs: number, report: (counts: Partial<Record<K, number>>, total: number) => void) {
    this.#intervalMs = intervalMs;
    this.#report = report;
  }

  add(kind: K): void {
    this.#counts[kind] = (this.#counts[kind] ?? 0) + 1;
    this.#total += 1;
    if (this.#timer) return;
    this.#timer = setTimeout(() => this.flush(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Reports what was counted since the last report (nothing when nothing was). */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#total === 0) return;
    const counts = this.#counts;
    const total = this.#total;
    this.#counts = {};
    this.#total = 0;
    this.#report(counts, total);
  }
}
