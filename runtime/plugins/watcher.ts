/**
 * Watches the plugins folder, the files each loaded plugin was bundled from, and the folders of the
 * installed packages that are plugins (`node_modules/<name>`: an `npm install` of a new version is a
 * change like a save), and reports which plugins a burst of file-system events touched. Bursts are coalesced per plugin: an editor's save
 * (temp file, rename, unlink + add, several writes) becomes one change, ~100 ms after it went quiet.
 */
import { EventEmitter } from 'node:events';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { silentLogger, type Logger } from '../logging/logger.ts';

export interface PluginChange {
  /** plugin folder name, or the name of a plugin whose bundle inputs changed */
  plugin: string;
  /** absolute paths touched in the burst */
  paths: string[];
  /** the folder, or its package.json, appeared or disappeared: discovery must run again */
  structural: boolean;
}

export interface PluginWatcherOptions {
  pluginsDir: string;
  /** `<project>/node_modules`: the plugins among `packages` are watched there */
  packagesDir?: string;
  /** npm package names of plugins (installed or not yet) whose folders are watched */
  packages?: readonly string[];
  /** quiet time that ends a burst (default 100 ms) */
  debounceMs?: number;
  /** a burst that never goes quiet is still reported after this long (default 1 s) */
  maxWaitMs?: number;
  logger?: Logger;
}

export interface PluginWatcherEvents {
  change: [change: PluginChange];
  error: [error: Error];
}

interface Burst {
  paths: Set<string>;
  structural: boolean;
  timer: NodeJS.Timeout;
  firstAt: number;
}

