import { QQBotError } from '../errors.ts';

/**
 * The console cannot start: a non-loopback bind without `console.token` (CONSOLE_TOKEN_REQUIRED),
 * or the port cannot be bound (CONSOLE_LISTEN_FAILED). The context never holds the token.
 */
export class ConsoleError extends QQBotError {}

/** A chat request the console refuses; `context.field` names the offending field. */
export class ChatInputError extends QQBotError {}
