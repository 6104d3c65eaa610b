/**
 * `ctx.api.<method>(…args)` → platform request (docs/protocol.md §12). Each method declares the JSON
 * Schema of its positional arguments; nothing reaches the OpenAPI client before they pass.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { ApiMethodName } from 'qqbot-sdk-types';
import { CapabilityError } from './capability-error.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface ApiRequest {
  method: HttpMethod;
  path: string;
  body?: unknown;
  query?: Record<string, string | number | boolean>;
}

// Ids go into URL paths: a strict alphabet keeps `../` and `?` out whatever the caller sends.
const id = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,128}$' } as const;
const obj = { type: 'object' } as const;

export const MESSAGE_BODY_SCHEMA = {
  type: 'object',
  properties: {
    content: { type: 'string', maxLength: 10_000 },
    msg_type: { type: 'integer', minimum: 0, maximum: 7 },
    markdown: obj,
    keyboard: obj,
    ark: obj,
    embed: obj,
    media: { type: 'object', required: ['file_info'], properties: { file_info: { type: 'string', minLength: 1 } } },
    image: { type: 'string', maxLength: 2048 },
    message_reference: { type: 'object', required: ['message_id'], properties: { message_id: { type: 'string' }, ignore_get_message_error: { type: 'boolean' } } },
    msg_id: { type: 'string' },
    event_id: { type: 'string' },
    msg_seq: { type: 'integer', minimum: 1 },
  },
  // the platform's "at least one of" rule (50006 empty message), checked before sending
  anyOf: [
    { required: ['content'] }, { required: ['markdown'] }, { required: ['ark'] },
    { required: ['embed'] }, { required: ['media'] }, { required: ['image'] },
  ],
} as const;

const media = {
  type: 'object',
  required: ['file_type', 'url'],
  additionalProperties: false,
  properties: {
    file_type: { enum: [1, 2, 3, 4] },
    url: { type: 'string', pattern: '^https?://', maxLength: 2048 },
    srv_send_msg: { type: 'boolean' },
  },
} as const;

interface Route {
  /** schemas of the positional arguments; `required` of them must be present */
  args: readonly { name: string; schema: object }[];
  required: number;
  build(args: unknown[]): ApiRequest;
}

const e = encodeURIComponent;
const s = (v: unknown): string => e(String(v));

