/**
 * The host-side capability layer against a real HTTP server playing the QQ OpenAPI, reached
 * through the real OpenAPIClient: permissions, argument checks, routes, reply rules (§14),
 * interaction acks, rate limits, storage (SQLite and a real redis-server) and ctx.fetch.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { Secret } from '../runtime/config/secret.ts';
import { OpenAPIClient, LegacyTokenSource } from '../runtime/openapi/index.ts';
import { CapabilityError, createCapabilityHandler, EventRegistry, type ApiRequester, type PluginCapabilities } from '../runtime/plugins/capabilities/index.ts';
import type { CallResult, PluginInstanceSpec } from '../runtime/plugins/instance.ts';
import { SqliteKeyValueStore } from '../runtime/plugins/storage/sqlite-store.ts';
import { RedisKeyValueStore } from '../runtime/plugins/storage/redis-store.ts';
import type { KeyValueStore } from '../runtime/plugins/storage/key-value-store.ts';
import { addressCategory } from '../runtime/plugins/capabilities/address-policy.ts';

const APP_ID = '102030';
const TOKEN = 'tok-9f8e7d6c5b4a-SECRET';

interface Seen { method: string; path: string; query: Record<string, string>; body: unknown; authorization: string | undefined }
type Responder = (req: Seen) => { status?: number; body?: unknown; headers?: Record<string, string> } | undefined;

/** A local HTTP server answering like the OpenAPI; records every request. */
async function startFakeOpenAPI(): Promise<{ url: string; seen: Seen[]; respond: { fn: Responder | undefined }; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const respond: { fn: Responder | undefined } = { fn: undefined };
  let n = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const text = Buffer.concat(chunks).toString('utf8');
      const entry: Seen = { method: req.method ?? '', path: url.pathname, query: Object.fromEntries(url.searchParams), body: text ? JSON.parse(text) : undefined, authorization: req.headers.authorization };
      seen.push(entry);
      const custom = respond.fn?.(entry);
      const status = custom?.status ?? (entry.method === 'DELETE' || entry.method === 'PUT' ? 204 : 200);
      const body = custom?.body ?? (status === 204 ? undefined : { id: `m-${++n}`, timestamp: '2025-01-01T00:00:00+08:00' });
      res.writeHead(status, { 'content-type': 'application/json', ...custom?.headers });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, respond, close: () => closeServer(server) };
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

function spec(bot: string, plugin: string, permissions: string[]): Pick<PluginInstanceSpec, 'id' | 'plugin' | 'bot' | 'permissions'> {
  return { id: `${bot}/${plugin}`, plugin, bot: { name: bot, appId: APP_ID }, permissions };
}

function assertFailure(result: CallResult, code: string, message?: string | RegExp): Record<string, unknown> {
  assert.equal(result.ok, false, `expected ${code}, got ${JSON.stringify(result)}`);
  const error = (result as { error: Record<string, unknown> }).error;
  assert.equal(error.code, code, JSON.stringify(error));
  if (typeof message === 'string') assert.equal(error.message, message);
  else if (message) assert.match(String(error.message), message);
  assert.ok(!(error instanceof Error), 'an envelope, never a host Error');
  return error;
}

function valueOf(result: CallResult): any {
  assert.equal(result.ok, true, JSON.stringify(result));
  return (result as { value: unknown }).value;
}

let api: Awaited<ReturnType<typeof startFakeOpenAPI>>;
let client: OpenAPIClient;
let request: ApiRequester;
const everyResult: CallResult[] = [];

before(async () => {
  api = await startFakeOpenAPI();
  client = new OpenAPIClient({ baseUrl: api.url, appId: APP_ID, tokenSource: new LegacyTokenSource(APP_ID, new Secret(TOKEN)), retries: 0 });
  request = (method, path, options) => client.request(method, path, options);
});
after(async () => {
  await client.close();
  await api.close();
  // nothing a plugin received in this file carried the token
  assert.ok(!JSON.stringify(everyResult).includes(TOKEN));
  assert.ok(!JSON.stringify(everyResult).includes(`${APP_ID}.`));
});
beforeEach(() => {
  api.seen.length = 0;
  api.respond.fn = undefined;
});

function setup(options: Partial<Parameters<typeof createCapabilityHandler>[0]> = {}): PluginCapabilities & { call(id: string, cap: string, payload: unknown): Promise<CallResult> } {
  const caps = createCapabilityHandler({ bots: { main: { request }, other: { request } }, ...options });
  return Object.assign(caps, {
    async call(id: string, cap: string, payload: unknown) {
      const result = await caps.handle(id, cap, payload);
      everyResult.push(result);
      // the envelope must survive the JSON trip to the plugin host unchanged
      const expected = result.ok && result.value === undefined ? { ok: true } : result;
      assert.deepEqual(JSON.parse(JSON.stringify(result)), expected);
      return result;
    },
  });
}

