/**
 * One bot of bot.yaml: its OpenAPI client and token source, its event source (websocket shards or
 * webhook ingress), dedupe, and the dispatcher into its plugins. A bot that fails (bad
 * credentials, fatal close, no intents) is stopped and reported; other bots keep running.
 */
import { EventEmitter } from 'node:events';
import type { BotConfig, StorageConfig } from '../config/types.ts';
import { QQBotError } from '../errors.ts';
import { EventDeduper } from '../gateway/dedupe.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';
import { describeIntents, mergeIntents } from '../gateway/intents.ts';
import { WebhookTransport } from '../gateway/webhook.ts';
import type { ShardState } from '../gateway/shard.ts';
import type { Logger } from '../logging/logger.ts';
import type { RuntimeMetrics, ShardState as MetricShardState } from '../metrics/metrics.ts';
import { AccessTokenSource, LegacyTokenSource, OpenAPIClient, resolveEndpoints, routeTemplate, type TokenSource } from '../openapi/index.ts';
import type { PluginCapabilities } from '../plugins/capabilities/index.ts';
import type { DiscoveredPlugin } from '../plugins/discovery.ts';
import type { GrantTable } from '../plugins/grants.ts';
import type { PluginSupervisor } from '../plugins/sandbox/supervisor.ts';
import type { KeyValueStore } from '../plugins/storage/key-value-store.ts';
import { LocalSessionManager } from '../sessions/local.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import { BotPlugins, type PluginFailure } from './bot-plugins.ts';
import { Dispatcher, type DispatchCounts } from './dispatcher.ts';
import { LossReporter } from './loss-reporter.ts';

export type BotState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export class BotStartError extends QQBotError {}

export interface BotOptions {
  config: BotConfig;
  supervisor: PluginSupervisor;
  capabilities: PluginCapabilities;
  /** the bot's entry in the capability table (filled in here when the client exists) */
  grant: (request: { request: (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, options?: { body?: unknown; query?: Record<string, string | number | boolean> }) => Promise<unknown>; storage: KeyValueStore; fetchHosts?: readonly string[] }) => void;
  /** opens the store behind ctx.storage for this bot's `storage` setting */
  storage: (config: StorageConfig) => Promise<KeyValueStore>;
  displayRoot: string;
  logger: Logger;
  /** the operator's grants to npm plugins, read at each plugin load */
  pluginGrants?: () => GrantTable;
  metrics?: RuntimeMetrics;
  /** base URL of the embedded simulator, for `endpoint: simulator` */
  simulatorUrl?: string;
  /** with `endpoint: simulator` and webhook transport: tell the simulator where to deliver */
  registerSimulatorWebhook?: (appId: string, url: string) => Promise<unknown>;
  /** tests shorten the platform's identify window against the simulator */
  identifyWindowMs?: number;
}

export interface BotEvents {
  state: [state: BotState, error?: Error];
  dispatch: [dispatch: GatewayDispatch];
  handled: [dispatch: GatewayDispatch];
}

const METRIC_STATE: Record<ShardState, MetricShardState> = {
  idle: 'stopped',
  connecting: 'connecting',
  hello: 'connecting',
  identifying: 'identifying',
  resuming: 'resuming',
  ready: 'ready',
  reconnecting: 'reconnecting',
  stopped: 'stopped',
  fatal: 'failed',
};

export class Bot extends EventEmitter<BotEvents> {
  readonly config: BotConfig;
  readonly plugins: BotPlugins;
  /** events and replies this bot's plugins lost, said out loud (aggregated) */
  readonly losses: LossReporter;
  readonly #options: BotOptions;
  readonly #log: Logger;
  readonly #dedupe = new EventDeduper();
  readonly #dispatcher: Dispatcher;
  #state: BotState = 'stopped';
  #error: Error | undefined;
  #tokenSource: TokenSource | undefined;
  #client: OpenAPIClient | undefined;
  #sessions: SessionManager | undefined;
  #webhook: WebhookTransport | undefined;
  #webhookPort = 0;
  #intents = 0;
  #accepting = false;
  #received = 0;

