/**
 * One bot of bot.yaml: its OpenAPI client and token source, its event source (websocket shards or
 * webhook ingress), dedupe, and the dispatcher into its plugins. A bot that fails (bad
 * credentials, fatal close, no intents) is stopped and reported; other bots keep running.
 *
 * Its role splits that in two (see runtime/streams/): a `gateway` holds the event source and publishes
 * each event to the bot's Redis Stream instead of dispatching, running no plugin; a `worker` reads the
 * Stream and runs the plugins and the OpenAPI client, holding no shard. `all` is both in one process.
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
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
import { CapabilityError, type PluginCapabilities } from '../plugins/capabilities/index.ts';
import { isPlatformError, platformCodeOf } from '../plugins/capabilities/capability-error.ts';
import type { DiscoveredPlugin } from '../plugins/discovery.ts';
import type { GrantTable } from '../plugins/grants.ts';
import type { PluginSupervisor } from '../plugins/sandbox/supervisor.ts';
import type { KeyValueStore } from '../plugins/storage/key-value-store.ts';
import { LocalSessionManager } from '../sessions/local.ts';
import { RedisConnection } from '../sessions/redis-connection.ts';
import { RedisEventDedupe } from '../sessions/redis-dedupe.ts';
import { RedisReplyLedger } from '../sessions/redis-reply-ledger.ts';
import { RedisTokenShare } from '../sessions/redis-token-share.ts';
import { RedisSessionManager } from '../sessions/redis-session-manager.ts';
import { SessionFile } from '../sessions/session-file.ts';
import type { SessionManager } from '../sessions/session-manager.ts';
import type { EarlierDeliveries, HandleResult } from '../streams/event-stream-consumer.ts';
import type { StreamView } from '../streams/stream-stats.ts';
import type { DispatchOutcome } from '../plugins/instance.ts';
import { BotPlugins, type PluginFailure } from './bot-plugins.ts';
import { BotStream } from './bot-stream.ts';
import { DeclaredSubscriptions, type ManifestFailure } from './declared-subscriptions.ts';
import { Dispatcher, type DispatchCounts } from './dispatcher.ts';
import { EventIntake } from './event-intake.ts';
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
  /** tests shorten the platform's identify window against the simulator (bot.yaml's identifyWindowMs wins) */
  identifyWindowMs?: number;
  /** where a local-sessions bot keeps its resume points across restarts (`{dataDir}/sessions`) */
  dataDir?: string;
}

type Requester = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, options?: { body?: unknown; query?: Record<string, string | number | boolean> }) => Promise<unknown>;

export interface BotEvents {
  state: [state: BotState, error?: Error];
  dispatch: [dispatch: GatewayDispatch];
  handled: [dispatch: GatewayDispatch];
  /** Redis sessions: the shards this process holds changed */
  shards: [held: number[]];
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

/** the platform's "消息被去重" for a repeated (msg_id, msg_seq) in groups and C2C (docs/protocol.md#s17) */
const DUPLICATE_MSG_SEQ = 40054005;

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
  #intake: EventIntake | undefined;
  // Redis sessions: the coordination connection and the reply ledger
  #redis: RedisConnection | undefined;
  #replies: RedisReplyLedger | undefined;
  #sessionFile: SessionFile | undefined;
  #intents = 0;
  #accepting = false;
  #received = 0;
  /** gateway and worker roles: this process's end of the bot's Stream */
  #stream: BotStream | undefined;
  /** worker: events handed to the plugins, waiting for their handlers' outcome */
  readonly #handling = new Map<GatewayDispatch, (result: HandleResult) => void>();
  /** gateway: what the plugins' manifests subscribe to (it runs no plugin) */
  readonly #declared: DeclaredSubscriptions;

