/**
 * Test helper for plugin authors: bundles the plugin with the runtime's bundler, runs it in a real
 * sandbox (isolate in a plugin-host child process), feeds it fake events and records every API
 * request it causes. It behaves as `qqbot start` does: only the events the manifest declares are
 * delivered (`emit` of another is refused), `ctx.on` of an unknown event fails setup, and a handler
 * for an undeclared event is reported as a warning. Published as `qqbot-runtime/testing`; host-side only.
 *
 * ```ts
 * const h = await createTestHarness({ pluginDir: 'plugins/echo', config: { prefix: '> ' } });
 * await h.emit('AT_MESSAGE_CREATE', { content: 'hi' });
 * assert.equal(h.replies[0].body.content, '> hi');
 * await h.close();
 * ```
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { LookupFunction } from 'node:net';
import type { EventMap, EventType } from 'qqbot-sdk-types';
import { QQBotError } from './errors.ts';
import { OpenAPIError } from './openapi/errors.ts';
import { bundlePlugin } from './plugins/bundler.ts';
import { readPluginManifest, resolvePluginConfig } from './plugins/manifest.ts';
import { buildInstanceSpec } from './plugins/instance-spec.ts';
import { createCapabilityHandler, type ApiRequester, type PluginCapabilities } from './plugins/capabilities/index.ts';
import type { RateLimit } from './plugins/capabilities/plugin-quota.ts';
import { SqliteKeyValueStore } from './plugins/storage/sqlite-store.ts';
import type { DispatchOutcome, PluginInstanceSpec } from './plugins/instance.ts';
import { PluginSupervisor } from './plugins/sandbox/supervisor.ts';

export interface TestHarnessOptions {
  /** the plugin's folder (with its package.json) */
  pluginDir: string;
  /** the plugin's bot.yaml section; validated against its schema, defaults applied */
  config?: unknown;
  bot?: { name: string; appId: string };
  /**
   * hostname → IP for ctx.fetch, e.g. `{ 'v1.hitokoto.cn': '127.0.0.1' }` to serve an allow-listed
   * host locally; names not listed fail to resolve (tests stay off the network). A loopback or
   * private IP also needs `allowPrivateAddresses`.
   */
  resolveHosts?: Record<string, string>;
  /**
   * Let ctx.fetch reach loopback/private/link-local addresses, as an operator can for local setups.
   * Off by default, as in production: a plugin's allow-listed host resolving to such an address is
   * refused with E_FETCH_ADDRESS.
   */
  allowPrivateAddresses?: boolean;
  rateLimits?: Record<string, RateLimit>;
}

/** One request that reached the (fake) OpenAPI. */
export interface RecordedCall {
  method: string;
  path: string;
  body?: unknown;
  query?: Record<string, unknown>;
}

/** A passive reply: a send carrying `msg_id` or `event_id`. */
export interface RecordedReply {
  path: string;
  body: { content?: string; msg_type?: number; msg_id?: string; event_id?: string; msg_seq?: number; [k: string]: unknown };
}

/** What a scripted endpoint answers: a body (2xx), or a platform error. */
export type ScriptedResponse =
  | { status?: number; body?: unknown }
  | ((call: RecordedCall) => { status?: number; body?: unknown } | undefined);

export interface EmitResult {
  outcome: DispatchOutcome;
  /** replies made while handling this event */
  replies: RecordedReply[];
  /** every API request made while handling this event */
  calls: RecordedCall[];
}

export interface TestHarness {
  readonly spec: PluginInstanceSpec;
  readonly calls: RecordedCall[];
  readonly replies: RecordedReply[];
  readonly logs: { level: string; args: unknown[] }[];
  /** stacks of errors the plugin threw (mapped to its own files) */
  readonly errors: string[];
  /** Sends an event with realistic defaults filled in; resolves when the plugin is done with it. */
  emit<T extends EventType>(type: T, data?: Partial<EventMap[T]> & Record<string, unknown>, envelope?: { id?: string }): Promise<EmitResult>;
  /** Scripts the answer of `METHOD /path` (path may be a RegExp); later scripts win. */
  respond(method: string, path: string | RegExp, response: ScriptedResponse): void;
  /** The plugin's stored value for a key, as the plugin would read it. */
  stored(key: string): Promise<unknown>;
  close(): Promise<void>;
}

