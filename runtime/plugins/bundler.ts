/**
 * Bundles a plugin's entry and its pure-JS dependencies into one iife script for an isolate.
 * Node built-ins are refused at build time, so a plugin learns about them from the error, not from
 * a missing `require` in production. Bundling reads files with the host's rights, so what a plugin
 * may pull in is bounded too: a `../../data/storage/…json` or `../../secrets.txt` import would hand
 * it what the sandbox keeps from it. Data files (JSON, text) must come from the plugin's folder or an
 * installed package; a folder plugin may share code (.ts/.js) from anywhere in the project; an npm
 * plugin (third-party) may not leave node_modules at all.
 */
import { readFile, realpath } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Message, type Plugin } from 'esbuild';
import { QQBotError } from '../errors.ts';
import { PLUGIN_GLOBAL } from './sandbox/prelude/boundary.ts';

export interface PluginBundle {
  code: string;
  /** source map JSON; sources are relative to `displayRoot` */
  sourceMap: string;
  /** entry file relative to `displayRoot` (shown in stacks) */
  filename: string;
  /** absolute paths of every file that went in (what a watcher should watch) */
  inputs: string[];
}

export interface BundleOptions {
  /** absolute entry file (DiscoveredPlugin.main) */
  entry: string;
  /** paths in errors, stacks and the source map are relative to this (default: the entry's folder's parent) */
  displayRoot?: string;
  /** the plugin's folder: imports must stay in it or in node_modules (default: the nearest folder up from the entry whose package.json has a `qqbot` field) */
  root?: string;
}

export class PluginBuildError extends QQBotError {
  readonly errors: readonly string[];

  constructor(entry: string, errors: string[]) {
    super('E_PLUGIN_BUILD', `cannot bundle ${entry}:\n${errors.join('\n')}`, { entry, errors });
    this.errors = errors;
  }
}

const SHIM_NAMESPACE = 'qqbot-sdk-shim';
// The runtime's own copy of the SDK (sources in a checkout, compiled beside dist/runtime when installed):
// a plugin sees the tables of the runtime that runs it, whatever SDK version it was written against.
const here = fileURLToPath(import.meta.url);
const sdkDir = resolve(dirname(here), '../../sdk-types');
const builtins = new Set(builtinModules);

// The values a plugin may import from qqbot-sdk-types; everything else there is types (erased).
const SHIM_SOURCE = [
  `export { API_METHODS, PERMISSIONS } from ${JSON.stringify(join(sdkDir, `api${extname(here)}`))};`,
  `export { EVENT_TYPES } from ${JSON.stringify(join(sdkDir, `event-types${extname(here)}`))};`,
].join('\n');

export async function bundlePlugin(options: BundleOptions): Promise<PluginBundle> {
  const entry = resolve(options.entry);
  const displayRoot = resolve(options.displayRoot ?? dirname(dirname(entry)));
  const filename = relative(displayRoot, entry);
  const root = await realpath(options.root ?? await pluginRootOf(entry)).catch(() => dirname(entry));
  let result;
  try {
    result = await build({
      entryPoints: [entry],
      // never written (write: false); it only anchors the source map's relative paths
      outfile: join(displayRoot, '__qqbot_bundle.js'),
      absWorkingDir: displayRoot,
      write: false,
      bundle: true,
      format: 'iife',
      globalName: PLUGIN_GLOBAL,
      platform: 'neutral',
      mainFields: ['module', 'main'],
      conditions: ['import', 'module', 'default'],
      resolveExtensions: ['.ts', '.tsx', '.mts', '.js', '.mjs', '.cjs', '.json'],
      target: 'es2022',
      sourcemap: 'external',
      metafile: true,
      logLevel: 'silent',
      // libraries read this; the isolate has no `process`
      define: { 'process.env.NODE_ENV': '"production"' },
      plugins: [sandboxImports(root, displayRoot)],
    });
  } catch (error) {
    const messages = (error as { errors?: Message[] }).errors;
    if (!messages) throw error;
    throw new PluginBuildError(filename, messages.map((m) => formatMessage(m, displayRoot)));
  }

  const code = result.outputFiles.find((f) => f.path.endsWith('.js'))?.text ?? '';
  const sourceMap = result.outputFiles.find((f) => f.path.endsWith('.map'))?.text ?? '';
  const inputs = Object.keys(result.metafile.inputs)
    .filter((p) => !p.includes(':') || isAbsolute(p))
    .map((p) => resolve(displayRoot, p));
  return { code, sourceMap, filename, inputs };
}

