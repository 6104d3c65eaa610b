import { inspect } from 'node:util';
import { Agent, request } from 'undici';
import type { Secret } from '../config/secret.ts';
import { silentLogger, type Logger } from '../logging/logger.ts';
import { TokenError, scrubCredentials } from './errors.ts';
import { RequestSignal } from './request-signal.ts';
import { backoffDelay, type BackoffPolicy } from '../time/backoff.ts';
import { sleepUnlessAborted } from '../time/sleep.ts';

/**
 * Where the OpenAPI client (and the gateway, for identify/resume) gets its Authorization value.
 * `authorization()` is the full header value; the gateway sends the very same string as its token.
 */
export interface TokenSource {
  /** `QQBot {access_token}` or `Bot {appId}.{token}`; cached, cheap to call per request */
  authorization(): Promise<string>;
  /** Fetch a new value now (after HTTP 401, platform code 11244 or gateway close 4004). */
  refresh(): Promise<string>;
  close(): void;
}

export const DEFAULT_TOKEN_ENDPOINT = 'https://bots.qq.com/app/getAppAccessToken';

/** The deprecated fixed-token form. Nothing to refresh: `refresh()` yields the same value. */
export class LegacyTokenSource implements TokenSource {
  readonly #value: string;

  constructor(appId: string, token: Secret) {
    this.#value = `Bot ${appId}.${token.reveal()}`;
  }

