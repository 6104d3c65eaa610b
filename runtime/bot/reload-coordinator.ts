/**
 * Turns file changes into hot reloads: for each bot that enables a changed plugin, the new version
 * is built and swapped in (the supervisor switches only after its setup succeeded); a new folder is
 * loaded, a removed one unloaded, and intents follow the plugins' events. A failed build or setup
 * leaves the old version serving and is reported with file:line. An installed plugin's package folder
 * is watched the same way (an `npm install` of another version reloads it), and so is the grants file:
 * an approval reloads the npm plugins whose grants it changed. A gateway-role bot runs no plugin: it
 * follows the manifests only, re-identifying when the intents its workers' plugins need change.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { watch, type FSWatcher } from 'chokidar';
import type { QQBotError } from '../errors.ts';
import type { Logger } from '../logging/logger.ts';
import type { RuntimeMetrics } from '../metrics/metrics.ts';
import { discoverPlugins, type DiscoveredPlugin } from '../plugins/discovery.ts';
import type { GrantTable } from '../plugins/grants.ts';
import { PluginWatcher, type PluginChange } from '../plugins/watcher.ts';
import type { Bot } from './bot.ts';
import { isEnabled } from './bot-plugins.ts';

/** What the coordinator needs from the runtime that owns the bots. */
export interface ReloadHost {
  /** the bots that run plugins (roles all and worker) */
  bots(): Iterable<Bot>;
  /** the gateway-role bots: they follow the plugins' manifests, for their intents */
  gateways(): Iterable<Bot>;
  /** the plugins bot.yaml enables for a bot, resolved against `discovered()` */
  enabledPlugins(bot: Bot): DiscoveredPlugin[];
  discovered(): readonly DiscoveredPlugin[];
  setDiscovered(plugins: DiscoveredPlugin[]): void;
  /** re-reads the operator's grants (plugin-grants.yaml) and returns them */
  rereadGrants(): GrantTable;
}

export interface ReloadCoordinatorOptions {
  pluginsDir: string;
  /** where discovery looks for node_modules plugins */
  projectDir: string;
  /** npm package names of plugins whose `node_modules/<name>` folders are watched */
  packages?: readonly string[];
  /** plugin-grants.yaml: a change reloads the npm plugins whose grants changed */
  grantsFile?: string;
  host: ReloadHost;
  logger: Logger;
  metrics?: RuntimeMetrics;
  /** what a person watching should see: a plugin went live, or a reload failed */
  live?: (note: ReloadNote) => void;
  /** per-plugin quiet time before a burst of file events is acted on (default 100 ms) */
  debounceMs?: number;
}

export interface ReloadNote {
  bot?: string;
  kind: 'reload' | 'error';
  text: string;
}

export interface ReloadResult {
  bot: string;
  plugin: string;
  /** reload: new version of a loaded plugin; load: a plugin that was not running; unload: folder gone */
  action: 'reload' | 'load' | 'unload';
  ok: boolean;
  /** the version now serving (the old one after a failure; absent when nothing serves) */
  version?: number;
  /** build + setup + swap, wall time */
  ms: number;
  error?: Error;
  /** the bot's intents were re-derived (its shards re-identified if they changed) */
  intentsRefreshed: boolean;
}

/** The queue key of a grants file change (no plugin can have this name). */
const GRANTS_CHANGE = '\0grants';

export interface ReloadCoordinatorEvents {
  reload: [result: ReloadResult];
}

export class ReloadCoordinator extends EventEmitter<ReloadCoordinatorEvents> {
  readonly #options: ReloadCoordinatorOptions;
  readonly #log: Logger;
  readonly #watcher: PluginWatcher;
  /** plugin → hash of the inputs its running version was built from */
  readonly #hashes = new Map<string, string>();
  /** plugins whose last attempt failed somewhere: any change in their folder retries */
  readonly #dirty = new Set<string>();
  readonly #pending = new Map<string, PluginChange>();
  #draining: Promise<void> | undefined;
  #grantsWatcher: FSWatcher | undefined;
  /** the grants as last applied */
  #grants: GrantTable = {};
  #stopped = false;
  #reloads = 0;
  #failures = 0;

