/**
 * The simulator's own event → intent table (docs/protocol.md §8). Kept apart from the runtime's
 * table on purpose: the simulator plays the platform, so a mistake in one is caught by the other.
 */
const TABLE: Record<number, readonly string[]> = {
  [1 << 0]: ['GUILD_CREATE', 'GUILD_UPDATE', 'GUILD_DELETE', 'CHANNEL_CREATE', 'CHANNEL_UPDATE', 'CHANNEL_DELETE'],
  [1 << 1]: ['GUILD_MEMBER_ADD', 'GUILD_MEMBER_UPDATE', 'GUILD_MEMBER_REMOVE'],
  [1 << 9]: ['MESSAGE_CREATE', 'MESSAGE_DELETE'],
  [1 << 10]: ['MESSAGE_REACTION_ADD', 'MESSAGE_REACTION_REMOVE'],
  [1 << 12]: ['DIRECT_MESSAGE_CREATE', 'DIRECT_MESSAGE_DELETE'],
  [1 << 18]: ['OPEN_FORUM_THREAD_CREATE', 'OPEN_FORUM_THREAD_UPDATE', 'OPEN_FORUM_THREAD_DELETE', 'OPEN_FORUM_POST_CREATE', 'OPEN_FORUM_POST_DELETE', 'OPEN_FORUM_REPLY_CREATE', 'OPEN_FORUM_REPLY_DELETE'],
  [1 << 19]: ['AUDIO_OR_LIVE_CHANNEL_MEMBER_ENTER', 'AUDIO_OR_LIVE_CHANNEL_MEMBER_EXIT'],
  [1 << 23]: ['ENTER_AIO'],
  [1 << 25]: ['C2C_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE', 'FRIEND_ADD', 'FRIEND_DEL', 'C2C_MSG_REJECT', 'C2C_MSG_RECEIVE', 'GROUP_ADD_ROBOT', 'GROUP_DEL_ROBOT', 'GROUP_MSG_REJECT', 'GROUP_MSG_RECEIVE', 'SUBSCRIBE_MESSAGE_STATUS'],
  [1 << 26]: ['INTERACTION_CREATE'],
  [1 << 27]: ['MESSAGE_AUDIT_PASS', 'MESSAGE_AUDIT_REJECT'],
  [1 << 28]: ['FORUM_THREAD_CREATE', 'FORUM_THREAD_UPDATE', 'FORUM_THREAD_DELETE', 'FORUM_POST_CREATE', 'FORUM_POST_DELETE', 'FORUM_REPLY_CREATE', 'FORUM_REPLY_DELETE', 'FORUM_PUBLISH_AUDIT_RESULT'],
  [1 << 29]: ['AUDIO_START', 'AUDIO_FINISH', 'AUDIO_ON_MIC', 'AUDIO_OFF_MIC'],
  [1 << 30]: ['AT_MESSAGE_CREATE', 'PUBLIC_MESSAGE_DELETE'],
};

const BY_EVENT = new Map<string, number>();
let known = 0;
for (const [bit, events] of Object.entries(TABLE)) {
  known |= Number(bit);
  for (const t of events) BY_EVENT.set(t, Number(bit));
}

/** Every bit the platform accepts in identify; anything else is "invalid intents" (4013). */
export const KNOWN_INTENT_BITS = known;

/** The intent bit that carries `t`, or undefined for types outside the table (delivered to all). */
export function intentOf(t: string): number | undefined {
  return BY_EVENT.get(t);
}

/** Events that are not tied to a guild's shard: the simulator delivers them on shard 0 (§7, unconfirmed upstream). */
export function isShardZeroEvent(t: string): boolean {
  const bit = BY_EVENT.get(t);
  return bit === 1 << 25 || bit === 1 << 12 || bit === 1 << 23 || t === 'SUBSCRIBE_MESSAGE_STATUS';
}