const ROUTES: Record<ApiMethodName, Route> = {
  me: { args: [], required: 0, build: () => ({ method: 'GET', path: '/users/@me' }) },
  getGuild: { args: [{ name: 'guildId', schema: id }], required: 1, build: ([g]) => ({ method: 'GET', path: `/guilds/${s(g)}` }) },
  listChannels: { args: [{ name: 'guildId', schema: id }], required: 1, build: ([g]) => ({ method: 'GET', path: `/guilds/${s(g)}/channels` }) },
  getChannel: { args: [{ name: 'channelId', schema: id }], required: 1, build: ([c]) => ({ method: 'GET', path: `/channels/${s(c)}` }) },
  getMember: {
    args: [{ name: 'guildId', schema: id }, { name: 'userId', schema: id }], required: 2,
    build: ([g, u]) => ({ method: 'GET', path: `/guilds/${s(g)}/members/${s(u)}` }),
  },
  listMembers: {
    args: [{ name: 'guildId', schema: id }, { name: 'query', schema: { type: 'object', additionalProperties: false, properties: { after: { type: 'string', pattern: '^[0-9]{1,32}$' }, limit: { type: 'integer', minimum: 1, maximum: 1000 } } } }],
    required: 1,
    build: ([g, q]) => ({ method: 'GET', path: `/guilds/${s(g)}/members`, query: { after: '0', limit: 100, ...(q as object | undefined) } }),
  },
  listRoles: { args: [{ name: 'guildId', schema: id }], required: 1, build: ([g]) => ({ method: 'GET', path: `/guilds/${s(g)}/roles` }) },
  sendChannelMessage: {
    args: [{ name: 'channelId', schema: id }, { name: 'body', schema: MESSAGE_BODY_SCHEMA }], required: 2,
    build: ([c, body]) => ({ method: 'POST', path: `/channels/${s(c)}/messages`, body }),
  },
  sendDirectMessage: {
    args: [{ name: 'guildId', schema: id }, { name: 'body', schema: MESSAGE_BODY_SCHEMA }], required: 2,
    build: ([g, body]) => ({ method: 'POST', path: `/dms/${s(g)}/messages`, body }),
  },
  createDirectSession: {
    args: [{ name: 'recipientId', schema: id }, { name: 'sourceGuildId', schema: id }], required: 2,
    build: ([r, g]) => ({ method: 'POST', path: '/users/@me/dms', body: { recipient_id: r, source_guild_id: g } }),
  },
  sendGroupMessage: {
    args: [{ name: 'groupOpenid', schema: id }, { name: 'body', schema: MESSAGE_BODY_SCHEMA }], required: 2,
    build: ([g, body]) => ({ method: 'POST', path: `/v2/groups/${s(g)}/messages`, body: withMsgType(body) }),
  },
  sendC2CMessage: {
    args: [{ name: 'openid', schema: id }, { name: 'body', schema: MESSAGE_BODY_SCHEMA }], required: 2,
    build: ([o, body]) => ({ method: 'POST', path: `/v2/users/${s(o)}/messages`, body: withMsgType(body) }),
  },
  uploadGroupMedia: {
    args: [{ name: 'groupOpenid', schema: id }, { name: 'media', schema: media }], required: 2,
    build: ([g, m]) => ({ method: 'POST', path: `/v2/groups/${s(g)}/files`, body: m }),
  },
  uploadC2CMedia: {
    args: [{ name: 'openid', schema: id }, { name: 'media', schema: media }], required: 2,
    build: ([o, m]) => ({ method: 'POST', path: `/v2/users/${s(o)}/files`, body: m }),
  },
  addReaction: {
    args: [{ name: 'channelId', schema: id }, { name: 'messageId', schema: id }, { name: 'emojiType', schema: { type: 'integer', minimum: 1, maximum: 2 } }, { name: 'emojiId', schema: id }],
    required: 4,
    build: ([c, m, t, i]) => ({ method: 'PUT', path: `/channels/${s(c)}/messages/${s(m)}/reactions/${s(t)}/${s(i)}` }),
  },
  recallChannelMessage: {
    args: [{ name: 'channelId', schema: id }, { name: 'messageId', schema: id }, { name: 'hidetip', schema: { type: 'boolean' } }], required: 2,
    build: ([c, m, h]) => ({ method: 'DELETE', path: `/channels/${s(c)}/messages/${s(m)}`, query: h === true ? { hidetip: true } : undefined }),
  },
  recallDirectMessage: {
    args: [{ name: 'guildId', schema: id }, { name: 'messageId', schema: id }, { name: 'hidetip', schema: { type: 'boolean' } }], required: 2,
    build: ([g, m, h]) => ({ method: 'DELETE', path: `/dms/${s(g)}/messages/${s(m)}`, query: h === true ? { hidetip: true } : undefined }),
  },
  recallGroupMessage: {
    args: [{ name: 'groupOpenid', schema: id }, { name: 'messageId', schema: id }], required: 2,
    build: ([g, m]) => ({ method: 'DELETE', path: `/v2/groups/${s(g)}/messages/${s(m)}` }),
  },
  recallC2CMessage: {
    args: [{ name: 'openid', schema: id }, { name: 'messageId', schema: id }], required: 2,
    build: ([o, m]) => ({ method: 'DELETE', path: `/v2/users/${s(o)}/messages/${s(m)}` }),
  },
  kickMember: {
    args: [{ name: 'guildId', schema: id }, { name: 'userId', schema: id }, { name: 'options', schema: { type: 'object', additionalProperties: false, properties: { add_blacklist: { type: 'boolean' }, delete_history_msg_days: { enum: [0, 3, 7, 15, 30, -1] } } } }],
    required: 2,
    build: ([g, u, o]) => ({ method: 'DELETE', path: `/guilds/${s(g)}/members/${s(u)}`, body: o }),
  },
  muteMember: {
    args: [{ name: 'guildId', schema: id }, { name: 'userId', schema: id }, { name: 'options', schema: { type: 'object', additionalProperties: false, minProperties: 1, properties: { mute_seconds: { type: 'string', pattern: '^[0-9]{1,10}$' }, mute_end_timestamp: { type: 'string', pattern: '^[0-9]{1,13}$' } } } }],
    required: 3,
    build: ([g, u, o]) => ({ method: 'PATCH', path: `/guilds/${s(g)}/members/${s(u)}/mute`, body: o }),
  },
  addMemberRole: {
    args: [{ name: 'guildId', schema: id }, { name: 'userId', schema: id }, { name: 'roleId', schema: id }, { name: 'channelId', schema: id }], required: 3,
    build: ([g, u, r, c]) => ({ method: 'PUT', path: `/guilds/${s(g)}/members/${s(u)}/roles/${s(r)}`, body: c === undefined ? undefined : { channel: { id: c } } }),
  },
  removeMemberRole: {
    args: [{ name: 'guildId', schema: id }, { name: 'userId', schema: id }, { name: 'roleId', schema: id }, { name: 'channelId', schema: id }], required: 3,
    build: ([g, u, r, c]) => ({ method: 'DELETE', path: `/guilds/${s(g)}/members/${s(u)}/roles/${s(r)}`, body: c === undefined ? undefined : { channel: { id: c } } }),
  },
  createChannel: {
    args: [{ name: 'guildId', schema: id }, { name: 'channel', schema: { type: 'object', required: ['name', 'type'], properties: { name: { type: 'string', minLength: 1 }, type: { type: 'integer' } } } }], required: 2,
    build: ([g, c]) => ({ method: 'POST', path: `/guilds/${s(g)}/channels`, body: c }),
  },
  updateChannel: {
    args: [{ name: 'channelId', schema: id }, { name: 'patch', schema: { type: 'object', minProperties: 1 } }], required: 2,
    build: ([c, p]) => ({ method: 'PATCH', path: `/channels/${s(c)}`, body: p }),
  },
  deleteChannel: { args: [{ name: 'channelId', schema: id }], required: 1, build: ([c]) => ({ method: 'DELETE', path: `/channels/${s(c)}` }) },
  pinMessage: {
    args: [{ name: 'channelId', schema: id }, { name: 'messageId', schema: id }], required: 2,
    build: ([c, m]) => ({ method: 'PUT', path: `/channels/${s(c)}/pins/${s(m)}` }),
  },
  createRole: {
    args: [{ name: 'guildId', schema: id }, { name: 'role', schema: obj }], required: 2,
    build: ([g, r]) => ({ method: 'POST', path: `/guilds/${s(g)}/roles`, body: r }),
  },
  updateRole: {
    args: [{ name: 'guildId', schema: id }, { name: 'roleId', schema: id }, { name: 'role', schema: obj }], required: 3,
    build: ([g, r, b]) => ({ method: 'PATCH', path: `/guilds/${s(g)}/roles/${s(r)}`, body: b }),
  },
  deleteRole: {
    args: [{ name: 'guildId', schema: id }, { name: 'roleId', schema: id }], required: 2,
    build: ([g, r]) => ({ method: 'DELETE', path: `/guilds/${s(g)}/roles/${s(r)}` }),
  },
};