describe('api proxy', () => {
  test('a call without its permission is refused before anything reaches the API', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'x', ['messages.send']));
    const result = await caps.call('main/x', 'api.kickMember', ['g1', 'u1']);
    assertFailure(result, 'E_PERMISSION', 'plugin "x" lacks permission "members.manage" for api.kickMember');
    assertFailure(await caps.call('main/x', 'api.evalOnHost', []), 'E_UNKNOWN_CAPABILITY');
    assertFailure(await caps.call('main/nobody', 'api.me', []), 'E_UNKNOWN_INSTANCE');
    assert.equal(api.seen.length, 0);
  });

  test('arguments are validated first: path tricks, missing or malformed bodies never reach the API', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'x', ['messages.send', 'members.read', 'members.manage']));
    assertFailure(await caps.call('main/x', 'api.sendChannelMessage', ['../../users/@me', { content: 'hi' }]), 'E_INVALID_ARGUMENT', /argument 1 \(channelId\) must be an id/);
    assertFailure(await caps.call('main/x', 'api.sendChannelMessage', ['c1']), 'E_INVALID_ARGUMENT', 'api.sendChannelMessage: argument 2 (body) is required');
    assertFailure(await caps.call('main/x', 'api.sendChannelMessage', ['c1', { keyboard: {} }]), 'E_INVALID_ARGUMENT', /needs at least one of content/);
    assertFailure(await caps.call('main/x', 'api.sendChannelMessage', ['c1', { content: 42 }]), 'E_INVALID_ARGUMENT', /\.content must be string/);
    assertFailure(await caps.call('main/x', 'api.listMembers', ['g1', { limit: 5000 }]), 'E_INVALID_ARGUMENT', /limit must be <= 1000/);
    assertFailure(await caps.call('main/x', 'api.kickMember', ['g1', 'u1', { delete_history_msg_days: 2 }]), 'E_INVALID_ARGUMENT');
    assertFailure(await caps.call('main/x', 'api.getMember', 'g1'), 'E_INVALID_ARGUMENT', /must be an array/);
    assertFailure(await caps.call('main/x', 'api.getMember', ['g1', 'u1', 'extra']), 'E_INVALID_ARGUMENT', /at most 2/);
    assert.equal(api.seen.length, 0);
  });

  test('methods map to the platform routes of docs/protocol.md §12, with the bot\'s credentials added by the client only', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'x', ['messages.send', 'messages.recall', 'members.read', 'members.manage', 'guilds.read']));
    api.respond.fn = (r) => (r.path === '/guilds/g1/members/u1' && r.method === 'GET' ? { body: { user: { id: 'u1' }, nick: 'n' } } : undefined);
    assert.deepEqual(valueOf(await caps.call('main/x', 'api.getMember', ['g1', 'u1'])), { user: { id: 'u1' }, nick: 'n' });
    valueOf(await caps.call('main/x', 'api.kickMember', ['g1', 'u2', { add_blacklist: true }]));
    valueOf(await caps.call('main/x', 'api.recallChannelMessage', ['c1', 'm9', true]));
    const sent = valueOf(await caps.call('main/x', 'api.sendGroupMessage', ['GROUPOPENID', { markdown: { content: '# hi' } }]));
    valueOf(await caps.call('main/x', 'api.addMemberRole', ['g1', 'u1', 'r5', 'c7']));
    valueOf(await caps.call('main/x', 'api.listMembers', ['g1', { limit: 10 }]));
    assert.match(sent.id, /^m-/);
    const summary = api.seen.map((r) => `${r.method} ${r.path} ${JSON.stringify(r.query)} ${JSON.stringify(r.body ?? null)}`);
    assert.deepEqual(summary, [
      'GET /guilds/g1/members/u1 {} null',
      'DELETE /guilds/g1/members/u2 {} {"add_blacklist":true}',
      'DELETE /channels/c1/messages/m9 {"hidetip":"true"} null',
      'POST /v2/groups/GROUPOPENID/messages {} {"markdown":{"content":"# hi"},"msg_type":2}',
      'PUT /guilds/g1/members/u1/roles/r5 {} {"channel":{"id":"c7"}}',
      'GET /guilds/g1/members {"after":"0","limit":"10"} null',
    ]);
    assert.ok(api.seen.every((r) => r.authorization === `Bot ${APP_ID}.${TOKEN}`));
  });

  test('a platform refusal becomes an envelope with code, platform code, status and trace id', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'x', ['guilds.read']));
    api.respond.fn = () => ({ status: 403, body: { code: 11264, message: 'guild has not granted the API', trace_id: 'tr-1' }, headers: { 'x-tps-trace-id': 'tr-1' } });
    const error = assertFailure(await caps.call('main/x', 'api.getGuild', ['g1']), 'E_OPENAPI', /refused by the platform \(platform code 11264\): guild has not granted the API/);
    assert.equal(error.platformCode, 11264);
    assert.equal(error.status, 403);
    assert.equal(error.traceId, 'tr-1');
  });

  test('per-plugin rate limits: one plugin over its budget is refused, another plugin is not affected', async () => {
    const caps = setup({ rateLimits: { 'guilds.read': { capacity: 3, perSecond: 0.001 } } });
    caps.registerInstance(spec('main', 'flood', ['guilds.read']));
    caps.registerInstance(spec('main', 'calm', ['guilds.read']));
    for (let i = 0; i < 3; i++) valueOf(await caps.call('main/flood', 'api.me', []));
    const error = assertFailure(await caps.call('main/flood', 'api.me', []), 'E_RATE_LIMITED', /plugin "flood" is over its rate limit for api\.me/);
    assert.ok((error.retryAfterMs as number) > 0);
    valueOf(await caps.call('main/calm', 'api.me', []));
    assert.equal(api.seen.length, 4);
  });
});

