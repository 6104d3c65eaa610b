/**
 * The plugin instances of one bot: which plugins it enables, their specs (manifest + config +
 * bundle), and which instances subscribe to each event type. Loading one plugin never depends on
 * another: a broken plugin is reported and skipped, or keeps its last good version on reload.
 */
import { relative } from 'node:path';
import type { BotConfig } from '../config/types.ts';
import type { Logger } from '../logging/logger.ts';
import { bundlePlugin } from '../plugins/bundler.ts';
import type { PluginCapabilities } from '../plugins/capabilities/index.ts';
import type { DiscoveredPlugin } from '../plugins/discovery.ts';
import { buildInstanceSpec } from '../plugins/instance-spec.ts';
import { readPluginManifest, resolvePluginConfig, type ConfigSite } from '../plugins/manifest.ts';
import type { PluginSupervisor } from '../plugins/sandbox/supervisor.ts';
import { approveCommand, describePending, grantItems, hasPending, reviewGrant, type GrantTable } from '../plugins/grants.ts';

/** The plugin names bot.yaml enables for a bot (a `false` section disables), or undefined: every plugin folder. */
export function enabledPluginNames(bot: BotConfig): string[] | undefined {
  return bot.plugins ? Object.keys(bot.plugins).filter((name) => bot.plugins?.[name] !== false) : undefined;
}

/** Whether a bot runs a plugin: named by folder or package name, or any folder plugin when bot.yaml lists none. */
export function isEnabled(bot: BotConfig, plugin: DiscoveredPlugin): boolean {
  const names = enabledPluginNames(bot);
  return names === undefined ? plugin.source === 'folder' : names.some((name) => name === plugin.name || name === plugin.packageName);
}

/** Where bot.yaml configures a plugin of a bot: for errors with file:line:col and the key. */
export function pluginConfigSite(bot: BotConfig, key: string): ConfigSite {
  return {
    path: `bots.${bot.name}.plugins.${key}`,
    // a plugin the bot runs without listing it (no plugins list) is placed at the bot
    locate: (field) => bot.pluginLocations[field ? `${key}.${field}` : key] ?? (field ? undefined : bot.location),
  };
}

export interface LoadedPlugin {
  name: string;
  instanceId: string;
  version: number;
  events: readonly string[];
  /** files that went into the bundle, plus package.json: what a watcher should watch */
  inputs: readonly string[];
  dir: string;
  source: 'folder' | 'npm';
  /** what its manifest asks for that the operator has not granted (npm plugins): "members.manage", "fetch host x" */
  pending: readonly string[];
}

interface Installed extends LoadedPlugin {
  permissions: string[];
  fetchHosts: string[];
  pendingPermissions: string[];
}

function view({ permissions: _p, fetchHosts: _f, pendingPermissions: _pp, ...plugin }: Installed): LoadedPlugin {
  return plugin;
}

export interface PluginFailure {
  plugin: string;
  error: Error;
}

export interface BotPluginsOptions {
  bot: BotConfig;
  supervisor: PluginSupervisor;
  capabilities: PluginCapabilities;
  /** paths in errors and stacks are shown relative to this */
  displayRoot: string;
  logger: Logger;
  /** the operator's grants to npm plugins (plugin-grants.yaml), read at each load */
  grants?: () => GrantTable;
}

export class BotPlugins {
  readonly #options: BotPluginsOptions;
  readonly #loaded = new Map<string, Installed>();
  /** event type → instance ids, rebuilt on every (un)load; read on the hot path */
  #subscribers = new Map<string, string[]>();
  /** instance id → plugin name, rebuilt with #subscribers */
  #names = new Map<string, string>();

  constructor(options: BotPluginsOptions) {
    this.#options = options;
  }

