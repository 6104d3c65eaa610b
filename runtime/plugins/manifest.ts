/**
 * The `qqbot` field of a plugin's package.json: read, validated, resolved to host values
 * (entry file, limits, config). Every error names the plugin, the file and the field.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { PluginManifest } from 'qqbot-sdk-types';
import { PLUGIN_MANIFEST_SCHEMA } from '../../sdk-types/manifest-schema.ts';
import { QQBotError } from '../errors.ts';
import { DEFAULT_LIMITS, MAX_LIMITS, type PluginLimits } from './instance.ts';

export class PluginManifestError extends QQBotError {
  readonly problems: readonly string[];

  constructor(plugin: string, file: string, problems: { field: string; message: string }[]) {
    const lines = problems.map((p) => `${file}: ${p.field}: ${p.message}`);
    super('E_PLUGIN_MANIFEST', lines.join('\n'), { plugin, file, field: problems[0]?.field });
    this.problems = lines;
  }
}

/** Where a plugin's config section is, for its errors. */
export interface ConfigSite {
  /** the section's path, e.g. `bots.demo.plugins.weather` */
  path: string;
  /** file:line:col of a field below the section (`units`, `faces[0]`; '' for the section itself) */
  locate?: (field: string) => SourceLocation | undefined;
}

export interface SourceLocation {
  file: string;
  line: number;
  col: number;
}

/** A config section the plugin's schema refuses; each line starts with `file:line:col:` when known. */
export class PluginConfigError extends QQBotError {
  readonly problems: readonly string[];

  constructor(plugin: string, site: ConfigSite, problems: { field: string; message: string }[]) {
    const located = problems.map((p) => ({ ...p, at: nearestLocation(site, p.field) }));
    const lines = located.map((p) => `${p.at ? `${p.at.file}:${p.at.line}:${p.at.col}: ` : ''}${site.path}${p.field ? `.${p.field}` : ''}: ${p.message}`);
    const first = located[0];
    super('E_PLUGIN_CONFIG', `${lines.join('\n')}${lines.length > 1 ? '\n' : ' '}(config of plugin "${plugin}")`, { plugin, field: first ? `${site.path}${first.field ? `.${first.field}` : ''}` : site.path, ...first?.at });
    this.problems = lines;
  }
}

/** The field's own position, else its nearest ancestor's (a missing key points at its parent). */
function nearestLocation(site: ConfigSite, field: string): SourceLocation | undefined {
  if (!site.locate) return undefined;
  for (let path = field; ; path = path.replace(/(\.?[^.[\]]+|\[\d+\])$/, '')) {
    const found = site.locate(path);
    if (found || path === '') return found;
  }
}

/** A plugin package whose manifest passed validation. */
export interface LoadedManifest {
  /** package.json `name` */
  packageName: string;
  version: string;
  /** absolute path of the entry module */
  main: string;
  manifest: PluginManifest;
}

const ENTRY_CANDIDATES = ['index.ts', 'index.js', 'index.mjs'];

const manifestAjv = new Ajv({ allErrors: true, verbose: true });
const validateManifestShape = manifestAjv.compile(PLUGIN_MANIFEST_SCHEMA);
const configValidators = new WeakMap<object, ValidateFunction>();

/**
 * Plugin config schemas are third-party, so lenient. Each gets its own Ajv: a shared one keeps every
 * schema it ever compiled (a leak across hot reloads) and refuses a second schema with the same
 * `$id` (the same plugin read again). Cached per schema object.
 */
function compileConfigSchema(schema: object): ValidateFunction {
  let validate = configValidators.get(schema);
  if (!validate) {
    validate = new Ajv({ allErrors: true, strict: false, useDefaults: true }).compile(schema);
    configValidators.set(schema, validate);
  }
  return validate;
}

/**
 * Reads `<dir>/package.json` and validates its `qqbot` field. `plugin` names the plugin in errors
 * (folder or package name); `displayFile` is the path shown in them (e.g. `plugins/dice/package.json`).
 */
export async function readPluginManifest(dir: string, options: { plugin?: string; displayFile?: string } = {}): Promise<LoadedManifest> {
  const file = join(dir, 'package.json');
  const shown = options.displayFile ?? file;
  let pkg: Record<string, unknown>;
  try {
    pkg = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new PluginManifestError(options.plugin ?? dir, shown, [{ field: 'package.json', message: (error as Error).message }]);
  }
  const plugin = options.plugin ?? (typeof pkg.name === 'string' ? pkg.name : dir);
  const fail = (problems: { field: string; message: string }[]): never => {
    throw new PluginManifestError(plugin, shown, problems);
  };
  if (typeof pkg.name !== 'string' || pkg.name === '') fail([{ field: 'name', message: 'must be a non-empty string' }]);
  if (pkg.qqbot === undefined) fail([{ field: 'qqbot', message: 'missing: not a qqbot plugin' }]);

  const problems = validateManifest(pkg.qqbot);
  if (problems.length > 0) fail(problems);
  const manifest = pkg.qqbot as PluginManifest;

  const main = await resolveEntry(dir, pkg.main);
  if (typeof main !== 'string') fail([{ field: 'main', message: main.message }]);

  return { packageName: pkg.name as string, version: typeof pkg.version === 'string' ? pkg.version : '0.0.0', main: main as string, manifest };
}

