/** Event payloads as the platform sends them (docs/protocol.md §16). Fields not listed still arrive. */

export interface User {
  id: string;
  username?: string;
  avatar?: string;
  bot?: boolean;
  union_openid?: string;
}

export interface Member {
  nick?: string;
  roles?: string[];
  joined_at?: string;
}

export interface Attachment {
  url: string;
  filename?: string;
  width?: number;
  height?: number;
  size?: number;
  content_type?: string;
}

export interface GuildMessage {
  id: string;
  channel_id: string;
  guild_id: string;
  content?: string;
  timestamp: string;
  author: User;
  member?: Member;
  attachments?: Attachment[];
  mentions?: User[];
  seq?: number;
  seq_in_channel?: string;
  src_guild_id?: string;
  direct_message?: boolean;
}

export interface GroupMessage {
  id: string;
  content: string;
  timestamp: string;
  group_openid: string;
  /** botgo spells it group_id; both are accepted. */
  group_id?: string;
  author: { member_openid: string; id?: string };
  attachments?: Attachment[];
}

export interface C2CMessage {
  id: string;
  content: string;
  timestamp: string;
  author: { user_openid: string; id?: string };
  attachments?: Attachment[];
}

export interface MessageDelete {
  message: Partial<GuildMessage>;
  op_user: { id: string };
}

export interface Reaction {
  user_id: string;
  guild_id: string;
  channel_id: string;
  target: { id: string; type: number };
  emoji: { id: string; type: number };
}

export interface MessageAudit {
  audit_id: string;
  message_id?: string;
  guild_id: string;
  channel_id: string;
  audit_time: string;
  create_time: string;
  seq_in_channel?: string;
}

export interface Guild {
  id: string;
  name: string;
  icon?: string;
  owner_id?: string;
  member_count?: number;
  max_members?: number;
  joined_at?: string;
  op_user_id?: string;
}

export interface Channel {
  id: string;
  guild_id: string;
  name: string;
  type: number;
  sub_type?: number;
  position?: number;
  parent_id?: string;
  owner_id?: string;
  op_user_id?: string;
}

export interface GuildMemberEvent {
  guild_id: string;
  joined_at?: string;
  nick?: string;
  user: User;
  roles?: string[];
  op_user_id?: string;
}

export interface GroupRobotEvent {
  timestamp: number | string;
  group_openid: string;
  op_member_openid: string;
}

export interface FriendEvent {
  timestamp: number | string;
  openid: string;
}

export interface Interaction {
  id: string;
  application_id?: string;
  type: number;
  scene?: 'c2c' | 'group' | 'guild';
  chat_type?: 0 | 1 | 2;
  timestamp?: string;
  guild_id?: string;
  channel_id?: string;
  user_openid?: string;
  group_openid?: string;
  group_member_openid?: string;
  version?: number;
  data: { type: number; resolved: Record<string, unknown> & { button_data?: string; button_id?: string; user_id?: string; message_id?: string } };
}

export interface ForumEvent {
  guild_id: string;
  channel_id: string;
  author_id: string;
  thread_info?: { thread_id: string; title?: string; content?: string; date_time?: string };
  post_info?: { thread_id: string; post_id: string; content?: string; date_time?: string };
  reply_info?: { thread_id: string; post_id: string; reply_id: string; content?: string; date_time?: string };
}

export interface AudioEvent {
  guild_id: string;
  channel_id: string;
  audio_url?: string;
  text?: string;
}

/** Event type (`t`) → payload (`d`). The keys are exactly the dispatch types of docs/protocol.md §8. */
export interface EventMap {
  GUILD_CREATE: Guild;
  GUILD_UPDATE: Guild;
  GUILD_DELETE: Guild;
  CHANNEL_CREATE: Channel;
  CHANNEL_UPDATE: Channel;
  CHANNEL_DELETE: Channel;
  GUILD_MEMBER_ADD: GuildMemberEvent;
  GUILD_MEMBER_UPDATE: GuildMemberEvent;
  GUILD_MEMBER_REMOVE: GuildMemberEvent;
  MESSAGE_CREATE: GuildMessage;
  MESSAGE_DELETE: MessageDelete;
  MESSAGE_REACTION_ADD: Reaction;
  MESSAGE_REACTION_REMOVE: Reaction;
  DIRECT_MESSAGE_CREATE: GuildMessage;
  DIRECT_MESSAGE_DELETE: MessageDelete;
  OPEN_FORUM_THREAD_CREATE: ForumEvent;
  OPEN_FORUM_THREAD_UPDATE: ForumEvent;
  OPEN_FORUM_THREAD_DELETE: ForumEvent;
  OPEN_FORUM_POST_CREATE: ForumEvent;
  OPEN_FORUM_POST_DELETE: ForumEvent;
  OPEN_FORUM_REPLY_CREATE: ForumEvent;
  OPEN_FORUM_REPLY_DELETE: ForumEvent;
  AUDIO_OR_LIVE_CHANNEL_MEMBER_ENTER: Record<string, unknown>;
  AUDIO_OR_LIVE_CHANNEL_MEMBER_EXIT: Record<string, unknown>;
  ENTER_AIO: { user_openid: string; from_source?: string };
  C2C_MESSAGE_CREATE: C2CMessage;
  GROUP_AT_MESSAGE_CREATE: GroupMessage;
  FRIEND_ADD: FriendEvent;
  FRIEND_DEL: FriendEvent;
  C2C_MSG_REJECT: FriendEvent;
  C2C_MSG_RECEIVE: FriendEvent;
  GROUP_ADD_ROBOT: GroupRobotEvent;
  GROUP_DEL_ROBOT: GroupRobotEvent;
  GROUP_MSG_REJECT: GroupRobotEvent;
  GROUP_MSG_RECEIVE: GroupRobotEvent;
  SUBSCRIBE_MESSAGE_STATUS: Record<string, unknown>;
  INTERACTION_CREATE: Interaction;
  MESSAGE_AUDIT_PASS: MessageAudit;
  MESSAGE_AUDIT_REJECT: MessageAudit;
  FORUM_THREAD_CREATE: ForumEvent;
  FORUM_THREAD_UPDATE: ForumEvent;
  FORUM_THREAD_DELETE: ForumEvent;
  FORUM_POST_CREATE: ForumEvent;
  FORUM_POST_DELETE: ForumEvent;
  FORUM_REPLY_CREATE: ForumEvent;
  FORUM_REPLY_DELETE: ForumEvent;
  FORUM_PUBLISH_AUDIT_RESULT: Record<string, unknown>;
  AUDIO_START: AudioEvent;
  AUDIO_FINISH: AudioEvent;
  AUDIO_ON_MIC: AudioEvent;
  AUDIO_OFF_MIC: AudioEvent;
  AT_MESSAGE_CREATE: GuildMessage;
  PUBLIC_MESSAGE_DELETE: MessageDelete;
}

export type EventType = keyof EventMap;
