/**
 * Every stable error code the runtime raises, with what it means. Tests, docs and users match on
 * these codes; README's "Troubleshooting: error codes" is rendered from this map (see
 * renderErrorCodes), and test/error-codes.test.ts fails when a code in runtime/ is missing here.
 * Adding a code is one line.
 */
export const ERROR_CODES = {
  // bot.yaml
  E_CONFIG_READ: 'bot.yaml cannot be read (missing file, no permission).',
  E_CONFIG_TOO_LARGE: 'bot.yaml is larger than any real config; check the path.',
  E_CONFIG_ENCODING: 'bot.yaml is not valid UTF-8 text.',
  E_CONFIG_SYNTAX: 'bot.yaml is not valid YAML.',
  E_CONFIG_ALIASES: 'YAML aliases in bot.yaml expand to too many copies ("billion laughs").',
  E_CONFIG_ENV: 'bot.yaml uses ${VAR} for an environment variable that is not set.',
  E_CONFIG_SCHEMA: 'a bot.yaml field has the wrong type or value, or is unknown.',
  E_CONFIG_PLUGINS_DIR: 'the plugins folder does not exist.',
  E_CONFIG_DUPLICATE_BOT: 'two bots in bot.yaml have the same name.',
  E_CONFIG_CREDENTIALS: 'a bot lacks the secret (or token) its transport needs.',
  E_CONFIG_SHARDS: 'more shards than the platform lets a bot start in a day.',
  E_CONFIG_CONSOLE_TOKEN: 'the console would listen on a non-loopback address without a token.',
  E_CONFIG_SAME_APP: 'sameAppAs names a bot that is not earlier, or not the same app and credentials.',
  E_CONFIG_DUPLICATE_APP: 'two bots are the same app on the same platform without sameAppAs.',
  E_CONFIG_PORT_CLASH: 'two listeners (console, metrics, webhook) share a port.',
  E_CONFIG_STREAM_REDIS: 'role gateway or worker needs a Redis for the event Stream (stream.redis or sessions.redis).',
  E_CONFIG_STREAM_SIMULATOR: 'role gateway or worker cannot use the embedded simulator: each process would start its own.',
  E_CONFIG_BOT: 'no bot of that name in bot.yaml.',

  // command line
  E_USAGE: 'the command line is incomplete or ambiguous; the message shows the usage.',
  E_NO_BOT_RUNNING: 'every bot failed to start, so the process exits.',
  E_PLUGIN_NAME: 'new-plugin: the name is not lower-case letters, digits and dashes.',
  E_PLUGIN_EXISTS: 'new-plugin: the folder already exists.',
  E_PLUGIN_NOT_INSTALLED: 'plugin command: the npm plugin is not installed in the plugins folder.',
  E_PLUGIN_INSTALL: 'plugin add: npm installed nothing new.',
  E_NPM: 'npm could not run or failed; its output is in the message.',

  // start-up and listeners
  E_LISTEN: 'a listener (console, metrics, webhook, simulator) cannot bind its address.',
  E_BOT_SIMULATOR: 'a bot uses endpoint: simulator but no simulator runs.',
  E_PLUGINS_FAILED: 'no enabled plugin loaded, so the bot would receive nothing.',
  E_STORAGE_UNAVAILABLE: 'the storage database or Redis cannot be opened or reached.',
  E_OPENAPI_ENDPOINT: 'the OpenAPI endpoint is not production, sandbox or a plain http(s) URL.',

  // intents and gateway
  E_UNKNOWN_EVENT: 'an unknown event type (plugin manifest or reply to an expired event).',
  E_UNKNOWN_INTENT: 'bot.yaml names an intent the QQ gateway does not define.',
  E_EMPTY_INTENTS: 'no intents: no plugin subscribes to an event and bot.yaml lists none.',
  E_GATEWAY_AUTH: 'the gateway refused the token: check the AppID and secret.',
  E_GATEWAY_PROTOCOL: 'the gateway closed for a protocol error (4001, 4002, 4012).',
  E_GATEWAY_SHARD: 'the shard count is invalid or too small (4010, 4011).',
  E_GATEWAY_INTENTS: 'the gateway refused the intents (4013, 4014).',
  E_BOT_OFFLINE: 'the bot is unpublished and may only use the sandbox environment (4914).',
  E_BOT_BANNED: 'the bot is banned (4915).',
  E_SESSION_LIMIT: 'too few session starts remain today for the shards.',
  E_SHARD_COUNT_MISMATCH: "the bot's processes are configured with different shard counts.",
  E_SESSIONS_STOPPED: 'the session manager was stopped before it was ready.',

  // Redis lock
  E_LOCK_BUSY: 'the lock is held by someone else.',
  E_LOCK_LOST: 'the lock was lost (lease expired or taken over).',
  E_LOCK_RELEASED: 'the lock was released.',
  E_LOCK_OWNER: 'a lock owner token contains "@".',
  E_LOCK_TTL: 'a lock TTL is not an integer of at least 10 ms.',

  // OpenAPI client
  E_TOKEN: 'the access-token endpoint refused the credentials or cannot be reached.',
  E_OPENAPI: 'the platform answered an OpenAPI call with an error.',
  E_OPENAPI_TIMEOUT: 'no response from the platform within the request timeout.',
  E_OPENAPI_NETWORK: 'the platform could not be reached (connection, DNS, TLS).',
  E_OPENAPI_ABORTED: "the caller's AbortSignal fired.",
  E_OPENAPI_CLOSED: 'the OpenAPI client was closed while the request waited or ran.',
  E_OPENAPI_DEADLINE: 'the request could not start before its deadline and was not sent.',

  // plugins: discovery, build, load
  E_PLUGIN_NOT_FOUND: 'bot.yaml names a plugin that is neither in the plugins folder nor installed.',
  E_PLUGIN_MANIFEST: "a plugin's package.json qqbot section is invalid.",
  E_PLUGIN_CONFIG: "a plugin's config in bot.yaml does not match its schema.",
  E_PLUGIN_BUILD: 'the plugin does not bundle (syntax or import error).',
  E_PLUGIN_LOAD: "the plugin's code or setup threw while loading.",
  E_PRELUDE_BUILD: 'the sandbox prelude cannot be bundled: the runtime install is broken, not the plugin.',
  E_GRANTS_FILE: 'the grants file (approved permissions) is invalid.',
  E_EVENT_NOT_DECLARED: "testing: the event type is not in the plugin's qqbot.events.",

  // plugins: capability calls
  E_CALL: 'a capability call failed without a code.',
  E_CAPABILITY: 'a sandbox call named an unknown capability or was malformed.',
  E_UNKNOWN_CAPABILITY: 'the plugin called an API method or capability that does not exist.',
  E_UNKNOWN_INSTANCE: 'a capability call came from a plugin instance that is not registered.',
  E_INVALID_ARGUMENT: 'a capability was called with an invalid argument.',
  E_PAYLOAD: 'a call or event payload is larger than payloadBytes.',
  E_PENDING_LIMIT: 'the plugin has too many capability calls pending.',
  E_TIMER_LIMIT: 'the plugin has too many timers.',
  E_PERMISSION: 'the plugin lacks a permission the operator has not granted.',
  E_RATE_LIMITED: 'the plugin is over its per-plugin quota for this capability.',
  E_INTERNAL: 'the host failed to serve a call; details are in the host log only.',
  E_STORAGE_LIMIT: "the plugin's storage is over its value, key or total size limit.",
  E_FETCH_HOST: "fetch: the host is not on the plugin's allow-list.",
  E_FETCH_ADDRESS: 'fetch: the host is or resolves to a non-public address.',
  E_FETCH_TIMEOUT: 'fetch: the remote host did not answer in time.',
  E_FETCH_TOO_LARGE: 'fetch: the response is larger than allowed.',
  E_FETCH_FAILED: 'fetch: the request failed (connection, TLS).',

  // plugins: replies
  E_REPLY_UNSUPPORTED: 'this event cannot be replied to.',
  E_REPLY_WINDOW: "the passive reply window of the event closed.",
  E_REPLY_LIMIT: 'the message was already answered as often as the platform allows.',
  E_ALREADY_ACKED: 'the interaction was already acknowledged.',
  E_DUPLICATE_REPLY: 'another process of the bot already sent this reply.',
  E_REPLY_OUTCOME_UNKNOWN: 'another process died while sending this reply; it is not sent again.',

  // plugins: event outcomes
  E_TIMEOUT: 'the handler exceeded entryTimeoutMs.',
  E_CPU: 'the event used more CPU than cpuPerEventMs.',
  E_MEMORY: 'the isolate exceeded its memory limit.',
  E_DEADLINE: "the event's async tail ran out of time (asyncTailMs).",
  E_DISPOSED: 'the plugin was being unloaded.',
  E_UNLOADED: 'the plugin instance was unloaded; the event goes to its successor.',
  E_STOPPED: 'the runtime stopped before the event ran.',
  E_QUARANTINED: 'the plugin is quarantined after repeated failures.',
  E_RESTARTING: "the plugin's isolate failed and is restarting.",
  E_HOST_CRASHED: 'the process hosting the plugin crashed.',
  E_BACKLOG_FULL: "the plugin's event queue is full (queueBytes).",

  // console (the CONSOLE_ codes are also the `code` of its HTTP API's error bodies)
  CONSOLE_TOKEN_REQUIRED: 'the console would be reachable from other machines without a token.',
  CONSOLE_LISTEN_FAILED: 'the console cannot bind its address.',
  CONSOLE_BAD_HOST: 'the console was opened through a host name it does not serve.',
  CONSOLE_UNAUTHORIZED: 'the console token is missing or wrong.',
  CONSOLE_BAD_INPUT: 'a console request is malformed or too large.',
  CONSOLE_NOT_FOUND: 'no such console route.',
  CONSOLE_NO_SIMULATOR: 'the console chat needs a bot on the embedded simulator.',
  CONSOLE_UNKNOWN_BOT: 'the console request names no known bot.',
  CONSOLE_INTERNAL: 'the console failed; details are in the runtime log.',

  // metrics and simulator
  METRICS_LISTEN_FAILED: 'the metrics server cannot bind its address.',
  SIMULATOR_CONFIG: 'a simulator option is invalid.',
  SIMULATOR_BAD_INPUT: "a simulator control request is invalid.",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export const ERROR_CODES_START = '<!-- error-codes:start -->';
export const ERROR_CODES_END = '<!-- error-codes:end -->';

/** README's error-code table, markers included. */
export function renderErrorCodes(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, meaning]) => `| \`${code}\` | ${meaning.replace(/\|/g, '\\|')} |`);
  return [ERROR_CODES_START, '| Code | Meaning |', '| --- | --- |', ...rows, ERROR_CODES_END].join('\n');
}
