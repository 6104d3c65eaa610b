import { ChannelSendWindow } from './channel-send-rate.ts';
import type { Gateway } from './gateway.ts';
import { epochNow, type MessageLedger, type ReplyScene } from './message-ledger.ts';
import type { ResolvedOptions } from './resolved-options.ts';
import type { SimulatorBot } from './simulator-bot.ts';
import type { Outbox, OutboxEntry } from './outbox.ts';
import { CODES, PlatformError } from './platform-error.ts';
import type { ProactiveQuota } from './proactive-quota.ts';
import { RouteTable } from './route-table.ts';
import type { TokenIssuer } from './token-issuer.ts';
import type { User, World } from './world.ts';

export interface ApiRequest {
  bot: SimulatorBot;
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
}

export interface ApiResponse { status: number; body?: unknown; headers?: Record<string, string> }

type Handler = (req: ApiRequest) => ApiResponse;

interface RateLimitFault { remaining: number; retryAfterSec: number; appId: string | undefined }

/** Group/C2C messages may be recalled for two minutes (§12). */
const RECALL_WINDOW_MS = 2 * 60_000;
const MAX_STORED_MESSAGES = 10_000;

/**
 * The OpenAPI as bots see it: auth on every call, the world's guilds/channels/members/roles,
 * and message posting with the checks of §13–§14. Every answer carries a trace id.
 */
export class OpenApi {
  readonly routes = new RouteTable<Handler>();
  readonly #world: World;
  readonly #ledger: MessageLedger;
  readonly #outbox: Outbox;
  readonly #tokens: TokenIssuer;
  readonly #proactive: ProactiveQuota;
  readonly #gateway: Gateway;
  readonly #options: ResolvedOptions;
  readonly #gatewayUrl: () => string;
  readonly #botUser: (appId: string) => User;
  readonly #onOutbox: (entry: OutboxEntry) => void;
  readonly #rateLimits = new Map<string, RateLimitFault>();
  readonly #channelRate: ChannelSendWindow | undefined;
  /** sends refused with 20028 because their channel was over its rate */
  refusedForRate = 0;
  /** channel and DM messages by id, for GET /channels/{id}/messages/{id} */
  readonly #messages = new Map<string, Record<string, unknown>>();

  constructor(init: {
    world: World; ledger: MessageLedger; outbox: Outbox; tokens: TokenIssuer; proactive: ProactiveQuota; gateway: Gateway; options: ResolvedOptions;
    gatewayUrl: () => string; botUser: (appId: string) => User; onOutbox: (entry: OutboxEntry) => void;
  }) {
    this.#world = init.world;
    this.#ledger = init.ledger;
    this.#outbox = init.outbox;
    this.#tokens = init.tokens;
    this.#proactive = init.proactive;
    this.#gateway = init.gateway;
    this.#options = init.options;
    this.#channelRate = init.options.channelSendRate ? new ChannelSendWindow(init.options.channelSendRate) : undefined;
    this.#gatewayUrl = init.gatewayUrl;
    this.#botUser = init.botUser;
    this.#onOutbox = init.onOutbox;
    this.#defineRoutes();
  }

  /** Answers one OpenAPI call; throws PlatformError for the platform's error answers. */
  handle(method: string, path: string, query: URLSearchParams, authorization: string | undefined, body: unknown): ApiResponse {
    const { found, pathKnown } = this.routes.match(method, path.length > 1 ? path.replace(/\/+$/, '') : path);
    if (!found) {
      if (pathKnown) throw new PlatformError(405, CODES.methodNotAllowed, `method ${method} not allowed on ${path}`);
      throw new PlatformError(404, CODES.noSuchApi, `no such API: ${method} ${path}`);
    }
    const bot = this.#tokens.authenticate(authorization);
    this.#checkRateLimit(found.key, bot.appId);
    return found.handler({ bot, params: found.params, query, body });
  }

