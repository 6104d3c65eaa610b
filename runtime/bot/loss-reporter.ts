/**
 * Says out loud what a bot could not do: events a plugin did not handle, replies it could not send,
 * and handlers cut off after they answered (the event was answered; what the handler did next was
 * not). The first loss of a kind is logged at once; after that, one line per interval sums up what
 * was lost meanwhile, with the counts, so a flood of losses is never a flood of log lines.
 */
import type { Logger } from '../logging/logger.ts';

export type LossKind = 'event' | 'reply' | 'cut-off';

const ONE: Record<LossKind, string> = {
  event: 'event not handled by plugin',
  reply: 'plugin reply not sent',
  'cut-off': 'plugin handler cut off after it replied: the event is answered, the rest of the handler did not run',
};
const MORE: Record<LossKind, string> = {
  event: 'events not handled by',
  reply: 'replies not sent by',
  'cut-off': 'handlers cut off after replying in',
};

export interface LossReporterOptions {
  logger: Logger;
  /** @defaultValue 10 000 ms */
  intervalMs?: number;
}

interface Tally {
  kind: LossKind;
  plugin: string;
  reason: string;
  count: number;
  example: string | undefined;
}

export class LossReporter {
  readonly #logger: Logger;
  readonly #intervalMs: number;
  /** losses since the last summary, by kind/plugin/reason */
  readonly #pending = new Map<string, Tally>();
  /** kinds already announced: later ones wait for the summary */
  readonly #announced = new Set<string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: LossReporterOptions) {
    this.#logger = options.logger;
    this.#intervalMs = options.intervalMs ?? 10_000;
  }

  lost(kind: LossKind, plugin: string, reason: string, detail?: string): void {
    const key = `${kind}\u0000${plugin}\u0000${reason}`;
    if (!this.#announced.has(key)) {
      this.#announced.add(key);
      this.#logger.warn({ plugin, reason, ...(detail ? { detail } : {}) }, ONE[kind]);
      this.#schedule();
      return;
    }
    const tally = this.#pending.get(key);
    if (tally) tally.count++;
    else this.#pending.set(key, { kind, plugin, reason, count: 1, example: detail });
    this.#schedule();
  }

  /** Logs what is pending now (also called on shutdown). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const t of this.#pending.values()) {
      this.#logger.warn(
        { plugin: t.plugin, reason: t.reason, count: t.count, ...(t.example ? { example: t.example } : {}) },
        `${t.count} more ${MORE[t.kind]} plugin ${t.plugin} (${t.reason}) in the last ${Math.round(this.#intervalMs / 1000)} s`,
      );
    }
    // a quiet interval re-arms the immediate announcement for the next loss
    if (this.#pending.size === 0) this.#announced.clear();
    this.#pending.clear();
  }

  close(): void {
    this.flush();
    this.#announced.clear();
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
      if (this.#announced.size > 0) this.#schedule();
    }, this.#intervalMs);
    this.#timer.unref();
  }
}
