/**
 * One plugin instance in the host: its current sandbox and its serial event queue. Hot swap
 * happens here, between two events: events that arrive meanwhile wait in the queue and go to the
 * new version; the old one drains and is disposed.
 */
import type { DispatchOutcome, SandboxEvent } from '../instance.ts';
import type { PluginSandbox } from './plugin-sandbox.ts';

interface Queued {
  rid: number;
  event: SandboxEvent;
}

export class InstanceSlot {
  readonly id: string;
  #current: PluginSandbox;
  #queue: Queued[] = [];
  #pumping = false;
  /** events entered whose handlers (async tail included) have not finished */
  #active = 0;
  #swap: { next: PluginSandbox; done: () => void } | undefined;
  #retiring = new Set<Promise<void>>();
  readonly #answer: (rid: number, outcome: DispatchOutcome, sandbox: PluginSandbox) => void;
  readonly #graceMs: number;
  #closed = false;

  constructor(current: PluginSandbox, answer: (rid: number, outcome: DispatchOutcome, sandbox: PluginSandbox) => void, graceMs: number) {
    this.id = current.spec.id;
    this.#current = current;
    this.#answer = answer;
    this.#graceMs = graceMs;
  }

  get current(): PluginSandbox {
    return this.#current;
  }

  dispatch(rid: number, event: SandboxEvent): void {
    if (this.#closed) return this.#answer(rid, this.#status('unloaded', 'E_UNLOADED'), this.#current);
    if (this.#queue.length >= this.#current.spec.limits.queuedEvents) {
      return this.#answer(rid, this.#status('dropped', 'E_QUEUE_FULL: queuedEvents reached'), this.#current);
    }
    this.#queue.push({ rid, event });
    void this.#pump();
  }

  /** Resolves once `next` serves events (the old version then drains in the background). */
  swap(next: PluginSandbox): Promise<void> {
    return new Promise<void>((resolve) => {
      const previous = this.#swap;
      // A newer build supersedes one that has not switched yet.
      if (previous) {
        previous.next.dispose();
        previous.done();
      }
      this.#swap = { next, done: resolve };
      void this.#pump();
    });
  }

  /** The current sandbox failed: answer what is queued; the supervisor restarts the instance. */
  abandon(reason: string): void {
    this.#closed = true;
    for (const q of this.#queue.splice(0)) this.#answer(q.rid, this.#status('dropped', reason), this.#current);
    if (this.#swap) {
      this.#swap.next.dispose();
      this.#swap.done();
      this.#swap = undefined;
    }
  }

  async unload(graceMs: number): Promise<void> {
    this.#closed = true;
    for (const q of this.#queue.splice(0)) this.#answer(q.rid, this.#status('unloaded', 'E_UNLOADED'), this.#current);
    this.#swap?.next.dispose();
    this.#swap?.done();
    this.#swap = undefined;
    await Promise.all([this.#current.retire(graceMs), ...this.#retiring]);
  }

  #status(status: DispatchOutcome['status'], error: string): DispatchOutcome {
    return { instanceId: this.id, version: this.#current.spec.version, status, error };
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        if (this.#closed) return;
        if (this.#swap) {
          await this.#switch(this.#swap.next);
          this.#swap.done();
          this.#swap = undefined;
          continue;
        }
        // Backpressure instead of failure: a burst waits in the bounded queue rather than piling
        // async handlers up against the pending-call cap.
        if (this.#active >= this.#current.spec.limits.concurrentEvents) return;
        const item = this.#queue.shift();
        if (!item) return;
        const sandbox = this.#current;
        const handle = sandbox.dispatch(item.event, item.rid);
        this.#active += 1;
        void handle.outcome.then((o) => {
          this.#active -= 1;
          this.#answer(item.rid, o, sandbox);
          void this.#pump();
        });
        await handle.entered;
      }
    } finally {
      this.#pumping = false;
    }
  }

  async #switch(next: PluginSandbox): Promise<void> {
    const old = this.#current;
    const state = await old.snapshot();
    this.#current = next;
    if (state !== undefined) await next.restore(state);
    const retiring = old.retire(this.#graceMs);
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
  }
}
