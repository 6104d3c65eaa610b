import { inspect } from 'node:util';
import { Rest, type HttpMethod, type RequestOptions, type RestEvents, type RestOptions } from './rest.ts';
import type {
  Announce, APIPermission, APIPermissionDemand, APIPermissionDemandCreate, BotUser, Channel, ChannelCreate,
  ChannelPatch, ChannelPermissions, ChannelPermissionsUpdate, DirectSession, DirectSessionCreate, Emoji, Gateway,
  GatewayBot, Guild, GuildAnnounceCreate, GuildMember, GuildMessage, GuildRoles, InteractionCode, KickOptions,
  MediaUpload, MediaUploadResult, MemberListQuery, MessageBody, MessageListQuery, MessagePatch, MessageSetting,
  MuteOptions, PageQuery, PinsMessage, ReactionUsers, ReactionUsersQuery, RoleInfo, RoleMembers, RoleMembersQuery,
  RoleUpdate, Schedule, ScheduleInput, SendResult,
} from './types.ts';

export type OpenAPIClientOptions = RestOptions;

/** Builds a path from a template, escaping each value so an id cannot reach another endpoint. */
function p(strings: TemplateStringsArray, ...values: (string | number)[]): string {
  let out = strings[0] ?? '';
  values.forEach((value, i) => {
    out += encodeURIComponent(String(value)) + (strings[i + 1] ?? '');
  });
  return out;
}

/**
 * Typed QQ bot OpenAPI (the endpoint set botgo offers, docs/protocol.md §12). Every method queues on
 * its route's rate-limit bucket; failures reject with `OpenAPIError`. `request()` reaches anything
 * not covered here.
 */
export class OpenAPIClient {
  readonly #rest: Rest;
  readonly #appId: string;

  constructor(options: OpenAPIClientOptions) {
    this.#appId = options.appId;
    this.#rest = new Rest(options);
  }

  /** Subscribe to `response`, `rate-limited` and `request-error` (metrics, logs). */
  on<K extends keyof RestEvents>(event: K, listener: (...args: RestEvents[K]) => void): this {
    this.#rest.on(event, listener as never);
    return this;
  }

  off<K extends keyof RestEvents>(event: K, listener: (...args: RestEvents[K]) => void): this {
    this.#rest.off(event, listener as never);
    return this;
  }

  request<T>(method: HttpMethod, path: string, options?: RequestOptions): Promise<T> {
    return this.#rest.request<T>(method, path, options);
  }

  /** Cancel queued requests and destroy the connection pool. */
  close(): Promise<void> {
    return this.#rest.close();
  }

  [inspect.custom](): string {
    return `OpenAPIClient { appId: '${this.#appId}' }`;
  }

  // ── users, guilds ──────────────────────────────────────────────────────────────────────────

  me(): Promise<BotUser> {
    return this.request('GET', '/users/@me');
  }

  myGuilds(query: PageQuery = {}): Promise<Guild[]> {
    return this.request('GET', '/users/@me/guilds', { query: { ...query } });
  }

  guild(guildId: string): Promise<Guild> {
    return this.request('GET', p`/guilds/${guildId}`);
  }

  // ── channels ───────────────────────────────────────────────────────────────────────────────

  listChannels(guildId: string): Promise<Channel[]> {
    return this.request('GET', p`/guilds/${guildId}/channels`);
  }

  getChannel(channelId: string): Promise<Channel> {
    return this.request('GET', p`/channels/${channelId}`);
  }

  createChannel(guildId: string, channel: ChannelCreate): Promise<Channel> {
    return this.request('POST', p`/guilds/${guildId}/channels`, { body: channel });
  }

  patchChannel(channelId: string, patch: ChannelPatch): Promise<Channel> {
    return this.request('PATCH', p`/channels/${channelId}`, { body: patch });
  }

  deleteChannel(channelId: string): Promise<void> {
    return this.request('DELETE', p`/channels/${channelId}`);
  }

  // ── members, roles, mute ───────────────────────────────────────────────────────────────────