// vim writes 4913 to probe the folder, and keeps *.swp/*.swx; emacs: .#lock and #autosave#; many: name~
const EDITOR_DEBRIS = [/^4913$/, /\.sw[a-z]$/, /~$/, /^\.#/, /^#.*#$/];

/** True for paths a reload must never look at: node_modules, dotfiles, editor temp and backup files. */
export function isIgnoredPath(path: string, roots: readonly string[] = []): boolean {
  if (roots.includes(path)) return false;
  const name = basename(path);
  if (name.startsWith('.') || EDITOR_DEBRIS.some((re) => re.test(name))) return true;
  // only below a watched root: the project itself may live under some node_modules
  const root = roots.find((r) => path.startsWith(r + sep));
  return (root ? path.slice(root.length) : path).split(sep).includes('node_modules');
}

export class PluginWatcher extends EventEmitter<PluginWatcherEvents> {
  readonly #pluginsDir: string;
  readonly #packagesDir: string | undefined;
  readonly #packages: ReadonlySet<string>;
  readonly #debounceMs: number;
  readonly #maxWaitMs: number;
  readonly #log: Logger;
  readonly #bursts = new Map<string, Burst>();
  /** input file → plugins bundled from it (files anywhere, also outside the plugins folder) */
  readonly #inputs = new Map<string, Set<string>>();
  /** extra paths given to chokidar (inputs outside the plugins folder) */
  readonly #extra = new Set<string>();
  #watcher: FSWatcher | undefined;
  #closed = false;

  constructor(options: PluginWatcherOptions) {
    super();
    this.#pluginsDir = resolve(options.pluginsDir);
    this.#packagesDir = options.packagesDir === undefined ? undefined : resolve(options.packagesDir);
    this.#packages = new Set(options.packages ?? []);
    this.#debounceMs = options.debounceMs ?? 100;
    this.#maxWaitMs = options.maxWaitMs ?? 1000;
    this.#log = options.logger ?? silentLogger;
  }

  /** Resolves once the initial scan is done: changes after this are reported. */
  async start(): Promise<void> {
    const roots = [this.#pluginsDir];
    const packages = this.#packagesDir !== undefined && this.#packages.size > 0 ? [this.#packagesDir] : [];
    const watcher = watch([this.#pluginsDir, ...packages], {
      ignoreInitial: true,
      // an unlink followed by an add of the same file is one change (atomic saves)
      atomic: true,
      ignored: (path: string) => {
        const pkg = this.#packageOf(path);
        if (pkg !== undefined) return pkg === null || isIgnoredPath(path, [join(this.#packagesDir!, pkg)]);
        return isIgnoredPath(path, [...roots, ...packages, ...this.#extra]);
      },
    });
    this.#watcher = watcher;
    watcher.on('all', (event, path) => this.#onEvent(event, resolve(path)));
    watcher.on('error', (error) => this.emit('error', error as Error));
    await new Promise<void>((done) => watcher.once('ready', () => done()));
    if (this.#extra.size > 0) watcher.add([...this.#extra]);
  }

  /**
   * Records the files a plugin's current version was built from; a change to any of them is a
   * change of that plugin, wherever the file lives. Replaces what was tracked for the plugin.
   */
  track(plugin: string, inputs: readonly string[]): void {
    this.untrack(plugin);
    for (const input of inputs.map((p) => resolve(p))) {
      if (isIgnoredPath(input)) continue;
      let owners = this.#inputs.get(input);
      if (!owners) this.#inputs.set(input, (owners = new Set()));
      owners.add(plugin);
      if (!this.#inside(input) && !this.#extra.has(input)) {
        this.#extra.add(input);
        this.#watcher?.add(input);
      }
    }
  }

  untrack(plugin: string): void {
    for (const [input, owners] of this.#inputs) {
      if (!owners.delete(plugin) || owners.size > 0) continue;
      this.#inputs.delete(input);
      if (this.#extra.delete(input)) this.#watcher?.unwatch(input);
    }
  }

  /** The plugins bundled from a file. */
  trackedBy(path: string): string[] {
    return [...(this.#inputs.get(resolve(path)) ?? [])];
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const burst of this.#bursts.values()) clearTimeout(burst.timer);
    this.#bursts.clear();
    await this.#watcher?.close();
    this.#watcher = undefined;
  }

  /**
   * For a path in the packages folder: the watched package it belongs to, '' for the folder itself
   * or a scope folder holding one, null for anything else there; undefined outside the folder.
   */
  #packageOf(path: string): string | null | undefined {
    if (this.#packagesDir === undefined || (path !== this.#packagesDir && !path.startsWith(this.#packagesDir + sep))) return undefined;
    const parts = relative(this.#packagesDir, path).split(sep).filter(Boolean);
    if (parts.length === 0) return '';
    const scoped = parts[0]!.startsWith('@');
    if (scoped && parts.length === 1) return [...this.#packages].some((p) => p.startsWith(`${parts[0]}/`)) ? '' : null;
    const name = scoped ? `${parts[0]}/${parts[1]}` : parts[0]!;
    return this.#packages.has(name) ? name : null;
  }

  #inside(path: string): boolean {
    const rel = relative(this.#pluginsDir, path);
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  }

  #onEvent(event: string, path: string): void {
    if (this.#closed) return;
    const keys = new Map<string, boolean>();
    if (this.#inside(path)) {
      const parts = relative(this.#pluginsDir, path).split(sep);
      const folder = parts[0]!;
      const isFolder = parts.length === 1 && (event === 'addDir' || event === 'unlinkDir');
      const isManifest = parts.length === 2 && parts[1] === 'package.json' && (event === 'add' || event === 'unlink');
      // files directly in the plugins folder belong to no plugin
      if (parts.length > 1 || isFolder) keys.set(folder, isFolder || isManifest);
    }
    const pkg = this.#packageOf(path);
    if (pkg) {
      // the package folder itself or its package.json: installed, removed, or another version
      const dir = join(this.#packagesDir!, pkg);
      keys.set(pkg, path === dir || path === join(dir, 'package.json'));
    }
    for (const plugin of this.#inputs.get(path) ?? []) if (!keys.has(plugin)) keys.set(plugin, false);
    for (const [plugin, structural] of keys) this.#touch(plugin, path, structural);
  }

  #touch(plugin: string, path: string, structural: boolean): void {
    const now = Date.now();
    let burst = this.#bursts.get(plugin);
    if (burst) clearTimeout(burst.timer);
    else burst = { paths: new Set(), structural: false, timer: undefined as unknown as NodeJS.Timeout, firstAt: now };
    burst.paths.add(path);
    burst.structural ||= structural;
    const wait = Math.max(0, Math.min(this.#debounceMs, burst.firstAt + this.#maxWaitMs - now));
    burst.timer = setTimeout(() => this.#flush(plugin), wait);
    this.#bursts.set(plugin, burst);
  }

  #flush(plugin: string): void {
    const burst = this.#bursts.get(plugin);
    if (!burst) return;
    this.#bursts.delete(plugin);
    const change: PluginChange = { plugin, paths: [...burst.paths], structural: burst.structural };
    this.#log.debug({ plugin, paths: change.paths.length, structural: change.structural }, 'plugin files changed');
    this.emit('change', change);
  }
}
