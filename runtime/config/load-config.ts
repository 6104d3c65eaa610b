import { statSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { ErrorCode } from '../errors.ts';
import { isLoopbackHost, isWildcardHost } from '../net/hosts.ts';
import { ConfigError } from './config-error.ts';
import { decodeConfigText, MAX_CONFIG_BYTES, readCapped } from './config-text.ts';
import { interpolate, MissingVariableError } from './interpolate.ts';
import { botYamlSchema } from './schema.ts';
import { Secret } from './secret.ts';
import type { BotConfig, BotRole, EndpointConfig, RuntimeConfig, SessionsConfig, SourceLocation, StorageConfig, StreamConfig, TransportConfig } from './types.ts';

type Path = Array<string | number>;

const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true, coerceTypes: true });
ajv.addVocabulary(['x-expected']);
const validate = ajv.compile(botYamlSchema);

/** The credentials every embedded-simulator bot gets unless bot.yaml sets its own. */
export const SIMULATOR_DEFAULT_SECRET = 'simulator-secret';

/**
 * Alias expansions allowed while building the config (yaml's own guard, named here): a few aliases
 * are fine, a "billion laughs" file is refused before it is expanded.
 */
const MAX_ALIAS_COUNT = 100;

/**
 * More shards than a bot may start sessions in a day cannot all run: the platform grants
 * `session_start_limit.total` (1000 for a bot) starts per 24 h, one per shard. `qqbot start`
 * also checks the count against what /gateway/bot says remains today.
 */
export const MAX_SHARDS = 1000;

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** `qqbot start --role`: every bot of the file takes this role, whatever its `role:` says */
  role?: BotRole;
}

/**
 * Reads, interpolates and validates bot.yaml. Every problem is a ConfigError naming file:line:col
 * and field: syntax, encoding, size, schema, unset variables, duplicate bots and apps, port
 * clashes, a console open to the network without a token, a plugins folder that is not there.
 */
export function loadConfig(file: string, options: LoadConfigOptions = {}): RuntimeConfig {
  const path = resolve(file);
  const shown = relative(process.cwd(), path) || path;
  let read: ReturnType<typeof readCapped>;
  try {
    read = readCapped(path);
  } catch (error) {
    throw new ConfigError('E_CONFIG_READ', `cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { file: shown });
  }
  if ('over' in read) {
    throw new ConfigError('E_CONFIG_TOO_LARGE', `the file is ${read.size} bytes; a bot.yaml may be at most ${MAX_CONFIG_BYTES} bytes (is this the right file?)`, { file: shown });
  }
  const decoded = decodeConfigText(read.bytes);
  if ('problem' in decoded) {
    const { detail, text, charOffset } = decoded.problem;
    if (text === undefined || charOffset === undefined) throw new ConfigError('E_CONFIG_ENCODING', detail, { file: shown });
    // the bytes around the bad one are usually fine YAML: name the field it sits in
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
    const field = formatPath(fieldAt(doc.contents, charOffset) ?? []);
    const pos = lines.linePos(charOffset);
    throw new ConfigError('E_CONFIG_ENCODING', detail, { file: shown, line: pos.line, col: pos.col, ...(field ? { field } : {}) });
  }
  const config = parseConfig(decoded.text, path, shown, options.env ?? process.env, options.role);
  checkPluginsDir(config, shown);
  return config;
}

/** Without a plugins folder every bot would start with nothing to run and fail with "no intents". */
function checkPluginsDir(config: RuntimeConfig, shown: string): void {
  let isDir = false;
  try {
    isDir = statSync(config.pluginsDir).isDirectory();
  } catch {
    // absent or unreadable: reported below
  }
  if (isDir) return;
  const where = config.locations['pluginsDir'];
  const named = relative(process.cwd(), config.pluginsDir) || config.pluginsDir;
  // the default folder may be absent when every bot lists only npm plugins by name
  if (!where && config.bots.every((bot) => bot.plugins !== undefined)) return;
  throw new ConfigError(
    'E_CONFIG_PLUGINS_DIR',
    where
      ? `the plugins folder ${named} does not exist (or is not a folder)`
      : `no plugins folder: ${named} does not exist; create it (npx qqbot new-plugin NAME), set pluginsDir, or list each bot's plugins`,
    where ? { ...where, field: 'pluginsDir' } : { file: shown },
  );
}

export function parseConfig(text: string, path: string, shown: string, env: NodeJS.ProcessEnv, role?: BotRole): RuntimeConfig {
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

  const raw = toJS(doc, at);
  if (!validate(raw)) {
    const error = pickError(validate.errors ?? []);
    const fieldPath = pathOf(error);
    const node = locate(doc, fieldPath, error);
    throw new ConfigError('E_CONFIG_SCHEMA', describe(error), { ...at(node?.range?.[0]), field: formatPath(fieldPath) || '(top level)' });
  }

  return normalise(raw as RawConfig, doc, path, at, role);
}

/** The document as plain data; an alias bomb is refused at its first alias instead of expanded. */
function toJS(doc: Document, at: (offset: number | undefined) => SourceLocation): unknown {
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    // yaml throws a ReferenceError for both: too many expansions, and an alias with no anchor
    if (!(error instanceof ReferenceError)) throw error;
    const bomb = /excessive alias count/i.test(error.message);
    let culprit: { offset: number | undefined; path: Path } | undefined;
    visit(doc, {
      Alias: (_key, node, ancestors) => {
        if (!bomb && node.resolve(doc) !== undefined) return undefined;
        culprit = { offset: node.range?.[0], path: pathOfAncestors([...ancestors, node]) };
        return visit.BREAK;
      },
    });
    const where = { ...at(culprit?.offset), ...(culprit && culprit.path.length > 0 ? { field: formatPath(culprit.path) } : {}) };
    if (!bomb) throw new ConfigError('E_CONFIG_SYNTAX', error.message, where);
    throw new ConfigError('E_CONFIG_ALIASES', `YAML aliases here expand to more than ${MAX_ALIAS_COUNT} copies (a "billion laughs" file?); write the values out instead`, where);
  }
}

