/**
 * Request and response bodies of the OpenAPI endpoints (docs/protocol.md §12, §13). Ids are strings;
 * the platform adds fields over time, so responses are open where it matters.
 */
import type { Channel, Guild, GuildMessage, MediaUpload, MessageBody, SendResult, User } from 'qqbot-sdk-types';

export type { Channel, Guild, GuildMessage, MediaUpload, MessageBody, SendResult, User };

export interface BotUser extends User {
  username: string;
  share_url?: string;
}

export interface PageQuery {
  before?: string;
  after?: string;
  /** ≤ 100 */
  limit?: number;
}

export interface GuildMember {
  user?: User;
  nick?: string;
  roles?: string[];
  joined_at?: string;
  [key: string]: unknown;
}

export interface MemberListQuery {
  after?: string;
  /** 1–1000 */
  limit?: number;
}

export interface KickOptions {
  add_blacklist?: boolean;
  /** 0, 3, 7, 15, 30 or -1 (all) */
  delete_history_msg_days?: 0 | 3 | 7 | 15 | 30 | -1;
}

export interface RoleMembersQuery {
  start_index?: string;
  limit?: number;
}

export interface RoleMembers {
  data: GuildMember[];
  next: string;
}

export interface Role {
  id: string;
  name: string;
  color: number;
  hoist: number;
  number?: number;
  member_limit?: number;
}

export interface GuildRoles {
  guild_id: string;
  roles: Role[];
  role_num_limit: string;
}

export interface RoleInfo {
  name?: string;
  color?: number;
  /** 1: shown apart in the member list */
  hoist?: number;
}

export interface RoleUpdate {
  guild_id: string;
  role_id: string;
  role: Role;
}

export interface ChannelCreate {
  name: string;
  type: number;
  sub_type?: number;
  position?: number;
  parent_id?: string;
  /** 0 public, 1 admins + listed members, 2 admins only */
  private_type?: number;
  private_user_ids?: string[];
  speak_permission?: number;
  application_id?: string;
}

export type ChannelPatch = Partial<Pick<ChannelCreate, 'name' | 'position' | 'parent_id' | 'private_type' | 'speak_permission'>>;

export interface MuteOptions {
  /** epoch seconds as a string */
  mute_end_timestamp?: string;
  mute_seconds?: string;
  /** batch mute (guild-wide call only) */
  user_ids?: string[];
}

export interface ChannelPermissions {
  channel_id: string;
  user_id?: string;
  role_id?: string;
  /** bit string */
  permissions: string;
}

export interface ChannelPermissionsUpdate {
  /** bit string of permissions to grant */
  add?: string;
  /** bit string of permissions to take away */
  remove?: string;
}

export interface MessageListQuery {
  /** ≤ 20 */
  limit?: number;
  around?: string;
  before?: string;
  after?: string;
}

/** Editable part of a channel message (only keyboard messages can be edited). */
export type MessagePatch = Pick<MessageBody, 'content' | 'keyboard' | 'markdown'>;

export interface DirectSessionCreate {
  recipient_id: string;
  source_guild_id: string;
}

export interface DirectSession {
  guild_id: string;
  channel_id: string;
  create_time: string;
}

export interface MediaUploadResult {
  file_uuid: string;
  /** opaque; reusable for targets of the same kind (group or C2C) */
  file_info: string;
  /** seconds left; 0 = long-lived */
  ttl: number;
  /** set when `srv_send_msg` sent it */
  id?: string;
}

export interface Emoji {
  /** 1 system emoji, 2 unicode emoji */
  type: number;
  id: string;
}

export interface ReactionUsersQuery {
  cookie?: string;
  limit?: number;
}

export interface ReactionUsers {
  users: User[];
  cookie: string;
  is_end: boolean;
}

export interface PinsMessage {
  guild_id: string;
  channel_id: string;
  message_ids: string[];
}

export interface RecommendChannel {
  channel_id: string;
  introduce: string;
}

export interface GuildAnnounceCreate {
  channel_id?: string;
  message_id?: string;
  /** 0 member announcement, 1 welcome */
  announces_type?: number;
  recommend_channels?: RecommendChannel[];
}

export interface Announce {
  guild_id: string;
  channel_id: string;
  message_id: string;
  announces_type?: number;
  recommend_channels?: RecommendChannel[];
}

export interface Schedule {
  id: string;
  name: string;
  description?: string;
  /** epoch ms as a string */
  start_timestamp: string;
  end_timestamp: string;
  creator?: GuildMember;
  jump_channel_id?: string;
  /** "0" none, "1" at start, "2"/"3"/"4" 5/15/30 min before, "5" 60 min before */
  remind_type?: string;
}

export type ScheduleInput = Omit<Schedule, 'id' | 'creator'>;

export interface APIPermission {
  path: string;
  method: string;
  desc: string;
  /** 0 not granted, 1 granted */
  auth_status: number;
}

export interface APIPermissionDemandCreate {
  channel_id: string;
  api_identify: { path: string; method: string };
  desc: string;
}

export interface APIPermissionDemand {
  guild_id: string;
  channel_id: string;
  api_identify: { path: string; method: string };
  title: string;
  desc: string;
}

/** Answer to an INTERACTION_CREATE: 0 ok, 1 failed, 2 too frequent, 3 duplicate, 4 no permission, 5 admins only. */
export type InteractionCode = 0 | 1 | 2 | 3 | 4 | 5;

export interface MessageSetting {
  disable_create_dm: boolean;
  disable_push_msg: boolean;
  channel_ids: string[];
  channel_push_max_num: number;
}

export interface Gateway {
  url: string;
}

export interface SessionStartLimit {
  /** sessions per 24 h */
  total: number;
  remaining: number;
  /** ms until `remaining` resets */
  reset_after: number;
  /** identifies per 5-s window */
  max_concurrency: number;
}

export interface GatewayBot extends Gateway {
  shards: number;
  session_start_limit: SessionStartLimit;
}
