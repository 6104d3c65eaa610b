import { IntentError } from './errors.ts';

/** Intent bits the QQ gateway knows (docs/protocol.md §8). Discord leftovers (1<<2…1<<8, 1<<11, 1<<13, 1<<14) are deliberately absent. */
export const INTENTS: Readonly<Record<string, number>> = Object.freeze({
  GUILDS: 1 << 0,
  GUILD_MEMBERS: 1 << 1,
  GUILD_MESSAGES: 1 << 9,
  GUILD_MESSAGE_REACTIONS: 1 << 10,
  DIRECT_MESSAGE: 1 << 12,
  OPEN_FORUMS_EVENT: 1 << 18,
  AUDIO_OR_LIVE_CHANNEL_MEMBER: 1 << 19,
  ENTER_AIO: 1 << 23,
  GROUP_AND_C2C_EVENT: 1 << 25,
  INTERACTION: 1 << 26,
  MESSAGE_AUDIT: 1 << 27,
  FORUMS_EVENT: 1 << 28,
  AUDIO_ACTION: 1 << 29,
  PUBLIC_GUILD_MESSAGES: 1 << 30,
});

/** Bits only private-domain (私域) bots may request; a public bot identifying with them is closed with 4014. */
export const PRIVATE_DOMAIN_INTENTS: number = INTENTS.GUILD_MESSAGES! | INTENTS.FORUMS_EVENT!;

const CATEGORY_EVENTS: Record<string, string[]> = {
  GUILDS: ['GUILD_CREATE', 'GUILD_UPDATE', 'GUILD_DELETE', 'CHANNEL_CREATE', 'CHANNEL_UPDATE', 'CHANNEL_DELETE'],
  GUILD_MEMBERS: ['GUILD_MEMBER_ADD', 'GUILD_MEMBER_UPDATE', 'GUILD_MEMBER_REMOVE'],
  GUILD_MESSAGES: ['MESSAGE_CREATE', 'MESSAGE_DELETE'],
  GUILD_MESSAGE_REACTIONS: ['MESSAGE_REACTION_ADD', 'MESSAGE_REACTION_REMOVE'],
  DIRECT_MESSAGE: ['DIRECT_MESSAGE_CREATE', 'DIRECT_MESSAGE_DELETE'],
  OPEN_FORUMS_EVENT: [
    'OPEN_FORUM_THREAD_CREATE', 'OPEN_FORUM_THREAD_UPDATE', 'OPEN_FORUM_THREAD_DELETE',
    'OPEN_FORUM_POST_CREATE', 'OPEN_FORUM_POST_DELETE', 'OPEN_FORUM_REPLY_CREATE', 'OPEN_FORUM_REPLY_DELETE',
  ],
  AUDIO_OR_LIVE_CHANNEL_MEMBER: ['AUDIO_OR_LIVE_CHANNEL_MEMBER_ENTER', 'AUDIO_OR_LIVE_CHANNEL_MEMBER_EXIT'],
  ENTER_AIO: ['ENTER_AIO'],
  GROUP_AND_C2C_EVENT: [
    'C2C_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE', 'FRIEND_ADD', 'FRIEND_DEL', 'C2C_MSG_REJECT', 'C2C_MSG_RECEIVE',
    'GROUP_ADD_ROBOT', 'GROUP_DEL_ROBOT', 'GROUP_MSG_REJECT', 'GROUP_MSG_RECEIVE', 'SUBSCRIBE_MESSAGE_STATUS',
  ],
  INTERACTION: ['INTERACTION_CREATE'],
  MESSAGE_AUDIT: ['MESSAGE_AUDIT_PASS', 'MESSAGE_AUDIT_REJECT'],
  FORUMS_EVENT: [
    'FORUM_THREAD_CREATE', 'FORUM_THREAD_UPDATE', 'FORUM_THREAD_DELETE', 'FORUM_POST_CREATE', 'FORUM_POST_DELETE',
    'FORUM_REPLY_CREATE', 'FORUM_REPLY_DELETE', 'FORUM_PUBLISH_AUDIT_RESULT',
  ],
  AUDIO_ACTION: ['AUDIO_START', 'AUDIO_FINISH', 'AUDIO_ON_MIC', 'AUDIO_OFF_MIC'],
  PUBLIC_GUILD_MESSAGES: ['AT_MESSAGE_CREATE', 'PUBLIC_MESSAGE_DELETE'],
};

