import type { PluginManifest } from 'qqbot-sdk-types';
import type { PluginBundle } from './bundler.ts';
import type { PluginInstanceSpec } from './instance.ts';
import { resolveLimits } from './manifest.ts';

/** One plugin on one bot, from its validated manifest, its config section and its bundle. */
export function buildInstanceSpec(input: {
  bot: { name: string; appId: string; pluginQueueBytes?: number | undefined };
  plugin: string;
  version: number;
  manifest: PluginManifest;
  config: unknown;
  bundle: Pick<PluginBundle, 'code' | 'sourceMap' | 'filename'>;
}): PluginInstanceSpec {
  const { bot, plugin, manifest, bundle } = input;
  return {
    id: `${bot.name}/${plugin}`,
    plugin,
    bot: { name: bot.name, appId: bot.appId },
    version: input.version,
    code: bundle.code,
    sourceMap: bundle.sourceMap,
    filename: bundle.filename,
    config: input.config,
    permissions: manifest.permissions ?? [],
    events: manifest.events,
    limits: { ...resolveLimits(manifest), ...(manifest.limits?.queueBytes === undefined && bot.pluginQueueBytes !== undefined ? { queueBytes: bot.pluginQueueBytes } : {}) },
  };
}
