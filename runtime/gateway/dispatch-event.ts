/** One platform event, as every transport hands it to dedupe and the dispatcher. */
export interface GatewayDispatch {
  /** event type, e.g. AT_MESSAGE_CREATE */
  t: string;
  d: unknown;
  /** sequence number (websocket; webhook bodies may carry one too) */
  s?: number;
  /** envelope event id; usable as `event_id` for passive replies */
  id?: string;
  /** websocket shard id; absent for webhook */
  shard?: number;
  /** fencing token of the shard lease it arrived under (Redis sessions only) */
  fence?: number;
  transport: 'websocket' | 'webhook';
  /** ms since epoch when the frame/request arrived */
  receivedAt: number;
}

/** `GET /gateway/bot` (docs/protocol.md §3). */
export interface GatewayBotInfo {
  url: string;
  shards: number;
  session_start_limit: { total: number; remaining: number; reset_after: number; max_concurrency: number };
}

/** Source of the gateway token: exactly the string to put in identify/resume (`QQBot …` / `Bot …`). */
export interface GatewayTokenSource {
  authorization(): Promise<string>;
  /** drop the cached token and fetch a new one (after 4004) */
  refresh(): Promise<string>;
}

/** The envelope of a websocket frame or webhook body (docs/protocol.md §4). */
export interface GatewayEnvelope {
  op: number;
  d?: unknown;
  s?: number | null;
  t?: string | null;
  id?: string | null;
}

/**
 * The only constructor of GatewayDispatch, used by both transports so that the same event yields the
 * same object whichever way it arrived (only `transport`, `shard` and `receivedAt` differ).
 */
export function toDispatch(envelope: GatewayEnvelope, transport: GatewayDispatch['transport'], shard?: number): GatewayDispatch {
  const dispatch: GatewayDispatch = { t: String(envelope.t), d: envelope.d, transport, receivedAt: Date.now() };
  if (typeof envelope.s === 'number') dispatch.s = envelope.s;
  if (typeof envelope.id === 'string' && envelope.id !== '') dispatch.id = envelope.id;
  if (shard !== undefined) dispatch.shard = shard;
  return dispatch;
}