interface RawBot {
  name: string;
  appId: string | number;
  sameAppAs?: string;
  secret?: string;
  token?: string;
  endpoint?: string;
  tokenEndpoint?: string;
  transport?: 'websocket' | { webhook: { port: number; path?: string; host?: string; maxSkewSec?: number } };
  shards?: 'auto' | number;
  sessions?: 'local' | { redis: string; leaseTtlMs?: number };
  role?: BotRole;
  stream?: { redis?: string; maxLen?: number; group?: string; claimIdleMs?: number; maxDeliveries?: number; bufferBytes?: number };
  identifyWindowMs?: number;
  storage?: 'file' | { redis: string };
  intents?: Array<string | number>;
  plugins?: Record<string, unknown> | null;
  fetchHosts?: string[];
  requestTimeoutMs?: number;
  pluginQueueBytes?: number;
}

interface RawConfig {
  whenNoBotRuns?: 'exit' | 'stay';
  pluginsDir?: string;
  dataDir?: string;
  console?: { port: number; host?: string; token?: string };
  metrics?: { port: number; host?: string };
  log?: { level?: string };
  fetch?: { allowPrivateAddresses?: boolean };
  bots: RawBot[];
}

function normalise(raw: RawConfig, doc: Document, path: string, at: (o?: number) => SourceLocation, roleFlag?: BotRole): RuntimeConfig {
  const dir = dirname(path);
  const locate = (fieldPath: Path) => at((doc.getIn(fieldPath, true) as Node | undefined)?.range?.[0]);
  const fail = (code: ErrorCode, detail: string, fieldPath: Path) => new ConfigError(code, detail, { ...locate(fieldPath), field: formatPath(fieldPath) });

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
    if (typeof bot.shards === 'number' && bot.shards > MAX_SHARDS) {
      throw fail(
        'E_CONFIG_SHARDS',
        `${bot.shards} shards cannot start: each shard is a session, and a bot may start ${MAX_SHARDS} sessions a day (session_start_limit); use auto or at most ${MAX_SHARDS}`,
        ['bots', index, 'shards'],
      );
    }
    const role = roleFlag ?? bot.role ?? 'all';
    const stream = parseStream(bot);
    if (role !== 'all' && !stream) {
      const how = roleFlag ? `--role ${role} applies to this bot, but` : `role ${role}`;
      throw fail(
        'E_CONFIG_STREAM_REDIS',
        `${how} needs a Redis to carry events between gateway and workers: set \`stream: { redis: redis://host:port }\` or \`sessions: { redis: … }\` on this bot`,
        roleFlag || bot.role === undefined ? ['bots', index] : ['bots', index, 'role'],
      );
    }
    if (role !== 'all' && simulated) {
      throw fail(
        'E_CONFIG_STREAM_SIMULATOR',
        `role ${role} runs in several processes, and endpoint: simulator starts a simulator inside each one; run \`qqbot simulator\` once and set endpoint to its URL`,
        bot.endpoint !== undefined ? ['bots', index, 'endpoint'] : ['bots', index],
      );
    }
    return {
      name: bot.name,
      appId: String(bot.appId),
      ...(bot.sameAppAs !== undefined ? { sameAppAs: bot.sameAppAs } : {}),
      ...(secretText !== undefined ? { secret: new Secret(secretText) } : {}),
      ...(bot.token !== undefined ? { token: new Secret(bot.token) } : {}),
      endpoint,
      ...(bot.tokenEndpoint !== undefined ? { tokenEndpoint: bot.tokenEndpoint } : {}),
      transport,
      shards: bot.shards ?? 'auto',
      sessions: parseSessions(bot.sessions),
      role,
      ...(stream ? { stream } : {}),
      ...(bot.identifyWindowMs !== undefined ? { identifyWindowMs: bot.identifyWindowMs } : {}),
      storage: parseStorage(bot.storage, bot.sessions, role === 'worker' ? stream : undefined),
      intents: bot.intents ?? [],
      ...(bot.plugins !== undefined && bot.plugins !== null ? { plugins: bot.plugins } : {}),
      ...(bot.fetchHosts !== undefined ? { fetchHosts: bot.fetchHosts } : {}),
      requestTimeoutMs: bot.requestTimeoutMs ?? 10_000,
      ...(bot.pluginQueueBytes !== undefined ? { pluginQueueBytes: bot.pluginQueueBytes } : {}),
      location: locate(['bots', index]),
      pluginLocations: keyLocations(doc.getIn(['bots', index, 'plugins'], true), '', at),
    };
  });
  checkApps(bots, fail, locate);

  const consoleHost = raw.console?.host ?? '127.0.0.1';
  if (raw.console && !raw.console.token && !isLoopbackHost(consoleHost)) {
    throw fail(
      'E_CONFIG_CONSOLE_TOKEN',
      `the console would listen on ${consoleHost}, which other machines can reach, without a token; set console.token (at least 8 characters) or use host 127.0.0.1`,
      ['console', 'host'],
    );
  }
  checkPorts(raw, fail, locate);

  const located: Path[] = [['pluginsDir'], ['console', 'port'], ['metrics', 'port'], ...raw.bots.map((_, i): Path => ['bots', i, 'transport', 'webhook', 'port'])];
  const locations = Object.fromEntries(located.filter((p) => doc.hasIn(p)).map((p) => [formatPath(p), locate(p)]));
  return {
    file: path,
    dir,
    pluginsDir: resolve(dir, raw.pluginsDir ?? './plugins'),
    dataDir: resolve(dir, raw.dataDir ?? './.qqbot'),
    ...(raw.console ? { console: { port: raw.console.port, host: consoleHost, ...(raw.console.token ? { token: new Secret(raw.console.token) } : {}) } } : {}),
    ...(raw.metrics ? { metrics: { port: raw.metrics.port, host: raw.metrics.host ?? '127.0.0.1' } } : {}),
    log: { level: raw.log?.level ?? 'info' },
    fetch: { allowPrivateAddresses: raw.fetch?.allowPrivateAddresses ?? false },
    whenNoBotRuns: raw.whenNoBotRuns ?? 'exit',
    bots,
    locations,
  };
}

