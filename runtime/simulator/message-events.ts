import { ControlInputError } from './errors.ts';
import type { ReplyScene } from './message-ledger.ts';
import { World, type User } from './world.ts';

export type PostMessageKind = 'guild_at' | 'guild' | 'direct' | 'group_at' | 'c2c';

/** A user message to inject, as `POST /_simulator/messages` takes it. */
export interface PostMessageInput {
  kind: PostMessageKind;
  content: string;
  guild_id?: string;
  channel_id?: string;
  group_openid?: string;
  /** guild kinds: user id; group_at: member openid; c2c: user openid */
  user?: { id: string; username?: string };
  /** which bot receives it; default: the first bot */
  appId?: string;
}

/** `POST /_simulator/messages/burst`. */
export interface BurstInput {
  kind: PostMessageKind;
  count: number;
  /** distinct channels (a guild each), groups or users the messages are spread over */
  targets: number;
  /** each message is `${content} ${i}` */
  content: string;
  appId?: string;
}

/** Largest burst the control API takes in one call. */
const MAX_BURST = 100_000;

export function parseBurst(input: unknown): BurstInput {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ControlInputError('body', 'expected a JSON object');
  const o = input as Record<string, unknown>;
  if (typeof o.kind !== 'string' || !(KINDS as readonly string[]).includes(o.kind)) throw new ControlInputError('kind', `kind must be one of ${KINDS.join(', ')}`);
  const count = o.count;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > MAX_BURST) throw new ControlInputError('count', `count must be an integer from 1 to ${MAX_BURST}`);
  const targets = o.targets ?? 1;
  if (typeof targets !== 'number' || !Number.isInteger(targets) || targets < 1 || targets > count) throw new ControlInputError('targets', 'targets must be an integer from 1 to count');
  const content = o.content ?? 'burst';
  if (typeof content !== 'string') throw new ControlInputError('content', 'content must be a string');
  if (o.appId !== undefined && (typeof o.appId !== 'string' || o.appId === '')) throw new ControlInputError('appId', 'appId must be a non-empty string');
  return { kind: o.kind as PostMessageKind, count, targets, content, ...(typeof o.appId === 'string' ? { appId: o.appId } : {}) };
}

/** First guild id a burst spreads over (numeric, like the platform's). */
export const BURST_GUILD_BASE = 7_000_000_000;

export interface BuiltMessageEvent {
  t: string;
  d: Record<string, unknown>;
  scene: ReplyScene;
  /** what a passive reply must target: channel id, DM guild id, group openid, user openid */
  target: string;
}

const KINDS: readonly PostMessageKind[] = ['guild_at', 'guild', 'direct', 'group_at', 'c2c'];
const EVENT_TYPE: Record<PostMessageKind, string> = {
  guild_at: 'AT_MESSAGE_CREATE', guild: 'MESSAGE_CREATE', direct: 'DIRECT_MESSAGE_CREATE', group_at: 'GROUP_AT_MESSAGE_CREATE', c2c: 'C2C_MESSAGE_CREATE',
};

/** Validates untrusted input; errors name the field at fault. */
export function parsePostMessage(input: unknown): PostMessageInput {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ControlInputError('body', 'expected a JSON object');
  const o = input as Record<string, unknown>;
  if (typeof o.kind !== 'string' || !(KINDS as readonly string[]).includes(o.kind)) throw new ControlInputError('kind', `kind must be one of ${KINDS.join(', ')}`);
  if (typeof o.content !== 'string') throw new ControlInputError('content', 'content must be a string');
  const out: PostMessageInput = { kind: o.kind as PostMessageKind, content: o.content };
  for (const field of ['guild_id', 'channel_id', 'group_openid', 'appId'] as const) {
    const v = o[field];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v === '') throw new ControlInputError(field, `${field} must be a non-empty string`);
    out[field] = v;
  }
  if (o.user !== undefined) {
    const u = o.user as Record<string, unknown> | null;
    if (typeof u !== 'object' || u === null || typeof u.id !== 'string' || u.id === '') throw new ControlInputError('user', 'user must be { id: string, username?: string }');
    if (u.username !== undefined && typeof u.username !== 'string') throw new ControlInputError('user.username', 'user.username must be a string');
    out.user = typeof u.username === 'string' ? { id: u.id, username: u.username } : { id: u.id };
  }
  return out;
}

