/**
 * How capabilities fail: a `CapabilityError` inside the host, an envelope `{ ok: false, error }`
 * at the boundary. Only codes, our own messages and platform fields leave; host Errors never do.
 */
import { isErrorCode, QQBotError, type ErrorCode } from '../../errors.ts';
import type { CallResult } from '../instance.ts';

/** `details` travel to the plugin with the code (the base class's `context` never leaves the host). */
export class CapabilityError extends QQBotError {
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(code, message);
    this.details = details;
  }
}

/** What an OpenAPI client error looks like from here (runtime/openapi's OpenAPIError fits). */
export interface PlatformErrorLike {
  status?: number;
  code?: number | string;
  platformCode?: number;
  traceId?: string;
  message?: string;
  platformMessage?: string;
  body?: unknown;
}

export function isPlatformError(error: unknown): error is PlatformErrorLike & Error {
  return error instanceof Error && typeof (error as PlatformErrorLike).status === 'number';
}

/**
 * The reply was refused because another delivery of its event (in another process) sent it, or died
 * sending it: for the plugin that asked, the event's answer is settled, not failed.
 */
export function isSettledElsewhere(error: unknown): boolean {
  return error instanceof CapabilityError && (error.code === 'E_DUPLICATE_REPLY' || error.code === 'E_REPLY_OUTCOME_UNKNOWN');
}

/** The client gave up before sending: the request never reached the platform. */
export function isUnsent(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'E_OPENAPI_DEADLINE' || code === 'E_OPENAPI_CLOSED' || code === 'E_OPENAPI_ABORTED';
}

/**
 * A passive reply that waited in the send queue (the channel's pacing, a rate limit) until its
 * window closed: said as the window, not as a client failure, since that is what the plugin can act on.
 */
export function passiveWindowClosed(error: unknown, what: string): CapabilityError | undefined {
  if ((error as { code?: unknown } | undefined)?.code !== 'E_OPENAPI_DEADLINE') return undefined;
  return new CapabilityError('E_REPLY_WINDOW', `${what}: the passive reply window closed while the reply waited to be sent (${(error as Error).message})`);
}

export function platformCodeOf(error: PlatformErrorLike): number | undefined {
  if (typeof error.platformCode === 'number') return error.platformCode;
  if (typeof error.code === 'number') return error.code;
  const body = error.body as { code?: unknown; err_code?: unknown } | undefined;
  if (typeof body?.err_code === 'number' && body.err_code !== 0) return body.err_code;
  if (typeof body?.code === 'number') return body.code;
  return undefined;
}

export function failure(code: ErrorCode, message: string, extra: Record<string, unknown> = {}): CallResult {
  return { ok: false, error: { code, message, ...extra } };
}

/**
 * Converts anything thrown while serving a call into an envelope. Unknown host errors become
 * E_INTERNAL with a fixed message: their text may carry paths, URLs or worse.
 */
export function toFailure(error: unknown, what: string): CallResult {
  if (error instanceof CapabilityError) return failure(error.code, error.message, error.details);
  if (isPlatformError(error)) {
    const platformCode = platformCodeOf(error);
    const extra: Record<string, unknown> = { status: error.status };
    if (platformCode !== undefined) extra.platformCode = platformCode;
    if (typeof error.traceId === 'string') extra.traceId = error.traceId;
    const detail = platformCode !== undefined ? `platform code ${platformCode}` : `HTTP ${error.status}`;
    return failure('E_OPENAPI', `${what} was refused by the platform (${detail})${platformMessage(error)}`, extra);
  }
  // the client's own failures (timeout, network, closed): its code and message carry no secrets
  const code = (error as { code?: unknown }).code;
  if (error instanceof Error && isErrorCode(code) && code.startsWith('E_OPENAPI_')) {
    return failure(code, `${what} failed: ${code === 'E_OPENAPI_TIMEOUT' ? 'the platform did not answer in time' : 'the platform could not be reached'}`);
  }
  return failure('E_INTERNAL', `${what} failed inside the host`);
}

function platformMessage(error: PlatformErrorLike): string {
  const body = error.body as { message?: unknown } | undefined;
  const text = typeof error.platformMessage === 'string' ? error.platformMessage
    : typeof body?.message === 'string' ? body.message : undefined;
  return text ? `: ${text.slice(0, 200)}` : '';
}