/** Group/C2C require `msg_type`; derive it from the body's fields when the plugin left it out. */
export function withMsgType(body: unknown): Record<string, unknown> {
  const b = { ...(body as Record<string, unknown>) };
  if (b.msg_type === undefined) b.msg_type = msgTypeOf(b);
  if (b.msg_type === 7 && (typeof b.content !== 'string' || b.content === '')) b.content = ' '; // §13.1: media needs content
  return b;
}

export function msgTypeOf(body: Record<string, unknown>): number {
  if (body.media !== undefined) return 7;
  if (body.markdown !== undefined) return 2;
  if (body.ark !== undefined) return 3;
  if (body.embed !== undefined) return 4;
  return 0;
}

const ajv = new Ajv({ allErrors: false, strict: false });
const validators = new Map<string, ValidateFunction>();

function validatorFor(method: string, index: number, schema: object): ValidateFunction {
  const key = `${method}#${index}`;
  let v = validators.get(key);
  if (!v) {
    v = ajv.compile(schema);
    validators.set(key, v);
  }
  return v;
}

export function isApiMethod(name: string): name is ApiMethodName {
  return Object.prototype.hasOwnProperty.call(ROUTES, name);
}

/** Validates `args` for `method` and builds the platform request; throws E_INVALID_ARGUMENT. */
export function buildApiRequest(method: ApiMethodName, args: unknown): ApiRequest {
  const route = ROUTES[method];
  if (!Array.isArray(args)) throw invalid(method, 'arguments must be an array');
  if (args.length > route.args.length) throw invalid(method, `takes at most ${route.args.length} argument(s), got ${args.length}`);
  route.args.forEach((spec, i) => {
    const value = args[i];
    if (value === undefined || value === null) {
      if (i < route.required) throw invalid(method, `argument ${i + 1} (${spec.name}) is required`);
      return;
    }
    const validate = validatorFor(method, i, spec.schema);
    if (!validate(value)) throw invalid(method, `argument ${i + 1} (${spec.name})${describe(firstError(validate.errors))}`);
  });
  return route.build(args.map((a) => (a === null ? undefined : a)));
}

/** The anyOf ("at least one of") failure speaks for its branches' `required` errors. */
export function firstError(errors: ErrorObject[] | null | undefined): ErrorObject | undefined {
  return errors?.find((e) => e.keyword === 'anyOf') ?? errors?.[0];
}

function describe(error: ErrorObject | undefined): string {
  if (!error) return ' is invalid';
  if (error.keyword === 'anyOf') return ' needs at least one of content, markdown, ark, embed, media, image';
  const where = error.instancePath ? '.' + error.instancePath.slice(1).replace(/\//g, '.') : '';
  if (error.keyword === 'pattern' && error.params.pattern === id.pattern) return `${where} must be an id (1-128 letters, digits, _ or -)`;
  return `${where} ${error.message ?? 'is invalid'}`;
}

function invalid(method: string, message: string): CapabilityError {
  return new CapabilityError('E_INVALID_ARGUMENT', `api.${method}: ${message}`);
}
