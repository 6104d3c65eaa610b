import { dedupeKeys } from '../gateway/dedupe.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';

/**
 * The resume point of one shard's session that loses nothing: the highest `s` such that every event up to
 * it has been handled (or dropped with a reason). A successor that resumes from here gets every event
 * that was still in a handler replayed; the ones above it that did finish are listed (`settledAbove`) so
 * that its dedupe drops them. Events are tracked by object identity, so a settle that arrives after the
 * session changed (re-identify) cannot move the new session's point.
 */
export class CommittedSeq {
  #base = 0;
  #high = 0;
  readonly #inFlight = new Map<GatewayDispatch, number>();
  // s → dedupe keys of settled events; only those above the oldest event still in flight matter
  readonly #settledAbove = new Map<number, string[]>();
  #idle: Array<() => void> = [];

  /** A new session (READY) or a resumed one: the point starts at its current seq. */
  reset(seq: number): void {
    this.#base = seq;
    this.#high = seq;
    this.#inFlight.clear();
    this.#settledAbove.clear();
    this.#wake();
  }

  /** an event went to the dispatcher */
  dispatched(dispatch: GatewayDispatch): void {
    if (dispatch.s === undefined) return;
    this.#inFlight.set(dispatch, dispatch.s);
    if (dispatch.s > this.#high) this.#high = dispatch.s;
  }

  /** the event is handled, or dropped with a reason */
  settled(dispatch: GatewayDispatch): void {
    const s = this.#inFlight.get(dispatch);
    if (s === undefined) return;
    this.#inFlight.delete(dispatch);
    if (this.#inFlight.size === 0) {
      this.#settledAbove.clear();
      this.#wake();
      return;
    }
    this.#settledAbove.set(s, dedupeKeys(dispatch));
    if (this.#settledAbove.size > 1_000) this.#prune(this.#lowest());
  }

  /** events dispatched and not yet settled */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** The seq a successor should resume from, and the dedupe keys of what it will see again but must drop. */
  point(): { seq: number; settledAbove: string[] } {
    if (this.#inFlight.size === 0) return { seq: this.#high, settledAbove: [] };
    const lowest = this.#lowest();
    this.#prune(lowest);
    return { seq: Math.max(this.#base, lowest - 1), settledAbove: [...this.#settledAbove.values()].flat() };
  }

  /** Resolves true when nothing is in flight, false after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<boolean> {
    if (this.#inFlight.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<true>((resolve) => this.#idle.push(() => resolve(true))),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return done;
  }

  #prune(lowest: number): void {
    for (const s of this.#settledAbove.keys()) if (s < lowest) this.#settledAbove.delete(s);
  }

  #lowest(): number {
    let lowest = Number.POSITIVE_INFINITY;
    for (const s of this.#inFlight.values()) if (s < lowest) lowest = s;
    return lowest;
  }

  #wake(): void {
    const waiters = this.#idle;
    this.#idle = [];
    for (const wake of waiters) wake();
  }
}