type Fail = (code: ErrorCode, detail: string, fieldPath: Path) => ConfigError;

/**
 * One app on one platform is one bot: two entries would open two sessions that split its events and
 * have its replies refused as duplicates. Entries for the same app on purpose (say, one on webhook
 * and one on websocket with other plugins) say so with `sameAppAs: <the earlier entry's name>`.
 * The same appId on different endpoints (sandbox and production) is not a duplicate.
 */
function checkApps(bots: BotConfig[], fail: Fail, locate: (path: Path) => SourceLocation): void {
  const platform = (bot: BotConfig) => (bot.endpoint.kind === 'url' ? bot.endpoint.url : bot.endpoint.kind);
  const first = new Map<string, number>();
  bots.forEach((bot, index) => {
    const app = `${platform(bot)} ${bot.appId}`;
    const earlier = first.get(app);
    if (bot.sameAppAs !== undefined) {
      const named = bots.findIndex((b) => b.name === bot.sameAppAs);
      const other = bots[named];
      if (!other || named >= index) throw fail('E_CONFIG_SAME_APP', `names "${bot.sameAppAs}", which is not a bot listed before this one`, ['bots', index, 'sameAppAs']);
      if (platform(other) !== platform(bot) || other.appId !== bot.appId) {
        throw fail('E_CONFIG_SAME_APP', `bot "${other.name}" is app ${other.appId} on ${platform(other)}, not app ${bot.appId} on ${platform(bot)}`, ['bots', index, 'sameAppAs']);
      }
      if (other.secret?.reveal() !== bot.secret?.reveal() || other.token?.reveal() !== bot.token?.reveal()) {
        throw fail('E_CONFIG_SAME_APP', `the credentials differ from bot "${other.name}"'s; one app has one secret`, ['bots', index, 'sameAppAs']);
      }
      return;
    }
    if (earlier === undefined) {
      first.set(app, index);
      return;
    }
    const other = bots[earlier]!;
    const where = locate(['bots', earlier, 'appId']);
    throw fail(
      'E_CONFIG_DUPLICATE_APP',
      `app ${bot.appId} on ${platform(bot)} is also bot "${other.name}" (${where.file}:${where.line}:${where.col}): two sessions of one app split its events and have its replies refused; remove one, or add \`sameAppAs: ${other.name}\` if both are this app on purpose`,
      ['bots', index, 'appId'],
    );
  });
}

