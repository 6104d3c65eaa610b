import { relative } from 'node:path';
import { loadConfig } from '../config/index.ts';
import { describeIntents, mergeIntents, PRIVATE_DOMAIN_INTENTS } from '../gateway/intents.ts';
import { enabledPluginNames, isEnabled } from '../bot/bot-plugins.ts';
import { redactRedisUrl as redactUrl } from '../sessions/redis-connection.ts';
import { bundlePlugin } from '../plugins/bundler.ts';
import { discoverPlugins, type DiscoveredPlugin } from '../plugins/discovery.ts';
import { resolvePluginConfig } from '../plugins/manifest.ts';

/** Validates bot.yaml and the plugins it enables, and prints what each bot would run, without connecting. */
export async function checkCommand(args: string[]): Promise<number> {
  const file = args[0] ?? 'bot.yaml';
  const config = loadConfig(file);
  const shown = (path: string) => relative(process.cwd(), path) || '.';
  const out: string[] = [`${shown(config.file)}: ${config.bots.length} bot(s), plugins from ${shown(config.pluginsDir)}`];
  const problems: string[] = [];

  const discovery = await discoverPlugins({ pluginsDir: config.pluginsDir, projectDir: config.dir });
  for (const problem of discovery.problems) problems.push(problem.message);

  for (const bot of config.bots) {
    const endpoint = bot.endpoint.kind === 'url' ? bot.endpoint.url : bot.endpoint.kind;
    const sessions = bot.sessions.kind === 'redis' ? ` shared through redis ${redactUrl(bot.sessions.url)} (lease ${bot.sessions.leaseTtlMs} ms)` : '';
    const transport = bot.transport.kind === 'webhook' ? `webhook :${bot.transport.port}${bot.transport.path}` : `websocket, shards ${bot.shards}${sessions}`;
    const storage = bot.storage.kind === 'redis' ? `redis ${redactUrl(bot.storage.url)}` : 'files';
    out.push('', `bot ${bot.name} (app ${bot.appId}) → ${endpoint}, ${transport}, auth ${bot.secret ? 'access token' : 'legacy token'}, storage ${storage}`);
    const names = enabledPluginNames(bot) ?? discovery.plugins.filter((p) => isEnabled(bot, p)).map((p) => p.name);
    const subscriptions: Array<{ plugin: string; events: string[] }> = [];
    for (const name of names) {
      const plugin = discovery.plugins.find((p) => p.name === name || p.packageName === name);
      if (!plugin) {
        problems.push(`bot ${bot.name}: plugin "${name}" is enabled but was not found`);
        continue;
      }
      try {
        resolvePluginConfig({ name, manifest: plugin.manifest }, bot.plugins?.[name] === true ? undefined : bot.plugins?.[name], `bots.${bot.name}.plugins.${name}`);
      } catch (error) {
        problems.push((error as Error).message);
      }
      await bundleOnce(plugin, config.dir, problems);
      subscriptions.push({ plugin: name, events: plugin.manifest.events });
    }
    try {
      const merged = mergeIntents(subscriptions, bot.intents);
      for (const { plugin, events } of subscriptions) {
        const bits = merged.byPlugin[plugin] ?? 0;
        const permissions = discovery.plugins.find((p) => p.name === plugin || p.packageName === plugin)?.manifest.permissions ?? [];
        out.push(`  plugin ${plugin}: ${events.join(', ')} → ${describeIntents(bits).join(' | ') || 'none'}; permissions: ${permissions.join(', ') || 'none'}`);
      }
      const privateBits = merged.intents & PRIVATE_DOMAIN_INTENTS;
      out.push(`  intents ${merged.intents}: ${describeIntents(merged.intents).join(' | ')}`);
      if (privateBits) out.push(`  note: ${describeIntents(privateBits).join(', ')} is private-domain (私域) only; a public bot is refused with close 4014`);
    } catch (error) {
      problems.push(`bot ${bot.name}: ${(error as Error).message}`);
    }
  }

  process.stdout.write(`${out.join('\n')}\n`);
  if (problems.length > 0) {
    process.stderr.write(`\n${problems.length} problem(s):\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}

const bundled = new Set<string>();

/** A plugin that would not build is a problem now, not at start-up; each plugin is built once. */
async function bundleOnce(plugin: DiscoveredPlugin, displayRoot: string, problems: string[]): Promise<void> {
  if (bundled.has(plugin.dir)) return;
  bundled.add(plugin.dir);
  try {
    await bundlePlugin({ entry: plugin.main, displayRoot });
  } catch (error) {
    problems.push(`plugin ${plugin.name}: ${(error as Error).message}`);
  }
}