  authorization(): Promise<string> {
    return Promise.resolve(this.#value);
  }

  refresh(): Promise<string> {
    return Promise.resolve(this.#value);
  }

  close(): void {}

  [inspect.custom](): string {
    return 'LegacyTokenSource {}';
  }
}

export interface AccessTokenSourceOptions {
  appId: string;
  secret: Secret;
  /** @defaultValue {@link DEFAULT_TOKEN_ENDPOINT} */
  tokenEndpoint?: string;
  /** per token request; @defaultValue 10000 */
  timeoutMs?: number;
  logger?: Logger;
  /** attempts per fetch for retryable failures before callers see the error; @defaultValue 3 */
  attempts?: number;
  /** processes of one bot (gateway and workers) fetch one at a time and share the result */
  share?: TokenShare;
}

export interface CachedToken {
  value: string;
  /** epoch ms after which the platform no longer accepts it */
  expiresAt: number;
}

/**
 * One token fetch at a time across the processes of a bot: the platform mints a new token in the last
 * 60 s of the old one's life, so processes renewing on their own would each mint one. `fetch` runs `work`
 * under a cross-process lock and hands it the token another process fetched last (if any) to adopt.
 */
export interface TokenShare {
  fetch(work: (latest: CachedToken | undefined) => Promise<CachedToken>): Promise<CachedToken>;
}

/** A token another process fetched is taken only with this much life left (else a fresh one is asked for). */
const ADOPT_MIN_MS = 10_000;

/** Do not hand out a token this close to its expiry; a request needs time to arrive. */
const EXPIRY_SKEW_MS = 1000;
const RETRY_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/**
 * The access-token flow (docs/protocol.md §2.2, §2.3): POST {appId, clientSecret}, cache the token,
 * renew it inside the platform's 60-s overlap window, one fetch in flight at a time.
 */
export class AccessTokenSource implements TokenSource {
  readonly #appId: string;
  readonly #secret: Secret;
  readonly #endpoint: URL;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #logger: Logger;
  readonly #share: TokenShare | undefined;
  readonly #agent = new Agent({ keepAliveTimeout: 4000 });
  readonly #closing = new AbortController();
  #current: CachedToken | undefined;
  #inflight: Promise<string> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #backgroundFailures = 0;
  #closed = false;

  constructor(options: AccessTokenSourceOptions) {
    this.#appId = options.appId;
    this.#secret = options.secret;
    this.#endpoint = new URL(options.tokenEndpoint ?? DEFAULT_TOKEN_ENDPOINT);
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#attempts = Math.max(1, options.attempts ?? 3);
    this.#logger = (options.logger ?? silentLogger).child({ component: 'token-source', appId: options.appId });
    this.#share = options.share;
  }

  authorization(): Promise<string> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const current = this.#current;
    // While a renewal is in flight the old token stays valid (overlap window), so keep serving it.
    if (current && Date.now() < current.expiresAt - EXPIRY_SKEW_MS) return Promise.resolve(`QQBot ${current.value}`);
    return this.#fetch();
  }

  refresh(): Promise<string> {
    if (this.#closed) return Promise.reject(this.#closedError());
    // Concurrent refreshes (a burst of 401s) join the fetch already in flight.
    return this.#fetch();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#current = undefined;
    this.#closing.abort();
    void this.#agent.destroy().catch(() => {});
  }

  [inspect.custom](): string {
    return `AccessTokenSource { appId: '${this.#appId}', endpoint: '${this.#endpoint.origin}${this.#endpoint.pathname}' }`;
  }

  #fetch(): Promise<string> {
    if (this.#inflight) return this.#inflight;
    const inflight = this.#fetchWithRetries().finally(() => {
      if (this.#inflight === inflight) this.#inflight = undefined;
    });
    this.#inflight = inflight;
    return inflight;
  }

  async #fetchWithRetries(): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      try {
        const token = this.#share
          ? await this.#share.fetch(async (latest) => (this.#adoptable(latest) ? latest : this.#requestToken()))
          : await this.#requestToken();
        this.#current = token;
        this.#backgroundFailures = 0;
        this.#scheduleRenewal(token);
        return `QQBot ${token.value}`;
      } catch (err) {
        if (this.#closed) throw this.#closedError();
        const retryable = err instanceof TokenError && err.retryable;
        if (!retryable || attempt >= this.#attempts) throw err;
        const delay = backoffDelay(attempt, RETRY_BACKOFF);
        this.#logger.warn({ err, attempt, retryInMs: delay }, 'access token request failed; retrying');
        await sleepUnlessAborted(delay, this.#closing.signal);
        if (this.#closed) throw this.#closedError();
      }
    }
  }

  /** Another process's token, unless it is the one this process holds (refused, or due for renewal) or nearly expired. */
  #adoptable(latest: CachedToken | undefined): latest is CachedToken {
    return latest !== undefined && latest.value !== this.#current?.value && latest.expiresAt - Date.now() > ADOPT_MIN_MS;
  }

  async #requestToken(): Promise<CachedToken> {
    const secret = this.#secret.reveal();
    const endpoint = `${this.#endpoint.origin}${this.#endpoint.pathname}`;
    const fail = (message: string, extra: { status?: number; platformCode?: number; retryable: boolean }, cause?: unknown): TokenError =>
      new TokenError(scrubCredentials(message, [secret]), { appId: this.#appId, endpoint, ...extra }, cause === undefined ? undefined : { cause });

    // one token request at a time (single flight): one listener on the close signal is no pile-up
    const requestSignal = new RequestSignal(this.#timeoutMs, this.#closing.signal);
    const started = Date.now();
    let status: number;
    let text: string;
    try {
      const res = await request(this.#endpoint, {
        dispatcher: this.#agent,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ appId: this.#appId, clientSecret: secret }),
        signal: requestSignal.signal,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (requestSignal.timedOut) throw fail(`access token request to ${endpoint} timed out after ${this.#timeoutMs} ms`, { retryable: true });
      const reason = err instanceof Error ? err.message : String(err);
      throw fail(`access token request to ${endpoint} failed: ${reason}`, { retryable: true }, err instanceof Error ? sanitizeCause(err, secret) : undefined);
    } finally {
      requestSignal.dispose();
    }

    let body: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = text ? JSON.parse(text) : undefined;
      if (parsed && typeof parsed === 'object') body = parsed as Record<string, unknown>;
    } catch {
      // not JSON: reported below with the status
    }
    const platformCode = typeof body?.code === 'number' ? body.code : undefined;
    const platformMessage = typeof body?.message === 'string' ? body.message : undefined;
    if (status < 200 || status > 299 || (platformCode !== undefined && platformCode !== 0)) {
      // 5xx and the platform's "too many requests" (100001) may pass; bad credentials will not.
      const retryable = status >= 500 || status === 429 || platformCode === 100001;
      const detail = platformMessage ?? (body ? '' : text.slice(0, 200));
      throw fail(
        `access token request to ${endpoint} refused: HTTP ${status}${platformCode !== undefined ? `, code ${platformCode}` : ''}${detail ? `: ${detail}` : ''}`,
        { status, retryable, ...(platformCode !== undefined ? { platformCode } : {}) },
      );
    }
    const value = body?.access_token;
    const expiresIn = Number(body?.expires_in);
    if (typeof value !== 'string' || value === '' || !Number.isFinite(expiresIn) || expiresIn <= 0) {
      throw fail(`access token response from ${endpoint} lacks access_token or a positive expires_in`, { status, retryable: true });
    }
    this.#logger.debug({ expiresIn }, 'access token obtained');
    // Count the lifetime from when we asked: the response may have taken a while.
    return { value, expiresAt: started + expiresIn * 1000 };
  }

  #scheduleRenewal(token: CachedToken): void {
    clearTimeout(this.#timer);
    const delay = renewalDelay(token.expiresAt - Date.now());
    this.#timer = setTimeout(() => this.#renewInBackground(), delay);
    this.#timer.unref();
  }

  #renewInBackground(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    this.#fetch().catch((err: unknown) => {
      if (this.#closed) return;
      this.#backgroundFailures++;
      const delay = backoffDelay(this.#backgroundFailures, RETRY_BACKOFF);
      this.#logger.error({ err, failures: this.#backgroundFailures, retryInMs: delay }, 'access token renewal failed');
      // A newer fetch (a caller's refresh) may have scheduled its own renewal meanwhile.
      if (this.#timer) return;
      this.#timer = setTimeout(() => this.#renewInBackground(), delay);
      this.#timer.unref();
    });
  }

  #closedError(): TokenError {
    return new TokenError('token source is closed', { appId: this.#appId, endpoint: `${this.#endpoint.origin}${this.#endpoint.pathname}`, retryable: false });
  }
}

/**
 * When to renew a token that has `remainingMs` left. The platform mints a new token only in the
 * last 60 s and keeps the old one valid meanwhile, so aim 30–55 s before expiry (jittered, so many
 * bots do not stampede). Short lifetimes (tests, a token fetched late) renew after 50–70 % of it.
 */
export function renewalDelay(remainingMs: number, random: number = Math.random()): number {
  const margin = Math.min(30_000 + random * 25_000, remainingMs * (0.3 + random * 0.2));
  return Math.max(100, Math.round(remainingMs - margin));
}


/** undici errors do not carry request bodies, but make sure the secret cannot ride on a cause. */
function sanitizeCause(err: Error, secret: string): Error {
  if (!err.message.includes(secret) && !(err.stack ?? '').includes(secret)) return err;
  return new Error(scrubCredentials(err.message, [secret]));
}
