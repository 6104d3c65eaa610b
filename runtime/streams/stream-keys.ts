/**
 * The Redis keys of a bot's event Stream and how an event is written into an entry, shared by the
 * gateway's publisher, the workers' consumer and the stats reader.
 */
import type { BotConfig } from '../config/types.ts';
import type { GatewayDispatch } from '../gateway/dispatch-event.ts';

export interface StreamKeys {
  /** the Stream: `qqbot:<appId>:events` */
  events: string;
  /** entries that failed `maxDeliveries` times: `qqbot:<appId>:events:dead` */
  dead: string;
  /** prefix of the workers' cross-process dedupe and reply ledger */
  prefix: string;
}

/** Two entries of one app on purpose (`sameAppAs`) run other plugins: each gets a Stream of its own. */
export function streamKeys(bot: Pick<BotConfig, 'appId' | 'name' | 'sameAppAs'>): StreamKeys {
  const id = bot.sameAppAs === undefined ? bot.appId : `${bot.appId}:${bot.name}`;
  return { events: `qqbot:${id}:events`, dead: `qqbot:${id}:events:dead`, prefix: `qqbot:${id}:stream` };
}

/** The entry field that carries the event. */
export const EVENT_FIELD = 'e';

/** What crosses the Stream: the event as the transport built it (the lease fence stays with the gateway). */
export function encodeDispatch(dispatch: GatewayDispatch): string {
  const { fence: _fence, ...event } = dispatch;
  return JSON.stringify(event);
}

/** undefined for an entry that is not an event (written by something else, or corrupted). */
export function decodeDispatch(fields: string[]): GatewayDispatch | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] !== EVENT_FIELD) continue;
    try {
      const event = JSON.parse(fields[i + 1]!) as GatewayDispatch;
      if (event && typeof event.t === 'string' && (event.transport === 'websocket' || event.transport === 'webhook')) return event;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
