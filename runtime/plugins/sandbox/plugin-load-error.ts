import { QQBotError } from '../../errors.ts';

/**
 * A plugin version could not be loaded (setup threw or timed out, it died before going live, the
 * host crashed). Build errors are `PluginBuildError` (bundler.ts); both put the plugin's own
 * position first, as `file:line:col: message`.
 */
export class PluginLoadError extends QQBotError {
  constructor(instanceId: string, plugin: string, detail: string, location?: string, stack?: string) {
    super('E_PLUGIN_LOAD', `plugin ${plugin} (${instanceId}) failed to load: ${location ? `${location}: ` : ''}${detail}`, {
      instanceId,
      plugin,
      ...(location ? { location } : {}),
      ...(stack ? { stack } : {}),
    });
  }
}
