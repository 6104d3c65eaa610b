/**
 * `ctx.api.<method>`: argument validation, platform route, then the bot's OpenAPI client. Plugins
 * never name a path; they can only call the methods of API_METHODS. The caller (index.ts) has
 * already checked the permission and the rate limit.
 */
import { API_METHODS } from '../../../sdk-types/api.ts';
import { buildApiRequest, isApiMethod, type HttpMethod } from './api-routes.ts';
import { CapabilityError } from './capability-error.ts';
import type { ReplyReservation } from './event-registry.ts';
import { sendFailed, toSendResult } from './send-result.ts';

/**
 * The narrow slice of the OpenAPI client the capability layer needs: it resolves with the parsed
 * body and rejects with an error carrying `status` (and `code`/`traceId` when the platform sent them).
 * `(m, p, o) => client.request(m, p, o)` fits.
 */
export type ApiRequester = (
  method: HttpMethod,
  path: string,
  /** `deadline`: epoch ms after which the request must not be sent (a passive reply's window) */
  options?: { body?: unknown; query?: Record<string, string | number | boolean>; deadline?: number },
) => Promise<unknown>;

/** Reserves a passive-reply slot when a send body names a known event (ReplyRouter.reserveDirect). */
export type PassiveReplies = (body: Record<string, unknown>, what: string) => ReplyReservation | undefined;

/** The permission `api.<method>` needs, or undefined for names that are not API methods. */
export function permissionFor(method: string): string | undefined {
  return isApiMethod(method) ? API_METHODS[method] : undefined;
}

/**
 * `budget` is charged for every call but passive replies (a send naming an event this bot got):
 * those are bounded by the platform's rules per message, which the reservation enforces.
 */
export async function callApi(request: ApiRequester, method: string, args: unknown, passive?: PassiveReplies, budget?: () => void): Promise<unknown> {
  if (!isApiMethod(method)) throw new CapabilityError('E_UNKNOWN_CAPABILITY', `api.${method.slice(0, 64)} does not exist`);
  const req = buildApiRequest(method, args);
  const isSend = method.startsWith('send');
  const body = req.body as Record<string, unknown> | undefined;
  const reservation = isSend && body !== undefined ? passive?.(body, `api.${method}`) : undefined;
  if (!reservation) budget?.();
  const options: { body?: unknown; query?: Record<string, string | number | boolean>; deadline?: number } = {};
  if (body !== undefined) options.body = reservation ? { ...body, msg_seq: reservation.seq } : body;
  if (req.query !== undefined) options.query = req.query;
  if (reservation) options.deadline = reservation.deadline;
  try {
    const response = await request(req.method, req.path, options);
    if (isSend) return toSendResult(response);
    return response ?? null;
  } catch (error) {
    return sendFailed(error, `api.${method}`, reservation, isSend);
  }
}
