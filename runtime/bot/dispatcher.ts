/**
 * Fans one deduplicated platform event out to the sandboxes of the plugins that subscribe to it.
 * Events are handed to the supervisor synchronously, in arrival order, so each plugin's backlog
 * sees them in the order the transport delivered them. Every delivery ends handled (the handler
 * ran, even if it threw) or dropped with a reason, and every drop is counted and reported.
 */
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { RuntimeMetrics } from '../metrics/metrics.ts';
import type { PluginCapabilities } from '../plugins/capabilities/index.ts';
import type { DispatchOutcome, DropReason } from '../plugins/instance.ts';
import type { PluginSupervisor } from '../plugins/sandbox/supervisor.ts';
import type { EarlierDeliveries } from '../streams/event-stream-consumer.ts';
import type { BotPlugins } from './bot-plugins.ts';
import type { LossReporter } from './loss-reporter.ts';

export interface DispatcherOptions {
  bot: string;
  plugins: BotPlugins;
  supervisor: PluginSupervisor;
  capabilities: PluginCapabilities;
  losses: LossReporter;
  metrics?: RuntimeMetrics;
  /** `ref`: the event's record in the capability registry (its reply thread), when a plugin had it */
  onHandled?: (dispatch: GatewayDispatch, outcomes: DispatchOutcome[], ref?: string) => void;
}

/** What happened to the events a bot took in. `received = handled + dropped + inFlight`. */
export interface DispatchCounts {
  /** every subscribed plugin handled it (or none subscribes) */
  handled: number;
  /** at least one subscribed plugin did not handle it */
  dropped: number;
  inFlight: number;
  /** plugin deliveries that were dropped, by reason */
  droppedDeliveries: Partial<Record<DropReason, number>>;
}

export class Dispatcher {
  readonly #options: DispatcherOptions;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #prefix: number;
  #handled = 0;
  #dropped = 0;
  readonly #droppedDeliveries: Partial<Record<DropReason, number>> = {};

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.#prefix = options.bot.length + 1;
  }

  get counts(): DispatchCounts {
    return { handled: this.#handled, dropped: this.#dropped, inFlight: this.#inFlight.size, droppedDeliveries: { ...this.#droppedDeliveries } };
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Hands an event to its subscribers, but those done with it on `earlier` deliveries. With none left it
   * counts as handled, as an event nobody subscribes to.
   */
  dispatch(dispatch: GatewayDispatch, earlier?: EarlierDeliveries): void {
    const { bot, plugins, supervisor, capabilities } = this.#options;
    const targets = plugins.subscribers(dispatch.t, earlier?.completed);
    if (targets.length === 0) {
      this.#handled += 1;
      this.#options.onHandled?.(dispatch, []);
      return;
    }
    const id = dispatch.id ?? '';
    const ref = capabilities.events.register({ bot, type: dispatch.t, id, data: dispatch.d, receivedAt: dispatch.receivedAt, ...(earlier?.replied ? { replied: earlier.replied } : {}) });
    const event = supervisor.share({ ref, type: dispatch.t, id, data: dispatch.d, transport: dispatch.transport, ...(dispatch.shard !== undefined ? { shard: dispatch.shard } : {}) });
    const done = Promise.all(supervisor.deliver(event, targets)).then(async (results) => {
      let dropped = false;
      for (const outcome of results) if (this.#record(outcome, ref)) dropped = true;
      await capabilities.finishEvent(ref);
      if (dropped) this.#dropped += 1;
      else this.#handled += 1;
      this.#options.onHandled?.(dispatch, results, ref);
    });
    this.#inFlight.add(done);
    void done.finally(() => this.#inFlight.delete(done));
  }

  /** Waits for every event handed out so far (bounded by `timeoutMs`); returns how many were still open. */
  async drain(timeoutMs: number): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    while (this.#inFlight.size > 0) {
      if ((await Promise.race([Promise.allSettled([...this.#inFlight]), timeout])) === 'timeout') break;
    }
    clearTimeout(timer);
    return this.#inFlight.size;
  }

  /** true when the plugin did not handle the event */
  #record(outcome: DispatchOutcome, ref: string): boolean {
    const { bot, metrics, losses, capabilities } = this.#options;
    const plugin = outcome.instanceId.slice(this.#prefix);
    if (outcome.wallMs !== undefined) metrics?.handlerFinished(bot, plugin, outcome.status, outcome.wallMs / 1000);
    if (outcome.status === 'ok' || outcome.status === 'error') return false;
    const reason: DropReason = outcome.reason ?? 'disposed';
    if (capabilities.events.get(ref)?.repliedBy?.has(outcome.instanceId)) {
      // the handler answered before it was cut off: the event was not lost, what followed the reply was
      losses.lost('cut-off', plugin, reason, outcome.error?.split('\n')[0]);
      return false;
    }
    this.#droppedDeliveries[reason] = (this.#droppedDeliveries[reason] ?? 0) + 1;
    metrics?.eventDropped(bot, plugin, reason);
    losses.lost('event', plugin, reason, outcome.error?.split('\n')[0]);
    return true;
  }
}