export async function createTestHarness(options: TestHarnessOptions): Promise<TestHarness> {
  const pluginDir = resolve(options.pluginDir);
  const name = basename(pluginDir);
  const bot = options.bot ?? { name: 'test-bot', appId: '100000' };
  const loaded = await readPluginManifest(pluginDir, { plugin: name });
  const config = resolvePluginConfig({ name, manifest: loaded.manifest }, options.config);
  const bundle = await bundlePlugin({ entry: loaded.main, displayRoot: dirname(pluginDir) });

  const calls: RecordedCall[] = [];
  const replies: RecordedReply[] = [];
  const logs: { level: string; args: unknown[] }[] = [];
  const errors: string[] = [];
  const scripts: { method: string; path: string | RegExp; response: ScriptedResponse }[] = [];
  let nextMessageId = 1;

  const request: ApiRequester = async (method, path, opts) => {
    const call: RecordedCall = { method, path };
    if (opts?.body !== undefined) call.body = structuredClone(opts.body);
    if (opts?.query !== undefined) call.query = { ...opts.query };
    calls.push(call);
    const body = call.body as RecordedReply['body'] | undefined;
    if (method === 'POST' && body && (body.msg_id !== undefined || body.event_id !== undefined)) replies.push({ path, body });
    const script = [...scripts].reverse().find((s) => s.method === method && (typeof s.path === 'string' ? s.path === path : s.path.test(path)));
    const scripted = typeof script?.response === 'function' ? script.response(call) : script?.response;
    const status = scripted?.status ?? 200;
    if (status >= 400) {
      const b = (scripted?.body ?? {}) as { code?: number; message?: string; trace_id?: string };
      throw new OpenAPIError('E_OPENAPI', {
        method, path, route: `${method} ${path}`, status,
        ...(typeof b.code === 'number' ? { platformCode: b.code } : {}),
        ...(typeof b.message === 'string' ? { platformMessage: b.message } : {}),
        ...(typeof b.trace_id === 'string' ? { traceId: b.trace_id } : {}),
      });
    }
    if (scripted && 'body' in scripted) return scripted.body;
    if (method === 'POST' && path.endsWith('/messages')) return { id: `sent-${nextMessageId++}`, timestamp: new Date().toISOString() };
    return method === 'GET' ? {} : null;
  };

  const dataDir = await mkdtemp(join(tmpdir(), 'qqbot-harness-'));
  const storage = new SqliteKeyValueStore({ file: join(dataDir, 'storage.sqlite') });
  const capabilities: PluginCapabilities = createCapabilityHandler({
    bots: { [bot.name]: { request, storage } },
    ...(options.rateLimits ? { rateLimits: options.rateLimits } : {}),
    fetch: {
      ...(options.resolveHosts ? { lookup: lookupFrom(options.resolveHosts) } : {}),
      ...(options.allowPrivateAddresses ? { allowPrivateAddresses: true } : {}),
    },
  });
  const spec = buildInstanceSpec({ bot, plugin: name, version: 1, manifest: loaded.manifest, config, bundle });
  capabilities.registerInstance(spec, { fetchHosts: loaded.manifest.fetchHosts ?? [] });

  const supervisor = new PluginSupervisor({ onCall: capabilities.handle, restartBackoffMs: { min: 50, max: 500 } });
  supervisor.on('log', (entry) => {
    logs.push({ level: entry.level, args: entry.args });
    // the prelude's word that a handler will never run in production: shown, not only recorded
    const [text] = entry.args;
    if (entry.level === 'warn' && typeof text === 'string' && text.startsWith('ctx.on(')) process.emitWarning(`${name}: ${text}`, { code: 'QQBOT_UNDECLARED_EVENT' });
  });
  supervisor.on('plugin-error', (entry) => errors.push(entry.error));
  try {
    await supervisor.start();
    await supervisor.load(spec);
  } catch (error) {
    await supervisor.stop();
    await storage.close();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  let eventSeq = 0;
  return {
    spec, calls, replies, logs, errors,
    async emit(type, data, envelope) {
      if (!spec.events.includes(type)) {
        throw new QQBotError('E_EVENT_NOT_DECLARED', `${type} is not in ${name}'s package.json qqbot.events (${spec.events.join(', ')}), so the runtime never delivers it to this plugin`, { plugin: name, type });
      }
      eventSeq += 1;
      const defaults = defaultsFor(type, eventSeq) as Record<string, unknown>;
      const payload = { ...defaults, ...data } as Record<string, unknown>;
      if (isObject(defaults.author) && isObject(data?.author)) payload.author = { ...defaults.author, ...data.author };
      const id = envelope?.id ?? `${type}:event-${eventSeq}`;
      const ref = capabilities.events.register({ bot: bot.name, type, id, data: payload });
      const callsBefore = calls.length;
      const repliesBefore = replies.length;
      const outcome = await supervisor.dispatch(spec.id, { ref, type, id, data: payload, transport: 'websocket' });
      await capabilities.finishEvent(ref);
      return { outcome, calls: calls.slice(callsBefore), replies: replies.slice(repliesBefore) };
    },
    respond(method, path, response) {
      scripts.push({ method: method.toUpperCase(), path, response });
    },
    async stored(key) {
      const text = await storage.get({ bot: bot.name, plugin: name }, key);
      return text === undefined ? undefined : JSON.parse(text);
    },
    async close() {
      await supervisor.stop();
      capabilities.unregisterInstance(spec.id);
      await storage.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function lookupFrom(hosts: Record<string, string>): LookupFunction {
  return ((hostname: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    const address = hosts[hostname];
    if (address === undefined) {
      const error = Object.assign(new Error(`test harness: ${hostname} is not in resolveHosts`), { code: 'ENOTFOUND' });
      callback(error);
      return;
    }
    const family = address.includes(':') ? 6 : 4;
    if (opts?.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as unknown as LookupFunction;
}

/** Realistic payloads (docs/protocol.md §16); the test's fields win. */
function defaultsFor(type: EventType, n: number): object {
  const timestamp = new Date().toISOString();
  const guildMessage = {
    id: `msg-${n}`, channel_id: 'channel-1', guild_id: 'guild-1', content: '', timestamp, seq: n, seq_in_channel: String(n),
    author: { id: 'user-1', username: 'tester', avatar: '', bot: false }, member: { nick: 'tester', roles: ['1'], joined_at: timestamp },
  };
  switch (type) {
    case 'AT_MESSAGE_CREATE':
    case 'MESSAGE_CREATE':
      return guildMessage;
    case 'DIRECT_MESSAGE_CREATE':
      return { ...guildMessage, guild_id: 'dm-guild-1', src_guild_id: 'guild-1', direct_message: true };
    case 'GROUP_AT_MESSAGE_CREATE':
      return { id: `group-msg-${n}`, content: '', timestamp, group_openid: 'GROUP_OPENID_1', author: { member_openid: 'MEMBER_OPENID_1' } };
    case 'C2C_MESSAGE_CREATE':
      return { id: `c2c-msg-${n}`, content: '', timestamp, author: { user_openid: 'USER_OPENID_1' } };
    case 'GROUP_ADD_ROBOT':
    case 'GROUP_DEL_ROBOT':
    case 'GROUP_MSG_REJECT':
    case 'GROUP_MSG_RECEIVE':
      return { timestamp: Math.floor(Date.now() / 1000), group_openid: 'GROUP_OPENID_1', op_member_openid: 'MEMBER_OPENID_1' };
    case 'FRIEND_ADD':
    case 'FRIEND_DEL':
    case 'C2C_MSG_REJECT':
    case 'C2C_MSG_RECEIVE':
      return { timestamp: Math.floor(Date.now() / 1000), openid: 'USER_OPENID_1' };
    case 'INTERACTION_CREATE':
      return {
        id: `interaction-${n}`, application_id: '100000', type: 11, scene: 'group', chat_type: 1, timestamp,
        group_openid: 'GROUP_OPENID_1', group_member_openid: 'MEMBER_OPENID_1', version: 1,
        data: { type: 11, resolved: { button_id: '1', button_data: '' } },
      };
    case 'GUILD_MEMBER_ADD':
    case 'GUILD_MEMBER_UPDATE':
    case 'GUILD_MEMBER_REMOVE':
      return { guild_id: 'guild-1', joined_at: timestamp, nick: 'newcomer', user: { id: 'user-2', username: 'newcomer' }, roles: ['1'], op_user_id: 'user-2' };
    case 'MESSAGE_REACTION_ADD':
    case 'MESSAGE_REACTION_REMOVE':
      return { user_id: 'user-1', guild_id: 'guild-1', channel_id: 'channel-1', target: { id: 'msg-1', type: 0 }, emoji: { id: '4', type: 1 } };
    default:
      return {};
  }
}
