import { ControlInputError } from './errors.ts';
import type { SessionInfo } from './gateway.ts';
import type { OutboxEntry } from './outbox.ts';
import { RouteTable } from './route-table.ts';
import type { SessionLogEntry } from './session-log.ts';
import type { SimulatorState } from './state.ts';
import type { WebhookLogEntry, WebhookRegistration } from './webhook-delivery.ts';
import type { User, World } from './world.ts';

/** What the control API drives; implemented by the simulator itself. */
export interface ControlTarget {
  info(): Record<string, unknown>;
  postMessageUnchecked(input: unknown): { id: string; event_id: string };
  postBurstUnchecked(input: unknown): { ids: string[] };
  dispatchUnchecked(input: unknown): { event_id: string };
  outbox(since?: number): OutboxEntry[];
  sessions(): SessionInfo[];
  sessionLog(): SessionLogEntry[];
  faultUnchecked(input: unknown): { affected: number };
  registerWebhook(appId: unknown, url: unknown): Promise<WebhookRegistration>;
  unregisterWebhook(appId: string): boolean;
  webhooks(): WebhookRegistration[];
  webhookLog(since?: number): WebhookLogEntry[];
  world(): World;
  botUsers(): User[];
  exportState(): SimulatorState;
}

type Handler = (ctx: { params: Record<string, string>; query: URLSearchParams; body: unknown }) => unknown;

/**
 * `/_simulator/*`: JSON over HTTP for tests, the bench and the console. Bad input answers 400
 * `{error, field}`; the live stream (`GET /_simulator/stream`) is served by the HTTP layer.
 */
export function controlRoutes(target: ControlTarget): RouteTable<Handler> {
  const r = new RouteTable<Handler>();
  const obj = (body: unknown): Record<string, unknown> => {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ControlInputError('body', 'expected a JSON object');
    return body as Record<string, unknown>;
  };
  const since = (q: URLSearchParams): number | undefined => {
    const raw = q.get('since');
    if (raw === null) return undefined;
    const n = Number(raw);
    if (raw === '' || !Number.isInteger(n) || n < 0) throw new ControlInputError('since', 'since must be a non-negative integer');
    return n;
  };
  const optString = (o: Record<string, unknown>, field: string): string | undefined => {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') throw new ControlInputError(field, `${field} must be a non-empty string`);
    return v;
  };

  r.add('GET', '/_simulator', () => target.info());
  r.add('GET', '/_simulator/info', () => target.info());
  r.add('POST', '/_simulator/messages', ({ body }) => target.postMessageUnchecked(body));
  r.add('POST', '/_simulator/messages/burst', ({ body }) => target.postBurstUnchecked(body));
  r.add('POST', '/_simulator/events', ({ body }) => target.dispatchUnchecked(body));
  r.add('GET', '/_simulator/outbox', ({ query }) => target.outbox(since(query)));
  r.add('POST', '/_simulator/faults', ({ body }) => ({ ok: true, ...target.faultUnchecked(body) }));
  r.add('GET', '/_simulator/sessions', () => target.sessions());
  r.add('GET', '/_simulator/sessions/log', () => target.sessionLog());
  r.add('GET', '/_simulator/webhooks', () => target.webhooks());
  r.add('POST', '/_simulator/webhooks', async ({ body }) => {
    const o = obj(body);
    return { ok: true, ...(await target.registerWebhook(o.appId, o.url)) };
  });
  r.add('DELETE', '/_simulator/webhooks/{appId}', ({ params }) => ({ ok: target.unregisterWebhook(params.appId!) }));
  r.add('GET', '/_simulator/webhooks/log', ({ query }) => target.webhookLog(since(query)));
  r.add('GET', '/_simulator/state', () => target.exportState());
  r.add('GET', '/_simulator/world', () => target.world().snapshot());
  r.add('POST', '/_simulator/world/guilds', ({ body }) => {
    const o = obj(body);
    const input: { id?: string; name?: string } = {};
    const id = optString(o, 'id');
    const name = optString(o, 'name');
    if (id !== undefined) input.id = id;
    if (name !== undefined) input.name = name;
    const w = target.world();
    const guild = w.addGuild(input, target.botUsers());
    return { ...guild, channels: w.channelsOf(guild.id).map((c) => w.publicChannel(c)) };
  });
  r.add('POST', '/_simulator/world/channels', ({ body }) => {
    const o = obj(body);
    const guildId = optString(o, 'guild_id');
    if (guildId === undefined) throw new ControlInputError('guild_id', 'guild_id is required');
    if (o.type !== undefined && (typeof o.type !== 'number' || !Number.isInteger(o.type))) throw new ControlInputError('type', 'type must be an integer');
    if (o.botCanSpeak !== undefined && typeof o.botCanSpeak !== 'boolean') throw new ControlInputError('botCanSpeak', 'botCanSpeak must be a boolean');
    const input: { guild_id: string; id?: string; name?: string; type?: number; botCanSpeak?: boolean } = { guild_id: guildId };
    const id = optString(o, 'id');
    const name = optString(o, 'name');
    if (id !== undefined) input.id = id;
    if (name !== undefined) input.name = name;
    if (typeof o.type === 'number') input.type = o.type;
    if (typeof o.botCanSpeak === 'boolean') input.botCanSpeak = o.botCanSpeak;
    const w = target.world();
    return w.publicChannel(w.addChannel(input));
  });
  r.add('POST', '/_simulator/world/groups', ({ body }) => {
    const o = obj(body);
    const openid = optString(o, 'group_openid');
    if (openid === undefined) throw new ControlInputError('group_openid', 'group_openid is required');
    return target.world().addGroup(openid);
  });
  r.add('POST', '/_simulator/world/users', ({ body }) => {
    const o = obj(body);
    const openid = optString(o, 'openid');
    if (openid === undefined) throw new ControlInputError('openid', 'openid is required');
    target.world().c2cUsers.add(openid);
    return { openid };
  });
  return r;
}