/** Structural, limits and config-schema checks of a `qqbot` value; fields are `qqbot.…` paths. */
export function validateManifest(value: unknown): { field: string; message: string }[] {
  if (!validateManifestShape(value)) return (validateManifestShape.errors ?? []).map(describeManifestError);
  const manifest = value as PluginManifest;
  const problems: { field: string; message: string }[] = [];
  for (const [key, requested] of Object.entries(manifest.limits ?? {})) {
    const max = MAX_LIMITS[key as keyof PluginLimits];
    if (typeof requested === 'number' && requested > max) {
      problems.push({ field: `qqbot.limits.${key}`, message: `${requested} exceeds the host maximum ${max}` });
    }
  }
  if (manifest.config !== undefined) {
    try {
      compileConfigSchema(manifest.config);
    } catch (error) {
      problems.push({ field: 'qqbot.config', message: `not a valid JSON Schema: ${(error as Error).message}` });
    }
  }
  return problems;
}

/** The plugin's limits: host defaults overridden by the manifest (already checked against the maxima). */
export function resolveLimits(manifest: PluginManifest): PluginLimits {
  return { ...DEFAULT_LIMITS, ...manifest.limits };
}

/**
 * Validates a bot.yaml plugin section against the manifest's config schema, with defaults applied.
 * `site` places the section for errors (its bot.yaml path, and file:line:col of each key).
 */
export function resolvePluginConfig(
  plugin: { name: string; manifest: PluginManifest },
  section: unknown,
  site: ConfigSite = { path: 'config' },
): Record<string, unknown> {
  const schema = plugin.manifest.config;
  const value = section === undefined || section === null || section === true ? {} : structuredClone(section);
  if (schema === undefined) {
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new PluginConfigError(plugin.name, site, [{ field: '', message: 'must be a map of settings' }]);
    }
    return value as Record<string, unknown>;
  }
  const validate = compileConfigSchema(schema);
  if (!validate(value)) throw new PluginConfigError(plugin.name, site, (validate.errors ?? []).map(describeConfigError));
  return value as Record<string, unknown>;
}

function describeConfigError(error: ErrorObject): { field: string; message: string } {
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(error.params.additionalProperty);
      return { field: jsonPointerToField(error.instancePath, key), message: `unknown key "${key}"` };
    }
    case 'required': {
      const key = String(error.params.missingProperty);
      return { field: jsonPointerToField(error.instancePath, key), message: `missing required key "${key}"` };
    }
    default:
      return { field: jsonPointerToField(error.instancePath), message: error.message ?? 'invalid' };
  }
}

async function resolveEntry(dir: string, main: unknown): Promise<string | { message: string }> {
  if (main !== undefined && typeof main !== 'string') return { message: 'must be a string' };
  const candidates = typeof main === 'string' ? [main] : ENTRY_CANDIDATES;
  for (const candidate of candidates) {
    const file = resolve(dir, candidate);
    if (!file.startsWith(resolve(dir) + sep)) return { message: `"${candidate}" points outside the plugin folder` };
    const info = await stat(file).catch(() => undefined);
    if (info?.isFile()) return file;
  }
  return typeof main === 'string'
    ? { message: `entry file "${main}" does not exist` }
    : { message: `missing, and none of ${ENTRY_CANDIDATES.join(', ')} exists` };
}

function describeManifestError(error: ErrorObject): { field: string; message: string } {
  const extra = error.keyword === 'required' ? String(error.params.missingProperty)
    : error.keyword === 'additionalProperties' ? String(error.params.additionalProperty) : undefined;
  const field = 'qqbot' + fieldSuffix(error.instancePath, extra);
  if (error.keyword === 'enum' && /^\/events\/\d+$/.test(error.instancePath)) {
    return { field, message: `unknown event type ${JSON.stringify(valueAt(error))}` };
  }
  if (error.keyword === 'enum' && /^\/permissions\/\d+$/.test(error.instancePath)) {
    return { field, message: `unknown permission ${JSON.stringify(valueAt(error))}` };
  }
  if (error.keyword === 'additionalProperties') return { field, message: 'unknown field' };
  if (error.keyword === 'required') return { field, message: 'is required' };
  return { field, message: error.message ?? 'invalid' };
}

// `verbose: true` puts the offending value on the error as `data`.
function valueAt(error: ErrorObject): unknown {
  return (error as ErrorObject & { data?: unknown }).data;
}

function fieldSuffix(pointer: string, extra?: string): string {
  const parts = pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  return parts.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('');
}

function jsonPointerToField(pointer: string, extra?: string): string {
  return fieldSuffix(pointer, extra).replace(/^\./, '');
}