describe('replies', () => {
  const at = { id: 'MSG1', channel_id: 'C1', guild_id: 'G1', content: 'hi', timestamp: '2025-01-01T00:00:00+08:00', author: { id: 'U1' } };

  test('a reply refused because another delivery of the event sent it marks that plugin settled on the thread (by code, never by error text); other failures do not', async () => {
    const refusals: Array<Error> = [
      new CapabilityError('E_DUPLICATE_REPLY', 'already sent by another process'),
      new CapabilityError('E_REPLY_OUTCOME_UNKNOWN', 'its sender died'),
      new CapabilityError('E_OPENAPI', 'code: E_DUPLICATE_REPLY (a text that only looks like it)'),
    ];
    const refusing = async () => {
      throw refusals.shift()!;
    };
    const caps = createCapabilityHandler({ bots: { main: { request: refusing } } });
    for (const name of ['a', 'b', 'c']) caps.registerInstance(spec('main', name, ['messages.send']));
    const c2c = { id: 'MSGX', content: 'x', timestamp: '', author: { user_openid: 'USR' } };
    const ref = caps.events.register({ bot: 'main', type: 'C2C_MESSAGE_CREATE', id: 'evx', data: c2c });
    assert.equal((await caps.handle('main/a', 'reply', { ref, body: 'one' })).ok, false);
    assert.equal((await caps.handle('main/b', 'api.sendC2CMessage', ['USR', { content: 'two', msg_id: 'MSGX' }])).ok, false);
    assert.equal((await caps.handle('main/c', 'reply', { ref, body: 'three' })).ok, false);
    assert.deepEqual([...caps.events.get(ref)!.thread.settledElsewhere ?? []].sort(), ['main/a', 'main/b']);
  });

  test('each event type replies through its endpoint with msg_id/event_id, msg_type and msg_seq', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'x', ['messages.send']));
    const reply = async (type: string, id: string, data: unknown, body: unknown = 'pong') =>
      caps.call('main/x', 'reply', { ref: caps.events.register({ bot: 'main', type, id, data }), body });
    valueOf(await reply('AT_MESSAGE_CREATE', 'ev1', at));
    valueOf(await reply('DIRECT_MESSAGE_CREATE', 'ev2', { ...at, id: 'MSG2', guild_id: 'DMG' }));
    valueOf(await reply('GROUP_AT_MESSAGE_CREATE', 'ev3', { id: 'MSG3', content: 'x', timestamp: '', group_openid: 'GRP', author: { member_openid: 'MEM' } }, { markdown: { content: '**b**' } }));
    valueOf(await reply('GROUP_AT_MESSAGE_CREATE', 'ev3b', { id: 'MSG3B', content: 'x', timestamp: '', group_id: 'GRPB', author: { id: 'MEM' } }, { media: { file_info: 'FI' } }));
    valueOf(await reply('C2C_MESSAGE_CREATE', 'ev4', { id: 'MSG4', content: 'x', timestamp: '', author: { user_openid: 'USR' } }));
    valueOf(await reply('GROUP_ADD_ROBOT', 'ev5', { timestamp: 1, group_openid: 'GRP', op_member_openid: 'MEM' }));
    valueOf(await reply('FRIEND_ADD', 'ev6', { timestamp: 1, openid: 'USR' }));
    valueOf(await reply('INTERACTION_CREATE', 'ev7', { id: 'INT7', type: 11, scene: 'group', group_openid: 'GRP', data: { type: 11, resolved: {} } }));
    valueOf(await reply('INTERACTION_CREATE', 'ev8', { id: 'INT8', type: 11, chat_type: 0, channel_id: 'C1', data: { type: 11, resolved: {} } }));
    valueOf(await reply('MESSAGE_REACTION_ADD', 'ev9', { user_id: 'U', guild_id: 'G1', channel_id: 'C9', target: { id: 'M', type: 0 }, emoji: { id: '1', type: 1 } }, { ark: { template_id: 23 } }));
    const summary = api.seen.map((r) => `${r.method} ${r.path} ${JSON.stringify(r.body)}`);
    assert.deepEqual(summary, [
      'POST /channels/C1/messages {"content":"pong","msg_type":0,"msg_id":"MSG1","msg_seq":1}',
      'POST /dms/DMG/messages {"content":"pong","msg_type":0,"msg_id":"MSG2","msg_seq":1}',
      'POST /v2/groups/GRP/messages {"markdown":{"content":"**b**"},"msg_type":2,"msg_id":"MSG3","msg_seq":1}',
      'POST /v2/groups/GRPB/messages {"media":{"file_info":"FI"},"msg_type":7,"content":" ","msg_id":"MSG3B","msg_seq":1}',
      'POST /v2/users/USR/messages {"content":"pong","msg_type":0,"msg_id":"MSG4","msg_seq":1}',
      'POST /v2/groups/GRP/messages {"content":"pong","msg_type":0,"event_id":"ev5","msg_seq":1}',
      'POST /v2/users/USR/messages {"content":"pong","msg_type":0,"event_id":"ev6","msg_seq":1}',
      'POST /v2/groups/GRP/messages {"content":"pong","msg_type":0,"event_id":"ev7","msg_seq":1}',
      'POST /channels/C1/messages {"content":"pong","msg_type":0,"event_id":"ev8","msg_seq":1}',
      'POST /channels/C9/messages {"ark":{"template_id":23},"msg_type":3,"event_id":"ev9","msg_seq":1}',
    ]);
  });

  test('events the platform accepts no reply to fail with a clear error and send nothing', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'x', ['messages.send']));
    const member = caps.events.register({ bot: 'main', type: 'GUILD_MEMBER_ADD', id: 'e1', data: { guild_id: 'G', user: { id: 'U' } } });
    assertFailure(await caps.call('main/x', 'reply', { ref: member, body: 'welcome' }), 'E_REPLY_UNSUPPORTED', /GUILD_MEMBER_ADD events carry no channel/);
    const deleted = caps.events.register({ bot: 'main', type: 'MESSAGE_DELETE', id: 'e2', data: { message: {}, op_user: { id: 'U' } } });
    assertFailure(await caps.call('main/x', 'reply', { ref: deleted, body: 'x' }), 'E_REPLY_UNSUPPORTED', /no passive reply to MESSAGE_DELETE/);
    const ok = caps.events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'e3', data: at });
    assertFailure(await caps.call('main/x', 'reply', { ref: ok, body: { keyboard: {} } }), 'E_INVALID_ARGUMENT', /needs at least one of content/);
    assertFailure(await caps.call('main/x', 'reply', { ref: 'made-up', body: 'x' }), 'E_UNKNOWN_EVENT');
    assert.equal(api.seen.length, 0);
  });

  test('a reply needs messages.send, and a plugin cannot answer another bot\'s event', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'mute', []));
    caps.registerInstance(spec('other', 'x', ['messages.send']));
    const ref = caps.events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'e', data: at });
    assertFailure(await caps.call('main/mute', 'reply', { ref, body: 'x' }), 'E_PERMISSION', 'plugin "mute" lacks permission "messages.send" for event.reply');
    assertFailure(await caps.call('other/x', 'reply', { ref, body: 'x' }), 'E_UNKNOWN_EVENT');
    assert.equal(api.seen.length, 0);
  });

  test('msg_seq increases per source message and is shared by every plugin answering it, also concurrently', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    caps.registerInstance(spec('main', 'b', ['messages.send']));
    const data = { id: 'GMSG', content: 'x', timestamp: '', group_openid: 'GRP', author: { member_openid: 'M' } };
    const ref = caps.events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'e1', data });
    // the same message delivered twice (the platform does that) shares the sequence too
    const dup = caps.events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'e1-dup', data });
    valueOf(await caps.call('main/a', 'reply', { ref, body: 'a1' }));
    const results = await Promise.all([
      caps.call('main/b', 'reply', { ref, body: 'b1' }),
      caps.call('main/a', 'reply', { ref, body: 'a2' }),
      caps.call('main/b', 'reply', { ref: dup, body: 'b2' }),
    ]);
    results.forEach(valueOf);
    const seqs = api.seen.map((r) => (r.body as { msg_seq: number }).msg_seq).sort();
    assert.deepEqual(seqs, [1, 2, 3, 4]);
    assert.ok(api.seen.every((r) => (r.body as { msg_id: string }).msg_id === 'GMSG'));
    // another message starts again at 1
    const other = caps.events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'e2', data: { ...data, id: 'GMSG2' } });
    valueOf(await caps.call('main/a', 'reply', { ref: other, body: 'x' }));
    assert.equal((api.seen.at(-1)!.body as { msg_seq: number }).msg_seq, 1);
  });

  test('group and C2C messages take at most 5 replies; the 6th is refused without reaching the platform', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    caps.registerInstance(spec('main', 'b', ['messages.send']));
    const ref = caps.events.register({ bot: 'main', type: 'C2C_MESSAGE_CREATE', id: 'e', data: { id: 'CM', content: 'x', timestamp: '', author: { user_openid: 'U' } } });
    for (let i = 0; i < 5; i++) valueOf(await caps.call(i % 2 ? 'main/a' : 'main/b', 'reply', { ref, body: `r${i}` }));
    assertFailure(await caps.call('main/a', 'reply', { ref, body: 'r6' }), 'E_REPLY_LIMIT', /already answered 5 times/);
    assert.equal(api.seen.length, 5);
    // channel messages have no such cap
    const ch = caps.events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'e2', data: at });
    for (let i = 0; i < 6; i++) valueOf(await caps.call(i % 2 ? 'main/a' : 'main/b', 'reply', { ref: ch, body: `c${i}` }));
  });

  test('an event delivered again elsewhere goes on from the msg_seq and reply count its earlier deliveries reached', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    const data = { id: 'CM', content: 'x', timestamp: '', author: { user_openid: 'U' } };
    // an earlier delivery in another worker sent seq 1..3, one refused by the platform
    const ref = caps.events.register({ bot: 'main', type: 'C2C_MESSAGE_CREATE', id: 'e', data, replied: { seq: 3, replies: 2 } });
    for (let i = 0; i < 3; i++) valueOf(await caps.call('main/a', 'reply', { ref, body: `r${i}` }));
    assertFailure(await caps.call('main/a', 'reply', { ref, body: 'r3' }), 'E_REPLY_LIMIT', /already answered 5 times/);
    assert.deepEqual(api.seen.map((r) => (r.body as { msg_seq: number }).msg_seq), [4, 5, 6]);
    // a record behind what this process already reached does not move the thread back
    const again = caps.events.register({ bot: 'main', type: 'C2C_MESSAGE_CREATE', id: 'e', data, replied: { seq: 1, replies: 1 } });
    assert.equal(caps.events.get(again)!.thread.seq, 6);
  });

  test('a send the platform refused does not use up one of the 5 replies', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    const ref = caps.events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'e', data: { id: 'GM', content: 'x', timestamp: '', group_openid: 'G', author: { member_openid: 'M' } } });
    api.respond.fn = (r) => ((r.body as { content: string }).content === 'bad' ? { status: 400, body: { code: 50006, message: 'empty' } } : undefined);
    assertFailure(await caps.call('main/a', 'reply', { ref, body: 'bad' }), 'E_OPENAPI');
    for (let i = 0; i < 5; i++) valueOf(await caps.call('main/a', 'reply', { ref, body: `ok${i}` }));
    assertFailure(await caps.call('main/a', 'reply', { ref, body: 'one too many' }), 'E_REPLY_LIMIT');
    // the refused seq is not reused: 1 was burnt
    assert.deepEqual(api.seen.map((r) => (r.body as { msg_seq: number }).msg_seq), [1, 2, 3, 4, 5, 6]);
  });

  test('reply windows: group and channel 5 minutes, C2C 60 minutes, measured from receipt', async () => {
    let now = 1_000_000_000;
    const events = new EventRegistry({ now: () => now });
    const caps = setup({ events });
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    const group = events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'g', data: { id: 'GM', content: 'x', timestamp: '', group_openid: 'G', author: { member_openid: 'M' } } });
    const c2c = events.register({ bot: 'main', type: 'C2C_MESSAGE_CREATE', id: 'c', data: { id: 'CM', content: 'x', timestamp: '', author: { user_openid: 'U' } } });
    const channel = events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'a', data: at });
    now += 4 * 60_000;
    valueOf(await caps.call('main/a', 'reply', { ref: group, body: 'in time' }));
    now += 61_000; // 5 min 1 s after receipt
    assertFailure(await caps.call('main/a', 'reply', { ref: group, body: 'late' }), 'E_REPLY_WINDOW', /5-minute passive reply window of this GROUP_AT_MESSAGE_CREATE closed 1 s ago/);
    assertFailure(await caps.call('main/a', 'reply', { ref: channel, body: 'late' }), 'E_REPLY_WINDOW');
    valueOf(await caps.call('main/a', 'reply', { ref: c2c, body: 'still fine' }));
    now += 55 * 60_000;
    assertFailure(await caps.call('main/a', 'reply', { ref: c2c, body: 'late' }), 'E_REPLY_WINDOW', /60-minute/);
    assert.equal(api.seen.length, 2);
  });

  test('HTTP 202 "queued for audit" is a success carrying the audit id, for replies and api sends', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    api.respond.fn = () => ({ status: 202, body: { code: 304023, message: 'push message is waiting for audit now', data: { message_audit: { audit_id: 'AUD-1' } } } });
    const ref = caps.events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'e', data: at });
    assert.equal(valueOf(await caps.call('main/a', 'reply', { ref, body: 'x' })).audit_id, 'AUD-1');
    assert.equal(valueOf(await caps.call('main/a', 'api.sendChannelMessage', ['C1', { content: 'x' }])).audit_id, 'AUD-1');
  });

  test('a 202 whose body is a real error (not 304023/304024) is a failure, not an audit success', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    api.respond.fn = () => ({ status: 202, body: { code: 11264, message: 'guild has not granted the API' } });
    assertFailure(await caps.call('main/a', 'api.sendChannelMessage', ['C1', { content: 'x' }]), 'E_OPENAPI', /platform code 11264/);
    const ref = caps.events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'e', data: at });
    assertFailure(await caps.call('main/a', 'reply', { ref, body: 'x' }), 'E_OPENAPI', /platform code 11264/);
  });

  test('a duplicate delivery does not reopen the reply window: it runs from the first receipt', async () => {
    let now = 1_000_000_000;
    const events = new EventRegistry({ now: () => now });
    const caps = setup({ events });
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    const data = { id: 'GM', content: 'x', timestamp: '', group_openid: 'G', author: { member_openid: 'M' } };
    events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'first', data });
    now += 4 * 60_000;
    const dup = events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'again', data });
    now += 61_000;
    assertFailure(await caps.call('main/a', 'reply', { ref: dup, body: 'late' }), 'E_REPLY_WINDOW', /closed 1 s ago/);
    assert.equal(api.seen.length, 0);
  });

  test('the registry drops expired records first: a live C2C record survives newer expired ones, even at the size cap', async () => {
    let now = 1_000_000_000;
    const events = new EventRegistry({ now: () => now, maxEntries: 3, graceMs: 0 });
    const caps = setup({ events });
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    const c2c = events.register({ bot: 'main', type: 'C2C_MESSAGE_CREATE', id: 'c', data: { id: 'CM', content: 'x', timestamp: '', author: { user_openid: 'U' } } });
    events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'a1', data: { ...at, id: 'A1' } });
    events.register({ bot: 'main', type: 'MESSAGE_DELETE', id: 'd1', data: { message: {}, op_user: { id: 'U' } } });
    now += 6 * 60_000; // past the channel window and the no-reply TTL, inside C2C's 60 minutes
    events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'a2', data: { ...at, id: 'A2' } });
    assert.equal(events.size, 2);
    valueOf(await caps.call('main/a', 'reply', { ref: c2c, body: 'still answerable' }));
  });

  test('api.send* naming a known event\'s msg_id/event_id shares event.reply\'s msg_seq, reply cap and window', async () => {
    let now = 1_000_000_000;
    const events = new EventRegistry({ now: () => now });
    const caps = setup({ events });
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    caps.registerInstance(spec('main', 'b', ['messages.send']));
    const ref = events.register({ bot: 'main', type: 'GROUP_AT_MESSAGE_CREATE', id: 'e', data: { id: 'GM', content: 'x', timestamp: '', group_openid: 'G', author: { member_openid: 'M' } } });
    const results = await Promise.all([
      caps.call('main/a', 'reply', { ref, body: 'a1' }),
      caps.call('main/b', 'api.sendGroupMessage', ['G', { content: 'b1', msg_id: 'GM', msg_seq: 1 }]),
      caps.call('main/a', 'reply', { ref, body: 'a2' }),
      caps.call('main/b', 'api.sendGroupMessage', ['G', { content: 'b2', msg_id: 'GM' }]),
    ]);
    results.forEach(valueOf);
    assert.deepEqual(api.seen.map((r) => (r.body as { msg_seq: number }).msg_seq).sort(), [1, 2, 3, 4]);
    assert.ok(api.seen.every((r) => (r.body as { msg_id: string }).msg_id === 'GM'));
    valueOf(await caps.call('main/b', 'api.sendGroupMessage', ['G', { content: 'b3', msg_id: 'GM' }]));
    assertFailure(await caps.call('main/b', 'api.sendGroupMessage', ['G', { content: 'b4', msg_id: 'GM' }]), 'E_REPLY_LIMIT', /^api\.sendGroupMessage: /);
    assertFailure(await caps.call('main/a', 'reply', { ref, body: 'a3' }), 'E_REPLY_LIMIT');
    assert.equal(api.seen.length, 5);

    // an id the registry does not know passes through with the plugin's own msg_seq
    valueOf(await caps.call('main/b', 'api.sendGroupMessage', ['G', { content: 'x', msg_id: 'UNKNOWN', msg_seq: 7 }]));
    assert.deepEqual(api.seen.at(-1)!.body, { content: 'x', msg_id: 'UNKNOWN', msg_seq: 7, msg_type: 0 });

    // GUILD_MEMBER_ADD has no channel for event.reply; the api call it points to gets the bookkeeping
    const member = events.register({ bot: 'main', type: 'GUILD_MEMBER_ADD', id: 'MEMBER-EV', data: { guild_id: 'G1', user: { id: 'U' } } });
    assertFailure(await caps.call('main/a', 'reply', { ref: member, body: 'welcome' }), 'E_REPLY_UNSUPPORTED',
      /GUILD_MEMBER_ADD events carry no channel.*ctx\.api\.sendChannelMessage\(channelId, \{ content, event_id: event\.id \}\)/);
    valueOf(await caps.call('main/a', 'api.sendChannelMessage', ['C5', { content: 'welcome', event_id: 'MEMBER-EV' }]));
    assert.deepEqual(api.seen.at(-1)!.body, { content: 'welcome', event_id: 'MEMBER-EV', msg_seq: 1 });
    now += 5 * 60_000;
    assertFailure(await caps.call('main/a', 'api.sendChannelMessage', ['C5', { content: 'late', event_id: 'MEMBER-EV' }]), 'E_REPLY_WINDOW', /5-minute passive reply window of this GUILD_MEMBER_ADD/);
    assert.equal(api.seen.length, 7);
  });

  test('INTERACTION_CREATE is acked for the plugin when the event is finished, unless a plugin acked it or an earlier delivery did', async () => {
    const caps = setup();
    caps.registerInstance(spec('main', 'a', ['messages.send']));
    const data = { id: 'INT-1', type: 11, scene: 'c2c', user_openid: 'U', data: { type: 11, resolved: { button_data: 'b' } } };
    const auto = caps.events.register({ bot: 'main', type: 'INTERACTION_CREATE', id: 'ev-1', data });
    await caps.finishEvent(auto);
    await caps.finishEvent(auto); // idempotent
    const manual = caps.events.register({ bot: 'main', type: 'INTERACTION_CREATE', id: 'ev-2', data: { ...data, id: 'INT-2' } });
    assert.equal(valueOf(await caps.call('main/a', 'ack', { ref: manual, code: 4 })), null);
    assertFailure(await caps.call('main/a', 'ack', { ref: manual, code: 0 }), 'E_ALREADY_ACKED');
    assertFailure(await caps.call('main/a', 'ack', { ref: manual, code: 9 }), 'E_INVALID_ARGUMENT');
    await caps.finishEvent(manual);
    const message = caps.events.register({ bot: 'main', type: 'AT_MESSAGE_CREATE', id: 'ev-3', data: at });
    assertFailure(await caps.call('main/a', 'ack', { ref: message }), 'E_INVALID_ARGUMENT', /only INTERACTION_CREATE/);
    await caps.finishEvent(message);
    // delivered again (a Stream entry another plugin failed): acknowledged on the first delivery, not again
    const again = caps.events.register({ bot: 'main', type: 'INTERACTION_CREATE', id: 'ev-4', data: { ...data, id: 'INT-4' }, replied: { seq: 0, replies: 0, acked: true } });
    assertFailure(await caps.call('main/a', 'ack', { ref: again, code: 0 }), 'E_ALREADY_ACKED');
    await caps.finishEvent(again);
    assert.deepEqual(api.seen.map((r) => `${r.method} ${r.path} ${JSON.stringify(r.body)}`), [
      'PUT /interactions/INT-1 {"code":0}',
      'PUT /interactions/INT-2 {"code":4}',
    ]);
  });
});

