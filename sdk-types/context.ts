import type { EventMap, EventType } from './events.ts';
import type { PluginApi, ReplyBody, SendResult } from './api.ts';

export interface PluginEvent<T extends EventType = EventType> {
  type: T;
  /** Envelope `id` (event id); for message events the message id is `data.id`. */
  id: string;
  data: EventMap[T];
  /** Shard that delivered it, absent for webhook delivery. */
  shard?: number;
  transport: 'websocket' | 'webhook';
  /**
   * Passive reply to this event: the host picks the endpoint (channel, DM, group, C2C), sets
   * `msg_id`/`event_id`, `msg_type` and the next `msg_seq`, and checks the reply window first
   * (measured from when the runtime received the event). GUILD_MEMBER_* events name no channel:
   * use `ctx.api.sendChannelMessage(channelId, { content, event_id: event.id })` for them.
   */
  reply(body: ReplyBody | string): Promise<SendResult>;
  /** INTERACTION_CREATE only: answer the button press (0 ok … 5 admins only). Done for you otherwise. */
  ack(code?: number): Promise<void>;
}

export interface PluginLogger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** Per-plugin, per-bot key-value store; values are JSON. Needs the `storage` permission. Bounded (E_STORAGE_LIMIT): 64 KB per value, 10 000 keys, 16 MB in total. */
export interface PluginStorage {
  get<T = unknown>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<boolean>;
  keys(prefix?: string): Promise<string[]>;
}

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface FetchResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  json<T = unknown>(): T;
}

export type EventHandler<T extends EventType> = (event: PluginEvent<T>) => void | Promise<void>;

export interface PluginContext<Config = Record<string, unknown>> {
  readonly bot: { readonly name: string; readonly appId: string };
  /** bot.yaml's section for this plugin, validated against the manifest schema, defaults applied. */
  readonly config: Config;
  readonly logger: PluginLogger;
  readonly api: PluginApi;
  readonly storage: PluginStorage;
  on<T extends EventType>(type: T, handler: EventHandler<T>): void;
  /** Needs `net.fetch`; only hosts on the allow-list, and only public addresses (E_FETCH_ADDRESS). */
  fetch(url: string, init?: FetchInit): Promise<FetchResponse>;
}

/** The plugin entry module's shape. */
export interface PluginModule<Config = Record<string, unknown>, State = unknown> {
  default: (ctx: PluginContext<Config>) => void | Promise<void>;
  /** Hot reload: state handed to the next version's `restore` (JSON, ≤ 256 KB). */
  snapshot?: () => State;
  restore?: (state: State) => void;
}
