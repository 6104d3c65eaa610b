/**
 * Finds plugins: folders of `pluginsDir` and npm packages in `<projectDir>/node_modules` whose
 * package.json has a `qqbot` field. A broken plugin is reported in `problems`; the rest load.
 *
 * One name, two sources: a plugin folder is the operator's own code, so it wins over an installed
 * package that bot.yaml would reach by the same name (folder name or package name); the package is
 * set aside with a warning naming both paths. Nothing is dropped for a clash otherwise: a name two
 * folders share as package name is only refused when bot.yaml uses it (`findPlugin`).
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { PluginManifest } from 'qqbot-sdk-types';
import { QQBotError } from '../errors.ts';
import { PluginManifestError, readPluginManifest } from './manifest.ts';

export interface DiscoveredPlugin {
  /** what bot.yaml uses: the folder name, or the npm package name */
  name: string;
  /** package.json `name` */
  packageName: string;
  version: string;
  /** absolute plugin folder */
  dir: string;
  /** absolute entry file */
  main: string;
  source: 'folder' | 'npm';
  manifest: PluginManifest;
}

export interface DiscoveryProblem {
  code: string;
  message: string;
  /** plugin name as far as known */
  plugin: string;
  paths: string[];
}

export interface DiscoveryResult {
  plugins: DiscoveredPlugin[];
  problems: DiscoveryProblem[];
  /** installed packages shadowed by a plugin folder of the same name (they are not in `plugins`) */
  warnings: DiscoveryProblem[];
}

export class PluginNotFoundError extends QQBotError {
  constructor(name: string, known: string[], ambiguous: DiscoveredPlugin[] = []) {
    const message = ambiguous.length > 1
      ? `plugin "${name}" is enabled, but that is the package name of ${ambiguous.map((p) => `${p.dir} (folder ${p.name})`).join(' and ')}; enable one by its folder name`
      : `plugin "${name}" is enabled but was not found (known: ${known.join(', ') || 'none'})`;
    super('E_PLUGIN_NOT_FOUND', message, { plugin: name });
  }
}

/**
 * The plugin bot.yaml means by `name`: the one of that name (folder name, or npm package name),
 * else the only folder whose package has that name.
 */
export function findPlugin(plugins: readonly DiscoveredPlugin[], name: string): DiscoveredPlugin | undefined {
  const byName = plugins.find((p) => p.name === name);
  if (byName) return byName;
  const byPackage = plugins.filter((p) => p.packageName === name);
  return byPackage.length === 1 ? byPackage[0] : undefined;
}

export async function discoverPlugins(options: { pluginsDir?: string; projectDir?: string }): Promise<DiscoveryResult> {
  const base = options.projectDir ?? process.cwd();
  const candidates: { name: string; dir: string; source: 'folder' | 'npm' }[] = [];
  if (options.pluginsDir !== undefined) {
    for (const entry of await listDirs(options.pluginsDir)) {
      candidates.push({ name: entry, dir: join(options.pluginsDir, entry), source: 'folder' });
    }
  }
  if (options.projectDir !== undefined) {
    const modules = join(options.projectDir, 'node_modules');
    for (const entry of await listDirs(modules)) {
      if (entry.startsWith('.')) continue;
      if (entry.startsWith('@')) {
        for (const scoped of await listDirs(join(modules, entry))) {
          candidates.push({ name: `${entry}/${scoped}`, dir: join(modules, entry, scoped), source: 'npm' });
        }
      } else {
        candidates.push({ name: entry, dir: join(modules, entry), source: 'npm' });
      }
    }
  }

  const plugins: DiscoveredPlugin[] = [];
  const problems: DiscoveryProblem[] = [];
  // A workspace links a plugin folder into node_modules: one plugin seen twice, not a clash.
  // Folders come first in `candidates`, so the folder name wins.
  const seen = new Set<string>();
  for (const candidate of candidates) {
    const real = await realpath(candidate.dir).catch(() => candidate.dir);
    if (seen.has(real)) continue;
    seen.add(real);
    if (!(await hasQQBotField(candidate.dir, candidate.source === 'folder'))) continue;
    const displayFile = relative(base, join(candidate.dir, 'package.json')) || 'package.json';
    try {
      const loaded = await readPluginManifest(candidate.dir, { plugin: candidate.name, displayFile });
      // npm packages are named by their package name, whatever folder npm put them in
      const name = candidate.source === 'npm' ? loaded.packageName : candidate.name;
      plugins.push({ name, packageName: loaded.packageName, version: loaded.version, dir: candidate.dir, main: loaded.main, source: candidate.source, manifest: loaded.manifest });
    } catch (error) {
      if (!(error instanceof PluginManifestError)) throw error;
      problems.push({ code: error.code, message: error.message, plugin: candidate.name, paths: [candidate.dir] });
    }
  }

  const warnings: DiscoveryProblem[] = [];
  const folders = plugins.filter((p) => p.source === 'folder');
  const shadowed = new Set<DiscoveredPlugin>();
  for (const installed of plugins.filter((p) => p.source === 'npm')) {
    const folder = folders.find((f) => f.name === installed.name || f.packageName === installed.name);
    if (!folder) continue;
    shadowed.add(installed);
    warnings.push({
      code: 'W_PLUGIN_SHADOWED',
      message: `plugin "${installed.name}": the folder ${folder.dir} is used, not the installed package ${installed.dir} (${installed.version}); a plugin folder wins over a package of the same name. Rename or remove the folder to run the package`,
      plugin: installed.name,
      paths: [folder.dir, installed.dir],
    });
  }
  return { plugins: plugins.filter((p) => !shadowed.has(p)), problems, warnings };
}

/**
 * The plugins a bot enables, by folder or package name. Without a list, every plugin of the plugins
 * folder (not npm packages: installing a package must not silently run it on every bot).
 */
export function selectPlugins(discovered: DiscoveredPlugin[], enabled?: readonly string[]): DiscoveredPlugin[] {
  if (enabled === undefined) return discovered.filter((p) => p.source === 'folder');
  return enabled.map((name) => {
    const found = findPlugin(discovered, name);
    if (!found) throw new PluginNotFoundError(name, discovered.map((p) => p.name), discovered.filter((p) => p.packageName === name));
    return found;
  });
}

async function listDirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  const dirs: string[] = [];
  for (const entry of entries.sort()) {
    // stat, not the dirent: workspaces and `npm link` put symlinks into node_modules
    const info = await stat(join(dir, entry)).catch(() => undefined);
    if (info?.isDirectory()) dirs.push(entry);
  }
  return dirs;
}

// A broken package.json in the plugins folder is worth reporting; in node_modules it is noise.
async function hasQQBotField(dir: string, reportUnparsable: boolean): Promise<boolean> {
  const text = await readFile(join(dir, 'package.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  try {
    const pkg = JSON.parse(text) as unknown;
    return typeof pkg === 'object' && pkg !== null && 'qqbot' in pkg;
  } catch {
    return reportUnparsable;
  }
}
