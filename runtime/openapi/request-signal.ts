/**
 * One AbortSignal per HTTP request that fires on its timeout or on any of the given signals.
 * Listeners are removed by `dispose()`: long-lived signals (the client's close signal) would
 * otherwise collect one listener per request, which `AbortSignal.any` did leak on some Node lines.
 */
export class RequestSignal {
  readonly #controller = new AbortController();
  readonly #sources: AbortSignal[];
  readonly #timer: NodeJS.Timeout;
  readonly #abort = (): void => this.#controller.abort();
  #timedOut = false;

  constructor(timeoutMs: number, sources: (AbortSignal | undefined)[]) {
    this.#sources = sources.filter((s): s is AbortSignal => s !== undefined);
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      this.#controller.abort();
    }, timeoutMs);
    for (const source of this.#sources) {
      if (source.aborted) this.#controller.abort();
      else source.addEventListener('abort', this.#abort, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** true when the timeout (not a source) aborted the request */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  dispose(): void {
    clearTimeout(this.#timer);
    for (const source of this.#sources) source.removeEventListener('abort', this.#abort);
  }
}