  /** Arms a rate-limit fault: the next `count` calls to `route` answer 429. */
  rateLimit(route: string, count: number, retryAfterSec = 1, appId?: string): void {
    this.#rateLimits.set(normaliseRoute(route), { remaining: count, retryAfterSec, appId });
  }

  /** Inbound channel/DM messages, so bots can fetch what they are answering. */
  rememberMessage(message: Record<string, unknown>): void {
    this.#messages.set(String(message.id), message);
    if (this.#messages.size > MAX_STORED_MESSAGES) this.#messages.delete(this.#messages.keys().next().value as string);
  }

  #checkRateLimit(key: string, appId: string): void {
    const template = key.slice(key.indexOf(' ') + 1);
    for (const k of [key, template]) {
      const fault = this.#rateLimits.get(k);
      if (!fault || (fault.appId !== undefined && fault.appId !== appId)) continue;
      if (--fault.remaining <= 0) this.#rateLimits.delete(k);
      const code = template.startsWith('/v2/') ? CODES.sendRateLimited : CODES.channelRateLimited;
      throw new PlatformError(429, code, 'request rate limited (simulator fault)', {
        headers: { 'retry-after': String(fault.retryAfterSec), 'x-ratelimit-remaining': '0' },
      });
    }
  }

  #defineRoutes(): void {
    const w = this.#world;
    const r = this.routes;
    const guildOf = (id: string | undefined) => {
      const g = id === undefined ? undefined : w.guilds.get(id);
      if (!g) throw notFound(`guild ${id}`);
      return g;
    };
    const channelOf = (id: string | undefined) => {
      const c = id === undefined ? undefined : w.channels.get(id);
      if (!c) throw notFound(`channel ${id}`);
      return c;
    };
    const membersOf = (guildId: string | undefined) => w.members.get(guildOf(guildId).id)!;
    const rolesOf = (guildId: string | undefined) => w.roles.get(guildOf(guildId).id)!;