  listMembers(guildId: string, query: MemberListQuery = {}): Promise<GuildMember[]> {
    return this.request('GET', p`/guilds/${guildId}/members`, { query: { ...query } });
  }

  getMember(guildId: string, userId: string): Promise<GuildMember> {
    return this.request('GET', p`/guilds/${guildId}/members/${userId}`);
  }

  kickMember(guildId: string, userId: string, options: KickOptions = {}): Promise<void> {
    const hasBody = options.add_blacklist !== undefined || options.delete_history_msg_days !== undefined;
    return this.request('DELETE', p`/guilds/${guildId}/members/${userId}`, hasBody ? { body: options } : {});
  }

  listRoleMembers(guildId: string, roleId: string, query: RoleMembersQuery = {}): Promise<RoleMembers> {
    return this.request('GET', p`/guilds/${guildId}/roles/${roleId}/members`, { query: { ...query } });
  }

  listRoles(guildId: string): Promise<GuildRoles> {
    return this.request('GET', p`/guilds/${guildId}/roles`);
  }

  createRole(guildId: string, info: RoleInfo): Promise<{ role_id: string; role: GuildRoles['roles'][number] }> {
    return this.request('POST', p`/guilds/${guildId}/roles`, { body: roleBody(guildId, info) });
  }

  updateRole(guildId: string, roleId: string, info: RoleInfo): Promise<RoleUpdate> {
    return this.request('PATCH', p`/guilds/${guildId}/roles/${roleId}`, { body: roleBody(guildId, info) });
  }

  deleteRole(guildId: string, roleId: string): Promise<void> {
    return this.request('DELETE', p`/guilds/${guildId}/roles/${roleId}`);
  }

  /** `channelId` is required for the channel-admin role (id 5). */
  addMemberRole(guildId: string, userId: string, roleId: string, channelId?: string): Promise<void> {
    return this.request('PUT', p`/guilds/${guildId}/members/${userId}/roles/${roleId}`, channelId ? { body: { channel: { id: channelId } } } : {});
  }

  removeMemberRole(guildId: string, userId: string, roleId: string, channelId?: string): Promise<void> {
    return this.request('DELETE', p`/guilds/${guildId}/members/${userId}/roles/${roleId}`, channelId ? { body: { channel: { id: channelId } } } : {});
  }

  /** Mute the whole guild, or the members in `user_ids`; a zero time lifts it. */
  muteAll(guildId: string, options: MuteOptions): Promise<{ user_ids?: string[] } | undefined> {
    return this.request('PATCH', p`/guilds/${guildId}/mute`, { body: options });
  }

  muteMember(guildId: string, userId: string, options: Omit<MuteOptions, 'user_ids'>): Promise<void> {
    return this.request('PATCH', p`/guilds/${guildId}/members/${userId}/mute`, { body: options });
  }

  // ── channel permissions ────────────────────────────────────────────────────────────────────

  getChannelMemberPermissions(channelId: string, userId: string): Promise<ChannelPermissions> {
    return this.request('GET', p`/channels/${channelId}/members/${userId}/permissions`);
  }

  putChannelMemberPermissions(channelId: string, userId: string, update: ChannelPermissionsUpdate): Promise<void> {
    return this.request('PUT', p`/channels/${channelId}/members/${userId}/permissions`, { body: update });
  }

  getChannelRolePermissions(channelId: string, roleId: string): Promise<ChannelPermissions> {
    return this.request('GET', p`/channels/${channelId}/roles/${roleId}/permissions`);
  }

  putChannelRolePermissions(channelId: string, roleId: string, update: ChannelPermissionsUpdate): Promise<void> {
    return this.request('PUT', p`/channels/${channelId}/roles/${roleId}/permissions`, { body: update });
  }

  // ── channel messages ───────────────────────────────────────────────────────────────────────

  listMessages(channelId: string, query: MessageListQuery = {}): Promise<GuildMessage[]> {
    return this.request('GET', p`/channels/${channelId}/messages`, { query: { ...query } });
  }

