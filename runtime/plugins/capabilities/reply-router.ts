/**
 * `event.reply` and `event.ack`: picks the endpoint for the source event, fills the passive-reply
 * fields, and enforces the platform's windows and reply caps (§14) before anything is sent, so a
 * plugin gets E_REPLY_WINDOW / E_REPLY_LIMIT instead of a platform rejection. Direct `api.send*`
 * calls naming a known event's `msg_id`/`event_id` take the same books (see `reserveDirect`).
 */
import { Ajv } from 'ajv';
import type { SendResult } from 'qqbot-sdk-types';
import type { ApiRequester } from './api-proxy.ts';
import { CapabilityError, isPlatformError, isSettledElsewhere, isUnsent } from './capability-error.ts';
import { firstError, MESSAGE_BODY_SCHEMA, withMsgType } from './api-routes.ts';
import type { EventRecord, EventRegistry, ReplyReservation, ReplyThread } from './event-registry.ts';
import { isReplyRoute, type PassiveSource } from './reply-route.ts';
import { sendFailed, toSendResult } from './send-result.ts';

const validateBody = new Ajv({ strict: false }).compile(MESSAGE_BODY_SCHEMA);

export class ReplyRouter {
  readonly #events: EventRegistry;

  constructor(events: EventRegistry) {
    this.#events = events;
  }

  async reply(bot: string, instanceId: string, request: ApiRequester, ref: unknown, body: unknown): Promise<SendResult> {
    const record = this.#find(bot, ref);
    const route = record.route;
    if (!isReplyRoute(route)) throw new CapabilityError('E_REPLY_UNSUPPORTED', `event.reply: ${route.reason}`);
    this.#checkWindow(record.thread, route, record.type, 'event.reply');
    const message = normalizeBody(body);
    const reservation = this.#reserve(record.thread, route, record.type, 'event.reply', instanceId);
    const payload = { ...withMsgType(message), [route.idField]: route.sourceId, msg_seq: reservation.seq };
    (record.repliedBy ??= new Set()).add(instanceId);
    try {
      return toSendResult(await request('POST', route.path, { body: payload, deadline: reservation.deadline }));
    } catch (error) {
      return sendFailed(error, 'event.reply', reservation);
    }
  }

  /**
   * A send body naming an event this bot received (`msg_id`, else `event_id`): checks that event's
   * window and reply cap and reserves the next shared msg_seq, which replaces any the plugin chose.
   * Undefined for ids the registry does not know (older or foreign ids go through untouched).
   */
  reserveDirect(bot: string, instanceId: string, body: Record<string, unknown>, what: string): ReplyReservation | undefined {
    const idField = typeof body.msg_id === 'string' ? 'msg_id' : typeof body.event_id === 'string' ? 'event_id' : undefined;
    if (idField === undefined) return undefined;
    const known = this.#events.findSource(bot, idField, body[idField] as string);
    if (!known) return undefined;
    this.#checkWindow(known.thread, known.source, known.type, what);
    return this.#reserve(known.thread, known.source, known.type, what, instanceId);
  }

  /** INTERACTION_CREATE: `PUT /interactions/{id}` with `{code}` (0 ok … 5 admins only). */
  async ack(bot: string, request: ApiRequester, ref: unknown, code: unknown): Promise<void> {
    const record = this.#find(bot, ref);
    if (record.type !== 'INTERACTION_CREATE') {
      throw new CapabilityError('E_INVALID_ARGUMENT', `event.ack: only INTERACTION_CREATE events are acknowledged, this is ${record.type}`);
    }
    const c = code ?? 0;
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 0 || c > 5) {
      throw new CapabilityError('E_INVALID_ARGUMENT', 'event.ack: code must be an integer 0–5');
    }
    if (record.thread.acked) throw new CapabilityError('E_ALREADY_ACKED', 'event.ack: this interaction was already acknowledged');
    await this.#sendAck(record, request, c);
  }

  /** After every plugin is done with the event: ack an interaction nobody acked. */
  async finish(ref: string, request: ((bot: string) => ApiRequester | undefined)): Promise<void> {
    const record = this.#events.get(ref);
    if (!record || record.finished) return;
    record.finished = true;
    const requester = request(record.bot);
    if (record.type === 'INTERACTION_CREATE' && !record.thread.acked && requester) {
      await this.#sendAck(record, requester, 0);
    }
  }

  #checkWindow(thread: ReplyThread, source: PassiveSource, type: string, what: string): void {
    const closedFor = this.#events.now() - (thread.openedAt + source.windowMs);
    if (closedFor >= 0) {
      throw new CapabilityError('E_REPLY_WINDOW', `${what}: the ${source.windowMs / 60_000}-minute passive reply window of this ${type} closed ${Math.ceil(closedFor / 1000)} s ago; the platform no longer accepts replies to it`);
    }
  }

  // Reserved before the request: concurrent replies from several plugins must not share a seq.
  #reserve(thread: ReplyThread, source: PassiveSource, type: string, what: string, instanceId: string): ReplyReservation {
    if (source.maxReplies !== undefined && thread.replies >= source.maxReplies) {
      throw new CapabilityError('E_REPLY_LIMIT', `${what}: this ${type} was already answered ${thread.replies} times, the platform's limit per message`);
    }
    thread.seq += 1;
    thread.replies += 1;
    return {
      seq: thread.seq,
      // the registry may keep its own clock: what is left of the window, on the client's clock
      deadline: Date.now() + (thread.openedAt + source.windowMs - this.#events.now()),
      failed: (error) => {
        if (isPlatformError(error) || isUnsent(error)) thread.replies -= 1;
        if (isSettledElsewhere(error)) (thread.settledElsewhere ??= new Set()).add(instanceId);
      },
    };
  }

  async #sendAck(record: EventRecord, request: ApiRequester, code: number): Promise<void> {
    const data = record.data as { id?: unknown } | undefined;
    const interactionId = typeof data?.id === 'string' && data.id !== '' ? data.id : record.id;
    record.thread.acked = true;
    try {
      await request('PUT', `/interactions/${encodeURIComponent(interactionId)}`, { body: { code } });
    } catch (error) {
      record.thread.acked = false;
      throw error;
    }
  }

  #find(bot: string, ref: unknown): EventRecord {
    const record = typeof ref === 'string' ? this.#events.get(ref) : undefined;
    // Another bot's event is "unknown" too: a ref must not tell a plugin anything about other bots.
    if (!record || record.bot !== bot) {
      throw new CapabilityError('E_UNKNOWN_EVENT', 'event.reply: this event is unknown or expired; replies are possible only within the platform\'s reply window');
    }
    return record;
  }
}

function normalizeBody(body: unknown): Record<string, unknown> {
  const b = typeof body === 'string' ? { content: body } : body;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) {
    throw new CapabilityError('E_INVALID_ARGUMENT', 'event.reply: body must be a string or a message object');
  }
  // the host owns the passive-reply fields
  const { msg_id: _m, event_id: _e, msg_seq: _s, ...rest } = b as Record<string, unknown>;
  if (!validateBody(rest)) {
    const e = firstError(validateBody.errors);
    const message = e?.keyword === 'anyOf' ? 'needs at least one of content, markdown, ark, embed, media, image'
      : `${e?.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') + ' ' : ''}${e?.message ?? 'is invalid'}`;
    throw new CapabilityError('E_INVALID_ARGUMENT', `event.reply: body ${message}`);
  }
  return rest;
}