async function storageContract(name: string, makeStore: () => Promise<{ store: KeyValueStore; reopen?: () => Promise<KeyValueStore>; cleanup(): Promise<void> }>): Promise<void> {
  test(`${name}: per plugin per bot, no way to name another namespace, caps enforced`, async () => {
    const { store, reopen, cleanup } = await makeStore();
    try {
      const caps = setup({ bots: { main: { request, storage: store }, other: { request, storage: store } }, storageCaps: { maxValueBytes: 1024, maxKeys: 3 } });
      caps.registerInstance(spec('main', 'dice', ['storage']));
      caps.registerInstance(spec('main', 'spy', ['storage']));
      caps.registerInstance(spec('other', 'dice', ['storage']));
      caps.registerInstance(spec('main', 'nostore', []));
      valueOf(await caps.call('main/dice', 'storage.set', { key: 'stats:u1', value: { rolls: 3, best: 12 } }));
      valueOf(await caps.call('main/dice', 'storage.set', { key: 'stats:u2', value: [1, 2] }));
      valueOf(await caps.call('main/dice', 'storage.set', { key: 'other', value: 'x' }));
      assert.deepEqual(valueOf(await caps.call('main/dice', 'storage.get', { key: 'stats:u1' })), { rolls: 3, best: 12 });
      assert.deepEqual(valueOf(await caps.call('main/dice', 'storage.keys', { prefix: 'stats:' })), ['stats:u1', 'stats:u2']);
      // another plugin on the same bot, and the same plugin on another bot, see nothing; extra fields are ignored
      assert.equal(valueOf(await caps.call('main/spy', 'storage.get', { key: 'stats:u1', plugin: 'dice', namespace: 'main/dice' })), undefined);
      assert.deepEqual(valueOf(await caps.call('main/spy', 'storage.keys', {})), []);
      assert.equal(valueOf(await caps.call('other/dice', 'storage.get', { key: 'stats:u1' })), undefined);
      assertFailure(await caps.call('main/nostore', 'storage.get', { key: 'stats:u1' }), 'E_PERMISSION', 'plugin "nostore" lacks permission "storage" for ctx.storage.get');
      assertFailure(await caps.call('main/dice', 'storage.set', { key: 'big', value: 'x'.repeat(2000) }), 'E_STORAGE_LIMIT', /limit is 1024/);
      assertFailure(await caps.call('main/dice', 'storage.set', { key: 'fourth', value: 1 }), 'E_STORAGE_LIMIT', /3 keys/);
      valueOf(await caps.call('main/dice', 'storage.set', { key: 'other', value: 'overwrite is fine at the cap' }));
      assertFailure(await caps.call('main/dice', 'storage.set', { key: '', value: 1 }), 'E_INVALID_ARGUMENT');
      assertFailure(await caps.call('main/dice', 'storage.set', { key: 'k'.repeat(300), value: 1 }), 'E_INVALID_ARGUMENT');
      assertFailure(await caps.call('main/dice', 'storage.set', { key: '\u0000bytes', value: 1 }), 'E_INVALID_ARGUMENT', /without NUL/);
      assertFailure(await caps.call('main/dice', 'storage.set', { key: 'half \uD83D', value: 1 }), 'E_INVALID_ARGUMENT', /lone surrogates/);
      assertFailure(await caps.call('main/dice', 'storage.set', { key: 'k' }), 'E_INVALID_ARGUMENT', /use storage\.delete/);
      assert.equal(valueOf(await caps.call('main/dice', 'storage.delete', { key: 'stats:u2' })), true);
      assert.equal(valueOf(await caps.call('main/dice', 'storage.delete', { key: 'stats:u2' })), false);
      if (reopen) {
        const again = await reopen();
        assert.deepEqual(await again.keys({ bot: 'main', plugin: 'dice' }), ['other', 'stats:u1']);
        assert.equal(await again.get({ bot: 'main', plugin: 'dice' }, 'other'), JSON.stringify('overwrite is fine at the cap'));
      }
    } finally {
      await cleanup();
    }
  });
}

