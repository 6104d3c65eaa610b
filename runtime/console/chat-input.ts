import { ChatInputError } from './errors.ts';
import type { ChatInput } from './runtime-view.ts';

export const CHAT_KINDS: readonly ChatInput['kind'][] = ['guild_at', 'guild', 'direct', 'group_at', 'c2c'];

/** Longest message a person may type; the platform's own limit is in the same range. */
export const MAX_CHAT_CONTENT = 4000;

/** Checks a POST /api/chat body field by field so the page can point at the wrong one. */
export function parseChatInput(body: unknown): ChatInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('body', 'the body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (typeof b.bot !== 'string' || b.bot === '') throw bad('bot', 'bot must be the name of a bot');
  if (typeof b.kind !== 'string' || !(CHAT_KINDS as readonly string[]).includes(b.kind)) {
    throw bad('kind', `kind must be one of ${CHAT_KINDS.join(', ')}`);
  }
  if (typeof b.content !== 'string' || b.content.trim() === '') throw bad('content', 'content must be a non-empty string');
  if (b.content.length > MAX_CHAT_CONTENT) throw bad('content', `content must be at most ${MAX_CHAT_CONTENT} characters`);
  const input: ChatInput = { bot: b.bot, kind: b.kind as ChatInput['kind'], content: b.content };
  if (b.user !== undefined) {
    const u = b.user as Record<string, unknown> | null;
    if (typeof u !== 'object' || u === null || typeof u.id !== 'string' || u.id === '' || typeof u.username !== 'string' || u.username === '') {
      throw bad('user', 'user must be { id, username } with non-empty strings');
    }
    input.user = { id: u.id, username: u.username };
  }
  return input;
}

function bad(field: string, message: string): ChatInputError {
  return new ChatInputError('CONSOLE_BAD_INPUT', message, { field });
}