const RESOLVING = Symbol('resolving');

const CODE_EXTENSIONS = new Set(['.ts', '.tsx', '.mts', '.cts', '.js', '.jsx', '.mjs', '.cjs']);

function sandboxImports(root: string, displayRoot: string): Plugin {
  const inside = (path: string, dir: string): boolean => path === dir || path.startsWith(dir + sep);
  const inPackages = (path: string): boolean => path.split(sep).includes('node_modules');
  const fromNpm = inPackages(root);
  const allowed = (path: string): boolean => inside(path, root) || inside(path, sdkDir) || inPackages(path)
    || (!fromNpm && CODE_EXTENSIONS.has(extname(path)));
  return {
    name: 'qqbot-sandbox-imports',
    setup(b) {
      b.onResolve({ filter: /^qqbot-(sdk-types|runtime)(\/.*)?$/ }, (args) => {
        if (args.path === 'qqbot-sdk-types') return { path: 'qqbot-sdk-types', namespace: SHIM_NAMESPACE };
        return { errors: [{ text: `"${args.path}" is not available inside a plugin (only "qqbot-sdk-types" is; "qqbot-runtime/testing" is for tests)` }] };
      });
      b.onLoad({ filter: /.*/, namespace: SHIM_NAMESPACE }, () => ({ contents: SHIM_SOURCE, loader: 'js', resolveDir: sdkDir }));
      b.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === RESOLVING) return undefined;
        const bare = args.path.startsWith('node:') ? args.path.slice(5) : args.path;
        const first = bare.split('/')[0] ?? bare;
        if (args.path.startsWith('node:') || builtins.has(bare) || builtins.has(first)) {
          return { errors: [{ text: `Node built-in "${args.path}" is not available to plugins (they run in a sandbox without Node APIs)` }] };
        }
        if (args.namespace === SHIM_NAMESPACE) return undefined;
        // resolve as esbuild would (tsconfig paths, symlinks to real paths), then look where it landed
        const found = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: RESOLVING });
        if (found.errors.length > 0 || found.external || found.namespace !== 'file' || found.path === '' || allowed(found.path)) return found;
        const rule = fromNpm ? 'a plugin installed from npm may import its own files and installed packages only'
          : 'plugins may import code from the project, but data files only from their own folder or installed packages';
        return { errors: [{ text: `"${args.path}" is outside the plugin's folder (${relative(displayRoot, found.path)}); ${rule}` }] };
      });
    },
  };
}

/** The nearest folder up from `entry` whose package.json has a `qqbot` field, else the entry's folder. */
async function pluginRootOf(entry: string): Promise<string> {
  for (let dir = dirname(entry); ; dir = dirname(dir)) {
    const pkg = await readFile(join(dir, 'package.json'), 'utf8').then((t) => JSON.parse(t) as unknown, () => undefined);
    if (typeof pkg === 'object' && pkg !== null && 'qqbot' in pkg) return dir;
    if (dirname(dir) === dir) return dirname(entry);
  }
}

function formatMessage(message: Message, displayRoot: string): string {
  const where = message.location;
  if (!where) return message.text;
  const file = isAbsolute(where.file) ? relative(displayRoot, where.file) : where.file;
  return `${file}:${where.line}:${where.column + 1}: ${message.text}${where.lineText ? `\n    ${where.lineText.trim()}` : ''}`;
}
