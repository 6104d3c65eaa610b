import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Secret } from '../config/secret.ts';
import { hostOfHeader, isLoopbackHost } from '../net/hosts.ts';

export type AccessDecision = 'ok' | 'unauthorized' | 'bad-host';

/**
 * Decides whether a request may reach the console. With a token every request must carry it:
 * `Authorization: Bearer …`, or `?token=…` on GETs (the page link and EventSource cannot set
 * headers). Without a token (loopback only) the Host header must be a loopback name too, so a web
 * page on another origin cannot reach the console by rebinding its DNS name to 127.0.0.1.
 */
export class ConsoleAccess {
  readonly #digest: Buffer | undefined;

  constructor(token: Secret | undefined) {
    // Hashing both sides gives equal-length buffers, so the comparison time does not reveal the length.
    this.#digest = token ? sha256(token.reveal()) : undefined;
  }

  get required(): boolean {
    return this.#digest !== undefined;
  }

  check(req: IncomingMessage, query: URLSearchParams): AccessDecision {
    if (!this.#digest) {
      const host = hostOfHeader(req.headers.host ?? '');
      return host !== undefined && isLoopbackHost(host) ? 'ok' : 'bad-host';
    }
    const auth = req.headers.authorization;
    let presented: string | undefined;
    if (auth !== undefined && /^bearer /i.test(auth)) presented = auth.slice(7).trim();
    else if (req.method === 'GET' || req.method === 'HEAD') presented = query.get('token') ?? undefined;
    if (presented === undefined) return 'unauthorized';
    return timingSafeEqual(sha256(presented), this.#digest) ? 'ok' : 'unauthorized';
  }
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