  constructor(options: BotOptions) {
    super();
    this.config = options.config;
    this.#options = options;
    this.#log = options.logger.child({ bot: options.config.name });
    this.plugins = new BotPlugins({ bot: options.config, supervisor: options.supervisor, capabilities: options.capabilities, displayRoot: options.displayRoot, logger: this.#log, ...(options.pluginGrants ? { grants: options.pluginGrants } : {}) });
    this.losses = new LossReporter({ logger: this.#log });
    this.#declared = new DeclaredSubscriptions({ displayRoot: options.displayRoot });
    this.#dispatcher = new Dispatcher({
      bot: options.config.name,
      plugins: this.plugins,
      supervisor: options.supervisor,
      capabilities: options.capabilities,
      losses: this.losses,
      ...(options.metrics ? { metrics: options.metrics } : {}),
      onHandled: (dispatch, outcomes, ref) => this.#settled(dispatch, outcomes, ref),
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

  /**
   * Unique events taken in and what became of them: `received = handled + dropped + inFlight`. For a
   * gateway, handled = published to the Stream, dropped = never published (counted by reason), inFlight =
   * buffered.
   */
  get counts(): { received: number } & DispatchCounts {
    const publisher = this.#stream?.published;
    if (publisher) return { received: this.#received, handled: publisher.published, dropped: publisher.dropped, inFlight: publisher.buffered, droppedDeliveries: {} };
    return { received: this.#received, ...this.#dispatcher.counts };
  }

  /** gateway and worker roles: the Stream as last read from Redis */
  get stream(): StreamView | undefined {
    return this.#stream?.view;
  }

  /**
   * Binds the bot's own listener (a webhook) without taking events yet: the runtime binds every
   * listener before any bot connects, so a port problem stops start-up whole.
   */
  async bind(): Promise<void> {
    const { config, metrics } = this.#options;
    const transport = config.transport;
    // a worker takes its events from the Stream: the gateway process listens
    if (transport.kind !== 'webhook' || this.#webhook || config.role === 'worker') return;
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
      const role = this.config.role;
      let failures: PluginFailure[];
      if (role === 'gateway') {
        // the workers run the plugins: their manifests say what to subscribe to
        const unread = await this.#declared.read(plugins);
        this.#manifestsNotRead(unread, 'plugin manifest not read');
        failures = unread;
        this.#intents = mergeIntents(this.#declared.subscriptions(), this.config.intents).intents;
      } else {
        failures = await this.plugins.loadAll(plugins);
        if (this.#state !== 'starting') return failures;
        for (const failure of failures) this.#log.error({ plugin: failure.plugin, err: failure.error.message }, 'plugin not loaded');
        this.#intents = this.#startIntents(failures);
      }
      this.#accepting = true;
      if (this.#stream && role !== 'all') {
        this.#stream.open();
        this.#replies = this.#stream.replies;
      }
      if (role === 'worker') this.#stream!.startReading();
      else await this.#startTransport();
      if (this.#state !== 'starting') return failures;
      this.#setState('running');
      this.#log.info({ role, intents: describeIntents(this.#intents), plugins: this.plugins.loaded.map((p) => p.name) }, 'bot running');
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
    await this.#changeIntents(mergeIntents(this.plugins.subscriptions(), this.config.intents).intents);
  }

  /**
   * Gateway: the plugins folder changed (`changed` was added, saved or removed). Re-reads the manifests
   * of `plugins`, the ones bot.yaml enables, and re-identifies if the intents they need changed; the
   * workers reload the code. A manifest that cannot be read keeps its plugin's last good events.
   */
  async followManifests(plugins: DiscoveredPlugin[], changed: string): Promise<void> {
    this.#manifestsNotRead(await this.#declared.read(plugins, changed), 'plugin manifest not read: the gateway keeps the events it last read from it');
    await this.#changeIntents(mergeIntents(this.#declared.subscriptions(), this.config.intents).intents);
  }

  #manifestsNotRead(failures: ManifestFailure[], message: string): void {
    for (const failure of failures) this.#log.error({ plugin: failure.plugin, file: failure.file, err: failure.error.message }, message);
  }

  async #changeIntents(next: number): Promise<void> {
    if (next === this.#intents) return;
    const before = describeIntents(this.#intents);
    this.#intents = next;
    this.#log.info({ from: before, to: describeIntents(next) }, 'plugin events changed the intents: re-identifying every shard');
    await this.#sessions?.setIntents(next);
  }

  /**
   * Stop taking events, close the shards (resumably), let the handlers of what was taken finish (bounded),
   * then save where each session can be resumed: in Redis for Redis sessions (another process may resume
   * at once), under dataDir for local ones (the next start resumes).
   */
  async stop(options: { drainMs?: number } = {}): Promise<{ unfinished: number }> {
    if (this.#state === 'stopped') {
      // bound but never started: start-up stopped before this bot's turn
      await this.#webhook?.stop();
      return { unfinished: 0 };
    }
    this.#setState('stopping');
    // a worker stops reading first: what it read is handled, what it did not stays for the others
    await this.#stream?.stopReading();
    this.#accepting = false;
    let unfinished: number | undefined;
    const drain = async (): Promise<void> => {
      unfinished ??= await this.#drain(options.drainMs ?? 10_000);
    };
    await this.#sessions?.stop({ resumable: true, settle: drain }).catch((error: Error) => this.#log.warn({ err: error.message }, 'closing shards'));
    await this.#webhook?.stop().catch(() => undefined);
    await drain();
    // acks of what finished; the rest stays pending in the Stream, for another worker to claim
    await this.#stream?.settled(2_000);
    if (unfinished! > 0) this.#log.warn({ unfinished }, 'stopped with handlers still running');
    if (this.#sessionFile && this.#sessions instanceof LocalSessionManager) {
      await this.#sessionFile.save(this.#sessions.sessions()).catch((error: Error) => this.#log.error({ err: error.message, file: this.#sessionFile?.path }, 'could not save the sessions for the next start'));
    }
    await this.#closeClient();
    this.losses.close();
    this.#setState('stopped');
    return { unfinished: unfinished! };
  }

  async #connectClient(): Promise<void> {
    const { config, metrics } = this.#options;
    const endpoints = this.#endpoints();
    // with a Redis, the bot's processes (gateway, workers, or several of role all) fetch tokens one at a time
    if (config.stream) {
      this.#stream = new BotStream({
        config: { ...config, stream: config.stream },
        logger: this.#log,
        losses: this.losses,
        ...(metrics ? { metrics } : {}),
        ...(this.#options.dataDir !== undefined ? { dataDir: this.#options.dataDir } : {}),
        settle: (dispatch) => this.#settled(dispatch, []),
        handle: (dispatch, earlier) => this.#handle(dispatch, earlier),
      });
    }
    const share = this.#stream ? new RedisTokenShare({ redis: this.#stream.redis, prefix: `qqbot:${config.appId}` }) : undefined;
    this.#tokenSource = config.secret
      ? new AccessTokenSource({ appId: config.appId, secret: config.secret, tokenEndpoint: config.tokenEndpoint ?? endpoints.tokenEndpoint, logger: this.#log, ...(share ? { share } : {}) })
      : new LegacyTokenSource(config.appId, config.token!);
    const client = new OpenAPIClient({ baseUrl: endpoints.apiBase, appId: config.appId, tokenSource: this.#tokenSource, timeoutMs: config.requestTimeoutMs, logger: this.#log });
    if (metrics) {
      client.on('response', (e) => metrics.apiCall(config.name, routeTemplate(e.route), e.status, e.durationMs / 1000));
      client.on('request-error', (e) => metrics.apiCall(config.name, routeTemplate(e.route), e.code, e.durationMs / 1000));
      client.on('rate-limited', (e) => metrics.rateLimitWait(config.name, routeTemplate(e.route), e.waitMs / 1000));
    }
    this.#client = client;
    this.#options.grant({
      request: (method, path, options) => this.#request(client, method, path, options),
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
    this.#intake = this.#newIntake();
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
    const client = this.#client!;
    const common = {
      gatewayInfo: () => client.gatewayBot(),
      tokenSource: this.#tokenSource!,
      intents: this.#intents,
      shards: config.shards,
      logger: this.#log,
      // the bot settles every event it takes (#settled), so resume points never skip one in a handler
      settleEvents: true,
      ...(config.identifyWindowMs ?? this.#options.identifyWindowMs ? { identifyWindowMs: config.identifyWindowMs ?? this.#options.identifyWindowMs } : {}),
    };
    let sessions: LocalSessionManager | RedisSessionManager;
    if (config.sessions.kind === 'redis') {
      const redis = new RedisConnection({ url: config.sessions.url, name: `sessions:${config.name}`, logger: this.#log });
      const prefix = `qqbot:${config.appId}`;
      this.#redis = redis;
      this.#intake = this.#newIntake(new RedisEventDedupe({ redis, prefix }));
      this.#replies = new RedisReplyLedger({ redis, prefix });
      redis.on('up', () => metrics?.redisState(config.name, true, false));
      redis.on('down', () => metrics?.redisState(config.name, false, redis.outages > 0));
      if (config.storage.kind === 'file') {
        this.#log.warn({ dataDir: this.#options.dataDir }, 'sessions are shared through redis but plugin storage is in local files: a shard that moves to another host finds other data there (use storage: { redis } or leave storage unset)');
      }
      sessions = new RedisSessionManager({ ...common, redis, appId: config.appId, leaseTtlMs: config.sessions.leaseTtlMs });
      sessions.on('lease', (change) => {
        metrics?.leaseChange(config.name, change.change, change.how, change.held.length);
        this.emit('shards', change.held);
      });
      sessions.on('fenced', () => metrics?.fencingRefusal(config.name));
    } else {
      const dataDir = this.#options.dataDir;
      const saved = [];
      if (dataDir !== undefined) {
        this.#sessionFile = new SessionFile({ dir: join(dataDir, 'sessions'), bot: config.name, appId: config.appId, logger: this.#log });
        saved.push(...await this.#sessionFile.take().catch((error: Error) => {
          this.#log.warn({ err: error.message }, 'could not read the saved sessions: identifying');
          return [];
        }));
        // events a predecessor finished above its resume point come again in the replay: drop them
        for (const session of saved) this.#dedupe.remember(session.settledAbove ?? []);
      }
      sessions = new LocalSessionManager({ ...common, resumeFrom: saved });
    }
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

  /**
   * The bot's OpenAPI requests from plugins. With Redis sessions, a passive reply is claimed in the bot's
   * reply ledger right before it leaves, so an event handled again after its shard moved is not answered
   * twice, and a reply whose sender died mid-request is reported, not silently lost or doubled.
   */
  async #request(client: OpenAPIClient, ...[method, path, options]: Parameters<Requester>): Promise<unknown> {
    const claim = method === 'POST' ? this.#replies?.claimFor(path, options?.body) : undefined;
    if (!claim) return client.request(method, path, options);
    const beforeSend = async (): Promise<void> => {
      const outcome = await claim.take();
      if (outcome === 'duplicate') {
        this.#options.metrics?.replyDeduplicated(this.config.name);
        throw new CapabilityError('E_DUPLICATE_REPLY', 'this reply was already sent by another process of the bot (the event was handled again after its shard moved)');
      }
      if (outcome === 'unknown') {
        throw new CapabilityError('E_REPLY_OUTCOME_UNKNOWN', 'another process of the bot died while sending this reply; whether the platform took it cannot be known, and a guild channel would show it twice, so it is not sent again');
      }
    };
    try {
      const result = await client.request(method, path, { ...options, beforeSend });
      await claim.sent();
      return result;
    } catch (error) {
      // groups and C2C refuse a repeated (id, msg_seq): a process that died after sending it did send it
      if (isPlatformError(error) && platformCodeOf(error) === DUPLICATE_MSG_SEQ) {
        await claim.sent();
        this.#options.metrics?.replyDeduplicated(this.config.name);
        throw new CapabilityError('E_DUPLICATE_REPLY', 'this reply was already sent by another process of the bot (the platform refused the repeated msg_seq)');
      }
      // refused by the platform: nothing was sent, a retry may claim the reply again
      if (isPlatformError(error)) await claim.released();
      throw error;
    }
  }

  #newIntake(shared?: RedisEventDedupe): EventIntake {
    const metrics = this.#options.metrics;
    return new EventIntake({
      local: this.#dedupe,
      ...(shared ? { shared } : {}),
      admit: (dispatch) => this.#sessions?.admit?.(dispatch) ?? true,
      settle: (dispatch) => this.#sessions?.settle(dispatch),
      deliver: (dispatch) => this.#deliver(dispatch),
      onDuplicate: () => metrics?.eventDeduplicated(this.config.name),
      onRedelivered: (dispatch) => {
        metrics?.eventRedelivered(this.config.name);
        this.#log.debug({ id: dispatch.id, shard: dispatch.shard }, 'handling again an event its previous shard owner did not finish');
      },
    });
  }

  #ingest(dispatch: GatewayDispatch): void {
    if (!this.#accepting) {
      this.#sessions?.settle(dispatch);
      return;
    }
    this.#options.metrics?.eventReceived(this.config.name, dispatch.t, dispatch.transport);
    this.#intake!.take(dispatch);
  }

  /** `earlier`: what earlier deliveries of this Stream entry did (worker) */
  #deliver(dispatch: GatewayDispatch, earlier?: EarlierDeliveries): void {
    this.#received += 1;
    this.emit('dispatch', dispatch);
    if (!this.#stream?.publish(dispatch)) this.#dispatcher.dispatch(dispatch, earlier);
  }

  #settled(dispatch: GatewayDispatch, outcomes: DispatchOutcome[], ref?: string): void {
    const waiting = this.#handling.get(dispatch);
    if (waiting) {
      this.#handling.delete(dispatch);
      // how far the event's replies got, for a redelivery elsewhere to go on from (workers only: not on the hot path)
      const thread = ref === undefined ? undefined : this.#options.capabilities.events.get(ref)?.thread;
      const result: HandleResult = { completed: [], failures: [], ...(thread ? { replied: { seq: thread.seq, replies: thread.replies, acked: thread.acked } } : {}) };
      for (const outcome of outcomes) {
        const plugin = this.plugins.nameOf(outcome.instanceId);
        // a handler that threw because another delivery already answered for it (see #request) is done
        if (outcome.status === 'error' && !thread?.settledElsewhere?.has(outcome.instanceId)) result.failures.push({ plugin, error: outcome.error ?? 'handler failed' });
        // a delivery that never entered the plugin (it was stopping) is not recorded as done: a redelivery gives it the event
        else if (plugin !== undefined && !outcome.requeue) result.completed.push(plugin);
      }
      waiting(result);
    }
    this.#intake?.done(dispatch);
    this.#sessions?.settle(dispatch);
    this.emit('handled', dispatch);
  }

  /** Waits for the events taken in so far: their dedupe claims, then their handlers. Returns how many are unfinished. */
  async #drain(timeoutMs: number): Promise<number> {
    await this.#intake?.idle();
    // a gateway hands what it buffered to Redis (bounded); what Redis never took is dropped, counted
    await this.#stream?.closePublisher(Math.min(timeoutMs, 5_000));
    return this.#dispatcher.drain(timeoutMs);
  }

  async #fail(error: Error): Promise<void> {
    if (this.#state === 'failed') return;
    this.#error = error;
    this.#accepting = false;
    this.#log.error({ code: (error as QQBotError).code, err: error.message }, 'bot stopped');
    await this.#stream?.stopReading();
    await this.#sessions?.stop({ resumable: false }).catch(() => undefined);
    await this.#webhook?.stop().catch(() => undefined);
    await this.#drain(5000);
    await this.plugins.unloadAll().catch((e: Error) => this.#log.warn({ err: e.message }, 'unloading plugins of a failed bot'));
    await this.#closeClient();
    this.#setState('failed', error);
  }

  async #closeClient(): Promise<void> {
    this.#tokenSource?.close();
    await this.#client?.close().catch(() => undefined);
    await this.#stream?.close();
    await this.#redis?.close();
  }

  /**
   * Worker: one Stream entry through the plugins not done with it on `earlier` deliveries. Resolves with
   * the plugins done with it and the handlers that threw, which leave the entry to be delivered again to
   * the plugins not done; a reply refused because another delivery of this event already sent it (or died
   * sending it) is that plugin done, not a failure to retry. A plugin dropped (its backlog full, its
   * isolate gone) is done too: the loss is reported, as it is when no handler failed.
   */
  #handle(dispatch: GatewayDispatch, earlier: EarlierDeliveries): Promise<HandleResult> {
    if (!this.#accepting) return Promise.resolve({ completed: [], failures: [{ plugin: undefined, error: 'the worker is stopping' }] });
    this.#options.metrics?.eventReceived(this.config.name, dispatch.t, dispatch.transport);
    return new Promise((resolve) => {
      this.#handling.set(dispatch, resolve);
      this.#deliver(dispatch, earlier);
    });
  }

  #setState(state: BotState, error?: Error): void {
    this.#state = state;
    this.emit('state', state, error);
  }
}
