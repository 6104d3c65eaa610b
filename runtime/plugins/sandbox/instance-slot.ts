/**
 * One plugin instance in the host: its current sandbox and its serial event queue. Hot swap
 * happens here, between two events: events that arrive meanwhile wait in the queue and go to the
 * new version; the old one drains and is disposed. A new version goes live only if it is still
 * alive at the moment of the switch (after the state hand-off); otherwise the old one keeps serving.
 */
import type { DispatchOutcome, DropReason } from '../instance.ts';
import type { PluginSandbox } from './plugin-sandbox.ts';

interface Queued {
  rid: number;
  /** the event as the main process made it */
  json: string;
  type: string;
}

/** How a swap ended; `settled` is called in the same tick as the switch, so nothing can overtake it. */
export type SwapResult = { live: true } | { live: false; reason: string };

interface PendingSwap {
  next: PluginSandbox;
  settled: (result: SwapResult) => void;
}

export type Answer = (rid: number, outcome: DispatchOutcome, sandbox: PluginSandbox) => void;

export class InstanceSlot {
  readonly id: string;
  #current: PluginSandbox;
  #queue: Queued[] = [];
  #pumping = false;
  /** events entered whose handlers (async tail included) have not finished */
  #active = 0;
  #swap: PendingSwap | undefined;
  /** the swap the pump is carrying out (snapshot and restore in progress) */
  #switching: PendingSwap | undefined;
  #retiring = new Set<Promise<void>>();
  readonly #answer: Answer;
  /** the serving sandbox died and no new version is waiting to take over */
  readonly #lost: (sandbox: PluginSandbox) => void;
  readonly #graceMs: number;
  #closed = false;

  constructor(current: PluginSandbox, answer: Answer, lost: (sandbox: PluginSandbox) => void, graceMs: number) {
    this.id = current.spec.id;
    this.#current = current;
    this.#answer = answer;
    this.#lost = lost;
    this.#graceMs = graceMs;
  }

  get current(): PluginSandbox {
    return this.#current;
  }

  /** The main process bounds what it sends (a window per instance): this queue stays short. */
  dispatch(rid: number, json: string, type: string): void {
    if (this.#closed) return this.#answer(rid, { ...this.#status('unloaded', 'unloaded', 'E_UNLOADED'), requeue: true }, this.#current);
    this.#queue.push({ rid, json, type });
    void this.#pump();
  }

  /** Queues `next` to take over between two events; `settled` says whether it went live. */
  swap(next: PluginSandbox, settled: (result: SwapResult) => void): void {
    const refuse = (reason: string): void => {
      next.dispose();
      settled({ live: false, reason });
    };
    if (this.#closed) return refuse('E_UNLOADED: the instance was unloaded');
    // A restart of an older version must not undo a reload that finished first.
    const newest = this.#swap?.next.spec.version ?? this.#current.spec.version;
    if (next.spec.version < newest) return refuse(`version ${newest} is newer`);
    if (this.#swap) {
      this.#swap.next.dispose();
      this.#swap.settled({ live: false, reason: `superseded by version ${next.spec.version}` });
    }
    this.#swap = { next, settled };
    void this.#pump();
  }

  /** One of this slot's sandboxes broke a limit and was disposed. */
  failed(sandbox: PluginSandbox): void {
    if (this.#closed || sandbox !== this.#current) return; // a retiring or waiting version just goes
    // A healthy new version is waiting: the pump switches to it (the dead one has no state to hand over).
    const waiting = this.#swap ?? this.#switching;
    if (waiting && !waiting.next.disposed) return;
    this.#lose(sandbox);
  }

  async unload(graceMs: number): Promise<void> {
    this.#close('unloaded', 'unloaded', 'E_UNLOADED');
    await Promise.all([this.#current.retire(graceMs), ...this.#retiring]);
  }

  #lose(sandbox: PluginSandbox): void {
    const failure = sandbox.failure;
    // reported before the queue is handed back: the main process must know not to send it here again
    this.#lost(sandbox);
    this.#close('dropped', 'disposed', `E_RESTARTING: ${failure?.reason ?? 'disposed'}`);
  }

  /**
   * Answers what is queued — it never entered the isolate, so the main process may deliver it again —
   * and cancels a waiting swap; nothing enters this slot afterwards.
   */
  #close(status: DispatchOutcome['status'], reason: DropReason, error: string): void {
    this.#closed = true;
    for (const q of this.#queue.splice(0)) this.#answer(q.rid, { ...this.#status(status, reason, error), requeue: true }, this.#current);
    const swap = this.#swap;
    this.#swap = undefined;
    if (swap) {
      swap.next.dispose();
      swap.settled({ live: false, reason: `${error}: the instance stopped before the new version went live` });
    }
  }

  #status(status: DispatchOutcome['status'], reason: DropReason, error: string): DispatchOutcome {
    return { instanceId: this.id, version: this.#current.spec.version, status, reason, error };
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        if (this.#closed) return;
        const swap = this.#swap;
        if (swap) {
          this.#swap = undefined;
          this.#switching = swap;
          try {
            await this.#switch(swap);
          } finally {
            this.#switching = undefined;
          }
          continue;
        }
        // Backpressure instead of failure: a burst waits in the bounded queue rather than piling
        // async handlers up against the pending-call cap.
        if (this.#active >= this.#current.spec.limits.concurrentEvents) return;
        const item = this.#queue.shift();
        if (!item) return;
        const sandbox = this.#current;
        const handle = sandbox.dispatch(item.json, item.type, item.rid);
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

  async #switch({ next, settled }: PendingSwap): Promise<void> {
    const old = this.#current;
    const state = await old.snapshot();
    if (state !== undefined && !next.disposed && !this.#closed) await next.restore(state);
    if (this.#closed) {
      next.dispose();
      settled({ live: false, reason: 'E_UNLOADED: the instance was unloaded during the swap' });
      return;
    }
    // Checked after every await: the new isolate can die in its own timers or in restore().
    if (next.disposed) {
      const f = next.failure;
      settled({ live: false, reason: `version ${next.spec.version} failed before it went live: ${f ? `${f.reason}: ${f.message}` : 'disposed'}` });
      // The old one died meanwhile too (its failure was left to this swap).
      if (old.disposed) this.#lose(old);
      return;
    }
    this.#current = next;
    settled({ live: true });
    const retiring = old.retire(this.#graceMs);
    this.#retiring.add(retiring);
    void retiring.finally(() => this.#retiring.delete(retiring));
  }
}
