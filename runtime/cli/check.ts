import { relative } from 'node:path';
import { loadConfig } from '../config/index.ts';
import { describeIntents, mergeIntents, PRIVATE_DOMAIN_INTENTS } from '../gateway/intents.ts';
import { enabledPluginNames, isEnabled, pluginConfigSite } from '../bot/bot-plugins.ts';
import { redactRedisUrl as redactUrl } from '../sessions/redis-connection.ts';
import { bundlePlugin } from '../plugins/bundler.ts';
import { discoverPlugins, findPlugin, type DiscoveredPlugin } from '../plugins/discovery.ts';
import { approveCommand, describePending, grantItems, grantsFile, hasPending, readGrants, reviewGrant, type GrantTable } from '../plugins/grants.ts';
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
  const warnings = discovery.warnings.map((w) => w.message);
  let grants: GrantTable = {};
  try {
    grants = readGrants(grantsFile(config.dir));
  } catch (error) {
    problems.push((error as Error).message);
  }
  const reviewed = new Set<string>();

  for (const bot of config.bots) {
    const endpoint = bot.endpoint.kind === 'url' ? bot.endpoint.url : bot.endpoint.kind;
    const sessions = bot.sessions.kind === 'redis' ? ` shared through redis ${redactUrl(bot.sessions.url)} (lease ${bot.sessions.leaseTtlMs} ms)` : '';
    const transport = bot.transport.kind === 'webhook' ? `webhook :${bot.transport.port}${bot.transport.path}` : `websocket, shards ${bot.shards}${sessions}`;
    const storage = bot.storage.kind === 'redis' ? `redis ${redactUrl(bot.storage.url)}` : 'sqlite (dataDir)';
    out.push('', `bot ${bot.name} (app ${bot.appId}) → ${endpoint}, ${transport}, auth ${bot.secret ? 'access token' : 'legacy token'}, storage ${storage}`);
    const names = enabledPluginNames(bot) ?? discovery.plugins.filter((p) => isEnabled(bot, p)).map((p) => p.name);
    const subscriptions: Array<{ plugin: string; events: string[] }> = [];
    for (const name of names) {
      const plugin = findPlugin(discovery.plugins, name);
      if (!plugin) {
        problems.push(`bot ${bot.name}: plugin "${name}" is enabled but was not found`);
        continue;
      }
      try {
        resolvePluginConfig({ name, manifest: plugin.manifest }, bot.plugins?.[name], pluginConfigSite(bot, name));
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
        const found = findPlugin(discovery.plugins, plugin)!;
        const permissions = found.manifest.permissions ?? [];
        out.push(`  plugin ${plugin}: ${events.join(', ')} → ${describeIntents(bits).join(' | ') || 'none'}; permissions: ${permissions.join(', ') || 'none'}`);
        if (found.source === 'npm') out.push(...grantLines(found, grants, reviewed, problems));
      }
      const privateBits = merged.intents & PRIVATE_DOMAIN_INTENTS;
      out.push(`  intents ${merged.intents}: ${describeIntents(merged.intents).join(' | ')}`);
      if (privateBits) out.push(`  note: ${describeIntents(privateBits).join(', ')} is private-domain (私域) only; a public bot is refused with close 4014`);
    } catch (error) {
      problems.push(`bot ${bot.name}: ${(error as Error).message}`);
    }
  }

  if (warnings.length > 0) out.push('', ...warnings.map((w) => `warning: ${w}`));
  process.stdout.write(`${out.join('\n')}\n`);
  if (problems.length > 0) {
    process.stderr.write(`\n${problems.length} problem(s):\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    return 1;
  }
  return 0;
}

/** An npm plugin's request against the operator's grants: the diff, and a problem per plugin with pending grants. */
function grantLines(plugin: DiscoveredPlugin, grants: GrantTable, reviewed: Set<string>, problems: string[]): string[] {
  const review = reviewGrant(plugin, grants);
  const granted = grants[plugin.name];
  const lines = [`    installed from npm, ${plugin.version}; granted ${granted ? `at ${granted.version}: ${grantItems(granted).join(', ') || 'nothing'}` : 'nothing yet'}`];
  for (const p of review.pending.permissions) lines.push(`    + ${p}  (asked for, not granted)`);
  for (const h of review.pending.fetchHosts) lines.push(`    + fetch host ${h}  (asked for, not granted)`);
  for (const p of review.dropped.permissions) lines.push(`    - ${p}  (granted, no longer asked for)`);
  for (const h of review.dropped.fetchHosts) lines.push(`    - fetch host ${h}  (granted, no longer asked for)`);
  if (hasPending(review) && !reviewed.has(plugin.name)) {
    reviewed.add(plugin.name);
    problems.push(`plugin ${plugin.name} ${plugin.version} asks for ${describePending(review)}, not granted: it runs without until approved (${approveCommand(plugin.name)})`);
  }
  return lines;
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