    r.add('GET', '/gateway', () => ok({ url: this.#gatewayUrl() }));
    r.add('GET', '/gateway/bot', ({ bot }) => ok({ url: this.#gatewayUrl(), shards: this.#options.recommendedShards, session_start_limit: this.#gateway.startLimit(bot.appId) }));
    r.add('GET', '/users/@me', ({ bot }) => ok({ ...this.#botUser(bot.appId), union_openid: '', union_user_account: '' }));
    r.add('GET', '/users/@me/guilds', ({ query }) => {
      const limit = clampInt(query.get('limit'), 1, 100, 100);
      let guilds = [...w.guilds.values()].sort((a, b) => compareIds(a.id, b.id));
      const after = query.get('after');
      const before = query.get('before');
      if (after) guilds = guilds.filter((g) => compareIds(g.id, after) > 0);
      if (before) guilds = guilds.filter((g) => compareIds(g.id, before) < 0);
      return ok(guilds.slice(0, limit));
    });
    r.add('GET', '/guilds/{guild_id}', ({ params }) => ok(guildOf(params.guild_id)));
    r.add('GET', '/guilds/{guild_id}/channels', ({ params }) => ok(w.channelsOf(guildOf(params.guild_id).id).map((c) => w.publicChannel(c))));
    r.add('POST', '/guilds/{guild_id}/channels', ({ params, body }) => {
      const b = objectBody(body);
      if (typeof b.name !== 'string' || !b.name) throw invalid('name is required');
      const type = b.type === undefined ? 0 : b.type;
      if (typeof type !== 'number') throw invalid('type must be a number');
      return ok(w.publicChannel(w.addChannel({ guild_id: guildOf(params.guild_id).id, name: b.name, type })));
    });
    r.add('GET', '/channels/{channel_id}', ({ params }) => ok(w.publicChannel(channelOf(params.channel_id))));
    r.add('PATCH', '/channels/{channel_id}', ({ params, body }) => {
      const c = channelOf(params.channel_id);
      const b = objectBody(body);
      if (b.name !== undefined) {
        if (typeof b.name !== 'string' || !b.name) throw invalid('name must be a non-empty string');
        c.name = b.name;
      }
      if (b.position !== undefined) {
        if (typeof b.position !== 'number') throw invalid('position must be a number');
        c.position = b.position;
      }
      return ok(w.publicChannel(c));
    });
    r.add('DELETE', '/channels/{channel_id}', ({ params }) => {
      const c = channelOf(params.channel_id);
      w.channels.delete(c.id);
      return ok(w.publicChannel(c));
    });
    r.add('GET', '/guilds/{guild_id}/members', ({ params, query }) => {
      const limit = clampInt(query.get('limit'), 1, 1000, 1);
      const after = query.get('after') ?? '0';
      const members = [...membersOf(params.guild_id).values()].sort((a, b) => compareIds(a.user.id, b.user.id)).filter((m) => compareIds(m.user.id, after) > 0);
      return ok(members.slice(0, limit));
    });
    r.add('GET', '/guilds/{guild_id}/members/{user_id}', ({ params }) => {
      const m = membersOf(params.guild_id).get(params.user_id!);
      if (!m) throw notFound(`member ${params.user_id}`);
      return ok(m);
    });
    r.add('DELETE', '/guilds/{guild_id}/members/{user_id}', ({ params }) => {
      const members = membersOf(params.guild_id);
      if (!members.delete(params.user_id!)) throw notFound(`member ${params.user_id}`);
      return { status: 204 };
    });
    r.add('GET', '/guilds/{guild_id}/roles', ({ params }) => ok({ guild_id: params.guild_id, roles: [...rolesOf(params.guild_id).values()], role_num_limit: '32' }));
    r.add('POST', '/guilds/{guild_id}/roles', ({ params, body }) => {
      const roles = rolesOf(params.guild_id);
      const b = objectBody(body);
      const id = w.newId('10');
      const role = { id, name: typeof b.name === 'string' ? b.name : `role ${id}`, color: typeof b.color === 'number' ? b.color : 0, hoist: b.hoist === 1 ? 1 : 0, number: 0, member_limit: 100 };
      roles.set(id, role);
      return ok({ role_id: id, role });
    });
    r.add('PATCH', '/guilds/{guild_id}/roles/{role_id}', ({ params, body }) => {
      const role = rolesOf(params.guild_id).get(params.role_id!);
      if (!role) throw notFound(`role ${params.role_id}`);
      const b = objectBody(body);
      const info = (typeof b.info === 'object' && b.info !== null ? b.info : b) as Record<string, unknown>;
      if (typeof info.name === 'string') role.name = info.name;
      if (typeof info.color === 'number') role.color = info.color;
      if (info.hoist === 0 || info.hoist === 1) role.hoist = info.hoist;
      return ok({ guild_id: params.guild_id, role_id: role.id, role });
    });
    r.add('DELETE', '/guilds/{guild_id}/roles/{role_id}', ({ params }) => {
      if (!rolesOf(params.guild_id).delete(params.role_id!)) throw notFound(`role ${params.role_id}`);
      return { status: 204 };
    });
    const memberRole = (add: boolean): Handler => ({ params }) => {
      const m = membersOf(params.guild_id).get(params.user_id!);
      if (!m) throw notFound(`member ${params.user_id}`);
      if (!rolesOf(params.guild_id).has(params.role_id!)) throw notFound(`role ${params.role_id}`);
      m.roles = add ? [...new Set([...m.roles, params.role_id!])] : m.roles.filter((x) => x !== params.role_id);
      return { status: 204 };
    };
    r.add('PUT', '/guilds/{guild_id}/members/{user_id}/roles/{role_id}', memberRole(true));
    r.add('DELETE', '/guilds/{guild_id}/members/{user_id}/roles/{role_id}', memberRole(false));

    r.add('POST', '/channels/{channel_id}/messages', ({ bot, params, body }) => {
      const channel = channelOf(params.channel_id);
      if (!channel.botCanSpeak) throw new PlatformError(403, CODES.apiNotGranted, `the bot may not speak in channel ${channel.id}`);
      return this.#send(bot, 'guild', { channel_id: channel.id }, channel.id, body, 'POST /channels/{channel_id}/messages', { guild_id: channel.guild_id, channel_id: channel.id });
    });
    r.add('GET', '/channels/{channel_id}/messages/{message_id}', ({ params }) => {
      const m = this.#messages.get(params.message_id!);
      if (!m || m.channel_id !== params.channel_id) throw notFound(`message ${params.message_id}`);
      return ok({ message: m });
    });
    r.add('DELETE', '/channels/{channel_id}/messages/{message_id}', ({ bot, params }) => this.#recall(bot, 'guild', params.channel_id!, params.message_id!));
    r.add('POST', '/users/@me/dms', ({ body }) => {
      const b = objectBody(body);
      if (typeof b.recipient_id !== 'string' || !b.recipient_id) throw invalid('recipient_id is required');
      if (typeof b.source_guild_id !== 'string' || !w.guilds.has(b.source_guild_id)) throw invalid('source_guild_id must name a guild the bot is in');
      const dm = w.openDirect(b.recipient_id, b.source_guild_id);
      return ok({ guild_id: dm.guild_id, channel_id: dm.channel_id, create_time: dm.create_time });
    });
    r.add('POST', '/dms/{guild_id}/messages', ({ bot, params, body }) => {
      const dm = w.directByGuild(params.guild_id!);
      if (!dm) throw notFound(`DM guild ${params.guild_id}`);
      return this.#send(bot, 'direct', { guild_id: dm.guild_id }, dm.guild_id, body, 'POST /dms/{guild_id}/messages', { guild_id: dm.guild_id, channel_id: dm.channel_id, src_guild_id: dm.source_guild_id, direct_message: true });
    });
    r.add('DELETE', '/dms/{guild_id}/messages/{message_id}', ({ bot, params }) => this.#recall(bot, 'direct', params.guild_id!, params.message_id!));
    r.add('POST', '/v2/groups/{group_openid}/messages', ({ bot, params, body }) => {
      if (!w.groups.has(params.group_openid!)) throw notFound(`group ${params.group_openid}`);
      return this.#send(bot, 'group', { group_openid: params.group_openid! }, params.group_openid!, body, 'POST /v2/groups/{group_openid}/messages');
    });
    r.add('POST', '/v2/groups/{group_openid}/files', ({ bot, params, body }) => {
      if (!w.groups.has(params.group_openid!)) throw notFound(`group ${params.group_openid}`);
      return this.#upload(bot, 'group', { group_openid: params.group_openid! }, params.group_openid!, body, 'POST /v2/groups/{group_openid}/files');
    });
    r.add('DELETE', '/v2/groups/{group_openid}/messages/{message_id}', ({ bot, params }) => this.#recall(bot, 'group', params.group_openid!, params.message_id!));
    r.add('POST', '/v2/users/{openid}/messages', ({ bot, params, body }) => {
      if (!w.c2cUsers.has(params.openid!)) throw notFound(`user ${params.openid}`);
      return this.#send(bot, 'c2c', { openid: params.openid! }, params.openid!, body, 'POST /v2/users/{openid}/messages');
    });
    r.add('POST', '/v2/users/{openid}/files', ({ bot, params, body }) => {
      if (!w.c2cUsers.has(params.openid!)) throw notFound(`user ${params.openid}`);
      return this.#upload(bot, 'c2c', { openid: params.openid! }, params.openid!, body, 'POST /v2/users/{openid}/files');
    });
    r.add('DELETE', '/v2/users/{openid}/messages/{message_id}', ({ bot, params }) => this.#recall(bot, 'c2c', params.openid!, params.message_id!));
    r.add('PUT', '/interactions/{interaction_id}', ({ body }) => {
      const b = objectBody(body);
      if (b.code !== undefined && (typeof b.code !== 'number' || !Number.isInteger(b.code) || b.code < 0 || b.code > 5)) throw invalid('code must be 0–5');
      return { status: 204 };
    });
  }

  #send(bot: SimulatorBot, scene: ReplyScene, target: Record<string, string>, targetId: string, rawBody: unknown, route: string, channelFields?: Record<string, unknown>): ApiResponse {
    const body = objectBody(rawBody);
    checkContent(scene, body, (fileInfo) => this.#ledger.upload(fileInfo), bot.appId);
    // checked before the reply bookkeeping: a refused send uses up no reply of the message
    const channelRate = scene === 'guild' ? this.#channelRate : undefined;
    // the platform's rule is per bot: two bots in one channel each have their own 5 per second
    const rateKey = `${bot.appId}:${targetId}`;
    try {
      channelRate?.check(rateKey);
    } catch (err) {
      this.refusedForRate++;
      throw err;
    }
    const { passive, answeredAt } = this.#ledger.admit(bot.appId, scene, targetId, body);
    if (!passive) this.#proactive.admit({ appId: bot.appId, scene, target: targetId, ...(typeof channelFields?.guild_id === 'string' && scene === 'guild' ? { guildId: channelFields.guild_id } : {}) });
    channelRate?.record(rateKey);
    return this.#record(bot, scene, target, targetId, body, route, passive, channelFields, answeredAt);
  }

  #record(bot: SimulatorBot, scene: ReplyScene, target: Record<string, string>, targetId: string, body: Record<string, unknown>, route: string, passive: boolean, channelFields?: Record<string, unknown>, answeredAt?: number): ApiResponse {
    const id = this.#world.newId(scene === 'group' || scene === 'c2c' ? 'ROBOT1.0_' : '08');
    const timestamp = new Date().toISOString();
    const entry = this.#outbox.add({
      appId: bot.appId, scene, target, body, id, passive, route,
      ...(answeredAt !== undefined ? { latencyMs: epochNow() - answeredAt } : {}),
      ...(typeof body.msg_id === 'string' ? { msg_id: body.msg_id } : {}),
      ...(typeof body.event_id === 'string' ? { event_id: body.event_id } : {}),
      ...(typeof body.msg_seq === 'number' ? { msg_seq: body.msg_seq } : {}),
    });
    this.#ledger.recordSent({ id, appId: bot.appId, scene, target: targetId, at: Date.now(), outboxN: entry.n });
    this.#onOutbox(entry);
    if (!channelFields) return ok({ id, timestamp });
    const message: Record<string, unknown> = {
      id, ...channelFields, content: typeof body.content === 'string' ? body.content : '', timestamp, edited_timestamp: '',
      mention_everyone: false, author: { ...this.#botUser(bot.appId) }, attachments: [], embeds: body.embed ? [body.embed] : [], mentions: [],
      ...(body.ark ? { ark: body.ark } : {}), ...(body.message_reference ? { message_reference: body.message_reference } : {}),
      seq: entry.n, seq_in_channel: String(entry.n),
    };
    this.rememberMessage(message);
    return ok(message);
  }

  #upload(bot: SimulatorBot, scene: 'group' | 'c2c', target: Record<string, string>, targetId: string, rawBody: unknown, route: string): ApiResponse {
    const body = objectBody(rawBody);
    if (typeof body.file_type !== 'number' || ![1, 2, 3, 4].includes(body.file_type)) throw invalid('file_type must be 1 (image), 2 (video), 3 (voice) or 4 (file)');
    if (body.file_type === 4) throw invalid('file_type 4 (file) is not open');
    if (typeof body.url !== 'string' || !/^https?:\/\//.test(body.url)) throw invalid('url must be an http(s) URL');
    if (body.file_data !== undefined) throw invalid('file_data is not supported');
    if (body.srv_send_msg !== undefined && typeof body.srv_send_msg !== 'boolean') throw invalid('srv_send_msg must be a boolean');
    // sent right away, it is a proactive message (§13.2)
    if (body.srv_send_msg === true) this.#proactive.admit({ appId: bot.appId, scene, target: targetId });
    const fileInfo = Buffer.from(`${scene}:${bot.appId}:${this.#world.newId()}`).toString('base64');
    this.#ledger.recordUpload({ fileInfo, appId: bot.appId, scene });
    const result: Record<string, unknown> = { file_uuid: this.#world.newId('F'), file_info: fileInfo, ttl: 3600 };
    if (body.srv_send_msg === true) {
      const sent = this.#record(bot, scene, target, targetId, { msg_type: 7, media: { file_info: fileInfo }, srv_send_msg: true, url: body.url, file_type: body.file_type }, route, false);
      result.id = (sent.body as { id: string }).id;
    }
    return ok(result);
  }

  #recall(bot: SimulatorBot, scene: ReplyScene, targetId: string, messageId: string): ApiResponse {
    const sent = this.#ledger.sent(messageId);
    if (!sent || sent.appId !== bot.appId || sent.scene !== scene || sent.target !== targetId) throw new PlatformError(404, CODES.recallNotFound, `no message ${messageId} of this bot here`);
    if ((scene === 'group' || scene === 'c2c') && Date.now() - sent.at > RECALL_WINDOW_MS) throw new PlatformError(400, CODES.recallWindowPassed, 'past the recall window');
    this.#ledger.forgetSent(messageId);
    this.#messages.delete(messageId);
    this.#outbox.markRecalled(messageId);
    return { status: 204 };
  }
}

/** §13.1: what makes a message non-empty, per scene. */
function checkContent(scene: ReplyScene, body: Record<string, unknown>, upload: (fileInfo: string) => { appId: string; scene: string } | undefined, appId: string): void {
  const hasContent = typeof body.content === 'string' && body.content.length > 0;
  if (body.file_image !== undefined) throw invalid('file_image needs multipart/form-data, which the simulator does not accept');
  if (scene === 'guild' || scene === 'direct') {
    if (!hasContent && !body.embed && !body.ark && !body.image && !body.markdown) throw new PlatformError(400, CODES.emptyMessage, 'message is empty: content, embed, ark, image or markdown required');
    if (body.markdown && (hasContent || body.embed || body.ark || body.image)) throw new PlatformError(400, CODES.markdownCombination, 'markdown may only be combined with keyboard');
    return;
  }
  const msgType = body.msg_type ?? 0;
  if (typeof msgType !== 'number' || ![0, 1, 2, 3, 4, 6, 7].includes(msgType)) throw invalid('msg_type must be one of 0, 1, 2, 3, 4, 6, 7');
  const need: Record<number, [unknown, string]> = { 2: [body.markdown, 'markdown'], 3: [body.ark, 'ark'], 4: [body.embed, 'embed'], 7: [body.media, 'media'] };
  if (msgType === 0 || msgType === 1 || msgType === 7) {
    if (!hasContent) throw new PlatformError(400, CODES.emptyMessage, `message is empty: msg_type ${msgType} needs content`);
  }
  const required = need[msgType];
  if (required && !required[0]) throw new PlatformError(400, CODES.emptyMessage, `msg_type ${msgType} needs ${required[1]}`);
  if (msgType === 7) {
    const fileInfo = (body.media as { file_info?: unknown }).file_info;
    const known = typeof fileInfo === 'string' ? upload(fileInfo) : undefined;
    if (!known || known.appId !== appId || known.scene !== scene) throw invalid('media.file_info must come from this bot\'s upload for the same kind of target');
  }
}

function ok(body: unknown): ApiResponse {
  return { status: 200, body };
}

function invalid(message: string): PlatformError {
  return new PlatformError(400, CODES.invalidParameter, message);
}

function notFound(what: string): PlatformError {
  return new PlatformError(404, CODES.notFound, `${what} not found`);
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('request body must be a JSON object');
  return body as Record<string, unknown>;
}

function clampInt(raw: string | null, min: number, max: number, fallback: number): number {
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw invalid(`limit must be an integer in ${min}–${max}`);
  return n;
}

function compareIds(a: string, b: string): number {
  if (/^[0-9]+$/.test(a) && /^[0-9]+$/.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function normaliseRoute(route: string): string {
  return route.trim().split(/\s+/).join(' ');
}
