/**
 * Where a passive reply to an event goes, with which id field, and under which of the platform's
 * rules (docs/protocol.md §14): window length and the per-message reply cap.
 */

export type ReplyScene = 'channel' | 'dm' | 'group' | 'c2c';

/** What the platform accepts as a passive reply to an event: the id field and the rules for it. */
export interface PassiveSource {
  scene: ReplyScene;
  idField: 'msg_id' | 'event_id';
  /** the id being answered; msg_seq counts per (bot, idField, source id) */
  sourceId: string;
  windowMs: number;
  /** replies allowed per source message; undefined = no platform cap */
  maxReplies?: number;
}

export interface ReplyRoute extends PassiveSource {
  /** POST target */
  path: string;
}

/** Why event.reply cannot answer an event; shown to the plugin as E_REPLY_UNSUPPORTED. */
export interface NoReplyRoute {
  reason: string;
  /** set when the platform takes an event_id reply but the payload names no target (GUILD_MEMBER_*) */
  source?: PassiveSource;
}

const MINUTE = 60_000;
const RULES: Record<ReplyScene, { windowMs: number; maxReplies?: number }> = {
  channel: { windowMs: 5 * MINUTE },
  dm: { windowMs: 5 * MINUTE },
  group: { windowMs: 5 * MINUTE, maxReplies: 5 },
  c2c: { windowMs: 60 * MINUTE, maxReplies: 5 },
};

const CHANNEL_EVENT_REPLIES = new Set([
  'MESSAGE_REACTION_ADD', 'MESSAGE_REACTION_REMOVE',
  'FORUM_THREAD_CREATE', 'FORUM_THREAD_UPDATE', 'FORUM_THREAD_DELETE',
  'FORUM_POST_CREATE', 'FORUM_POST_DELETE', 'FORUM_REPLY_CREATE', 'FORUM_REPLY_DELETE',
]);
const MEMBER_EVENTS = new Set(['GUILD_MEMBER_ADD', 'GUILD_MEMBER_UPDATE', 'GUILD_MEMBER_REMOVE']);

export function replyRouteFor(type: string, eventId: string, payload: unknown): ReplyRoute | NoReplyRoute {
  const d = (typeof payload === 'object' && payload !== null ? payload : {}) as Record<string, unknown>;
  const author = (typeof d.author === 'object' && d.author !== null ? d.author : {}) as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const route = (scene: ReplyScene, target: string | undefined, targetName: string, idField: 'msg_id' | 'event_id', sourceId: string | undefined): ReplyRoute | NoReplyRoute => {
    if (target === undefined) return { reason: `${type} event has no ${targetName} to reply to` };
    if (sourceId === undefined) return { reason: `${type} event has no ${idField === 'msg_id' ? 'message id' : 'event id'} to reply to` };
    const t = encodeURIComponent(target);
    const path = scene === 'channel' ? `/channels/${t}/messages`
      : scene === 'dm' ? `/dms/${t}/messages`
        : scene === 'group' ? `/v2/groups/${t}/messages` : `/v2/users/${t}/messages`;
    return { scene, path, idField, sourceId, ...RULES[scene] };
  };

  switch (type) {
    case 'AT_MESSAGE_CREATE':
    case 'MESSAGE_CREATE':
      return route('channel', str(d.channel_id), 'channel_id', 'msg_id', str(d.id));
    case 'DIRECT_MESSAGE_CREATE':
      return route('dm', str(d.guild_id), 'guild_id', 'msg_id', str(d.id));
    case 'GROUP_AT_MESSAGE_CREATE':
      return route('group', str(d.group_openid) ?? str(d.group_id), 'group_openid', 'msg_id', str(d.id));
    case 'C2C_MESSAGE_CREATE':
      return route('c2c', str(author.user_openid) ?? str(author.id), 'author.user_openid', 'msg_id', str(d.id));
    case 'GROUP_ADD_ROBOT':
    case 'GROUP_MSG_RECEIVE':
      return route('group', str(d.group_openid), 'group_openid', 'event_id', str(eventId));
    case 'C2C_MSG_RECEIVE':
    case 'FRIEND_ADD':
      return route('c2c', str(d.openid), 'openid', 'event_id', str(eventId));
    case 'INTERACTION_CREATE': {
      const scene = d.scene ?? ({ 0: 'guild', 1: 'group', 2: 'c2c' } as Record<string, string>)[String(d.chat_type)];
      const sourceId = str(eventId) ?? str(d.id);
      if (scene === 'group') return route('group', str(d.group_openid), 'group_openid', 'event_id', sourceId);
      if (scene === 'c2c') return route('c2c', str(d.user_openid), 'user_openid', 'event_id', sourceId);
      if (scene === 'guild') return route('channel', str(d.channel_id), 'channel_id', 'event_id', sourceId);
      return { reason: 'INTERACTION_CREATE event has no scene or chat_type to route the reply' };
    }
    default:
      if (CHANNEL_EVENT_REPLIES.has(type)) return route('channel', str(d.channel_id), 'channel_id', 'event_id', str(eventId));
      // §14 lists these for event_id replies, but the payload names no channel and the platform
      // defines no default one: the plugin picks the channel, the host still keeps the books.
      if (MEMBER_EVENTS.has(type)) {
        const reason = `${type} events carry no channel to reply in; choose one and call ctx.api.sendChannelMessage(channelId, { content, event_id: event.id }) within ${RULES.channel.windowMs / MINUTE} minutes`;
        const sourceId = str(eventId);
        return sourceId === undefined ? { reason } : { reason, source: { scene: 'channel', idField: 'event_id', sourceId, ...RULES.channel } };
      }
      return { reason: `the platform accepts no passive reply to ${type} events (docs/protocol.md §14)` };
  }
}

export function isReplyRoute(route: ReplyRoute | NoReplyRoute): route is ReplyRoute {
  return 'path' in route;
}

/** The passive-reply source of an event, whether or not event.reply can reach it. */
export function passiveSourceOf(route: ReplyRoute | NoReplyRoute): PassiveSource | undefined {
  return isReplyRoute(route) ? route : route.source;
}
