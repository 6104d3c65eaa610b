import { QQBotError } from '../../errors.ts';

/** A plugin version could not be loaded (bad bundle, setup threw or timed out, host crashed). */
export class PluginLoadError extends QQBotError {
  constructor(instanceId: string, plugin: string, detail: string, location?: string, stack?: string) {
    super('E_PLUGIN_LOAD', `plugin ${plugin} (${instanceId}) failed to load: ${detail}${location ? ` at ${location}` : ''}`, {
      instanceId,
      plugin,
      ...(location ? { location } : {}),
      ...(stack ? { stack } : {}),
    });
  }
}
