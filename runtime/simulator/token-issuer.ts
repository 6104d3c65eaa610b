import { randomBytes } from 'node:crypto';
import type { SimulatorBot } from './simulator-bot.ts';
import { CODES, PlatformError } from './platform-error.ts';

export interface IssuedToken {
  appId: string;
  token: string;
  /** epoch ms (wall clock, so it survives a restart through exported state) */
  expiresAt: number;
}

/** Last 60 s of a token's life: only then does the endpoint mint a new one (§2.2). */
const RENEW_WINDOW_MS = 60_000;

/**
 * The access-token endpoint's memory and the auth check for every OpenAPI call and identify.
 * Tokens expire for real; a superseded token stays valid until its own expiry (overlap window).
 */
export class TokenIssuer {
  readonly #bots: Map<string, SimulatorBot>;
  readonly #lifetimeMs: number;
  readonly #byToken = new Map<string, IssuedToken>();
  readonly #latest = new Map<string, IssuedToken>();

  constructor(bots: SimulatorBot[], lifetimeSec: number, restored: IssuedToken[] = []) {
    this.#bots = new Map(bots.map((b) => [b.appId, b]));
    this.#lifetimeMs = lifetimeSec * 1000;
    for (const t of restored) {
      if (!this.#bots.has(t.appId)) continue;
      this.#byToken.set(t.token, t);
      const latest = this.#latest.get(t.appId);
      if (!latest || latest.expiresAt < t.expiresAt) this.#latest.set(t.appId, t);
    }
  }

  /** `POST /app/getAppAccessToken` */
  issue(appId: unknown, clientSecret: unknown, now = Date.now()): { access_token: string; expires_in: string } {
    const bot = typeof appId === 'string' ? this.#bots.get(appId) : undefined;
    if (!bot || typeof clientSecret !== 'string' || clientSecret !== bot.secret) {
      throw new PlatformError(200, CODES.wrongCredentials, 'invalid appid or secret');
    }
    this.#prune(now);
    let current = this.#latest.get(bot.appId);
    if (!current || current.expiresAt - now <= RENEW_WINDOW_MS) {
      current = { appId: bot.appId, token: randomBytes(24).toString('base64url'), expiresAt: now + this.#lifetimeMs };
      this.#latest.set(bot.appId, current);
      this.#byToken.set(current.token, current);
    }
    return { access_token: current.token, expires_in: String(Math.max(0, Math.ceil((current.expiresAt - now) / 1000))) };
  }

  /**
   * Resolves an HTTP `Authorization` header or a gateway identify/resume `token` to its bot.
   * Accepts `QQBot {access_token}` and legacy `Bot {appId}.{token}`; `bare` also allows the
   * unprefixed forms that botgo sends in gateway frames (§2.1, §6.4).
   */
  authenticate(value: unknown, options: { bare?: boolean } = {}, now = Date.now()): SimulatorBot {
    if (typeof value !== 'string' || value.trim() === '') throw new PlatformError(401, CODES.tokenMissing, 'token missing');
    const match = /^(QQBot|Bot)\s+(.+)$/.exec(value.trim());
    let scheme = match?.[1];
    let credential = match?.[2] ?? '';
    if (!match) {
      if (!options.bare || /\s/.test(value.trim())) throw new PlatformError(401, CODES.tokenMissing, 'authorization scheme must be QQBot or Bot');
      credential = value.trim();
      scheme = this.#byToken.has(credential) ? 'QQBot' : 'Bot';
    }
    if (scheme === 'QQBot') {
      const issued = this.#byToken.get(credential);
      if (!issued || issued.expiresAt <= now) throw new PlatformError(401, CODES.tokenExpired, 'token expired or not issued');
      const bot = this.#bots.get(issued.appId);
      if (!bot) throw new PlatformError(401, CODES.tokenExpired, 'token expired or not issued');
      return bot;
    }
    const dot = credential.indexOf('.');
    const bot = dot > 0 ? this.#bots.get(credential.slice(0, dot)) : undefined;
    if (!bot || !bot.token || credential.slice(dot + 1) !== bot.token) throw new PlatformError(401, CODES.tokenExpired, 'token check not passed');
    return bot;
  }

  snapshot(): IssuedToken[] {
    this.#prune(Date.now());
    return [...this.#byToken.values()].map((t) => ({ ...t }));
  }

  #prune(now: number): void {
    for (const [token, t] of this.#byToken) if (t.expiresAt <= now) this.#byToken.delete(token);
  }
}
