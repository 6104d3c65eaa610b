import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError } from './config-error.ts';
import { interpolate, MissingVariableError } from './interpolate.ts';
import { botYamlSchema } from './schema.ts';
import { Secret } from './secret.ts';
import type { BotConfig, EndpointConfig, RuntimeConfig, SessionsConfig, StorageConfig, TransportConfig } from './types.ts';

type Path = Array<string | number>;

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true, coerceTypes: true });
ajv.addVocabulary(['x-expected']);
const validate = ajv.compile(botYamlSchema);

/** The credentials every embedded-simulator bot gets unless bot.yaml sets its own. */
export const SIMULATOR_DEFAULT_SECRET = 'simulator-secret';

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
}

/** Reads, interpolates and validates bot.yaml. Every problem is a ConfigError naming file:line:col and field. */
export function loadConfig(file: string, options: LoadConfigOptions = {}): RuntimeConfig {
  const path = resolve(file);
  const shown = relative(process.cwd(), path) || path;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('E_CONFIG_READ', `cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { file: shown });
  }
  return parseConfig(text, path, shown, options.env ?? process.env);
}

export function parseConfig(text: string, path: string, shown: string, env: NodeJS.ProcessEnv): RuntimeConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number | undefined) => {
    const pos = lines.linePos(offset ?? 0);
    return { file: shown, line: pos.line, col: pos.col };
  };

  const syntax = doc.errors[0];
  if (syntax) {
    throw new ConfigError('E_CONFIG_SYNTAX', syntax.message.split('\n')[0] ?? syntax.message, at(syntax.pos[0]));
  }

  interpolateNodes(doc.contents, [], env, (error, node, fieldPath) => {
    throw new ConfigError('E_CONFIG_ENV', error.message, { ...at(node.range?.[0]), field: formatPath(fieldPath) });
  });

  const raw: unknown = doc.toJS();
  if (!validate(raw)) {
    const error = pickError(validate.errors ?? []);
    const fieldPath = pathOf(error);
    const node = locate(doc, fieldPath, error);
    throw new ConfigError('E_CONFIG_SCHEMA', describe(error), { ...at(node?.range?.[0]), field: formatPath(fieldPath) || '(top level)' });
  }

  return normalise(raw as RawConfig, doc, path, at);
}

interface RawBot {
  name: string;
  appId: string | number;
  secret?: string;
  token?: string;
  endpoint?: string;
  tokenEndpoint?: string;
  transport?: 'websocket' | { webhook: { port: number; path?: string; host?: string; maxSkewSec?: number } };
  shards?: 'auto' | number;
  sessions?: 'local' | { redis: string; leaseTtlMs?: number };
  identifyWindowMs?: number;
  storage?: 'file' | { redis: string };
  intents?: Array<string | number>;
  plugins?: Record<string, unknown> | null;
  fetchHosts?: string[];
  requestTimeoutMs?: number;
}

interface RawConfig {
  pluginsDir?: string;
  dataDir?: string;
  console?: { port: number; host?: string; token?: string };
  metrics?: { port: number; host?: string };
  log?: { level?: string };
  fetch?: { allowPrivateAddresses?: boolean };
  bots: RawBot[];
}

function normalise(raw: RawConfig, doc: Document, path: string, at: (o?: number) => { file: string; line: number; col: number }): RuntimeConfig {
  const dir = dirname(path);
  const fail = (code: string, detail: string, fieldPath: Path) => {
    const node = doc.getIn(fieldPath, true) as Node | undefined;
    return new ConfigError(code, detail, { ...at(node?.range?.[0]), field: formatPath(fieldPath) });
  };

  const names = new Map<string, number>();
  const bots = raw.bots.map((bot, index): BotConfig => {
    const previous = names.get(bot.name);
    if (previous !== undefined) {
      throw fail('E_CONFIG_DUPLICATE_BOT', `duplicate bot name "${bot.name}" (also bots[${previous}])`, ['bots', index, 'name']);
    }
    names.set(bot.name, index);

    const endpoint = parseEndpoint(bot.endpoint ?? 'production');
    const simulated = endpoint.kind === 'simulator';
    const secretText = bot.secret ?? (simulated && bot.token === undefined ? SIMULATOR_DEFAULT_SECRET : undefined);
    if (secretText === undefined && bot.token === undefined) {
      throw fail('E_CONFIG_CREDENTIALS', 'missing credential: set `secret` (AppSecret, access-token flow) or `token` (legacy)', ['bots', index]);
    }
    const transport = parseTransport(bot.transport);
    if (transport.kind === 'webhook' && secretText === undefined) {
      throw fail('E_CONFIG_CREDENTIALS', 'webhook transport verifies signatures with the AppSecret: set `secret`', ['bots', index, 'transport']);
    }
    const node = doc.getIn(['bots', index], true) as Node | undefined;
    return {
      name: bot.name,
      appId: String(bot.appId),
      ...(secretText !== undefined ? { secret: new Secret(secretText) } : {}),
      ...(bot.token !== undefined ? { token: new Secret(bot.token) } : {}),
      endpoint,
      ...(bot.tokenEndpoint !== undefined ? { tokenEndpoint: bot.tokenEndpoint } : {}),
      transport,
      shards: bot.shards ?? 'auto',
      sessions: parseSessions(bot.sessions),
      ...(bot.identifyWindowMs !== undefined ? { identifyWindowMs: bot.identifyWindowMs } : {}),
      storage: parseStorage(bot.storage, bot.sessions),
      intents: bot.intents ?? [],
      ...(bot.plugins !== undefined && bot.plugins !== null ? { plugins: bot.plugins } : {}),
      ...(bot.fetchHosts !== undefined ? { fetchHosts: bot.fetchHosts } : {}),
      requestTimeoutMs: bot.requestTimeoutMs ?? 10_000,
      location: at(node?.range?.[0]),
    };
  });

  return {
    file: path,
    dir,
    pluginsDir: resolve(dir, raw.pluginsDir ?? './plugins'),
    dataDir: resolve(dir, raw.dataDir ?? './.qqbot'),
    ...(raw.console
      ? { console: { port: raw.console.port, host: raw.console.host ?? '127.0.0.1', ...(raw.console.token ? { token: new Secret(raw.console.token) } : {}) } }
      : {}),
    ...(raw.metrics ? { metrics: { port: raw.metrics.port, host: raw.metrics.host ?? '127.0.0.1' } } : {}),
    log: { level: raw.log?.level ?? 'info' },
    fetch: { allowPrivateAddresses: raw.fetch?.allowPrivateAddresses ?? false },
    bots,
  };
}

function parseEndpoint(value: string): EndpointConfig {
  if (value === 'production' || value === 'sandbox' || value === 'simulator') return { kind: value };
  return { kind: 'url', url: value.replace(/\/+$/, '') };
}

function parseTransport(value: RawBot['transport']): TransportConfig {
  if (value === undefined || value === 'websocket') return { kind: 'websocket' };
  const webhook = value.webhook;
  return { kind: 'webhook', port: webhook.port, path: webhook.path ?? '/qqbot', host: webhook.host ?? '0.0.0.0', maxSkewSec: webhook.maxSkewSec ?? 300 };
}

function parseSessions(value: RawBot['sessions']): SessionsConfig {
  if (value === undefined || value === 'local') return { kind: 'local' };
  return { kind: 'redis', url: value.redis, leaseTtlMs: value.leaseTtlMs ?? 10_000 };
}

/** A bot on Redis sessions keeps its plugin data there too, unless told otherwise. */
function parseStorage(value: RawBot['storage'], sessions: RawBot['sessions']): StorageConfig {
  if (value === 'file') return { kind: 'file' };
  if (value !== undefined) return { kind: 'redis', url: value.redis };
  if (sessions !== undefined && sessions !== 'local') return { kind: 'redis', url: sessions.redis };
  return { kind: 'file' };
}

function interpolateNodes(
  node: unknown,
  path: Path,
  env: NodeJS.ProcessEnv,
  onError: (error: MissingVariableError, node: Node, path: Path) => never,
): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      interpolateNodes(pair.value, [...path, key], env, onError);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => interpolateNodes(item, [...path, index], env, onError));
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
    // Values stay strings; the schema's type coercion turns `port: "${PORT:-8080}"` into a number.
    try {
      node.value = interpolate(node.value, env);
    } catch (error) {
      if (error instanceof MissingVariableError) onError(error, node, path);
      throw error;
    }
  }
}

/** Prefer the most specific error: oneOf wrappers hide the real cause under noise. */
function pickError(errors: ErrorObject[]): ErrorObject {
  const oneOf = errors.find((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf');
  if (oneOf) {
    const inside = errors.filter((e) => e.instancePath.startsWith(oneOf.instancePath) && e.instancePath.length > oneOf.instancePath.length);
    const deepest = inside.sort((a, b) => b.instancePath.length - a.instancePath.length)[0];
    return inside.find((e) => e.keyword === 'additionalProperties') ?? deepest ?? oneOf;
  }
  return errors.find((e) => e.keyword === 'additionalProperties') ?? errors[0]!;
}

function pathOf(error: ErrorObject): Path {
  const segments = error.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const path: Path = segments.map((s) => (/^\d+$/.test(s) ? Number(s) : s));
  if (error.keyword === 'additionalProperties') path.push(String(error.params.additionalProperty));
  if (error.keyword === 'required') path.push(String(error.params.missingProperty));
  return path;
}

function locate(doc: Document, path: Path, error: ErrorObject): Node | undefined {
  if (error.keyword === 'additionalProperties') {
    const parent = doc.getIn(path.slice(0, -1), true);
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === path[path.length - 1]);
      if (pair && isScalar(pair.key)) return pair.key;
    }
  }
  if (error.keyword === 'required') return doc.getIn(path.slice(0, -1), true) as Node | undefined;
  return (doc.getIn(path, true) as Node | undefined) ?? (doc.contents as Node | null) ?? undefined;
}

function describe(error: ErrorObject): string {
  switch (error.keyword) {
    case 'additionalProperties':
      return `unknown key "${String(error.params.additionalProperty)}"`;
    case 'required':
      return `missing required key "${String(error.params.missingProperty)}"`;
    default: {
      const expected = (error.parentSchema as Record<string, unknown> | undefined)?.['x-expected'];
      return typeof expected === 'string' ? `expected ${expected}` : (error.message ?? 'invalid value');
    }
  }
}

export function formatPath(path: Path): string {
  return path.reduce<string>((text, segment) => (typeof segment === 'number' ? `${text}[${segment}]` : text ? `${text}.${segment}` : segment), '');
}