  get loaded(): LoadedPlugin[] {
    return [...this.#loaded.values()].map(view);
  }

  /** The instances subscribed to an event type, but those of the plugins named in `except`. */
  subscribers(type: string, except?: ReadonlySet<string>): readonly string[] {
    const ids = this.#subscribers.get(type) ?? [];
    return except && except.size > 0 ? ids.filter((id) => !except.has(this.#names.get(id) ?? '')) : ids;
  }

  /** The plugin an instance runs (its name in bot.yaml's folder or package sense, as `loaded` lists it). */
  nameOf(instanceId: string): string | undefined {
    return this.#names.get(instanceId);
  }

  /** Loads every plugin; returns the ones that failed (already logged). */
  async loadAll(plugins: DiscoveredPlugin[]): Promise<PluginFailure[]> {
    const failures: PluginFailure[] = [];
    for (const plugin of plugins) {
      try {
        await this.load(plugin);
      } catch (error) {
        failures.push({ plugin: plugin.name, error: error as Error });
      }
    }
    return failures;
  }

  /**
   * Loads a plugin, or replaces the running version (hot reload). The supervisor switches only when
   * the new version's setup succeeded; on any error the old version keeps serving and this rejects.
   */
  async load(plugin: Pick<DiscoveredPlugin, 'name' | 'packageName' | 'dir' | 'source'>): Promise<LoadedPlugin & { loadMs: number }> {
    const { bot, supervisor, capabilities, displayRoot, logger } = this.#options;
    const { name, dir, source } = plugin;
    const shownPackage = relative(displayRoot, `${dir}/package.json`);
    const manifest = await readPluginManifest(dir, { plugin: name, displayFile: shownPackage });
    // bot.yaml may name the plugin by folder or by package name
    const key = bot.plugins && !(name in bot.plugins) && plugin.packageName in bot.plugins ? plugin.packageName : name;
    const config = resolvePluginConfig({ name, manifest: manifest.manifest }, bot.plugins?.[key], pluginConfigSite(bot, key));
    const bundle = await bundlePlugin({ entry: manifest.main, displayRoot });
    const previous = this.#loaded.get(name);
    // an npm plugin runs on what the operator granted, whatever its manifest asks for now
    const review = reviewGrant({ name, source, manifest: manifest.manifest }, this.#options.grants?.() ?? {});
    const spec = { ...buildInstanceSpec({ bot, plugin: name, version: (previous?.version ?? 0) + 1, manifest: manifest.manifest, config, bundle }), permissions: review.effective.permissions };
    const pending = { permissions: review.pending.permissions, approve: approveCommand(name) };
    // Grants are registered before setup runs: setup code may already call the API.
    capabilities.registerInstance(spec, { fetchHosts: review.effective.fetchHosts, pending });
    let loadMs: number;
    try {
      ({ loadMs } = await supervisor.load(spec));
    } catch (error) {
      if (previous) {
        // the old version keeps serving with its old grants
        const old = { ...spec, permissions: previous.permissions };
        capabilities.registerInstance(old, { fetchHosts: previous.fetchHosts, pending: { permissions: previous.pendingPermissions, approve: approveCommand(name) } });
      } else {
        capabilities.unregisterInstance(spec.id);
      }
      throw error;
    }
    const loaded: Installed = {
      name,
      instanceId: spec.id,
      version: spec.version,
      events: spec.events,
      inputs: [...bundle.inputs, `${dir}/package.json`],
      dir,
      source,
      pending: grantItems(review.pending),
      permissions: spec.permissions,
      fetchHosts: review.effective.fetchHosts,
      pendingPermissions: review.pending.permissions,
    };
    this.#loaded.set(name, loaded);
    this.#index();
    logger.debug({ plugin: name, version: spec.version, loadMs }, 'plugin loaded');
    if (hasPending(review)) {
      logger.warn({ plugin: name, pending: loaded.pending }, `plugin ${name} asks for ${describePending(review)}, not granted: it runs without until approved (${approveCommand(name)})`);
    }
    return { ...view(loaded), loadMs };
  }

  async unload(name: string): Promise<boolean> {
    const loaded = this.#loaded.get(name);
    if (!loaded) return false;
    this.#loaded.delete(name);
    this.#index();
    await this.#options.supervisor.unload(loaded.instanceId);
    this.#options.capabilities.unregisterInstance(loaded.instanceId);
    return true;
  }

  /** A failed bot frees its isolates; its plugins' storage stays. */
  async unloadAll(): Promise<void> {
    for (const name of [...this.#loaded.keys()]) await this.unload(name);
  }

  /** What intent merging needs: each plugin's subscribed events. */
  subscriptions(): Array<{ plugin: string; events: string[] }> {
    return [...this.#loaded.values()].map((p) => ({ plugin: p.name, events: [...p.events] }));
  }

  #index(): void {
    const index = new Map<string, string[]>();
    const names = new Map<string, string>();
    for (const plugin of this.#loaded.values()) {
      names.set(plugin.instanceId, plugin.name);
      for (const type of plugin.events) {
        const ids = index.get(type) ?? [];
        ids.push(plugin.instanceId);
        index.set(type, ids);
      }
    }
    this.#subscribers = index;
    this.#names = names;
  }
}
