/**
 * `qqbot plugin add|upgrade|remove|approve`: plugins from npm (or a packed tarball) for the project
 * of a bot.yaml. What a plugin asks for (events, permissions, fetch hosts) is shown before anything
 * is granted; an upgrade never widens its grants by itself.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { parseArgs } from 'node:util';
import type { PluginManifest } from 'qqbot-sdk-types';
import { loadConfig } from '../config/index.ts';
import { enablePlugin, removePlugin } from '../config/edit-bot-yaml.ts';
import type { RuntimeConfig } from '../config/types.ts';
import { QQBotError } from '../errors.ts';
import { describeIntents, mergeIntents } from '../gateway/intents.ts';
import { discoverPlugins } from '../plugins/discovery.ts';
import { approveCommand, grantFor, grantItems, grantsFile, readGrants, reviewGrant, writeGrant, type PluginGrant } from '../plugins/grants.ts';
import { PluginManifestError, readPluginManifest, type LoadedManifest } from '../plugins/manifest.ts';

const USAGE = `usage:
  qqbot plugin add NAME[@range] | ./plugin.tgz  [--bot NAME] [--config bot.yaml] [--yes]
  qqbot plugin upgrade NAME[@range] | ./plugin.tgz  [--config bot.yaml] [--yes]
  qqbot plugin remove NAME  [--config bot.yaml]
  qqbot plugin approve NAME  [--config bot.yaml]`;

interface Options {
  config: RuntimeConfig;
  bot?: string;
  yes: boolean;
  out: (...lines: string[]) => void;
}

export async function pluginCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string', default: 'bot.yaml' }, bot: { type: 'string' }, yes: { type: 'boolean', short: 'y', default: false } },
  });
  const [action, target] = positionals;
  if (action === undefined || target === undefined || positionals.length > 2 || !['add', 'upgrade', 'remove', 'approve'].includes(action)) {
    throw new QQBotError('E_USAGE', USAGE);
  }
  const options: Options = {
    config: loadConfig(values.config),
    ...(values.bot !== undefined ? { bot: values.bot } : {}),
    yes: values.yes,
    out: (...lines) => process.stdout.write(`${lines.join('\n')}\n`),
  };
  switch (action) {
    case 'add': return add(target, options);
    case 'upgrade': return upgrade(target, options);
    case 'remove': return remove(target, options);
    default: return approve(target, options);
  }
}

async function add(spec: string, options: Options): Promise<number> {
  const { config, out } = options;
  const bot = pickBot(config, options.bot);
  const { name, installed } = await install(config.dir, spec);
  out(`installed ${name} ${installed.version} into ${shown(join(config.dir, 'node_modules', name))}`);
  out(...describeRequest(installed.manifest));
  await warnIfShadowed(config, name, out);

  const granted = await confirmGrant(name, installed, options);
  const folders = (await discoverPlugins({ pluginsDir: config.pluginsDir })).plugins.map((p) => p.name);
  const change = enablePlugin(config.file, bot, name, folders);
  if (change.materialized) out(`bot ${bot} ran every plugin folder (no plugins list); ${shown(config.file)} now lists them: ${[...change.materialized, name].join(', ')}`);
  out(change.changed ? `enabled on bot ${bot} in ${shown(config.file)} (config: ${name}: {})` : `already enabled on bot ${bot}`);
  if (!granted) out(`not granted yet: it runs without these permissions until \`${approveCommand(name)}\``);
  return 0;
}

async function upgrade(spec: string, options: Options): Promise<number> {
  const { config, out } = options;
  const byName = isPath(spec) ? undefined : packageNameOf(spec);
  const before = byName === undefined ? undefined : await readInstalled(config.dir, byName).catch(() => undefined);
  if (byName !== undefined && !before) throw new QQBotError('E_PLUGIN_NOT_INSTALLED', `${byName} is not installed in ${shown(config.dir)}; use \`qqbot plugin add ${spec}\``, { plugin: byName });
  const target = byName !== undefined && spec === byName ? `${spec}@latest` : spec;
  const { name, installed, previous } = await install(config.dir, target);
  const old = before ?? previous;
  if (!old) throw new QQBotError('E_PLUGIN_NOT_INSTALLED', `${name} was not installed before; it is now: enable it with \`qqbot plugin add ${spec}\``, { plugin: name });
  out(`upgraded ${name} ${old.version} → ${installed.version}`);
  out(...describeChange(old.manifest, installed.manifest));
  const review = reviewGrant({ name, source: 'npm', manifest: installed.manifest }, readGrants(grantsFile(config.dir)));
  const pending = grantItems(review.pending);
  if (pending.length === 0) {
    out('grants: unchanged, and enough for this version');
  } else if (options.yes) {
    await writeGrant(grantsFile(config.dir), name, grantFor(installed.version, installed.manifest));
    out(`granted (--yes): ${pending.join(', ')}`);
  } else {
    out(`not granted: ${pending.join(', ')}; it runs without until \`${approveCommand(name)}\``);
  }
  return 0;
}

async function remove(name: string, options: Options): Promise<number> {
  const { config, out } = options;
  const bots = removePlugin(config.file, name);
  out(bots.length > 0 ? `removed from ${shown(config.file)} (bots: ${bots.join(', ')})` : `not enabled on any bot in ${shown(config.file)}`);
  const file = grantsFile(config.dir);
  if (readGrants(file)[name]) {
    await writeGrant(file, name, undefined);
    out(`grants withdrawn in ${shown(file)}`);
  }
  await npm(config.dir, ['uninstall', name]);
  out(`uninstalled ${name}`);
  return 0;
}

async function approve(name: string, options: Options): Promise<number> {
  const { config, out } = options;
  const installed = await readInstalled(config.dir, name);
  const file = grantsFile(config.dir);
  const review = reviewGrant({ name, source: 'npm', manifest: installed.manifest }, readGrants(file));
  const grant = grantFor(installed.version, installed.manifest);
  await writeGrant(file, name, grant);
  const added = grantItems(review.pending);
  const withdrawn = grantItems(review.dropped);
  out(`granted ${name} ${installed.version}: ${describeGrant(grant) || 'nothing (it asks for no permission)'} (${shown(file)})`);
  if (added.length > 0) out(`  + ${added.join(', ')}`);
  if (withdrawn.length > 0) out(`  - ${withdrawn.join(', ')} (no longer asked for)`);
  out('a running `qqbot start` applies it at once');
  return 0;
}

// ---- helpers ---------------------------------------------------------------------------------

function pickBot(config: RuntimeConfig, wanted: string | undefined): string {
  const names = config.bots.map((b) => b.name);
  if (wanted !== undefined) {
    if (!names.includes(wanted)) throw new QQBotError('E_CONFIG_BOT', `${shown(config.file)}: no bot named "${wanted}" (bots: ${names.join(', ')})`, { bot: wanted });
    return wanted;
  }
  if (names.length === 1) return names[0]!;
  throw new QQBotError('E_USAGE', `${shown(config.file)} has ${names.length} bots (${names.join(', ')}): say which with --bot NAME`);
}

/**
 * Runs `npm install SPEC` in the project and returns the plugin it installed, read and validated.
 * The name comes from the spec, or for a tarball or folder from the dependency npm recorded.
 */
