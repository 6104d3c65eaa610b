/**
 * What a shard does after its connection ends (docs/protocol.md §6.7, "recommended policy"):
 * resume on transient ends, identify when the session is gone, refresh the token on 4004, and stop
 * the bot (never the process) on configuration errors and 4914/4915, where retrying only burns the
 * daily session budget.
 */
export type CloseAction =
  | { action: 'resume'; reason: string }
  | { action: 'identify'; reason: string }
  | { action: 'refresh-identify'; reason: string }
  | { action: 'fatal'; code: FatalCode; reason: string };

export type FatalCode = 'E_GATEWAY_PROTOCOL' | 'E_GATEWAY_SHARD' | 'E_GATEWAY_INTENTS' | 'E_BOT_OFFLINE' | 'E_BOT_BANNED' | 'E_GATEWAY_AUTH';

const FATAL: Record<number, { code: FatalCode; reason: string }> = {
  4001: { code: 'E_GATEWAY_PROTOCOL', reason: 'invalid opcode sent (4001)' },
  4002: { code: 'E_GATEWAY_PROTOCOL', reason: 'invalid payload sent (4002)' },
  4010: { code: 'E_GATEWAY_SHARD', reason: 'invalid shard (4010): check the configured shard count' },
  4011: { code: 'E_GATEWAY_SHARD', reason: 'too many guilds for this shard (4011): raise the shard count' },
  4012: { code: 'E_GATEWAY_PROTOCOL', reason: 'invalid gateway version (4012)' },
  4013: { code: 'E_GATEWAY_INTENTS', reason: 'invalid intents (4013)' },
  4014: { code: 'E_GATEWAY_INTENTS', reason: 'intents not permitted for this bot (4014): remove private-domain or unapproved intents' },
  4914: { code: 'E_BOT_OFFLINE', reason: 'bot is unpublished and may only use the sandbox environment (4914)' },
  4915: { code: 'E_BOT_BANNED', reason: 'bot is banned (4915)' },
};

/** Decision for a close frame received from the server (or 1006 for an abnormal drop). */
export function closeAction(code: number): CloseAction {
  const fatal = FATAL[code];
  if (fatal) return { action: 'fatal', ...fatal };
  if (code === 4004) return { action: 'refresh-identify', reason: 'authentication failed (4004)' };
  if (code === 4008) return { action: 'resume', reason: 'sending too fast (4008)' };
  if (code === 4009) return { action: 'resume', reason: 'connection expired (4009)' };
  if (code === 4006) return { action: 'identify', reason: 'session invalid (4006)' };
  if (code === 4007) return { action: 'identify', reason: 'invalid seq (4007)' };
  if (code >= 4900 && code <= 4913) return { action: 'identify', reason: `gateway internal error (${code})` };
  // 4003 not authenticated / 4005 already authenticated: the session state is confused, start over.
  if (code === 4003 || code === 4005) return { action: 'identify', reason: `session state rejected (${code})` };
  // 4000 "unknown error", websocket-level closes (1000–1015) and anything unlisted: the session may well
  // still exist, so try a resume; a failed resume falls back to identify.
  return { action: 'resume', reason: code === 1006 ? 'connection dropped (1006)' : `connection closed (${code})` };
}
