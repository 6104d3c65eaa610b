import { CODES, PlatformError } from './platform-error.ts';

export interface ChannelSendRate {
  messages: number;
  perMs: number;
}

/** Channels remembered at most before idle ones are swept. */
const SWEEP_ABOVE = 10_000;

/**
 * §14's "≤ 5 messages per second per guild channel, passive or not": a sliding window over the sends
 * each channel accepted. One more inside the window is refused with 20028, as the platform does, so a
 * runtime that floods a channel fails its tests here instead of in production.
 */
export class ChannelSendWindow {
  readonly #rate: ChannelSendRate;
  /** bot + channel → times of the last `messages` sends accepted there, oldest first */
  readonly #sent = new Map<string, number[]>();

  constructor(rate: ChannelSendRate) {
    this.#rate = rate;
  }

  /** Throws the platform's 20028 when the bot is at its rate in this channel (`key`: bot and channel). */
  check(key: string, now = performance.now()): void {
    const times = this.#sent.get(key);
    const { messages, perMs } = this.#rate;
    if (times && times.length >= messages && now - times[0]! < perMs) {
      throw new PlatformError(429, CODES.channelRateLimited, `channel ${key.slice(key.indexOf(':') + 1)} is over its write rate (${messages} messages per ${perMs} ms)`);
    }
  }

  /** Counts a send the platform accepted. */
  record(key: string, now = performance.now()): void {
    let times = this.#sent.get(key);
    if (!times) {
      if (this.#sent.size >= SWEEP_ABOVE) this.#sweep(now);
      times = [];
      this.#sent.set(key, times);
    }
    times.push(now);
    if (times.length > this.#rate.messages) times.shift();
  }

  #sweep(now: number): void {
    for (const [id, times] of this.#sent) if (now - times.at(-1)! >= this.#rate.perMs) this.#sent.delete(id);
  }
}
