/**
 * One AbortSignal per HTTP request that fires on its timeout, on the caller's signal, or when the
 * client closes (`abort()`, called by the client for every live request: a listener per request on
 * one long-lived close signal would pile up under a burst).
 */
export class RequestSignal {
  readonly #controller = new AbortController();
  readonly #caller: AbortSignal | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #abort = (): void => this.#controller.abort();
  #timedOut = false;

  constructor(timeoutMs: number, caller: AbortSignal | undefined) {
    this.#caller = caller;
    this.#timer = setTimeout(() => {
      this.#timedOut = true;
      this.#controller.abort();
    }, timeoutMs);
    if (caller?.aborted) this.#controller.abort();
    else caller?.addEventListener('abort', this.#abort, { once: true });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** true when the timeout (not a source) aborted the request */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  abort(): void {
    this.#controller.abort();
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#caller?.removeEventListener('abort', this.#abort);
  }
}