/**
 * Builds the platform's event payload (§16) for a user message, creating what it needs in the
 * world on the way: unknown group/user openids and numeric guild ids are added on first use.
 */
export function buildMessageEvent(world: World, botUser: User, input: PostMessageInput, id: string): BuiltMessageEvent {
  const timestamp = new Date().toISOString();
  const t = EVENT_TYPE[input.kind];
  if (input.kind === 'group_at') {
    const group = input.group_openid ?? World.defaultGroup;
    if (!/^[0-9A-Za-z_-]+$/.test(group)) throw new ControlInputError('group_openid', 'group_openid may only contain letters, digits, "_" and "-"');
    const member = input.user?.id ?? World.defaultGroupMember;
    const g = world.addGroup(group);
    if (!g.members.includes(member)) g.members.push(member);
    return {
      t, scene: 'group', target: group,
      d: { id, content: input.content, timestamp, group_openid: group, group_id: group, author: { member_openid: member, id: member }, attachments: [] },
    };
  }
  if (input.kind === 'c2c') {
    const openid = input.user?.id ?? World.defaultC2cUser;
    world.c2cUsers.add(openid);
    return { t, scene: 'c2c', target: openid, d: { id, content: input.content, timestamp, author: { user_openid: openid, id: openid }, attachments: [] } };
  }
  const author: User = input.user
    ? { id: input.user.id, username: input.user.username ?? world.users.get(input.user.id)?.username ?? `user-${input.user.id}`, avatar: '', bot: false }
    : World.defaultUser;
  const base = {
    id, content: input.content, timestamp, edited_timestamp: '', mention_everyone: false,
    author: { id: author.id, username: author.username, avatar: author.avatar, bot: false, union_openid: '', union_user_account: '' },
    member: { nick: author.username, roles: ['1'], joined_at: '2024-01-01T00:00:00+08:00' },
    attachments: [], embeds: [], seq: 0, seq_in_channel: '0',
  };
  if (input.kind === 'direct') {
    const source = input.guild_id ?? [...world.guilds.keys()][0]!;
    if (!world.guilds.has(source)) throw new ControlInputError('guild_id', `no guild ${source} to start the DM from`);
    const dm = world.openDirect(author.id, source);
    return { t, scene: 'direct', target: dm.guild_id, d: { ...base, guild_id: dm.guild_id, channel_id: dm.channel_id, src_guild_id: source, direct_message: true, mentions: [] } };
  }
  let channelId = input.channel_id;
  let guildId = input.guild_id;
  if (channelId !== undefined) {
    const channel = world.channels.get(channelId);
    if (!channel) throw new ControlInputError('channel_id', `no channel ${channelId}`);
    if (guildId !== undefined && channel.guild_id !== guildId) throw new ControlInputError('channel_id', `channel ${channelId} is not in guild ${guildId}`);
    guildId = channel.guild_id;
  } else {
    guildId ??= [...world.guilds.keys()][0]!;
    if (!world.guilds.has(guildId)) {
      if (!/^[0-9]{1,20}$/.test(guildId)) throw new ControlInputError('guild_id', 'guild_id must be a numeric string');
      world.addGuild({ id: guildId }, [botUser]);
    }
    channelId = world.channelsOf(guildId).find((c) => c.type === 0)?.id;
    if (!channelId) throw new ControlInputError('guild_id', `guild ${guildId} has no text channel`);
  }
  if (!world.members.get(guildId)?.has(author.id)) world.addMember(guildId, author);
  const mention = { id: botUser.id, username: botUser.username, avatar: '', bot: true };
  // the platform keeps the @-mention in the text of an AT message
  const content = input.kind === 'guild_at' ? `<@!${botUser.id}> ${input.content}` : input.content;
  return {
    t, scene: 'guild', target: channelId,
    d: { ...base, content, guild_id: guildId, channel_id: channelId, mentions: input.kind === 'guild_at' ? [mention] : [] },
  };
}
