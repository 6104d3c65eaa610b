/**
 * What a gateway's plugins subscribe to, from their manifests alone: a gateway runs no plugin code, yet
 * identifies with the intents its workers' plugins need. Re-read when the plugins folder changes; a
 * manifest that cannot be read keeps its plugin's last good events, as a failed reload keeps the
 * running version on a worker.
 */
import { join, relative } from 'node:path';
import type { DiscoveredPlugin } from '../plugins/discovery.ts';
import { readPluginManifest } from '../plugins/manifest.ts';
import type { PluginFailure } from './bot-plugins.ts';

export interface ManifestFailure extends PluginFailure {
  /** the manifest, as shown to the user (relative to the project) */
  file: string;
}

export class DeclaredSubscriptions {
  readonly #displayRoot: string;
  /** plugin → the events its manifest last declared; null: read and failed, never read successfully */
  readonly #events = new Map<string, readonly string[] | null>();

  constructor(options: { displayRoot: string }) {
    this.#displayRoot = options.displayRoot;
  }

  /**
   * Reads the manifests of `plugins` and forgets the plugins no longer among them. With `changed`, only
   * that plugin's manifest and those of plugins not tried before are read: the others did not change.
   */
  async read(plugins: readonly DiscoveredPlugin[], changed?: string): Promise<ManifestFailure[]> {
    const failures: ManifestFailure[] = [];
    for (const plugin of plugins) {
      if (changed !== undefined && plugin.name !== changed && this.#events.has(plugin.name)) continue;
      const file = relative(this.#displayRoot, join(plugin.dir, 'package.json'));
      try {
        const { manifest } = await readPluginManifest(plugin.dir, { plugin: plugin.name, displayFile: file });
        this.#events.set(plugin.name, [...manifest.events]);
      } catch (error) {
        if (!this.#events.has(plugin.name)) this.#events.set(plugin.name, null);
        failures.push({ plugin: plugin.name, file, error: error as Error });
      }
    }
    for (const name of this.#events.keys()) if (!plugins.some((p) => p.name === name)) this.#events.delete(name);
    return failures;
  }

  /** What intent merging needs: each plugin's last good events. */
  subscriptions(): Array<{ plugin: string; events: string[] }> {
    return [...this.#events].flatMap(([plugin, events]) => (events ? [{ plugin, events: [...events] }] : []));
  }
}