  constructor(options: BotOptions) {
    super();
    this.config = options.config;
    this.#options = options;
    this.#log = options.logger.child({ bot: options.config.name });
    this.plugins = new BotPlugins({ bot: options.config, supervisor: options.supervisor, capabilities: options.capabilities, displayRoot: options.displayRoot, logger: this.#log, ...(options.pluginGrants ? { grants: options.pluginGrants } : {}) });
    this.losses = new LossReporter({ logger: this.#log });
    this.#dispatcher = new Dispatcher({
      bot: options.config.name,
      plugins: this.plugins,
      supervisor: options.supervisor,
      capabilities: options.capabilities,
      losses: this.losses,
      ...(options.metrics ? { metrics: options.metrics } : {}),
      onHandled: (dispatch) => this.emit('handled', dispatch),
    });
  }

  get state(): BotState {
    return this.#state;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  get intents(): number {
    return this.#intents;
  }

  get sessions(): SessionManager | undefined {
    return this.#sessions;
  }

  /** Unique events taken in and what became of them: `received = handled + dropped + inFlight`. */
  get counts(): { received: number } & DispatchCounts {
    return { received: this.#received, ...this.#dispatcher.counts };
  }

  /**
   * Binds the bot's own listener (a webhook) without taking events yet: the runtime binds every
   * listener before any bot connects, so a port problem stops start-up whole.
   */
  async bind(): Promise<void> {
    const { config, metrics } = this.#options;
    const transport = config.transport;
    if (transport.kind !== 'webhook' || this.#webhook) return;
    const webhook = new WebhookTransport({ port: transport.port, host: transport.host, path: transport.path, appId: config.appId, secret: config.secret!, maxSkewSec: transport.maxSkewSec, logger: this.#log });
    webhook.on('dispatch', (dispatch) => this.#ingest(dispatch));
    webhook.on('error', (error) => this.#log.warn({ err: error.message }, 'webhook'));
    if (metrics) webhook.on('rejected', ({ kind }) => metrics.webhookRejected(config.name, kind));
    this.#webhookPort = (await webhook.listen()).port;
    this.#webhook = webhook;
  }

  /** Loads the plugins, then connects. Rejects (and the bot is `failed`) when the bot cannot run. */
  async start(plugins: DiscoveredPlugin[]): Promise<PluginFailure[]> {
    this.#setState('starting');
    try {
      await this.#connectClient();
      const failures = await this.plugins.loadAll(plugins);
      if (this.#state !== 'starting') return failures;
      for (const failure of failures) this.#log.error({ plugin: failure.plugin, err: failure.error.message }, 'plugin not loaded');
      this.#intents = this.#startIntents(failures);
      this.#accepting = true;
      await this.#startTransport();
      if (this.#state !== 'starting') return failures;
      this.#setState('running');
      this.#log.info({ intents: describeIntents(this.#intents), plugins: this.plugins.loaded.map((p) => p.name) }, 'bot running');
      return failures;
    } catch (error) {
      // a shutdown that lands mid-start is a stop, not a failure
      if (this.#state === 'stopping' || this.#state === 'stopped') return [];
      await this.#fail(error as Error);
      throw error;
    }
  }

  /** The intents to identify with; with nothing to receive because plugins failed, those failures are the error. */
  #startIntents(failures: PluginFailure[]): number {
    try {
      return mergeIntents(this.plugins.subscriptions(), this.config.intents).intents;
    } catch (error) {
      if (failures.length === 0 || (error as QQBotError).code !== 'E_EMPTY_INTENTS') throw error;
      const lines = failures.map((f) => `  plugin ${f.plugin}: ${f.error.message.split('\n').join('\n    ')}`);
      throw new BotStartError('E_PLUGINS_FAILED', `no enabled plugin could be loaded, so the bot would receive nothing:\n${lines.join('\n')}`, { plugins: failures.map((f) => f.plugin) });
    }
  }

  /**
   * Re-derives the intents from the loaded plugins (after a hot reload changed a manifest). A new
   * set needs a fresh identify on every shard: the platform cannot resume across an intent change.
   */
  async refreshIntents(): Promise<void> {
    const next = mergeIntents(this.plugins.subscriptions(), this.config.intents).intents;
    if (next === this.#intents) return;
    const before = describeIntents(this.#intents);
    this.#intents = next;
    this.#log.info({ from: before, to: describeIntents(next) }, 'plugin events changed the intents: re-identifying every shard');
    await this.#sessions?.setIntents(next);
  }

  /** Stop taking events, let handlers finish (bounded), close shards so they can be resumed. */
  async stop(options: { drainMs?: number } = {}): Promise<{ unfinished: number }> {
    if (this.#state === 'stopped') {
      // bound but never started: start-up stopped before this bot's turn
      await this.#webhook?.stop();
      return { unfinished: 0 };
    }
    this.#setState('stopping');
    this.#accepting = false;
    await this.#sessions?.stop({ resumable: true }).catch((error: Error) => this.#log.warn({ err: error.message }, 'closing shards'));
    await this.#webhook?.stop().catch(() => undefined);
    const unfinished = await this.#dispatcher.drain(options.drainMs ?? 10_000);
    if (unfinished > 0) this.#log.warn({ unfinished }, 'stopped with handlers still running');
    await this.#closeClient();
    this.losses.close();
    this.#setState('stopped');
    return { unfinished };
  }

  async #connectClient(): Promise<void> {
    const { config, metrics } = this.#options;
    const endpoints = this.#endpoints();
    this.#tokenSource = config.secret
      ? new AccessTokenSource({ appId: config.appId, secret: config.secret, tokenEndpoint: config.tokenEndpoint ?? endpoints.tokenEndpoint, logger: this.#log })
      : new LegacyTokenSource(config.appId, config.token!);
    const client = new OpenAPIClient({ baseUrl: endpoints.apiBase, appId: config.appId, tokenSource: this.#tokenSource, timeoutMs: config.requestTimeoutMs, logger: this.#log });
    if (metrics) {
      client.on('response', (e) => metrics.apiCall(config.name, routeTemplate(e.route), e.status, e.durationMs / 1000));
      client.on('requestError', (e) => metrics.apiCall(config.name, routeTemplate(e.route), e.code, e.durationMs / 1000));
      client.on('rateLimited', (e) => metrics.rateLimitWait(config.name, routeTemplate(e.route), e.waitMs / 1000));
    }
    this.#client = client;
    this.#options.grant({
      request: (method, path, options) => client.request(method, path, options),
      storage: await this.#options.storage(config.storage),
      ...(config.fetchHosts ? { fetchHosts: config.fetchHosts } : {}),
    });
  }

  #endpoints(): { apiBase: string; tokenEndpoint: string } {
    const endpoint = this.config.endpoint;
    if (endpoint.kind === 'simulator') {
      const url = this.#options.simulatorUrl;
      if (!url) throw new BotStartError('E_BOT_SIMULATOR', `bot "${this.config.name}" uses endpoint: simulator but no simulator is running`);
      return { apiBase: url, tokenEndpoint: `${url}/app/getAppAccessToken` };
    }
    return resolveEndpoints(endpoint.kind === 'url' ? endpoint.url : endpoint.kind);
  }

  async #startTransport(): Promise<void> {
    const { config, metrics } = this.#options;
    const transport = config.transport;
    if (transport.kind === 'webhook') {
      await this.bind();
      this.#webhook!.open();
      const port = this.#webhookPort;
      this.#log.info({ port, path: transport.path }, 'webhook taking events');
      if (config.endpoint.kind === 'simulator') {
        const host = transport.host === '0.0.0.0' || transport.host === '::' ? '127.0.0.1' : transport.host;
        await this.#options.registerSimulatorWebhook?.(config.appId, `http://${host}:${port}${transport.path}`);
      }
      return;
    }
    if (config.sessions.kind === 'redis') {
      throw new BotStartError('E_BOT_SESSIONS', `bot "${config.name}": sessions: { redis } is not available in this version; use sessions: local`);
    }
    const client = this.#client!;
    const sessions = new LocalSessionManager({
      gatewayInfo: () => client.gatewayBot(),
      tokenSource: this.#tokenSource!,
      intents: this.#intents,
      shards: config.shards,
      logger: this.#log,
      ...(this.#options.identifyWindowMs !== undefined ? { identifyWindowMs: this.#options.identifyWindowMs } : {}),
    });
    sessions.on('dispatch', (dispatch) => this.#ingest(dispatch));
    sessions.on('error', (error) => this.#log.warn({ err: error.message }, 'gateway'));
    sessions.on('fatal', (error) => void this.#fail(error));
    sessions.on('state', ({ shard, from, to }) => {
      metrics?.shardState(config.name, shard, METRIC_STATE[to]);
      if (to === 'reconnecting') metrics?.reconnect(config.name, shard, from);
    });
    this.#sessions = sessions;
    await sessions.start();
  }

  #ingest(dispatch: GatewayDispatch): void {
    if (!this.#accepting) return;
    const metrics = this.#options.metrics;
    metrics?.eventReceived(this.config.name, dispatch.t, dispatch.transport);
    if (this.#dedupe.seen(dispatch)) {
      metrics?.eventDeduplicated(this.config.name);
      return;
    }
    this.#received += 1;
    this.emit('dispatch', dispatch);
    this.#dispatcher.dispatch(dispatch);
  }

  async #fail(error: Error): Promise<void> {
    if (this.#state === 'failed') return;
    this.#error = error;
    this.#accepting = false;
    this.#log.error({ code: (error as QQBotError).code, err: error.message }, 'bot stopped');
    await this.#sessions?.stop({ resumable: false }).catch(() => undefined);
    await this.#webhook?.stop().catch(() => undefined);
    await this.#dispatcher.drain(5000);
    await this.plugins.unloadAll().catch((e: Error) => this.#log.warn({ err: e.message }, 'unloading plugins of a failed bot'));
    await this.#closeClient();
    this.#setState('failed', error);
  }

  async #closeClient(): Promise<void> {
    this.#tokenSource?.close();
    await this.#client?.close().catch(() => undefined);
  }

  #setState(state: BotState, error?: Error): void {
    this.#state = state;
    this.emit('state', state, error);
  }
}
