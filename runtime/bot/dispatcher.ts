/**
 * Fans one deduplicated platform event out to the sandboxes of the plugins that subscribe to it.
 * Events are handed to the supervisor synchronously, in arrival order, so each plugin's serial
 * queue sees them in the order the transport delivered them.
 */
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import type { RuntimeMetrics } from '../metrics/metrics.ts';
import type { PluginCapabilities } from '../plugins/capabilities/index.ts';
import type { DispatchOutcome, SandboxEvent } from '../plugins/instance.ts';
import type { PluginSupervisor } from '../plugins/sandbox/supervisor.ts';
import type { BotPlugins } from './bot-plugins.ts';

export interface DispatcherOptions {
  bot: string;
  plugins: BotPlugins;
  supervisor: PluginSupervisor;
  capabilities: PluginCapabilities;
  metrics?: RuntimeMetrics;
  onHandled?: (dispatch: GatewayDispatch, outcomes: DispatchOutcome[]) => void;
}

export class Dispatcher {
  readonly #options: DispatcherOptions;
  readonly #inFlight = new Set<Promise<void>>();
  #handled = 0;

  constructor(options: DispatcherOptions) {
    this.#options = options;
  }

  /** events whose handlers have all finished */
  get handled(): number {
    return this.#handled;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  dispatch(dispatch: GatewayDispatch): void {
    const { bot, plugins, supervisor, capabilities } = this.#options;
    const targets = plugins.subscribers(dispatch.t);
    if (targets.length === 0) {
      this.#handled += 1;
      this.#options.onHandled?.(dispatch, []);
      return;
    }
    const id = dispatch.id ?? '';
    const ref = capabilities.events.register({ bot, type: dispatch.t, id, data: dispatch.d, receivedAt: dispatch.receivedAt });
    const event: SandboxEvent = { ref, type: dispatch.t, id, data: dispatch.d, transport: dispatch.transport, ...(dispatch.shard !== undefined ? { shard: dispatch.shard } : {}) };
    const outcomes = targets.map((instanceId) => supervisor.dispatch(instanceId, event));
    const done = Promise.all(outcomes).then(async (results) => {
      this.#record(results);
      await capabilities.finishEvent(ref);
      this.#handled += 1;
      this.#options.onHandled?.(dispatch, results);
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

  #record(results: DispatchOutcome[]): void {
    const metrics = this.#options.metrics;
    if (!metrics) return;
    for (const outcome of results) {
      const plugin = outcome.instanceId.slice(this.#options.bot.length + 1);
      metrics.handlerFinished(this.#options.bot, plugin, outcome.status, (outcome.wallMs ?? 0) / 1000);
    }
  }
}