async function storageQuotaContract(name: string, makeStore: () => Promise<{ store: KeyValueStore; cleanup(): Promise<void> }>): Promise<void> {
  test(`${name}: a total-bytes cap per namespace and the key cap hold under concurrent writes`, async () => {
    const { store, cleanup } = await makeStore();
    try {
      const caps = setup({ bots: { main: { request, storage: store } }, storageCaps: { maxValueBytes: 1000, maxKeys: 1000, maxTotalBytes: 4096 } });
      caps.registerInstance(spec('main', 'hog', ['storage']));
      caps.registerInstance(spec('main', 'keys', ['storage']));
      const ns = { bot: 'main', plugin: 'hog' };
      const value = 'v'.repeat(498); // JSON adds 2 quotes: key (2) + value (500) = 502 bytes per entry
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => caps.call('main/hog', 'storage.set', { key: `k${String.fromCharCode(97 + i)}`, value })));
      const stored = results.filter((r) => r.ok).length;
      for (const r of results.filter((x) => !x.ok)) assertFailure(r, 'E_STORAGE_LIMIT', /limit is 4096/);
      const usage = await store.usage(ns);
      assert.equal(usage.keys, stored);
      assert.ok(usage.bytes <= 4096, `stored ${usage.bytes} bytes`);
      assert.equal(usage.bytes, (await store.keys(ns)).length * 502);
      assert.ok(stored >= 1 && 4096 - usage.bytes < 502, `the cap is filled, not undershot (${stored} stored)`);
      // overwriting with a smaller value is fine at the cap; deleting makes room again
      const [first] = await store.keys(ns);
      valueOf(await caps.call('main/hog', 'storage.set', { key: first, value: 'small' }));
      valueOf(await caps.call('main/hog', 'storage.set', { key: 'zz', value }));
      assertFailure(await caps.call('main/hog', 'storage.set', { key: 'zy', value }), 'E_STORAGE_LIMIT', /storage to \d+ bytes; the limit is 4096/);
      assert.equal(valueOf(await caps.call('main/hog', 'storage.delete', { key: 'zz' })), true);
      valueOf(await caps.call('main/hog', 'storage.set', { key: 'zy', value }));
      assert.equal((await store.usage(ns)).bytes, (await Promise.all((await store.keys(ns)).map(async (k) => Buffer.byteLength(k) + Buffer.byteLength((await store.get(ns, k))!)))).reduce((a, b) => a + b, 0));

      const small = setup({ bots: { main: { request, storage: store } }, storageCaps: { maxKeys: 5 } });
      small.registerInstance(spec('main', 'keys', ['storage']));
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => small.call('main/keys', 'storage.set', { key: `key${i}`, value: i })));
      assert.equal(many.filter((r) => r.ok).length, 5);
      assert.equal((await store.usage({ bot: 'main', plugin: 'keys' })).keys, 5);
    } finally {
      await cleanup();
    }
  });
}

