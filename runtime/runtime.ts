/**
 * The process that owns credentials and connections: the embedded simulator (when a bot uses it),
 * the plugin-host supervisor, the capability layer, every bot of bot.yaml, the console and the
 * metrics endpoint. The console reads it through RuntimeViewModel.
 */
import type { RuntimeConfig } from './config/types.ts';
import type { ChatInput } from './console/runtime-view.ts';
import { startConsole } from './console/server.ts';
import type { Logger } from './logging/logger.ts';
import { ListenError } from './net/listen-error.ts';
import { RuntimeMetrics } from './metrics/metrics.ts';
import { startMetricsServer } from './metrics/metrics-server.ts';
import { createCapabilityHandler, type BotCapabilities, type PluginCapabilities } from './plugins/capabilities/index.ts';
import { discoverPlugins, findPlugin, type DiscoveredPlugin } from './plugins/discovery.ts';
import { PluginSupervisor, type SupervisorOptions } from './plugins/sandbox/supervisor.ts';
import { startSimulator, type Simulator, type SimulatorOptions } from './simulator/index.ts';
import { Bot } from './bot/bot.ts';
import { enabledPluginNames, isEnabled } from './bot/bot-plugins.ts';
import { StorageBackends } from './bot/storage-backends.ts';
import { grantsFile, readGrants, type GrantTable } from './plugins/grants.ts';
import { ReloadCoordinator } from './bot/reload-coordinator.ts';
import { RuntimeViewModel } from './runtime-view-model.ts';

export interface RuntimeOptions {
  config: RuntimeConfig;
  logger: Logger;
  /** false: do not serve the console even when bot.yaml configures it (tests) */
  console?: boolean;
  /** false: do not serve /metrics even when bot.yaml configures it */
  metricsServer?: boolean;
  /** overrides for the embedded simulator (tests shorten heartbeats, pick ports) */
  simulator?: Partial<SimulatorOptions>;
  supervisor?: Partial<Omit<SupervisorOptions, 'onCall' | 'logger'>>;
  identifyWindowMs?: number;
  /** false: no hot reload (the plugins folder is not watched). Default true */
  watch?: boolean;
  /** per-plugin quiet time before a burst of file changes is reloaded (default 100 ms) */
  watchDebounceMs?: number;
}

export class Runtime {
  readonly config: RuntimeConfig;
  readonly metrics = new RuntimeMetrics();
  readonly bots = new Map<string, Bot>();
  readonly startedAt = Date.now();
  readonly #options: RuntimeOptions;
  readonly #log: Logger;
  readonly #grants: Record<string, BotCapabilities> = {};
  #simulator: Simulator | undefined;
  #supervisor: PluginSupervisor | undefined;
  #capabilities: PluginCapabilities | undefined;
  #storage: StorageBackends | undefined;
  #discovered: DiscoveredPlugin[] = [];
  /** plugin-grants.yaml as last read: what the operator granted each npm plugin */
  #pluginGrants: GrantTable = {};
  #closers: Array<() => Promise<void>> = [];
  #reloader: ReloadCoordinator | undefined;
  #starting: Promise<void> | undefined;
  #stopRequested = false;
  consoleUrl: string | undefined;
  metricsPort: number | undefined;
  /** what the console shows */
  readonly view: RuntimeViewModel = new RuntimeViewModel({
    bots: () => this.bots.values(),
    pluginStats: () => this.#supervisor?.stats() ?? [],
    startedAt: this.startedAt,
  });

  constructor(options: RuntimeOptions) {
    this.config = options.config;
    this.#options = options;
    this.#log = options.logger;
  }

  get simulator(): Simulator | undefined {
    return this.#simulator;
  }