/** Event type (`t`) → the intent bit that subscribes to it. READY and RESUMED map to 0: always delivered. */
export const EVENT_INTENT: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries([
    ['READY', 0],
    ['RESUMED', 0],
    ...Object.entries(CATEGORY_EVENTS).flatMap(([name, events]) => events.map((t) => [t, INTENTS[name]!] as const)),
  ]),
);

const ALL_KNOWN_BITS = Object.values(INTENTS).reduce((a, b) => a | b, 0);

/** OR of the bits of `events`; an unknown name is an error naming `where` (e.g. `plugin "dice"`). */
export function intentsForEvents(events: string[], where: string): number {
  let bits = 0;
  for (const event of events) {
    const bit = Object.hasOwn(EVENT_INTENT, event) ? EVENT_INTENT[event] : undefined;
    if (bit === undefined) {
      throw new IntentError('E_UNKNOWN_EVENT', `${where} subscribes to unknown event type "${event}" (see docs/protocol.md §8 for the event names)`, { where, event });
    }
    bits |= bit;
  }
  return bits;
}

function extraBits(extra: string | number): number {
  if (typeof extra === 'number') {
    if (!Number.isInteger(extra) || extra < 0 || (extra & ~ALL_KNOWN_BITS) !== 0) {
      throw new IntentError('E_UNKNOWN_INTENT', `bot.yaml intents: ${extra} contains bits the QQ gateway does not define (known: ${Object.keys(INTENTS).join(', ')})`, { intent: extra });
    }
    return extra;
  }
  const bit = Object.hasOwn(INTENTS, extra) ? INTENTS[extra] : undefined;
  if (bit === undefined) {
    throw new IntentError('E_UNKNOWN_INTENT', `bot.yaml intents: unknown intent "${extra}" (known: ${Object.keys(INTENTS).join(', ')})`, { intent: extra });
  }
  return bit;
}

/**
 * A bot's intents: the OR over its enabled plugins' events plus bot.yaml extras. An empty result is
 * refused rather than silently replaced by GUILDS (what botgo and botpy do).
 */
export function mergeIntents(
  perPlugin: Array<{ plugin: string; events: string[] }>,
  extra: Array<string | number> = [],
): { intents: number; byPlugin: Record<string, number> } {
  const byPlugin: Record<string, number> = {};
  let intents = 0;
  for (const { plugin, events } of perPlugin) {
    const bits = intentsForEvents(events, `plugin "${plugin}"`);
    byPlugin[plugin] = (byPlugin[plugin] ?? 0) | bits;
    intents |= bits;
  }
  for (const e of extra) intents |= extraBits(e);
  if (intents === 0) {
    throw new IntentError('E_EMPTY_INTENTS', 'no intents: no enabled plugin subscribes to an event and bot.yaml lists no intents; the bot would receive nothing', {
      plugins: perPlugin.map((p) => p.plugin),
    });
  }
  return { intents, byPlugin };
}

/** Names of the bits set in `bits`; unknown bits are shown as `1<<n`. */
export function describeIntents(bits: number): string[] {
  const names: string[] = [];
  for (let n = 0; n < 31; n++) {
    const bit = 1 << n;
    if ((bits & bit) === 0) continue;
    const name = Object.keys(INTENTS).find((k) => INTENTS[k] === bit);
    names.push(name ?? `1<<${n}`);
  }
  return names;
}