async function install(dir: string, spec: string): Promise<{ name: string; installed: LoadedManifest; previous?: LoadedManifest }> {
  const pkgFile = join(dir, 'package.json');
  // without a package.json here, npm would install into whichever parent folder has one
  if (!existsSync(pkgFile)) writeFileSync(pkgFile, `${JSON.stringify({ name: `${basename(dir).toLowerCase().replace(/[^a-z0-9-]/g, '-')}-bot`, private: true }, null, 2)}\n`);
  const deps = () => (JSON.parse(readFileSync(pkgFile, 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {};
  const before = deps();
  const target = isPath(spec) ? resolve(spec) : spec;
  const named = isPath(spec) ? undefined : packageNameOf(spec);
  // what was installed before, to compare with (for a tarball, the name is known only afterwards)
  const previous = new Map<string, LoadedManifest>();
  for (const dep of named === undefined ? Object.keys(before) : [named]) {
    const manifest = await readInstalled(dir, dep).catch(() => undefined);
    if (manifest) previous.set(dep, manifest);
  }
  await npm(dir, ['install', '--save', target]);
  const after = deps();
  const name = named ?? Object.keys(after).find((key) => after[key] !== before[key]) ?? Object.keys(after).find((key) => after[key]?.includes(basename(target)));
  if (name === undefined) throw new QQBotError('E_PLUGIN_INSTALL', `npm installed ${spec}, but package.json names no new dependency`, { spec });
  let installed: LoadedManifest;
  try {
    installed = await readInstalled(dir, name);
  } catch (error) {
    if (!(error instanceof PluginManifestError)) throw error;
    await npm(dir, ['uninstall', name]).catch(() => undefined);
    throw new QQBotError('E_PLUGIN_MANIFEST', `${name} is not a usable qqbot plugin, so it was uninstalled again:\n${error.message}`, { plugin: name });
  }
  const old = previous.get(name);
  return { name, installed, ...(old ? { previous: old } : {}) };
}

async function readInstalled(dir: string, name: string): Promise<LoadedManifest> {
  const folder = join(dir, 'node_modules', name);
  if (!existsSync(join(folder, 'package.json'))) throw new QQBotError('E_PLUGIN_NOT_INSTALLED', `${name} is not installed in ${shown(dir)} (no ${shown(join(folder, 'package.json'))})`, { plugin: name });
  return readPluginManifest(folder, { plugin: name, displayFile: shown(join(folder, 'package.json')) });
}

function npm(cwd: string, args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn('npm', [...args, '--no-audit', '--no-fund'], { cwd, stdio: ['ignore', 'pipe', 'pipe'], shell: process.platform === 'win32' });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', (error) => fail(new QQBotError('E_NPM', `cannot run npm: ${error.message}`)));
    child.on('close', (code) => {
      if (code === 0) done();
      else fail(new QQBotError('E_NPM', `npm ${args.join(' ')} failed (exit ${code}):\n${output.trim()}`, { args }));
    });
  });
}

async function confirmGrant(name: string, installed: LoadedManifest, options: Options): Promise<boolean> {
  const grant = grantFor(installed.version, installed.manifest);
  const file = grantsFile(options.config.dir);
  let yes = options.yes || describeGrant(grant) === '';
  if (!yes && process.stdin.isTTY) {
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    yes = /^y(es)?$/i.test((await rl.question(`grant ${name} ${describeGrant(grant)}? [y/N] `)).trim());
    rl.close();
  }
  if (!yes) return false;
  await writeGrant(file, name, grant);
  options.out(`granted: ${describeGrant(grant) || 'nothing (it asks for no permission)'} (${shown(file)})`);
  return true;
}

function describeRequest(manifest: PluginManifest): string[] {
  const intents = safeIntents(manifest.events);
  return [
    `  events:      ${manifest.events.join(', ')}${intents ? ` (intents ${intents})` : ''}`,
    `  permissions: ${(manifest.permissions ?? []).join(', ') || 'none'}`,
    `  fetch hosts: ${(manifest.fetchHosts ?? []).join(', ') || 'none'}`,
  ];
}

function describeChange(before: PluginManifest, after: PluginManifest): string[] {
  const diff = (label: string, a: readonly string[] = [], b: readonly string[] = []) => {
    const added = b.filter((x) => !a.includes(x));
    const removed = a.filter((x) => !b.includes(x));
    if (added.length === 0 && removed.length === 0) return `  ${label}: ${b.join(', ') || 'none'} (unchanged)`;
    return `  ${label}: ${[...added.map((x) => `+${x}`), ...removed.map((x) => `-${x}`)].join(' ')}`;
  };
  return [diff('events', before.events, after.events), diff('permissions', before.permissions, after.permissions), diff('fetch hosts', before.fetchHosts, after.fetchHosts)];
}

function describeGrant(grant: PluginGrant): string {
  return grantItems(grant).join(', ');
}

function safeIntents(events: readonly string[]): string | undefined {
  try {
    return describeIntents(mergeIntents([{ plugin: 'x', events: [...events] }], []).intents).join(' | ');
  } catch {
    return undefined;
  }
}

async function warnIfShadowed(config: RuntimeConfig, name: string, out: Options['out']): Promise<void> {
  const found = await discoverPlugins({ pluginsDir: config.pluginsDir, projectDir: config.dir });
  for (const warning of found.warnings) if (warning.plugin === name) out(`warning: ${warning.message}`);
}

function isPath(spec: string): boolean {
  return spec.startsWith('.') || isAbsolute(spec) || /\.(tgz|tar\.gz)$/.test(spec) || spec.startsWith('file:');
}

/** `name`, `name@range`, `@scope/name@range` → the package name. */
function packageNameOf(spec: string): string {
  const at = spec.indexOf('@', spec.startsWith('@') ? 1 : 0);
  return at === -1 ? spec : spec.slice(0, at);
}

function shown(path: string): string {
  return relative(process.cwd(), path) || '.';
}
