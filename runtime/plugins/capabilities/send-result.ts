/**
 * Normalises what a send returns. HTTP 202 with code 304023/304024 means "queued for audit"
 * (docs/protocol.md §13.3): a success carrying `audit_id`, whether the client returned the body or
 * threw it as an error.
 */
import type { SendResult } from 'qqbot-sdk-types';
import { isPlatformError, passiveWindowClosed, platformCodeOf } from './capability-error.ts';
import type { ReplyReservation } from './event-registry.ts';

const AUDIT_CODES = new Set([304023, 304024]);

export function toSendResult(response: unknown): SendResult {
  if (typeof response !== 'object' || response === null) return {};
  const audit = auditIdOf(response);
  if (audit !== undefined) return { audit_id: audit };
  return response as SendResult;
}

/**
 * The audit id when `error` is the platform's "accepted for audit", else undefined. The code decides,
 * not the status: a 202 may carry any error body (§15.1).
 */
export function auditFromError(error: unknown): SendResult | undefined {
  if (!isPlatformError(error)) return undefined;
  const code = platformCodeOf(error);
  if (code === undefined || !AUDIT_CODES.has(code)) return undefined;
  return { audit_id: auditIdOf(error.body) ?? auditIdOf(error) ?? '' };
}

/**
 * A request that threw: for a send, "accepted for audit" is its result; otherwise its reservation (a
 * passive reply) learns why, and the error is thrown as the plugin should see it.
 */
export function sendFailed(error: unknown, what: string, reservation?: ReplyReservation, isSend = true): SendResult {
  const audit = isSend ? auditFromError(error) : undefined;
  if (audit) return audit;
  reservation?.failed(error);
  throw passiveWindowClosed(error, what) ?? error;
}

function auditIdOf(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as { code?: unknown; data?: { message_audit?: { audit_id?: unknown } } };
  const id = v.data?.message_audit?.audit_id;
  if (typeof id === 'string') return id;
  if (typeof v.code === 'number' && AUDIT_CODES.has(v.code)) return '';
  return undefined;
}
