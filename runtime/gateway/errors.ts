import { QQBotError } from '../errors.ts';

/** A plugin or bot.yaml names an event or intent the protocol does not have, or the set is empty. */
export class IntentError extends QQBotError {}

/**
 * The gateway refused this bot in a way that retrying cannot fix (bad credentials, intents not
 * granted, bot unpublished or banned, not enough session starts left). The bot must stop; other
 * bots in the process are unaffected.
 */
export class GatewayFatalError extends QQBotError {}

/** A webhook request that failed verification (bad signature, stale timestamp, replay). */
export class WebhookRejection extends QQBotError {}

/** `start()` of a session manager that was stopped before every shard came up (a shutdown during startup). */
export class SessionsStoppedError extends QQBotError {}