/** Every listener needs its own address: a clash would only show at start-up, as EADDRINUSE. */
function checkPorts(raw: RawConfig, fail: Fail, locate: (path: Path) => SourceLocation): void {
  const listeners: Array<{ host: string; port: number; path: Path }> = [];
  if (raw.console) listeners.push({ host: raw.console.host ?? '127.0.0.1', port: raw.console.port, path: ['console', 'port'] });
  if (raw.metrics) listeners.push({ host: raw.metrics.host ?? '127.0.0.1', port: raw.metrics.port, path: ['metrics', 'port'] });
  raw.bots.forEach((bot, index) => {
    if (typeof bot.transport === 'object') {
      listeners.push({ host: bot.transport.webhook.host ?? '127.0.0.1', port: bot.transport.webhook.port, path: ['bots', index, 'transport', 'webhook', 'port'] });
    }
  });
  const sameHost = (a: string, b: string) => {
    const canonical = (h: string) => (h === 'localhost' ? '127.0.0.1' : h);
    return isWildcardHost(a) || isWildcardHost(b) || canonical(a) === canonical(b);
  };
  listeners.forEach((listener, i) => {
    if (listener.port === 0) return; // a free port is picked at start-up
    const clash = listeners.slice(0, i).find((other) => other.port === listener.port && sameHost(other.host, listener.host));
    if (!clash) return;
    const where = locate(clash.path);
    throw fail(
      'E_CONFIG_PORT_CLASH',
      `port ${listener.port} is also ${formatPath(clash.path)} (${where.file}:${where.line}:${where.col}); each listener needs a port of its own`,
      listener.path,
    );
  });
}

function parseEndpoint(value: string): EndpointConfig {
  if (value === 'production' || value === 'sandbox' || value === 'simulator') return { kind: value };
  return { kind: 'url', url: value.replace(/\/+$/, '') };
}

