import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import { Pool } from 'undici';
import { silentLogger, type Logger } from '../logging/logger.ts';
import { OpenAPIError, scrubCredentials, type OpenAPIErrorCode } from './errors.ts';
import { RequestSignal } from './request-signal.ts';
import { RouteQueues, majorKey, routeKey, type AttemptOutcome, type SendRate } from './route-queues.ts';
import type { TokenSource } from './token-source.ts';
import { VERSION } from '../version.ts';
import { backoffDelay, type BackoffPolicy } from '../time/backoff.ts';
import { sleepUnlessAborted } from '../time/sleep.ts';

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export type QueryValue = string | number | boolean | undefined;

export interface RequestOptions {
  /** JSON-encoded; strings are sent as they are (botgo sends the interaction body raw) */
  body?: unknown;
  query?: Record<string, QueryValue>;
  /** extra headers; `authorization` cannot be overridden */
  headers?: Record<string, string>;
  /** overrides the client's timeout for this request (message sends never go below 5 s) */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** epoch ms after which the request must not be sent (a passive reply's window): it fails with E_OPENAPI_DEADLINE */
  deadline?: number;
  /** runs right before each attempt leaves (after queueing and pacing); a rejection fails the request unsent */
  beforeSend?: () => Promise<void>;
}

export interface RestOptions {
  /** OpenAPI base, e.g. `https://api.sgroup.qq.com`; a path prefix is kept */
  baseUrl: string;
  appId: string;
  tokenSource: TokenSource;
  /** per request, headers and body; @defaultValue 10000 */
  timeoutMs?: number;
  logger?: Logger;
  /** keep-alive connections to the API host; @defaultValue 32 */
  connections?: number;
  /** extra attempts for GET/HEAD after a network error, timeout or 5xx; @defaultValue 2 */
  retries?: number;
  /**
   * messages one guild channel may be sent per window before the client waits (§14: 5 per second;
   * the platform refuses the sixth with 20028); `false` turns pacing off. @defaultValue 5 per 1000 ms
   */
  channelSendRate?: SendRate | false;
}

export interface ResponseEvent {
  route: string;
  method: string;
  status: number;
  durationMs: number;
  platformCode?: number;
  traceId?: string;
}

export interface RateLimitedEvent {
  route: string;
  waitMs: number;
  /** consecutive rate limits on this route */
  hits: number;
}

export interface RequestErrorEvent {
  route: string;
  method: string;
  code: OpenAPIErrorCode;
  durationMs: number;
}

/** Events for metrics and logs. None of them carries a credential. */
export interface RestEvents {
  response: [event: ResponseEvent];
  'rate-limited': [event: RateLimitedEvent];
  'request-error': [event: RequestErrorEvent];
}

/** Platform codes that mean "slow down", not "no": the request was not accepted, send it again. */
const RATE_LIMIT_CODES = new Set([20028, 22009, 620006]);
/** A request limited by a platform code this many times in a row fails with that code. */
const PLATFORM_LIMIT_ATTEMPTS = 8;
/** "channel write rate limit": the whole channel is limited, so its other write routes rest too. */
const CHANNEL_LIMIT_CODE = 20028;
// 304045–304050 (proactive quotas per day/month) are deliberately not here: waiting seconds cannot
// help, and re-queueing would block the channel's route until the quota resets. They fail fast.
/** "queued for audit": accepted, the verdict arrives later as MESSAGE_AUDIT_PASS/REJECT */
const AUDIT_CODES = new Set([304023, 304024]);
const TOKEN_EXPIRED_CODE = 11244;
/** Waits between retries of one request. */
const RETRY_BACKOFF: BackoffPolicy = { baseMs: 250, maxMs: 5_000 };
/**
 * Codes the platform documents as "retry" (docs/protocol.md §15.3): a transient failure, retried once.
 * The 112xx ones fail the token/permission check before the request does anything; recalls (306xxx)
 * and reactions (620007) are idempotent; so those go again whatever the method. The 5010xx ones are
 * send failures that do not say whether the message went out, so a send is retried only when the
 * platform dedupes it: a passive reply with `msg_seq` (a repeated msg_id/event_id + msg_seq is
 * refused as a duplicate, never delivered twice). Other sends, channel messages without msg_seq and
 * media uploads, fail instead of risking a duplicate.
 */
function isRetryableCode(code: number): boolean {
  return code === 11242 || code === 11252 || code === 11263 || code === 11281
    || code === 306003 || code === 306005 || code === 306006
    || (code >= 501002 && code <= 501012) || code === 620007;
}
/** The platform says a send may succeed after a shorter client timeout; a retry would duplicate it. */
const MIN_SEND_TIMEOUT_MS = 5000;
const SAFE_METHODS = new Set(['GET', 'HEAD']);

export const USER_AGENT = `qqbot-runtime/${VERSION}`;

/** Result of a send the platform queued for audit (HTTP 202, code 304023/304024). */
export interface AuditAccepted {
  audit_id: string | undefined;
  /** 304023 or 304024 */
  audit_code: number;
}

interface ErrorContext {
  method: string;
  path: string;
  route: string;
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text: string;
}

/**
 * The request core: one keep-alive pool to the API host, the Authorization header from a
 * {@link TokenSource}, per-route queues, retries where they are safe, typed errors.
 */
export class Rest extends EventEmitter<RestEvents> {
  readonly #origin: string;
  readonly #prefix: string;
  readonly #appId: string;
  readonly #tokenSource: TokenSource;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #logger: Logger;
  readonly #pool: Pool;
  readonly #queues: RouteQueues;
  readonly #closing = new AbortController();
  /** requests on the wire, cut short by close() */
  readonly #live = new Set<RequestSignal>();

