import { QQBotError } from '../errors.ts';

/**
 * Stable runtime codes of the OpenAPI client. Callers branch on these (and on `platformCode`),
 * never on message text.
 */
export type OpenAPIErrorCode =
  /** the platform answered with an error status or an error body */
  | 'E_OPENAPI'
  /** no response within the request timeout */
  | 'E_OPENAPI_TIMEOUT'
  /** connection refused/reset, DNS, TLS: no usable response */
  | 'E_OPENAPI_NETWORK'
  /** the caller's AbortSignal fired */
  | 'E_OPENAPI_ABORTED'
  /** the client was closed while the request was queued or in flight */
  | 'E_OPENAPI_CLOSED'
  /** the request could not start before its deadline (a passive reply's window) and was not sent */
  | 'E_OPENAPI_DEADLINE';

export interface OpenAPIErrorDetails {
  method: string;
  /** request path without the query string (queries may carry cursors or ids, never credentials) */
  path: string;
  /** rate-limit route the request was queued on */
  route: string;
  status?: number;
  platformCode?: number;
  errCode?: number;
  /** the platform's own message text (credentials scrubbed) */
  platformMessage?: string;
  traceId?: string;
}

/**
 * One error class for every failed OpenAPI call. `code` is the stable runtime code; the platform's
 * numeric code is `platformCode` (the base class already owns `code`). Quote `traceId` when
 * reporting a problem to the platform.
 */
export class OpenAPIError extends QQBotError {
  declare readonly code: OpenAPIErrorCode;
  readonly method: string;
  readonly path: string;
  readonly route: string;
  readonly status: number | undefined;
  readonly platformCode: number | undefined;
  readonly errCode: number | undefined;
  readonly platformMessage: string | undefined;
  readonly traceId: string | undefined;

  constructor(code: OpenAPIErrorCode, details: OpenAPIErrorDetails, options?: { cause?: unknown; reason?: string }) {
    super(code, describe(code, details, options?.reason), { ...details }, options?.cause === undefined ? undefined : { cause: options.cause });
    this.method = details.method;
    this.path = details.path;
    this.route = details.route;
    this.status = details.status;
    this.platformCode = details.platformCode;
    this.errCode = details.errCode;
    this.platformMessage = details.platformMessage;
    this.traceId = details.traceId;
  }
}

function describe(code: OpenAPIErrorCode, d: OpenAPIErrorDetails, reason: string | undefined): string {
  const head = `${d.method} ${d.path}`;
  let text: string;
  switch (code) {
    case 'E_OPENAPI': {
      const parts = [`HTTP ${d.status ?? '?'}`];
      if (d.platformCode !== undefined) parts.push(`code ${d.platformCode}`);
      if (d.errCode !== undefined && d.errCode !== d.platformCode) parts.push(`err_code ${d.errCode}`);
      text = `${head} failed: ${parts.join(', ')}${d.platformMessage ? `: ${d.platformMessage}` : ''}`;
      break;
    }
    case 'E_OPENAPI_TIMEOUT':
      text = `${head} timed out${reason ? ` (${reason})` : ''}`;
      break;
    case 'E_OPENAPI_NETWORK':
      text = `${head} failed before a response arrived${reason ? `: ${reason}` : ''}`;
      break;
    case 'E_OPENAPI_ABORTED':
      text = `${head} was aborted by the caller`;
      break;
    case 'E_OPENAPI_CLOSED':
      text = `${head} was cancelled: the OpenAPI client is closed`;
      break;
    case 'E_OPENAPI_DEADLINE':
      text = `${head} was not sent: it could not start before its deadline${reason ? ` (${reason})` : ''}`;
      break;
  }
  return d.traceId ? `${text} [trace ${d.traceId}]` : text;
}

/** The access-token endpoint refused or could not be reached. Never carries the secret. */
export class TokenError extends QQBotError {
  declare readonly code: 'E_TOKEN';
  readonly status: number | undefined;
  readonly platformCode: number | undefined;
  /** true when trying again later may help (network, 5xx, platform throttling) */
  readonly retryable: boolean;

  constructor(
    message: string,
    details: { appId: string; endpoint: string; status?: number; platformCode?: number; retryable: boolean },
    options?: { cause?: unknown },
  ) {
    super('E_TOKEN', message, { ...details }, options);
    this.status = details.status;
    this.platformCode = details.platformCode;
    this.retryable = details.retryable;
  }
}

/**
 * Removes credentials from text that came from outside (a platform message may echo what it was
 * sent). Short values are left alone: scrubbing "1" would mangle every message.
 */
export function scrubCredentials(text: string, credentials: readonly string[]): string {
  let out = text;
  for (const value of credentials) {
    if (value.length >= 6) out = out.split(value).join('[redacted]');
  }
  return out;
}
