import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IntentError } from '../runtime/gateway/errors.ts';
import { EVENT_INTENT, INTENTS, PRIVATE_DOMAIN_INTENTS, describeIntents, intentsForEvents, mergeIntents } from '../runtime/gateway/intents.ts';
import type { EventType } from '../sdk-types/events.ts';

test('intent bits match the protocol table (docs/protocol.md §8)', () => {
  assert.equal(INTENTS.GUILDS, 1);
  assert.equal(INTENTS.GUILD_MEMBERS, 2);
  assert.equal(INTENTS.GUILD_MESSAGES, 512);
  assert.equal(INTENTS.GUILD_MESSAGE_REACTIONS, 1024);
  assert.equal(INTENTS.DIRECT_MESSAGE, 4096);
  assert.equal(INTENTS.GROUP_AND_C2C_EVENT, 33554432);
  assert.equal(INTENTS.INTERACTION, 67108864);
  assert.equal(INTENTS.MESSAGE_AUDIT, 134217728);
  assert.equal(INTENTS.FORUMS_EVENT, 268435456);
  assert.equal(INTENTS.AUDIO_ACTION, 536870912);
  assert.equal(INTENTS.PUBLIC_GUILD_MESSAGES, 1073741824);
  assert.equal(PRIVATE_DOMAIN_INTENTS, 512 | 268435456);
  // the value seen in real identify logs
  assert.equal(intentsForEvents(['AT_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE', 'DIRECT_MESSAGE_CREATE'], 'test'), 1107300352);
});

test('every event type of the SDK EventMap has an intent bit, and only those plus READY/RESUMED', () => {
  // a compile-time list: adding an event to EventMap without a bit fails here
  const sdkEvents: Record<EventType, true> = {
    GUILD_CREATE: true, GUILD_UPDATE: true, GUILD_DELETE: true, CHANNEL_CREATE: true, CHANNEL_UPDATE: true, CHANNEL_DELETE: true,
    GUILD_MEMBER_ADD: true, GUILD_MEMBER_UPDATE: true, GUILD_MEMBER_REMOVE: true, MESSAGE_CREATE: true, MESSAGE_DELETE: true,
    MESSAGE_REACTION_ADD: true, MESSAGE_REACTION_REMOVE: true, DIRECT_MESSAGE_CREATE: true, DIRECT_MESSAGE_DELETE: true,
    OPEN_FORUM_THREAD_CREATE: true, OPEN_FORUM_THREAD_UPDATE: true, OPEN_FORUM_THREAD_DELETE: true, OPEN_FORUM_POST_CREATE: true,
    OPEN_FORUM_POST_DELETE: true, OPEN_FORUM_REPLY_CREATE: true, OPEN_FORUM_REPLY_DELETE: true, AUDIO_OR_LIVE_CHANNEL_MEMBER_ENTER: true,
    AUDIO_OR_LIVE_CHANNEL_MEMBER_EXIT: true, ENTER_AIO: true, C2C_MESSAGE_CREATE: true, GROUP_AT_MESSAGE_CREATE: true, FRIEND_ADD: true,
    FRIEND_DEL: true, C2C_MSG_REJECT: true, C2C_MSG_RECEIVE: true, GROUP_ADD_ROBOT: true, GROUP_DEL_ROBOT: true, GROUP_MSG_REJECT: true,
    GROUP_MSG_RECEIVE: true, SUBSCRIBE_MESSAGE_STATUS: true, INTERACTION_CREATE: true, MESSAGE_AUDIT_PASS: true, MESSAGE_AUDIT_REJECT: true,
    FORUM_THREAD_CREATE: true, FORUM_THREAD_UPDATE: true, FORUM_THREAD_DELETE: true, FORUM_POST_CREATE: true, FORUM_POST_DELETE: true,
    FORUM_REPLY_CREATE: true, FORUM_REPLY_DELETE: true, FORUM_PUBLISH_AUDIT_RESULT: true, AUDIO_START: true, AUDIO_FINISH: true,
    AUDIO_ON_MIC: true, AUDIO_OFF_MIC: true, AT_MESSAGE_CREATE: true, PUBLIC_MESSAGE_DELETE: true,
  };
  for (const t of Object.keys(sdkEvents)) assert.ok((EVENT_INTENT[t] ?? 0) > 0, `${t} has a bit`);
  const extra = Object.keys(EVENT_INTENT).filter((t) => !(t in sdkEvents));
  assert.deepEqual(extra.sort(), ['READY', 'RESUMED']);
  const knownBits = new Set(Object.values(INTENTS));
  for (const bit of Object.values(EVENT_INTENT)) assert.ok(bit === 0 || knownBits.has(bit));
});

