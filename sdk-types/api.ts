/**
 * The plugin-facing API surface. `API_METHODS` is the single table that the in-sandbox prelude
 * (to build `ctx.api`), the host (to check permissions) and these types all derive from.
 */

export const PERMISSIONS = [
  'messages.send',
  'messages.recall',
  'guilds.read',
  'members.read',
  'members.manage',
  'channels.manage',
  'roles.manage',
  'net.fetch',
  'storage',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** ctx.api method → the permission it needs. Arguments are positional and JSON-only. */
export const API_METHODS = {
  me: 'guilds.read',
  getGuild: 'guilds.read',
  listChannels: 'guilds.read',
  getChannel: 'guilds.read',
  getMember: 'members.read',
  listMembers: 'members.read',
  listRoles: 'members.read',
  sendChannelMessage: 'messages.send',
  sendDirectMessage: 'messages.send',
  createDirectSession: 'messages.send',
  sendGroupMessage: 'messages.send',
  sendC2CMessage: 'messages.send',
  uploadGroupMedia: 'messages.send',
  uploadC2CMedia: 'messages.send',
  addReaction: 'messages.send',
  recallChannelMessage: 'messages.recall',
  recallDirectMessage: 'messages.recall',
  recallGroupMessage: 'messages.recall',
  recallC2CMessage: 'messages.recall',
  kickMember: 'members.manage',
  muteMember: 'members.manage',
  addMemberRole: 'members.manage',
  removeMemberRole: 'members.manage',
  createChannel: 'channels.manage',
  updateChannel: 'channels.manage',
  deleteChannel: 'channels.manage',
  pinMessage: 'channels.manage',
  createRole: 'roles.manage',
  updateRole: 'roles.manage',
  deleteRole: 'roles.manage',
} as const satisfies Record<string, Permission>;
export type ApiMethodName = keyof typeof API_METHODS;

export interface MessageBody {
  content?: string;
  msg_type?: number;
  markdown?: Record<string, unknown>;
  keyboard?: Record<string, unknown>;
  ark?: Record<string, unknown>;
  embed?: Record<string, unknown>;
  media?: { file_info: string };
  image?: string;
  message_reference?: { message_id: string; ignore_get_message_error?: boolean };
  /** Passive reply to this message id. When it names a message the bot received, the host checks the reply window and cap and sets `msg_seq`. */
  msg_id?: string;
  /** Passive reply to this event id (same checks as `msg_id`). */
  event_id?: string;
  /** Ignored when `msg_id`/`event_id` names an event the bot received: the host hands out the shared sequence. */
  msg_seq?: number;
}

/** What `event.reply` accepts: a body without the passive-reply fields, which the host fills in. */
export type ReplyBody = Omit<MessageBody, 'msg_id' | 'event_id' | 'msg_seq'>;

export interface SendResult {
  id?: string;
  timestamp?: string | number;
  /** Set when the platform accepted the message for audit (HTTP 202, code 304023/304024). */
  audit_id?: string;
  [key: string]: unknown;
}

export interface MediaUpload {
  file_type: 1 | 2 | 3 | 4;
  url: string;
  srv_send_msg?: boolean;
}

export interface PluginApi {
  me(): Promise<{ id: string; username: string; avatar?: string }>;
  getGuild(guildId: string): Promise<Record<string, unknown>>;
  listChannels(guildId: string): Promise<Record<string, unknown>[]>;
  getChannel(channelId: string): Promise<Record<string, unknown>>;
  getMember(guildId: string, userId: string): Promise<Record<string, unknown>>;
  listMembers(guildId: string, query?: { after?: string; limit?: number }): Promise<Record<string, unknown>[]>;
  listRoles(guildId: string): Promise<Record<string, unknown>>;
  sendChannelMessage(channelId: string, body: MessageBody): Promise<SendResult>;
  sendDirectMessage(guildId: string, body: MessageBody): Promise<SendResult>;
  createDirectSession(recipientId: string, sourceGuildId: string): Promise<{ guild_id: string; channel_id: string }>;
  sendGroupMessage(groupOpenid: string, body: MessageBody): Promise<SendResult>;
  sendC2CMessage(openid: string, body: MessageBody): Promise<SendResult>;
  uploadGroupMedia(groupOpenid: string, media: MediaUpload): Promise<{ file_uuid: string; file_info: string; ttl: number }>;
  uploadC2CMedia(openid: string, media: MediaUpload): Promise<{ file_uuid: string; file_info: string; ttl: number }>;
  addReaction(channelId: string, messageId: string, emojiType: number, emojiId: string): Promise<void>;
  recallChannelMessage(channelId: string, messageId: string, hidetip?: boolean): Promise<void>;
  recallDirectMessage(guildId: string, messageId: string, hidetip?: boolean): Promise<void>;
  recallGroupMessage(groupOpenid: string, messageId: string): Promise<void>;
  recallC2CMessage(openid: string, messageId: string): Promise<void>;
  kickMember(guildId: string, userId: string, options?: { add_blacklist?: boolean; delete_history_msg_days?: number }): Promise<void>;
  muteMember(guildId: string, userId: string, options: { mute_seconds?: string; mute_end_timestamp?: string }): Promise<void>;
  addMemberRole(guildId: string, userId: string, roleId: string, channelId?: string): Promise<void>;
  removeMemberRole(guildId: string, userId: string, roleId: string, channelId?: string): Promise<void>;
  createChannel(guildId: string, channel: Record<string, unknown>): Promise<Record<string, unknown>>;
  updateChannel(channelId: string, patch: Record<string, unknown>): Promise<Record<string, unknown>>;
  deleteChannel(channelId: string): Promise<void>;
  pinMessage(channelId: string, messageId: string): Promise<Record<string, unknown>>;
  createRole(guildId: string, role: Record<string, unknown>): Promise<Record<string, unknown>>;
  updateRole(guildId: string, roleId: string, role: Record<string, unknown>): Promise<Record<string, unknown>>;
  deleteRole(guildId: string, roleId: string): Promise<void>;
}

/** How a refused or failed call rejects inside the plugin: an Error with these fields. */
export interface PluginCallError extends Error {
  /** Stable runtime code, e.g. E_PERMISSION, E_INVALID_ARGUMENT, E_RATE_LIMITED, E_REPLY_WINDOW, E_STORAGE_LIMIT, E_FETCH_ADDRESS, E_OPENAPI. */
  code: string;
  /** Platform error code when the platform refused the call. */
  platformCode?: number;
  status?: number;
  traceId?: string;
}