  constructor(options: RestOptions) {
    super();
    const base = new URL(options.baseUrl);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError(`OpenAPI baseUrl must be http(s): ${base.origin}`);
    this.#origin = base.origin;
    this.#prefix = base.pathname.replace(/\/+$/, '');
    this.#appId = options.appId;
    this.#tokenSource = options.tokenSource;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#retries = Math.max(0, options.retries ?? 2);
    this.#logger = (options.logger ?? silentLogger).child({ component: 'openapi', appId: options.appId });
    this.#pool = new Pool(this.#origin, {
      connections: options.connections ?? 32,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 60_000,
    });
    this.#queues = new RouteQueues({
      sendRate: options.channelSendRate ?? { messages: 5, perMs: 1000 },
      onRateLimited: (info) => {
        this.#logger.warn({ route: info.route, waitMs: info.waitMs, hits: info.hits }, 'rate limited; route paused');
        this.emit('rate-limited', info);
      },
    });
  }

  /**
   * Send a request and resolve with the parsed JSON body (`undefined` for an empty body). Rejects
   * with {@link OpenAPIError}, or with the token source's error when no token can be had.
   */
  async request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    const bare = path.split('?')[0] ?? path;
    const route = routeKey(method, bare);
    const details = { method, path: bare, route };
    if (!bare.startsWith('/')) throw new TypeError(`OpenAPI path must start with "/": ${bare}`);
    const major = majorKey(method, bare);
    return this.#queues.schedule<T>(route, () => this.#attempt<T>(method, path, route, options), {
      ...(options.signal ? { signal: options.signal } : {}),
      major,
      pace: method === 'POST' && major?.startsWith('/channels/') && bare.endsWith('/messages') ? major : undefined,
      deadline: options.deadline,
      closedError: () => new OpenAPIError('E_OPENAPI_CLOSED', details),
      abortedError: () => new OpenAPIError('E_OPENAPI_ABORTED', details),
      deadlineError: (waitedMs) => new OpenAPIError('E_OPENAPI_DEADLINE', details, { reason: `queued ${Math.round(waitedMs)} ms behind this route's pacing and rate limits` }),
    });
  }

  /** Cancel queued and running requests and destroy the connection pool. */
  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    for (const live of this.#live) live.abort();
    this.#queues.close();
    await this.#pool.destroy().catch(() => {});
  }

  [inspect.custom](): string {
    return `Rest { origin: '${this.#origin}', appId: '${this.#appId}' }`;
  }

  /** One turn of a request on its route: includes the token retry and safe-method retries. */
  async #attempt<T>(method: HttpMethod, path: string, route: string, options: RequestOptions): Promise<AttemptOutcome<T>> {
    const bare = path.split('?')[0] ?? path;
    const details = { method, path: bare, route };
    let refreshed = false;
    let retriedCode = false;
    let retries = 0;
    for (;;) {
      const auth = await this.#tokenSource.authorization();
      await options.beforeSend?.();
      const started = performance.now();
      let res: RawResponse;
      try {
        res = await this.#send(method, path, auth, options, details);
      } catch (err) {
        if (!(err instanceof OpenAPIError)) throw err;
        const error = err;
        this.emit('request-error', { route, method, code: error.code, durationMs: performance.now() - started });
        const retryable = error.code === 'E_OPENAPI_TIMEOUT' || error.code === 'E_OPENAPI_NETWORK';
        if (retryable && SAFE_METHODS.has(method) && retries < this.#retries) {
          retries++;
          this.#logger.warn({ route, code: error.code, attempt: retries }, 'request failed; retrying');
          await this.#backoff(retries, details, options.signal);
          continue;
        }
        throw error;
      }
      const durationMs = performance.now() - started;
      const body = res.body as Record<string, unknown> | undefined;
      const platformCode = isRecord(body) && typeof body.code === 'number' ? body.code : undefined;
      const errCode = isRecord(body) && typeof body.err_code === 'number' ? body.err_code : undefined;
      const traceId = headerValue(res.headers['x-tps-trace-id']) ?? (isRecord(body) && typeof body.trace_id === 'string' ? body.trace_id : undefined);
      this.emit('response', { route, method, status: res.status, durationMs, ...(platformCode !== undefined ? { platformCode } : {}), ...(traceId ? { traceId } : {}) });
      if (this.#logger.isLevelEnabled('debug')) this.#logger.debug({ route, status: res.status, durationMs: Math.round(durationMs), platformCode, traceId }, 'openapi response');

      const failure = () =>
        new OpenAPIError('E_OPENAPI', {
          ...details,
          status: res.status,
          ...(platformCode !== undefined ? { platformCode } : {}),
          ...(errCode !== undefined ? { errCode } : {}),
          ...(traceId ? { traceId } : {}),
          platformMessage: scrubCredentials(platformMessageOf(res), credentialsIn(auth)),
        });

      if (res.status === 429 || isOneOf(RATE_LIMIT_CODES, platformCode, errCode)) {
        const retryAfterMs = retryAfter(res.headers);
        const scope = isOneOf(CHANNEL_LIMIT_CODE, platformCode, errCode) ? 'major' : 'route';
        // HTTP 429 always lifts; a platform code in a 2xx/4xx body can also be a spent quota
        const giveUp = res.status === 429 ? undefined : { after: PLATFORM_LIMIT_ATTEMPTS, error: failure };
        return { done: false, scope, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}), ...(giveUp ? { giveUp } : {}) };
      }
      if ((res.status === 401 || isOneOf(TOKEN_EXPIRED_CODE, platformCode, errCode)) && !refreshed) {
        refreshed = true;
        this.#logger.info({ route, status: res.status, platformCode, traceId }, 'token rejected; refreshing and retrying once');
        await this.#tokenSource.refresh();
        continue;
      }
      const code = [platformCode, errCode].find((c) => c !== undefined && isRetryableCode(c));
      if (code !== undefined && !retriedCode && (res.status < 200 || res.status > 299 || isErrorBody(body)) && this.#mayRepeat(method, bare, options)) {
        retriedCode = true;
        this.#logger.warn({ route, status: res.status, platformCode: code, traceId }, 'platform says retry; retrying once');
        await this.#backoff(1, details, options.signal);
        continue;
      }
      if (res.status >= 500 && SAFE_METHODS.has(method) && retries < this.#retries) {
        retries++;
        this.#logger.warn({ route, status: res.status, traceId, attempt: retries }, 'server error; retrying');
        await this.#backoff(retries, details, options.signal);
        continue;
      }
      if (res.status >= 200 && res.status < 300) {
        if (isErrorBody(body)) {
          if (res.status === 202 && AUDIT_CODES.has(body.code as number)) {
            const accepted: AuditAccepted = { audit_id: auditIdOf(body), audit_code: body.code as number };
            return { done: true, value: accepted as T };
          }
          throw failure();
        }
        const pauseMs = exhaustedFor(res.headers);
        return pauseMs === undefined ? { done: true, value: res.body as T } : { done: true, value: res.body as T, pauseMs };
      }
      throw failure();
    }
  }

  async #send(method: HttpMethod, path: string, auth: string, options: RequestOptions, details: ErrorContext): Promise<RawResponse> {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(options.headers ?? {})) {
      const lower = name.toLowerCase();
      if (lower !== 'authorization') headers[lower] = value;
    }
    headers['authorization'] = auth;
    headers['x-union-appid'] = this.#appId;
    headers['user-agent'] = USER_AGENT;
    headers['accept'] = 'application/json';
    let payload: string | undefined;
    if (options.body !== undefined) {
      payload = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }

    const timeoutMs = this.#timeoutFor(method, details.path, options);
    const requestSignal = new RequestSignal(timeoutMs, options.signal);
    if (this.#closing.signal.aborted) requestSignal.abort();
    this.#live.add(requestSignal);
    try {
      const res = await this.#pool.request({
        method,
        path: this.#prefix + withQuery(path, options.query),
        headers,
        body: payload,
        signal: requestSignal.signal,
      });
      const text = await res.body.text();
      return { status: res.statusCode, headers: res.headers, body: parseBody(text), text };
    } catch (err) {
      if (this.#closing.signal.aborted) throw new OpenAPIError('E_OPENAPI_CLOSED', details);
      if (requestSignal.timedOut) throw new OpenAPIError('E_OPENAPI_TIMEOUT', details, { reason: `no complete response within ${timeoutMs} ms` });
      if (options.signal?.aborted) throw new OpenAPIError('E_OPENAPI_ABORTED', details);
      const reason = err instanceof Error ? ((err as { code?: string }).code ?? err.message) : String(err);
      throw new OpenAPIError('E_OPENAPI_NETWORK', details, { reason: scrubCredentials(reason, credentialsIn(auth)), cause: err });
    } finally {
      this.#live.delete(requestSignal);
      requestSignal.dispose();
    }
  }

  #timeoutFor(method: string, path: string, options: RequestOptions): number {
    const wanted = options.timeoutMs ?? this.#timeoutMs;
    return isSend(method, path) ? Math.max(wanted, MIN_SEND_TIMEOUT_MS) : wanted;
  }

  /** Whether a request that failed with a "retry" code may go again without risking a duplicate send. */
  #mayRepeat(method: string, path: string, options: RequestOptions): boolean {
    if (!isSend(method, path)) return true;
    const body = options.body;
    return isRecord(body) && body.msg_seq !== undefined && (typeof body.msg_id === 'string' || typeof body.event_id === 'string');
  }

  /** Jittered exponential wait before a retry; cut short (and rejected) by close() or the caller's signal. */
  async #backoff(attempt: number, details: ErrorContext, callerSignal: AbortSignal | undefined): Promise<void> {
    const wake = callerSignal ? AbortSignal.any([this.#closing.signal, callerSignal]) : this.#closing.signal;
    await sleepUnlessAborted(backoffDelay(attempt, RETRY_BACKOFF), wake);
    if (this.#closing.signal.aborted) throw new OpenAPIError('E_OPENAPI_CLOSED', details);
    if (callerSignal?.aborted) throw new OpenAPIError('E_OPENAPI_ABORTED', details);
  }
}


/** A message send or media upload: a repeat could reach users twice. */
function isSend(method: string, path: string): boolean {
  return method === 'POST' && /\/(messages|files)$/.test(path);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isOneOf(codes: ReadonlySet<number> | number, ...values: (number | undefined)[]): boolean {
  return values.some((v) => v !== undefined && (typeof codes === 'number' ? v === codes : codes.has(v)));
}

/** A 2xx body that is really an error report (docs/protocol.md §15.1: 201/202 carry one). */
function isErrorBody(body: unknown): body is Record<string, unknown> & { code: number } {
  return isRecord(body) && typeof body.code === 'number' && body.code !== 0 && typeof body.message === 'string';
}

function auditIdOf(body: Record<string, unknown>): string | undefined {
  const data = body.data;
  if (!isRecord(data)) return undefined;
  const audit = data.message_audit;
  if (!isRecord(audit)) return undefined;
  return typeof audit.audit_id === 'string' ? audit.audit_id : undefined;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v === undefined || v === '' ? undefined : v;
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function platformMessageOf(res: RawResponse): string {
  if (isRecord(res.body) && typeof res.body.message === 'string') return res.body.message;
  return res.text.slice(0, 300);
}

/** The Authorization value and its secret part(s), for scrubbing text that may echo them. */
function credentialsIn(auth: string): string[] {
  const space = auth.indexOf(' ');
  const credential = auth.slice(space + 1);
  const out = [auth, credential];
  // legacy "Bot appid.token": the token alone is secret too
  if (auth.startsWith('Bot ')) out.push(credential.slice(credential.indexOf('.') + 1));
  return out;
}

/** Retry hint of a rate-limited response, in ms: Retry-After (seconds or a date) or X-RateLimit-Reset-After. */
export function retryAfter(headers: Record<string, string | string[] | undefined>): number | undefined {
  const retry = headerValue(headers['retry-after']);
  if (retry !== undefined) {
    const seconds = Number(retry);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
    const date = Date.parse(retry);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  return resetAfter(headers);
}

/** When a success says the route has no requests left, how long until it has. */
function exhaustedFor(headers: Record<string, string | string[] | undefined>): number | undefined {
  if (headerValue(headers['x-ratelimit-remaining']) !== '0') return undefined;
  return resetAfter(headers);
}

function resetAfter(headers: Record<string, string | string[] | undefined>): number | undefined {
  const after = headerValue(headers['x-ratelimit-reset-after']);
  if (after !== undefined) {
    const seconds = Number(after);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
  }
  const reset = headerValue(headers['x-ratelimit-reset']);
  if (reset !== undefined) {
    const epochSeconds = Number(reset);
    if (Number.isFinite(epochSeconds) && epochSeconds > 0) return Math.max(0, Math.ceil(epochSeconds * 1000 - Date.now()));
  }
  return undefined;
}

function withQuery(path: string, query: Record<string, QueryValue> | undefined): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.append(key, String(value));
  }
  const qs = params.toString();
  if (qs === '') return path;
  return `${path}${path.includes('?') ? '&' : '?'}${qs}`;
}
