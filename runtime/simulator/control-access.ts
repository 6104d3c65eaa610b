import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { hostOfHeader, isLoopbackHost } from '../net/hosts.ts';

/**
 * Who may drive `/_simulator/*`. The control API has no token and hands tokens out
 * (`GET /_simulator/state`), so it keeps the console's rules for a console without a token:
 * - the Host header must name this machine: a loopback name, an IP address, or a name the operator
 *   allowed. A page that rebinds its own DNS name to 127.0.0.1 sends its own name, and is refused;
 * - a request with a body must say `application/json`, which a page on another origin can only
 *   send after a CORS preflight, and this server grants none.
 */
export class ControlAccess {
  readonly #names: ReadonlySet<string>;

  /** `names`: host names allowed besides loopback names and IP addresses (e.g. a container's service name) */
  constructor(names: Iterable<string>) {
    this.#names = new Set([...names].map((name) => name.toLowerCase()));
  }

  /** Why the request may not reach the control API, or undefined when it may. */
  hostRefusal(req: IncomingMessage): string | undefined {
    const host = hostOfHeader(req.headers.host ?? '');
    if (host !== undefined && (isLoopbackHost(host) || isIP(host.replace(/^\[|\]$/g, '')) !== 0 || this.#names.has(host.toLowerCase()))) return undefined;
    return 'the control API answers only requests addressed to 127.0.0.1, localhost, an IP address of this machine, or a host allowed with --allow-host';
  }

  /** Why the body will not be read, or undefined. */
  contentTypeRefusal(req: IncomingMessage): string | undefined {
    if (req.method !== 'POST' && req.method !== 'PUT' && req.method !== 'PATCH') return undefined;
    return /^application\/json\b/i.test(req.headers['content-type'] ?? '') ? undefined : 'send the body as application/json';
  }
}