test('a bot\'s intents are the OR of its plugins\' events plus bot.yaml extras, reported per plugin', () => {
  const { intents, byPlugin } = mergeIntents(
    [
      { plugin: 'echo', events: ['AT_MESSAGE_CREATE', 'GROUP_AT_MESSAGE_CREATE', 'C2C_MESSAGE_CREATE'] },
      { plugin: 'welcome', events: ['GUILD_MEMBER_ADD'] },
      { plugin: 'quiet', events: [] },
    ],
    ['INTERACTION', 1 << 10],
  );
  assert.equal(byPlugin.echo, INTENTS.PUBLIC_GUILD_MESSAGES! | INTENTS.GROUP_AND_C2C_EVENT!);
  assert.equal(byPlugin.welcome, INTENTS.GUILD_MEMBERS);
  assert.equal(byPlugin.quiet, 0);
  assert.equal(intents, byPlugin.echo! | byPlugin.welcome! | INTENTS.INTERACTION! | INTENTS.GUILD_MESSAGE_REACTIONS!);
  assert.deepEqual(describeIntents(intents), ['GUILD_MEMBERS', 'GUILD_MESSAGE_REACTIONS', 'GROUP_AND_C2C_EVENT', 'INTERACTION', 'PUBLIC_GUILD_MESSAGES']);
});

test('an unknown event name is an error naming the plugin and the event', () => {
  assert.throws(
    () => mergeIntents([{ plugin: 'echo', events: ['AT_MESSAGE_CREATE'] }, { plugin: 'dice', events: ['GROUP_MESSAGE_CREATE'] }]),
    (error: unknown) => {
      assert.ok(error instanceof IntentError);
      assert.equal(error.code, 'E_UNKNOWN_EVENT');
      assert.match(error.message, /plugin "dice"/);
      assert.match(error.message, /GROUP_MESSAGE_CREATE/);
      assert.deepEqual(error.context, { where: 'plugin "dice"', event: 'GROUP_MESSAGE_CREATE' });
      return true;
    },
  );
  // prototype keys are not events
  assert.throws(() => intentsForEvents(['constructor'], 'plugin "x"'), { code: 'E_UNKNOWN_EVENT' });
});

test('unknown extras (names or Discord-leftover bits) are refused', () => {
  assert.throws(() => mergeIntents([], ['GUILD_PRESENCES']), { code: 'E_UNKNOWN_INTENT' });
  assert.throws(() => mergeIntents([], [1 << 8]), { code: 'E_UNKNOWN_INTENT' });
  assert.throws(() => mergeIntents([], [-1]), { code: 'E_UNKNOWN_INTENT' });
});

test('an empty intent set refuses to start instead of falling back to GUILDS', () => {
  assert.throws(() => mergeIntents([{ plugin: 'ready-only', events: ['READY'] }], []), (error: unknown) => {
    assert.ok(error instanceof IntentError);
    assert.equal(error.code, 'E_EMPTY_INTENTS');
    return true;
  });
  assert.throws(() => mergeIntents([], []), { code: 'E_EMPTY_INTENTS' });
});

test('describeIntents names known bits and shows unknown ones as shifts', () => {
  assert.deepEqual(describeIntents(PRIVATE_DOMAIN_INTENTS), ['GUILD_MESSAGES', 'FORUMS_EVENT']);
  assert.deepEqual(describeIntents((1 << 4) | 1), ['GUILDS', '1<<4']);
  assert.deepEqual(describeIntents(0), []);
});
