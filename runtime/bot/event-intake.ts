/**
 * What stands between a bot's transports and its dispatcher: the in-memory dedupe and, with Redis
 * sessions, the cross-process claim and a second lease check. Claims go out at once (pipelined) and their
 * answers are taken in arrival order, so events reach the dispatcher in the order they came; because a
 * claim is a round trip, the shard's lease is checked again just before an event is handed on.
 * Every event that is not handed on is settled here, so the shard's resume point moves past it.
 */
import type { EventDeduper } from '../gateway/dedupe.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { ClaimResult, RedisEventDedupe } from '../sessions/redis-dedupe.ts';

export interface EventIntakeOptions {
  local: EventDeduper;
  /** Redis sessions only */
  shared?: RedisEventDedupe;
  /** may this event still be dispatched here (SessionManager#admit) */
  admit: (dispatch: GatewayDispatch) => boolean | Promise<boolean>;
  /** the event goes no further (duplicate, or its shard moved away) */
  settle: (dispatch: GatewayDispatch) => void;
  deliver: (dispatch: GatewayDispatch) => void;
  onDuplicate: () => void;
  /** a claim taken over from a process that lost the shard before finishing the event */
  onRedelivered: (dispatch: GatewayDispatch) => void;
}

export class EventIntake {
  readonly #options: EventIntakeOptions;
  readonly #claims: Array<{ dispatch: GatewayDispatch; result: Promise<ClaimResult> }> = [];
  #taking: Promise<void> | undefined;

  constructor(options: EventIntakeOptions) {
    this.#options = options;
  }

  take(dispatch: GatewayDispatch): void {
    const { local, shared } = this.#options;
    if (local.seen(dispatch)) return this.#drop(dispatch);
    if (!shared) return this.#options.deliver(dispatch);
    this.#claims.push({ dispatch, result: shared.claim(dispatch) });
    this.#taking ??= this.#takeClaims().finally(() => {
      this.#taking = undefined;
    });
  }

  /** The event's handlers finished: no process takes it again. */
  done(dispatch: GatewayDispatch): void {
    void this.#options.shared?.done(dispatch);
  }

  /** Resolves when every event taken so far has been handed on or dropped. */
  async idle(): Promise<void> {
    await this.#taking;
  }

  async #takeClaims(): Promise<void> {
    while (this.#claims.length > 0) {
      const { dispatch, result } = this.#claims[0]!;
      const claim = await result;
      this.#claims.shift();
      if (claim === 'duplicate') {
        this.#drop(dispatch);
        continue;
      }
      const admitted = this.#options.admit(dispatch);
      if (!(admitted === true || (admitted !== false && (await admitted)))) {
        this.#options.settle(dispatch);
        continue;
      }
      if (claim === 'taken-over') this.#options.onRedelivered(dispatch);
      this.#options.deliver(dispatch);
    }
  }

  #drop(dispatch: GatewayDispatch): void {
    this.#options.onDuplicate();
    this.#options.settle(dispatch);
  }
}
