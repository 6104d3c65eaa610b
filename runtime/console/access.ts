import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { Secret } from '../config/secret.ts';

/** True for addresses only this machine can reach. `localhost` counts: it resolves to loopback. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.toLowerCase().startsWith('::ffff:')) return isLoopbackHost(h.slice(7));
  return false;
}

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
      const host = hostName(req.headers.host ?? '');
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

/** `host[:port]` or `[v6]:port` → host; undefined when the header is malformed. */
function hostName(header: string): string | undefined {
  if (header.startsWith('[')) {
    const end = header.indexOf(']');
    return end > 0 ? header.slice(0, end + 1) : undefined;
  }
  const colon = header.lastIndexOf(':');
  const name = colon >= 0 ? header.slice(0, colon) : header;
  return name === '' ? undefined : name;
}