  get supervisor(): PluginSupervisor {
    if (!this.#supervisor) throw new Error('runtime not started');
    return this.#supervisor;
  }

  get discovered(): readonly DiscoveredPlugin[] {
    return this.#discovered;
  }

  /**
   * Starts everything. Every listener (console, metrics, webhooks) is bound before any bot connects,
   * and one that cannot be bound rejects with a ListenError (the caller stops what started). A bot
   * that cannot start is reported and the others run.
   */
  async start(): Promise<void> {
    this.#starting = this.#start();
    await this.#starting;
  }

  // Every step checks #stopRequested: a SIGTERM during start-up must not be followed by more start-up.
  async #start(): Promise<void> {
    const { config } = this;
    await this.#startSimulator();
    if (this.#stopRequested) return;
    await this.#startServers();
    if (this.#stopRequested) return;

    this.#storage = new StorageBackends({ dataDir: config.dataDir, logger: this.#log.child({ part: 'storage' }) });
    this.#capabilities = createCapabilityHandler({
      bots: this.#grants,
      fetch: config.fetch,
      logger: this.#log.child({ part: 'capabilities' }),
      onSendFailed: ({ bot, plugin, code, message }) => {
        this.metrics.replyFailed(bot, plugin, code);
        this.view.sendFailed(bot, plugin, code);
        this.bots.get(bot)?.losses.lost('reply', plugin, code, message);
      },
    });
    const supervisor = new PluginSupervisor({ ...this.#options.supervisor, onCall: this.#capabilities.handle, logger: this.#log.child({ part: 'plugin-host' }) });
    this.#supervisor = supervisor;
    this.metrics.watchBacklogs(() => supervisor.stats().map((s) => {
      const slash = s.id.indexOf('/');
      return { bot: s.id.slice(0, slash), plugin: s.id.slice(slash + 1), events: s.queued, bytes: s.queuedBytes };
    }));
    this.#watchSupervisor(this.#supervisor);
    await this.#supervisor.start();

    const discovery = await discoverPlugins({ pluginsDir: config.pluginsDir, projectDir: config.dir });
    for (const problem of discovery.problems) {
      this.#log.error({ plugin: problem.plugin, code: problem.code }, problem.message);
      this.view.live({ kind: 'error', text: problem.message });
    }
    for (const warning of discovery.warnings) {
      this.#log.warn({ plugin: warning.plugin, code: warning.code }, warning.message);
      this.view.live({ kind: 'error', text: warning.message });
    }
    this.#discovered = discovery.plugins;
    this.#readPluginGrants();
    if (this.#stopRequested) return;

    for (const botConfig of config.bots) {
      const bot = new Bot({
        config: botConfig,
        supervisor: this.#supervisor,
        capabilities: this.#capabilities,
        grant: (grant) => {
          this.#grants[botConfig.name] = grant;
        },
        storage: (storageConfig) => this.#storage!.open(storageConfig, botConfig.name),
        displayRoot: config.dir,
        dataDir: config.dataDir,
        logger: this.#log,
        pluginGrants: () => this.#pluginGrants,
        metrics: this.metrics,
        ...(this.#simulator ? { simulatorUrl: this.#simulator.url, registerSimulatorWebhook: (appId: string, url: string) => this.#simulator!.registerWebhook(appId, url) } : {}),
        ...(this.#options.identifyWindowMs !== undefined ? { identifyWindowMs: this.#options.identifyWindowMs } : {}),
      });
      this.#watchBot(bot);
      this.bots.set(botConfig.name, bot);
    }
    await Promise.all(config.bots.map(async ({ name, transport }, i) => {
      if (transport.kind !== 'webhook') return;
      await this.bots.get(name)!.bind().catch((error: unknown) => {
        throw new ListenError(`bot ${name}'s webhook`, transport, error, this.#where(`bots[${i}].transport.webhook.port`));
      });
    }));
    if (this.#stopRequested) return;
    await Promise.all([...this.bots.values()].map((bot) => this.#startBot(bot)));
    if (this.#stopRequested) return;
    if (this.#options.watch !== false) await this.#startReloader();
  }

  #where(field: string): { file: string; line?: number; col?: number; field: string } {
    return { ...(this.config.locations[field] ?? { file: this.config.file }), field };
  }

  /** hot reload of the plugins folder (undefined with `watch: false` or before start) */
  get reloader(): ReloadCoordinator | undefined {
    return this.#reloader;
  }

  async #startReloader(): Promise<void> {
    const reloader = new ReloadCoordinator({
      pluginsDir: this.config.pluginsDir,
      projectDir: this.config.dir,
      host: {
        bots: () => [...this.bots.values()].filter((bot) => bot.config.role !== 'gateway'),
        gateways: () => [...this.bots.values()].filter((bot) => bot.config.role === 'gateway'),
        enabledPlugins: (bot) => this.enabledPlugins(bot),
        discovered: () => this.#discovered,
        setDiscovered: (plugins) => {
          this.#discovered = plugins;
        },
        rereadGrants: () => {
          this.#pluginGrants = readGrants(grantsFile(this.config.dir));
          return this.#pluginGrants;
        },
      },
      packages: this.#pluginPackages(),
      grantsFile: grantsFile(this.config.dir),
      logger: this.#log,
      metrics: this.metrics,
      live: (note) => this.view.live(note),
      ...(this.#options.watchDebounceMs !== undefined ? { debounceMs: this.#options.watchDebounceMs } : {}),
    });
    await reloader.start();
    this.#reloader = reloader;
  }

  /** Graceful: bots stop taking events and drain, shards close resumably, then everything else. */
  async stop(options: { drainMs?: number } = {}): Promise<{ unfinished: number; received: number; handled: number; dropped: number }> {
    this.#stopRequested = true;
    // no reload may start while bots drain
    await this.#reloader?.stop();
    this.#reloader = undefined;
    let results = await Promise.all([...this.bots.values()].map((bot) => bot.stop(options)));
    if (this.#starting) {
      // start-up unwinds at its next step; a bot that was mid-start is stopped once it has
      await this.#starting.catch(() => undefined);
      results = await Promise.all([...this.bots.values()].map(async (bot, i) => {
        const again = await bot.stop(options);
        return { unfinished: (results[i]?.unfinished ?? 0) + again.unfinished };
      }));
    }
    await this.#supervisor?.stop();
    for (const close of this.#closers.reverse()) await close().catch(() => undefined);
    this.#closers = [];
    await this.#storage?.close();
    const counts = [...this.bots.values()].map((bot) => bot.counts);
    return {
      unfinished: results.reduce((sum, r) => sum + r.unfinished, 0),
      received: counts.reduce((sum, c) => sum + c.received, 0),
      handled: counts.reduce((sum, c) => sum + c.handled, 0),
      dropped: counts.reduce((sum, c) => sum + c.dropped, 0),
    };
  }

  /** A grants file that cannot be read grants nothing (npm plugins run without), and says so. */
  #readPluginGrants(): void {
    try {
      this.#pluginGrants = readGrants(grantsFile(this.config.dir));
    } catch (error) {
      this.#pluginGrants = {};
      this.#log.error({ err: (error as Error).message }, 'plugin grants not read: plugins from npm run without permissions');
      this.view.live({ kind: 'error', text: `plugin grants not read: ${(error as Error).message}` });
    }
  }

  /** npm package names bot.yaml enables (installed or not yet): their node_modules folders are watched. */
  #pluginPackages(): string[] {
    const names = new Set(this.#discovered.filter((p) => p.source === 'npm').map((p) => p.name));
    for (const bot of this.config.bots) {
      for (const name of enabledPluginNames(bot) ?? []) if (findPlugin(this.#discovered, name)?.source !== 'folder') names.add(name);
    }
    return [...names];
  }

  /** The plugins bot.yaml enables for a bot (all folder plugins when it lists none). */
  enabledPlugins(bot: Bot): DiscoveredPlugin[] {
    const names = enabledPluginNames(bot.config);
    if (names === undefined) return this.#discovered.filter((p) => isEnabled(bot.config, p));
    const found: DiscoveredPlugin[] = [];
    for (const name of names) {
      const plugin = findPlugin(this.#discovered, name);
      if (plugin) found.push(plugin);
      else {
        const message = `bot "${bot.config.name}" enables plugin "${name}", which was not found in ${this.config.pluginsDir} or node_modules`;
        this.#log.error({ bot: bot.config.name, plugin: name }, message);
        this.view.live({ bot: bot.config.name, kind: 'error', text: message });
      }
    }
    return found;
  }

  async #startBot(bot: Bot): Promise<void> {
    const name = bot.config.name;
    this.#log.info({ bot: name }, 'bot connecting');
    try {
      const failures = await bot.start(this.enabledPlugins(bot));
      for (const failure of failures) this.view.live({ bot: name, kind: 'error', text: `plugin ${failure.plugin}: ${failure.error.message}` });
      const shards = bot.sessions?.shards() ?? [];
      this.#log.info({ bot: name, shards: `${shards.filter((s) => s.state === 'ready').length}/${shards.length}`, plugins: bot.plugins.loaded.length }, 'bot ready');
    } catch (error) {
      // reported by the bot's state change; the other bots keep going
      void error;
    }
  }

  async #startSimulator(): Promise<void> {
    // an entry with sameAppAs is an app the simulator already has
    const simulated = this.config.bots.filter((bot) => bot.endpoint.kind === 'simulator' && bot.sameAppAs === undefined);
    if (simulated.length === 0) return;
    const simulator = await startSimulator({
      bots: simulated.map((bot) => ({ appId: bot.appId, secret: bot.secret?.reveal() ?? '', ...(bot.token ? { token: bot.token.reveal() } : {}) })),
      // the simulator is the platform: it may know the secrets, but must not print them into our logs
      printCredentials: false,
      logger: this.#log.child({ part: 'simulator' }),
      ...this.#options.simulator,
    });
    this.#simulator = simulator;
    this.#closers.push(() => simulator.close());
    this.#log.info({ url: simulator.url }, 'embedded simulator running');

    const botByApp = new Map(simulated.map((bot) => [bot.appId, bot.name]));
    const chat = this.view.openChat((input: ChatInput) => {
      const bot = this.config.bots.find((b) => b.name === input.bot && b.endpoint.kind === 'simulator');
      if (!bot) throw new Error(`bot "${input.bot}" does not use the simulator`);
      return { id: simulator.postMessage({ appId: bot.appId, kind: input.kind, content: input.content, ...(input.user ? { user: input.user } : {}) }).id };
    });
    simulator.on('outbox', (entry) => {
      const bot = botByApp.get(entry.appId);
      if (!bot) return;
      const content = typeof entry.body.content === 'string' ? entry.body.content : JSON.stringify(entry.body);
      chat.push({ bot, from: 'bot', kind: entry.scene, content });
      this.view.live({ bot, kind: 'reply', text: `${entry.scene} reply: ${content.slice(0, 200)}` });
    });
  }

  async #startServers(): Promise<void> {
    const { config } = this;
    if (config.console && this.#options.console !== false) {
      const { port, host, token } = config.console;
      const server = await startConsole({ view: this.view, port, host, ...(token ? { token } : {}), logger: this.#log.child({ part: 'console' }) }).catch((error: Error) => {
        throw error.cause ? new ListenError('the console', { host, port }, error.cause, this.#where('console.port')) : error;
      });
      this.consoleUrl = server.url;
      this.#closers.push(() => server.close());
    }
    if (config.metrics && this.#options.metricsServer !== false) {
      const { port, host } = config.metrics;
      const server = await startMetricsServer({ metrics: this.metrics, port, host }).catch((error: Error) => {
        throw new ListenError('the metrics endpoint', { host, port }, error.cause ?? error, this.#where('metrics.port'));
      });
      this.metricsPort = server.port;
      this.#closers.push(() => server.close());
    }
  }

  #watchBot(bot: Bot): void {
    const name = bot.config.name;
    bot.on('state', (state, error) => {
      this.view.live({ bot: name, kind: state === 'failed' ? 'error' : 'state', text: error ? `${state}: ${error.message}` : state });
    });
    bot.on('shards', (held) => {
      this.view.live({ bot: name, kind: 'state', text: `shards held by this process: ${held.length > 0 ? held.join(', ') : 'none'}` });
    });
    bot.on('dispatch', (dispatch) => {
      // the dispatch path is hot: format a log line only when a console is watching
      if (!this.view.watched) return;
      const data = dispatch.d as { content?: unknown } | undefined;
      const content = typeof data?.content === 'string' ? `: ${data.content.slice(0, 200)}` : '';
      this.view.live({ bot: name, kind: 'event', text: `${dispatch.t}${dispatch.shard !== undefined ? ` (shard ${dispatch.shard})` : ''}${content}` });
    });
  }

  #watchSupervisor(supervisor: PluginSupervisor): void {
    const split = (instanceId: string) => {
      const slash = instanceId.indexOf('/');
      return { bot: instanceId.slice(0, slash), plugin: instanceId.slice(slash + 1) };
    };
    supervisor.on('log', ({ instanceId, level, args }) => {
      const { bot, plugin } = split(instanceId);
      const text = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
      const method = (['debug', 'info', 'warn', 'error'].includes(level) ? level : 'info') as 'debug' | 'info' | 'warn' | 'error';
      this.#log[method]({ bot, plugin }, text);
      this.view.live({ bot, kind: 'log', text: `${plugin}: ${text.slice(0, 300)}` });
    });
    supervisor.on('plugin-error', ({ instanceId, error }) => {
      const { bot, plugin } = split(instanceId);
      this.#log.error({ bot, plugin }, `plugin error: ${error}`);
      this.view.live({ bot, kind: 'error', text: `${plugin}: ${String(error).split('\n').slice(0, 3).join(' | ')}` });
    });
    supervisor.on('restarted', ({ instanceId, reason }) => {
      const { bot, plugin } = split(instanceId);
      this.metrics.pluginRestart(bot, plugin, reason);
      this.view.live({ bot, kind: 'error', text: `${plugin} restarted: ${reason}` });
    });
    supervisor.on('quarantined', ({ instanceId, reason }) => {
      const { bot, plugin } = split(instanceId);
      this.metrics.pluginQuarantined(bot, plugin);
      this.#log.error({ bot, plugin, reason }, 'plugin quarantined');
      this.view.live({ bot, kind: 'error', text: `${plugin} quarantined: ${reason}` });
    });
    supervisor.on('host-crashed', ({ reason, kind }) => {
      this.metrics.hostCrashed(kind);
      this.#log.error({ reason }, 'plugin host crashed; restarting it');
      this.view.live({ kind: 'error', text: `plugin host crashed: ${reason}` });
    });
  }
}