describe('storage', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'qqbot-storage-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  storageContract('sqlite store', async () => {
    const file = join(dataDir, 'contract.sqlite');
    const store = new SqliteKeyValueStore({ file });
    let latest = store;
    return {
      store,
      reopen: async () => {
        await store.close();
        latest = new SqliteKeyValueStore({ file });
        return latest;
      },
      cleanup: () => latest.close(),
    };
  });

  storageQuotaContract('sqlite store', async () => {
    const store = new SqliteKeyValueStore({ file: join(dataDir, 'quota.sqlite') });
    return { store, cleanup: () => store.close() };
  });

  test('sqlite store: concurrent writes all land; names are kept as given; prefixes and order are JavaScript\'s', async () => {
    const file = join(dataDir, 'names.sqlite');
    const store = new SqliteKeyValueStore({ file });
    const ns = { bot: 'main', plugin: '@acme/qqbot-plugin-x' };
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.set(ns, `k${i}`, String(i))));
    // keys whose UTF-8 byte order differs from UTF-16 order, and LIKE/GLOB metacharacters
    for (const key of ['\u{1F600}', '\uFF5E', 'a%b', 'a_b', 'a*b', 'a%']) await store.set(ns, key, '1');
    assert.deepEqual(await store.keys(ns, 'a%'), ['a%', 'a%b']);
    assert.deepEqual((await store.keys(ns)).slice(-2), ['\u{1F600}', '\uFF5E'].sort());
    assert.deepEqual(await store.keys({ bot: 'main', plugin: 'qqbot-plugin-x' }), []);
    await store.close();
    const again = new SqliteKeyValueStore({ file });
    assert.equal((await again.usage(ns)).keys, 56);
    await again.close();
    assert.deepEqual((await readdir(dataDir)).filter((f) => f.startsWith('names.')), ['names.sqlite'], 'a clean close leaves no -wal or -shm file');
  });
});

