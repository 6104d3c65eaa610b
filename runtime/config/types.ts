import type { Secret } from './secret.ts';

export type EndpointConfig =
  | { kind: 'production' | 'sandbox' | 'simulator' }
  | { kind: 'url'; url: string };

export type TransportConfig =
  | { kind: 'websocket' }
  | { kind: 'webhook'; port: number; path: string; host: string; maxSkewSec: number };

/**
 * Where a bot's websocket shards run: all in this process (resume points kept under dataDir across
 * restarts), or shared by every process of the bot through Redis leases of `leaseTtlMs`.
 */
export type SessionsConfig = { kind: 'local' } | { kind: 'redis'; url: string; leaseTtlMs: number };

/**
 * What this process does for a bot: `all` holds the platform connection and runs the plugins (one
 * process, no Redis needed); `gateway` holds the connection and publishes every event to a Redis Stream;
 * `worker` reads that Stream in a consumer group and runs the plugins.
 */
export const BOT_ROLES = ['gateway', 'worker', 'all'] as const;
export type BotRole = (typeof BOT_ROLES)[number];

/** The Redis Stream between a bot's gateway and worker processes (`qqbot:<appId>:events`). */
export interface StreamConfig {
  url: string;
  /** approximate cap on the Stream's length (`XADD MAXLEN ~`) */
  maxLen: number;
  /** the workers' consumer group */
  group: string;
  /** a pending entry idle this long is taken from its (dead) consumer by another */
  claimIdleMs: number;
  /** an entry delivered this many times without success goes to the dead-letter stream */
  maxDeliveries: number;
  /** gateway: bytes of events held in memory while Redis is unreachable, before dropping */
  bufferBytes: number;
}

/** Where `ctx.storage` keeps plugin data: files under dataDir, or a Redis server. */
export type StorageConfig = { kind: 'file' } | { kind: 'redis'; url: string };

/** Where a value came from in bot.yaml, for errors raised after loading. */
export interface SourceLocation {
  file: string;
  line: number;
  col: number;
}

export interface BotConfig {
  name: string;
  appId: string;
  /** this entry is the same app as that earlier bot, on purpose (else a repeated appId is refused) */
  sameAppAs?: string;
  /** access-token flow (AppSecret) */
  secret?: Secret;
  /** legacy fixed token ("Bot appid.token") */
  token?: Secret;
  endpoint: EndpointConfig;
  tokenEndpoint?: string;
  transport: TransportConfig;
  shards: 'auto' | number;
  sessions: SessionsConfig;
  role: BotRole;
  /** set whenever a Redis is known (stream.redis, else sessions.redis); required by gateway and worker */
  stream?: StreamConfig;
  /** the platform's identify window (default 5 000 ms); only a simulator or another platform needs it changed */
  identifyWindowMs?: number;
  storage: StorageConfig;
  /** extra intents beyond the plugins' (names like "GUILD_MESSAGES" or bit values) */
  intents: Array<string | number>;
  /** plugin name → raw config section; undefined = every plugin in pluginsDir with its defaults */
  plugins?: Record<string, unknown>;
  /** operator allow-list intersected with each plugin's `fetchHosts` */
  fetchHosts?: string[];
  requestTimeoutMs: number;
  /**
   * bytes of events that may wait for each plugin of this bot before more are dropped (a plugin's
   * manifest `limits.queueBytes` wins); default 32 MiB
   */
  pluginQueueBytes?: number;
  location: SourceLocation;
  /** where each key under `plugins` is, by path from there (`weather`, `weather.units`, `dice.faces[0]`) */
  pluginLocations: Record<string, SourceLocation>;
}

export interface RuntimeConfig {
  file: string;
  /** folder of bot.yaml: relative paths resolve against it */
  dir: string;
  pluginsDir: string;
  dataDir: string;
  console?: { port: number; host: string; token?: Secret };
  metrics?: { port: number; host: string };
  log: { level: string };
  /** ctx.fetch policy shared by every bot; private addresses are refused unless allowed here */
  fetch: { allowPrivateAddresses: boolean };
  /** once start-up is over, with no bot running: exit 1 (a service manager restarts or alerts) or stay up */
  whenNoBotRuns: 'exit' | 'stay';
  bots: BotConfig[];
  /**
   * Where settings that can fail after loading (a port in use, a missing folder) were written, by
   * field path: `pluginsDir`, `console.port`, `metrics.port`, `bots[1].transport.webhook.port`.
   */
  locations: Readonly<Record<string, SourceLocation>>;
}