function parseTransport(value: RawBot['transport']): TransportConfig {
  if (value === undefined || value === 'websocket') return { kind: 'websocket' };
  const webhook = value.webhook;
  return { kind: 'webhook', port: webhook.port, path: webhook.path ?? '/qqbot', host: webhook.host ?? '127.0.0.1', maxSkewSec: webhook.maxSkewSec ?? 300 };
}

function parseSessions(value: RawBot['sessions']): SessionsConfig {
  if (value === undefined || value === 'local') return { kind: 'local' };
  return { kind: 'redis', url: value.redis, leaseTtlMs: value.leaseTtlMs ?? 10_000 };
}

/** The Stream lives in the bot's sessions Redis unless `stream.redis` names another; no Redis, no Stream. */
function parseStream(bot: RawBot): StreamConfig | undefined {
  const url = bot.stream?.redis ?? (typeof bot.sessions === 'object' ? bot.sessions.redis : undefined);
  if (url === undefined) return undefined;
  const s = bot.stream ?? {};
  return { url, maxLen: s.maxLen ?? 100_000, group: s.group ?? 'workers', claimIdleMs: s.claimIdleMs ?? 30_000, maxDeliveries: s.maxDeliveries ?? 5, bufferBytes: s.bufferBytes ?? 64 * 1024 * 1024 };
}

/**
 * A bot on Redis sessions keeps its plugin data there too, unless told otherwise; so does a worker, whose
 * siblings (on this machine or others) must see the same data.
 */
function parseStorage(value: RawBot['storage'], sessions: RawBot['sessions'], stream?: StreamConfig): StorageConfig {
  if (value === 'file') return { kind: 'file' };
  if (value !== undefined) return { kind: 'redis', url: value.redis };
  if (sessions !== undefined && sessions !== 'local') return { kind: 'redis', url: sessions.redis };
  if (stream) return { kind: 'redis', url: stream.url };
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

/** Positions of every key (and list item) below `node`, so errors found later (plugin config) can point at bot.yaml. */
function keyLocations(node: unknown, prefix: string, at: (o?: number) => SourceLocation, out: Record<string, SourceLocation> = {}): Record<string, SourceLocation> {
  if (isMap(node)) {
    for (const pair of node.items) {
      if (!isPair(pair) || !isScalar(pair.key)) continue;
      const path = prefix ? `${prefix}.${String(pair.key.value)}` : String(pair.key.value);
      out[path] = at(pair.key.range?.[0]);
      keyLocations(pair.value, path, at, out);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => {
      const path = `${prefix}[${index}]`;
      out[path] = at((item as Node | null)?.range?.[0]);
      keyLocations(item, path, at, out);
    });
  }
  return out;
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

/** The key path of the deepest node of `node` whose source range holds `offset`. */
function fieldAt(node: unknown, offset: number, path: Path = []): Path | undefined {
  const holds = (n: unknown) => {
    const range = (n as Node | null)?.range;
    return range !== undefined && range !== null && offset >= range[0] && offset < range[2];
  };
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      if (holds(pair.key)) return [...path, key];
      if (holds(pair.value)) return fieldAt(pair.value, offset, [...path, key]);
    }
  } else if (isSeq(node)) {
    const index = node.items.findIndex(holds);
    if (index >= 0) return fieldAt(node.items[index], offset, [...path, index]);
  }
  return holds(node) ? path : undefined;
}

/** The key path `visit` reached a node by. */
function pathOfAncestors(ancestors: readonly unknown[]): Path {
  const path: Path = [];
  ancestors.forEach((ancestor, i) => {
    const child = ancestors[i + 1];
    if (isPair(ancestor)) path.push(isScalar(ancestor.key) ? String(ancestor.key.value) : String(ancestor.key));
    else if (isSeq(ancestor) && child !== undefined) path.push(ancestor.items.indexOf(child as never));
  });
  return path;
}

export function formatPath(path: Path): string {
  return path.reduce<string>((text, segment) => (typeof segment === 'number' ? `${text}[${segment}]` : text ? `${text}.${segment}` : segment), '');
}