  constructor(options: ReloadCoordinatorOptions) {
    super();
    this.#options = options;
    this.#log = options.logger.child({ part: 'hot-reload' });
    this.#watcher = new PluginWatcher({
      pluginsDir: options.pluginsDir,
      packagesDir: join(options.projectDir, 'node_modules'),
      packages: options.packages ?? [],
      logger: this.#log,
      ...(options.debounceMs !== undefined ? { debounceMs: options.debounceMs } : {}),
    });
    this.#watcher.on('change', (change) => this.#enqueue(change));
    this.#watcher.on('error', (error) => this.#log.warn({ err: error.message }, 'plugin watcher'));
  }

  /** successful (re)loads so far */
  get reloads(): number {
    return this.#reloads;
  }

  /** failed (re)loads so far (the previous version kept serving) */
  get failures(): number {
    return this.#failures;
  }

  async start(): Promise<void> {
    const { host } = this.#options;
    for (const bot of host.bots()) {
      for (const plugin of bot.plugins.loaded) {
        this.#watcher.track(plugin.name, plugin.inputs);
        if (!this.#hashes.has(plugin.name)) this.#hashes.set(plugin.name, await hashFiles(plugin.inputs));
      }
      // enabled but not running (failed at start): the next change to it retries
      for (const plugin of host.discovered()) {
        if (isEnabled(bot.config, plugin) && !isLoaded(bot, plugin.name)) this.#dirty.add(plugin.name);
      }
    }
    await this.#watcher.start();
    if (this.#options.grantsFile !== undefined) {
      // a file that cannot be read now grants nothing (the runtime said so); its next change is applied
      try {
        this.#grants = host.rereadGrants();
      } catch {
        this.#grants = {};
      }
      const grants = watch(this.#options.grantsFile, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 50, pollInterval: 10 } });
      grants.on('all', () => this.#enqueue({ plugin: GRANTS_CHANGE, paths: [this.#options.grantsFile!], structural: false }));
      grants.on('error', (error) => this.#log.warn({ err: (error as Error).message }, 'grants file watcher'));
      await new Promise<void>((done) => grants.once('ready', () => done()));
      this.#grantsWatcher = grants;
    }
    this.#log.info({ pluginsDir: this.#options.pluginsDir, packages: this.#options.packages ?? [] }, 'watching plugins for changes');
  }

  /** Stops watching; a reload in progress finishes first. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pending.clear();
    await this.#watcher.close();
    await this.#grantsWatcher?.close();
    await this.#draining;
  }

  #enqueue(change: PluginChange): void {
    if (this.#stopped) return;
    const queued = this.#pending.get(change.plugin);
    this.#pending.set(change.plugin, queued ? { plugin: change.plugin, paths: [...new Set([...queued.paths, ...change.paths])], structural: queued.structural || change.structural } : change);
    this.#draining ??= this.#drain().finally(() => {
      this.#draining = undefined;
    });
  }

  // One change at a time: a discovery pass and a reload of the same plugin must not interleave.
  async #drain(): Promise<void> {
    while (!this.#stopped) {
      const next = this.#pending.entries().next();
      if (next.done) return;
      const [key, change] = next.value;
      this.#pending.delete(key);
      try {
        await this.#apply(change);
      } catch (error) {
        this.#log.error({ plugin: change.plugin, err: (error as Error).message }, 'hot reload failed unexpectedly');
      }
    }
  }

  async #apply(change: PluginChange): Promise<void> {
    if (change.plugin === GRANTS_CHANGE) return this.#applyGrants();
    await this.#reload(change);
    await this.#followManifests(change.plugin);
  }

  async #reload(change: PluginChange): Promise<void> {
    const { host, pluginsDir } = this.#options;
    const name = change.plugin;
    const known = host.discovered().some((p) => p.source === 'folder' && p.name === name);
    const loadedNow = new Set<string>();
    // A folder discovery does not know yet (or whose manifest came or went) may have become a plugin.
    if (change.structural || (!known && (await exists(join(pluginsDir, name, 'package.json'))))) {
      for (const id of await this.#rediscover(name)) loadedNow.add(id);
    }

    const plugin = host.discovered().find((p) => p.name === name);
    if (!plugin) return;
    // an npm plugin's change comes from its own package folder: always its files
    const relevant = change.structural || plugin.source === 'npm' || this.#dirty.has(name) || change.paths.some((path) => this.#watcher.trackedBy(path).includes(name));
    if (!relevant) return;
    const bots = [...host.bots()].filter((bot) => bot.state === 'running' && isEnabled(bot.config, plugin) && !loadedNow.has(`${bot.config.name}/${name}`));
    if (bots.length === 0) return;

    const inputs = new Set<string>();
    for (const bot of bots) for (const input of bot.plugins.loaded.find((p) => p.name === name)?.inputs ?? []) inputs.add(input);
    const hash = await hashFiles([...inputs]);
    if (!this.#dirty.has(name) && inputs.size > 0 && hash === this.#hashes.get(name)) {
      this.#log.debug({ plugin: name }, 'plugin files saved without changes; not reloading');
      return;
    }
    let failed = false;
    for (const bot of bots) {
      const result = await this.#load(bot, plugin, isLoaded(bot, name) ? 'reload' : 'load');
      failed ||= !result.ok;
    }
    this.#settle(name, failed, hash);
  }

  /** Gateways re-read the manifests (discovery already ran for a structural change). */
  async #followManifests(changed: string): Promise<void> {
    const { host } = this.#options;
    for (const bot of host.gateways()) {
      if (bot.state !== 'running') continue;
      await this.#refreshIntents(bot, () => bot.followManifests(host.enabledPlugins(bot), changed));
    }
  }

  /** The operator approved (or withdrew) grants: reload the running npm plugins whose entry changed. */
  async #applyGrants(): Promise<void> {
    let next: GrantTable;
    try {
      next = this.#options.host.rereadGrants();
    } catch (error) {
      this.#log.error({ err: (error as Error).message }, 'grants file not applied');
      this.#options.live?.({ kind: 'error', text: `grants file not applied: ${(error as Error).message}` });
      return;
    }
    const before = this.#grants;
    this.#grants = next;
    const changed = (name: string) => JSON.stringify(before[name] ?? null) !== JSON.stringify(next[name] ?? null);
    for (const bot of this.#options.host.bots()) {
      if (bot.state !== 'running') continue;
      for (const running of bot.plugins.loaded) {
        if (running.source !== 'npm' || !changed(running.name)) continue;
        const plugin = this.#options.host.discovered().find((p) => p.name === running.name);
        if (plugin) await this.#load(bot, plugin, 'reload');
      }
    }
  }

  /** Runs discovery again, loads what is new, unloads what is gone. Returns the instances it loaded. */
  async #rediscover(changed: string): Promise<string[]> {
    const { host, pluginsDir, projectDir } = this.#options;
    const found = await discoverPlugins({ pluginsDir, projectDir });
    const folder = resolve(pluginsDir, changed);
    const broken = new Set(found.problems.map((problem) => problem.plugin));
    // A plugin whose manifest broke is not gone: its running version keeps serving until fixed
    // (the reload attempt that follows reports the problem).
    const kept = host.discovered().filter((p) => broken.has(p.name) && !found.plugins.some((f) => f.name === p.name));
    for (const p of kept) this.#dirty.add(p.name);
    for (const problem of found.problems) {
      if (kept.some((p) => p.name === problem.plugin)) continue;
      if (problem.plugin !== changed && !problem.paths.some((p) => resolve(p) === folder)) continue;
      this.#log.error({ plugin: problem.plugin, code: problem.code }, problem.message);
      this.#options.live?.({ kind: 'error', text: problem.message });
    }
    for (const warning of found.warnings) {
      if (warning.plugin !== changed && !warning.paths.some((p) => resolve(p) === folder)) continue;
      this.#log.warn({ plugin: warning.plugin, code: warning.code }, warning.message);
      this.#options.live?.({ kind: 'error', text: warning.message });
    }
    host.setDiscovered([...found.plugins, ...kept]);

    const loaded: string[] = [];
    for (const bot of host.bots()) {
      if (bot.state !== 'running') continue;
      const enabled = host.enabledPlugins(bot);
      let changedSet = false;
      for (const running of bot.plugins.loaded) {
        if (enabled.some((p) => p.name === running.name)) continue;
        await this.#unload(bot, running.name);
        changedSet = true;
      }
      for (const plugin of enabled) {
        if (isLoaded(bot, plugin.name) || broken.has(plugin.name)) continue;
        const result = await this.#load(bot, plugin, 'load', { refreshIntents: false });
        loaded.push(`${bot.config.name}/${plugin.name}`);
        this.#settle(plugin.name, !result.ok, await hashFiles(bot.plugins.loaded.find((p) => p.name === plugin.name)?.inputs ?? []));
        changedSet ||= result.ok;
      }
      if (changedSet) await this.#refreshIntents(bot);
    }
    return loaded;
  }

  async #load(bot: Bot, plugin: DiscoveredPlugin, action: 'reload' | 'load', options: { refreshIntents?: boolean } = {}): Promise<ReloadResult> {
    const botName = bot.config.name;
    const before = bot.plugins.loaded.find((p) => p.name === plugin.name);
    const started = performance.now();
    let result: ReloadResult;
    try {
      const loaded = await bot.plugins.load(plugin);
      const ms = round(performance.now() - started);
      this.#watcher.track(plugin.name, loaded.inputs);
      const eventsChanged = !before || !sameSet(before.events, loaded.events);
      const intentsRefreshed = eventsChanged && options.refreshIntents !== false;
      this.#reloads++;
      this.#options.metrics?.pluginReload(botName, plugin.name, true);
      this.#log.info({ bot: botName, plugin: plugin.name, version: loaded.version, ms, swapMs: round(loaded.loadMs), ...(eventsChanged ? { events: loaded.events } : {}) }, `plugin ${plugin.name} v${loaded.version} live (${action}: build + swap ${ms} ms)`);
      this.#options.live?.({ bot: botName, kind: 'reload', text: `${plugin.name} v${loaded.version} live (build + swap ${ms} ms)` });
      if (intentsRefreshed) await this.#refreshIntents(bot);
      result = { bot: botName, plugin: plugin.name, action, ok: true, version: loaded.version, ms, intentsRefreshed };
    } catch (error) {
      const err = error as QQBotError;
      const ms = round(performance.now() - started);
      this.#failures++;
      this.#options.metrics?.pluginReload(botName, plugin.name, false);
      const serving = before ? `v${before.version} keeps serving` : 'not running';
      this.#log.error({ bot: botName, plugin: plugin.name, code: err.code, err: err.message }, `plugin ${plugin.name} ${action} failed; ${serving}`);
      this.#options.live?.({ bot: botName, kind: 'error', text: `${plugin.name} ${action} failed (${serving}): ${oneLine(err.message)}` });
      result = { bot: botName, plugin: plugin.name, action, ok: false, ...(before ? { version: before.version } : {}), ms, error: err, intentsRefreshed: false };
    }
    this.emit('reload', result);
    return result;
  }

  async #unload(bot: Bot, name: string): Promise<void> {
    const botName = bot.config.name;
    const started = performance.now();
    await bot.plugins.unload(name);
    if (![...this.#options.host.bots()].some((b) => isLoaded(b, name))) {
      this.#watcher.untrack(name);
      this.#hashes.delete(name);
      this.#dirty.delete(name);
    }
    const ms = round(performance.now() - started);
    this.#log.info({ bot: botName, plugin: name, ms }, `plugin ${name} unloaded (its folder is gone or no longer enabled; storage kept)`);
    this.#options.live?.({ bot: botName, kind: 'reload', text: `${name} unloaded` });
    this.emit('reload', { bot: botName, plugin: name, action: 'unload', ok: true, ms, intentsRefreshed: false });
  }

  async #refreshIntents(bot: Bot, refresh = () => bot.refreshIntents()): Promise<void> {
    try {
      await refresh();
    } catch (error) {
      this.#log.error({ bot: bot.config.name, err: (error as Error).message }, 'could not re-identify with the new intents');
      this.#options.live?.({ bot: bot.config.name, kind: 'error', text: `re-identify with new intents failed: ${(error as Error).message}` });
    }
  }

  #settle(name: string, failed: boolean, hash: string): void {
    if (failed) {
      this.#dirty.add(name);
      return;
    }
    this.#dirty.delete(name);
    this.#hashes.set(name, hash);
  }
}

function isLoaded(bot: Bot, name: string): boolean {
  return bot.plugins.loaded.some((p) => p.name === name);
}

async function hashFiles(paths: readonly string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const path of [...paths].sort()) {
    hash.update(path).update('\0');
    hash.update(await readFile(path).catch(() => Buffer.from('\0missing\0'))).update('\0');
  }
  return hash.digest('hex');
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(() => true, () => false);
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function oneLine(text: string): string {
  const line = text.split('\n').map((l) => l.trim()).filter(Boolean).join(' | ');
  return line.length > 500 ? `${line.slice(0, 500)}…` : line;
}