describe('storage on redis', () => {
  let redisProcess: ChildProcess | undefined;
  let socket: string;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'qqbot-redis-'));
    socket = join(dir, 'redis.sock');
    redisProcess = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      redisProcess!.once('error', reject);
      redisProcess!.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${out}`)));
      redisProcess!.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (/ready to accept connections/i.test(out)) resolve();
      });
    });
  });
  after(async () => {
    if (redisProcess && redisProcess.exitCode === null) {
      const exited = once(redisProcess, 'exit');
      redisProcess.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  storageContract('redis store', async () => {
    const redis = new Redis({ path: socket, lazyConnect: true });
    await redis.connect();
    const store = new RedisKeyValueStore({ redis, prefix: 'test:' });
    return {
      store,
      reopen: async () => new RedisKeyValueStore({ redis, prefix: 'test:' }),
      cleanup: async () => {
        assert.deepEqual((await redis.keys('test:*')).sort(), ['test:main:dice'], 'one hash per namespace, nothing else');
        await redis.quit();
      },
    };
  });

  storageQuotaContract('redis store', async () => {
    const redis = new Redis({ path: socket, lazyConnect: true });
    await redis.connect();
    return { store: new RedisKeyValueStore({ redis, prefix: 'quota:' }), cleanup: async () => void (await redis.quit()) };
  });

  test('redis store: data written before the byte counter existed is counted on first use', async () => {
    const redis = new Redis({ path: socket, lazyConnect: true });
    await redis.connect();
    try {
      await redis.hset('legacy:main:old', 'a', '"xyz"', 'bb', '1');
      const store = new RedisKeyValueStore({ redis, prefix: 'legacy:' });
      const ns = { bot: 'main', plugin: 'old' };
      assert.deepEqual(await store.usage(ns), { keys: 2, bytes: 9 });
      assert.deepEqual(await store.set(ns, 'c', '"12"', { maxKeys: 10, maxBytes: 13 }), { limit: 'bytes', wouldUse: 9 + 1 + 4 });
      assert.equal(await store.set(ns, 'c', '"1"', { maxKeys: 10, maxBytes: 13 }), undefined);
      assert.equal(await store.delete(ns, 'a'), true);
      assert.deepEqual(await store.usage(ns), { keys: 2, bytes: 3 + 4 });
    } finally {
      await redis.quit();
    }
  });
});

describe('fetch', () => {
  let site: Server;
  let port: number;
  let requests: { path: string; headers: Record<string, unknown> }[];
  before(async () => {
    requests = [];
    site = createServer((req, res) => {
      requests.push({ path: req.url ?? '', headers: req.headers });
      if (req.url === '/hang') return; // never answers
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('x'.repeat(5000));
        return;
      }
      if (req.url === '/same') {
        res.writeHead(302, { location: '/quote' });
        res.end();
        return;
      }
      if (req.url === '/badloc') {
        res.writeHead(302, { location: 'http://[::1' });
        res.end();
        return;
      }
      if (req.url === '/away') {
        res.writeHead(302, { location: 'http://localhost:1/steal' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-answer': '42' });
      res.end(JSON.stringify({ hitokoto: 'quote', path: req.url }));
    });
    site.listen(0, '127.0.0.1');
    await once(site, 'listening');
    port = (site.address() as AddressInfo).port;
  });
  after(() => closeServer(site));

  test('only allow-listed hosts, same-origin redirects, capped size and time, no credentials added', async () => {
    const caps = setup({ fetch: { maxResponseBytes: 1000, timeoutMs: 300, allowPrivateAddresses: true } });
    caps.registerInstance(spec('main', 'f', ['net.fetch']), { fetchHosts: ['127.0.0.1'] });
    caps.registerInstance(spec('main', 'portonly', ['net.fetch']), { fetchHosts: [`127.0.0.1:${port + 1 === 65536 ? 1 : port + 1}`] });
    caps.registerInstance(spec('main', 'nonet', []), { fetchHosts: ['127.0.0.1'] });
    const base = `http://127.0.0.1:${port}`;

    const ok = valueOf(await caps.call('main/f', 'fetch', { url: `${base}/quote?x=1`, init: { headers: { accept: 'application/json', host: 'evil.example' } } }));
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-answer'], '42');
    assert.deepEqual(JSON.parse(ok.body), { hitokoto: 'quote', path: '/quote?x=1' });
    assert.equal(requests.at(-1)!.headers.host, `127.0.0.1:${port}`);
    assert.equal(requests.at(-1)!.headers.authorization, undefined);

    const followed = valueOf(await caps.call('main/f', 'fetch', { url: `${base}/same` }));
    assert.equal(JSON.parse(followed.body).path, '/quote');
    const away = valueOf(await caps.call('main/f', 'fetch', { url: `${base}/away` }));
    assert.equal(away.status, 302, 'a redirect to another host is handed back, not followed');
    assert.equal(away.headers.location, 'http://localhost:1/steal');

    const unparsable = valueOf(await caps.call('main/f', 'fetch', { url: `${base}/badloc` }));
    assert.equal(unparsable.status, 302, 'an unparsable Location is handed back, not an internal error');

    const before = requests.length;
    assertFailure(await caps.call('main/f', 'fetch', { url: `http://localhost:${port}/quote` }), 'E_FETCH_HOST', `fetch: host "localhost:${port}" is not on this plugin's allow-list`);
    assertFailure(await caps.call('main/portonly', 'fetch', { url: `${base}/quote` }), 'E_FETCH_HOST');
    assertFailure(await caps.call('main/nonet', 'fetch', { url: `${base}/quote` }), 'E_PERMISSION', 'plugin "nonet" lacks permission "net.fetch" for ctx.fetch');
    assertFailure(await caps.call('main/f', 'fetch', { url: 'file:///etc/passwd' }), 'E_INVALID_ARGUMENT');
    assertFailure(await caps.call('main/f', 'fetch', { url: `http://user:pw@127.0.0.1:${port}/` }), 'E_INVALID_ARGUMENT');
    assert.equal(requests.length, before, 'refused fetches made no request');

    assertFailure(await caps.call('main/f', 'fetch', { url: `${base}/big` }), 'E_FETCH_TOO_LARGE', /exceeds 1000 bytes/);
    assertFailure(await caps.call('main/f', 'fetch', { url: `${base}/hang` }), 'E_FETCH_TIMEOUT');
  });

  test('allow-listed hosts that are or resolve to loopback/private/link-local addresses are refused at connect time unless the operator allows it', async () => {
    const lookups: string[] = [];
    // a DNS answer pointing at the host's own loopback: what a rebinding attacker hands out
    const lookup = ((hostname: string, opts: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      lookups.push(hostname);
      if (opts?.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as never;
    const hosts = ['127.0.0.1', 'localhost', 'rebind.example', '169.254.169.254', '10.1.2.3', '::1', '::ffff:127.0.0.1', 'fd00::1'];
    const guarded = setup({ fetch: { lookup, timeoutMs: 5000 } });
    guarded.registerInstance(spec('main', 'f', ['net.fetch']), { fetchHosts: hosts });
    const before = requests.length;
    const urls = [
      `http://127.0.0.1:${port}/quote`, `http://rebind.example:${port}/quote`, 'http://169.254.169.254/latest/meta-data/',
      'http://10.1.2.3/', `http://[::1]:${port}/`, `http://[::ffff:127.0.0.1]:${port}/`, 'http://[fd00::1]/',
    ];
    for (const url of urls) {
      assertFailure(await guarded.call('main/f', 'fetch', { url }), 'E_FETCH_ADDRESS', /(is|resolves to) a (loopback|private|link-local) address; ctx\.fetch reaches public addresses only/);
    }
    assert.deepEqual(lookups, ['rebind.example'], 'names are checked on the address the connection uses, literals before connecting');
    assert.equal(requests.length, before, 'nothing reached the local server');

    const open = setup({ fetch: { lookup, allowPrivateAddresses: true } });
    open.registerInstance(spec('main', 'f', ['net.fetch']), { fetchHosts: hosts });
    const ok = valueOf(await open.call('main/f', 'fetch', { url: `http://rebind.example:${port}/quote` }));
    assert.equal(ok.status, 200);
    assert.equal(requests.at(-1)!.headers.host, `rebind.example:${port}`);
  });

  test('address classes: public addresses pass, every special-purpose range is named', () => {
    for (const a of ['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888', '::ffff:8.8.8.8']) assert.equal(addressCategory(a), undefined, a);
    const cases: Record<string, string> = {
      '127.0.0.1': 'loopback', '::1': 'loopback', '::ffff:7f00:1': 'loopback', '10.0.0.1': 'private', '172.31.255.255': 'private',
      '192.168.1.1': 'private', 'fd12::1': 'private', '169.254.169.254': 'link-local', 'fe80::1%eth0': 'link-local',
      '100.64.0.1': 'shared', '0.0.0.0': 'unspecified', '::': 'unspecified', '224.0.0.1': 'multicast', 'ff02::1': 'multicast',
      '255.255.255.255': 'reserved',
    };
    for (const [a, category] of Object.entries(cases)) assert.equal(addressCategory(a), category, a);
  });

  test('an operator allow-list narrows the manifest\'s', async () => {
    const caps = createCapabilityHandler({ bots: { main: { request, fetchHosts: ['api.example.com'] } } });
    caps.registerInstance(spec('main', 'f', ['net.fetch']), { fetchHosts: ['127.0.0.1', 'api.example.com'] });
    const result = await caps.handle('main/f', 'fetch', { url: `http://127.0.0.1:${port}/quote` });
    assertFailure(result, 'E_FETCH_HOST');
  });
});