  async getMessage(channelId: string, messageId: string): Promise<GuildMessage> {
    const body = await this.request<GuildMessage | { message: GuildMessage }>('GET', p`/channels/${channelId}/messages/${messageId}`);
    // The docs wrap it as {message}; accept both shapes.
    return 'message' in body && typeof body.message === 'object' && body.message !== null && !('id' in body) ? body.message : (body as GuildMessage);
  }

  /** A full message, or `{audit_id}` when the platform queued it for audit. */
  postMessage(channelId: string, body: MessageBody): Promise<SendResult> {
    return this.request('POST', p`/channels/${channelId}/messages`, { body });
  }

  patchMessage(channelId: string, messageId: string, body: MessagePatch): Promise<GuildMessage> {
    return this.request('PATCH', p`/channels/${channelId}/messages/${messageId}`, { body });
  }

  recallMessage(channelId: string, messageId: string, hidetip = false): Promise<void> {
    return this.request('DELETE', p`/channels/${channelId}/messages/${messageId}`, { query: { hidetip } });
  }

  // ── guild direct messages ──────────────────────────────────────────────────────────────────

  createDirectSession(body: DirectSessionCreate): Promise<DirectSession> {
    return this.request('POST', '/users/@me/dms', { body });
  }

  postDirectMessage(guildId: string, body: MessageBody): Promise<SendResult> {
    return this.request('POST', p`/dms/${guildId}/messages`, { body });
  }

  recallDirectMessage(guildId: string, messageId: string, hidetip = false): Promise<void> {
    return this.request('DELETE', p`/dms/${guildId}/messages/${messageId}`, { query: { hidetip } });
  }

  // ── group and C2C ──────────────────────────────────────────────────────────────────────────

  /** `msg_type` is required here (0 text, 2 markdown, 3 ark, 4 embed, 7 media). */
  postGroupMessage(groupOpenid: string, body: MessageBody): Promise<SendResult> {
    return this.request('POST', p`/v2/groups/${groupOpenid}/messages`, { body });
  }

  recallGroupMessage(groupOpenid: string, messageId: string): Promise<void> {
    return this.request('DELETE', p`/v2/groups/${groupOpenid}/messages/${messageId}`);
  }

  uploadGroupMedia(groupOpenid: string, media: MediaUpload): Promise<MediaUploadResult> {
    return this.request('POST', p`/v2/groups/${groupOpenid}/files`, { body: media });
  }

  postC2CMessage(openid: string, body: MessageBody): Promise<SendResult> {
    return this.request('POST', p`/v2/users/${openid}/messages`, { body });
  }

  recallC2CMessage(openid: string, messageId: string): Promise<void> {
    return this.request('DELETE', p`/v2/users/${openid}/messages/${messageId}`);
  }

  uploadC2CMedia(openid: string, media: MediaUpload): Promise<MediaUploadResult> {
    return this.request('POST', p`/v2/users/${openid}/files`, { body: media });
  }

  // ── reactions, pins ────────────────────────────────────────────────────────────────────────

  putReaction(channelId: string, messageId: string, emoji: Emoji): Promise<void> {
    return this.request('PUT', p`/channels/${channelId}/messages/${messageId}/reactions/${emoji.type}/${emoji.id}`);
  }

  deleteReaction(channelId: string, messageId: string, emoji: Emoji): Promise<void> {
    return this.request('DELETE', p`/channels/${channelId}/messages/${messageId}/reactions/${emoji.type}/${emoji.id}`);
  }

  listReactionUsers(channelId: string, messageId: string, emoji: Emoji, query: ReactionUsersQuery = {}): Promise<ReactionUsers> {
    return this.request('GET', p`/channels/${channelId}/messages/${messageId}/reactions/${emoji.type}/${emoji.id}`, { query: { ...query } });
  }

  listPins(channelId: string): Promise<PinsMessage> {
    return this.request('GET', p`/channels/${channelId}/pins`);
  }

  pinMessage(channelId: string, messageId: string): Promise<PinsMessage> {
    return this.request('PUT', p`/channels/${channelId}/pins/${messageId}`);
  }

  /** `messageId` "all" clears every pin. */
  unpinMessage(channelId: string, messageId: string): Promise<void> {
    return this.request('DELETE', p`/channels/${channelId}/pins/${messageId}`);
  }

  // ── announces, schedules ───────────────────────────────────────────────────────────────────

  createChannelAnnounce(channelId: string, messageId: string): Promise<Announce> {
    return this.request('POST', p`/channels/${channelId}/announces`, { body: { message_id: messageId } });
  }

  /** `messageId` "all" clears them. */
  deleteChannelAnnounce(channelId: string, messageId: string): Promise<void> {
    return this.request('DELETE', p`/channels/${channelId}/announces/${messageId}`);
  }

  createGuildAnnounce(guildId: string, body: GuildAnnounceCreate): Promise<Announce> {
    return this.request('POST', p`/guilds/${guildId}/announces`, { body });
  }

  /** `messageId` "all" clears them. */
  deleteGuildAnnounce(guildId: string, messageId: string): Promise<void> {
    return this.request('DELETE', p`/guilds/${guildId}/announces/${messageId}`);
  }

  /** `since`: epoch ms; schedules of that day. */
  listSchedules(channelId: string, since?: number): Promise<Schedule[]> {
    return this.request('GET', p`/channels/${channelId}/schedules`, since === undefined ? {} : { query: { since } });
  }

  getSchedule(channelId: string, scheduleId: string): Promise<Schedule> {
    return this.request('GET', p`/channels/${channelId}/schedules/${scheduleId}`);
  }

  createSchedule(channelId: string, schedule: ScheduleInput): Promise<Schedule> {
    return this.request('POST', p`/channels/${channelId}/schedules`, { body: { schedule } });
  }

  patchSchedule(channelId: string, scheduleId: string, schedule: ScheduleInput): Promise<Schedule> {
    return this.request('PATCH', p`/channels/${channelId}/schedules/${scheduleId}`, { body: { schedule } });
  }

  deleteSchedule(channelId: string, scheduleId: string): Promise<void> {
    return this.request('DELETE', p`/channels/${channelId}/schedules/${scheduleId}`);
  }

  // ── API permissions, interactions, settings ────────────────────────────────────────────────

  async listAPIPermissions(guildId: string): Promise<APIPermission[]> {
    const body = await this.request<{ apis?: APIPermission[] }>('GET', p`/guilds/${guildId}/api_permission`);
    return body?.apis ?? [];
  }

  demandAPIPermission(guildId: string, demand: APIPermissionDemandCreate): Promise<APIPermissionDemand> {
    return this.request('POST', p`/guilds/${guildId}/api_permission/demand`, { body: demand });
  }

  /** Acknowledge an INTERACTION_CREATE, or the user's button keeps spinning. */
  putInteraction(interactionId: string, code: InteractionCode): Promise<void> {
    return this.request('PUT', p`/interactions/${interactionId}`, {
      body: { code },
      headers: { 'x-callback-appid': this.#appId },
    });
  }

  messageSetting(guildId: string): Promise<MessageSetting> {
    return this.request('GET', p`/guilds/${guildId}/message/setting`);
  }

  // ── gateway ────────────────────────────────────────────────────────────────────────────────

  gateway(): Promise<Gateway> {
    return this.request('GET', '/gateway');
  }

  gatewayBot(): Promise<GatewayBot> {
    return this.request('GET', '/gateway/bot');
  }
}

function roleBody(guildId: string, info: RoleInfo): Record<string, unknown> {
  // botgo sends a filter saying which fields of `info` are meant to be set.
  return {
    guild_id: guildId,
    filter: { name: info.name === undefined ? 0 : 1, color: info.color === undefined ? 0 : 1, hoist: info.hoist === undefined ? 0 : 1 },
    info,
  };
}
