/**
 * `ctx.fetch`: HTTP(S) to hosts on the plugin's allow-list only (manifest `fetchHosts`, narrowed
 * by the operator's list when there is one), and only to public addresses unless the operator
 * allows private ones (address-policy.ts). Same-origin redirects are followed, others are handed
 * back as the 3xx response. Body size and time are capped; no credentials are ever added.
 */
import { isIP, type LookupFunction } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import { checkLiteralAddress, publicOnlyLookup } from './address-policy.ts';
import { CapabilityError } from './capability-error.ts';

export interface FetchPolicy {
  /** manifest `fetchHosts` */
  hosts: readonly string[];
  /** operator allow-list; when set, a host must be on both */
  operatorHosts?: readonly string[];
  maxResponseBytes: number;
  timeoutMs: number;
  maxRedirects: number;
  /** name resolution for connections (default: the system resolver); tests map names to local servers */
  lookup?: LookupFunction;
  /**
   * Operator escape hatch: let allow-listed hosts be, or resolve to, loopback, private, link-local
   * and other non-public addresses. Off by default (SSRF, DNS rebinding); for local setups and tests.
   */
  allowPrivateAddresses?: boolean;
}

export interface FetchResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);
// hop-by-hop and routing headers stay under the host's control
const DROPPED_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'upgrade', 'te', 'trailer', 'expect', 'proxy-authorization', 'proxy-connection']);

/** `host` matches any port of that hostname; `host:port` only that port. IPv6: `::1` or `[::1]:8080`. */
export function hostAllowed(url: URL, entries: readonly string[]): boolean {
  const hostname = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return entries.some((entry) => {
    const e = entry.toLowerCase();
    if (isIP(e) === 6) return canonicalIPv6(e) === hostname;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(e);
    if (bracketed) return canonicalIPv6(bracketed[1]!) === hostname && (bracketed[2] === undefined || bracketed[2] === port);
    const colon = e.lastIndexOf(':');
    if (colon === -1) return e === hostname;
    return e.slice(0, colon) === hostname && e.slice(colon + 1) === port;
  });
}

// URLs carry IPv6 hosts in canonical form (`::ffff:127.0.0.1` → `::ffff:7f00:1`); entries must too.
function canonicalIPv6(address: string): string | undefined {
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

export async function pluginFetch(policy: FetchPolicy, payload: unknown): Promise<FetchResult> {
  const p = (typeof payload === 'object' && payload !== null ? payload : {}) as { url?: unknown; init?: unknown };
  const init = (typeof p.init === 'object' && p.init !== null ? p.init : {}) as { method?: unknown; headers?: unknown; body?: unknown };
  let url = parseUrl(p.url);
  let method = typeof init.method === 'string' ? init.method.toUpperCase() : 'GET';
  if (!METHODS.has(method)) throw new CapabilityError('E_INVALID_ARGUMENT', `fetch: method ${String(init.method).slice(0, 16)} is not allowed`);
  let body = init.body === undefined || init.body === null ? undefined : init.body;
  if (body !== undefined && typeof body !== 'string') throw new CapabilityError('E_INVALID_ARGUMENT', 'fetch: init.body must be a string');
  const headers = cleanHeaders(init.headers);
  checkHost(policy, url);
  // names are checked inside the connection's own lookup; literals never reach a lookup
  if (!policy.allowPrivateAddresses) checkLiteralAddress(url.hostname);

  // One agent per call: the guarded lookup belongs to these connections only, and nothing outlives the call.
  const lookup = policy.allowPrivateAddresses ? policy.lookup : publicOnlyLookup(policy.lookup);
  const dispatcher = new Agent(lookup ? { connect: { lookup } } : {});
  const signal = AbortSignal.timeout(policy.timeoutMs);
  try {
    for (let redirects = 0; ; redirects++) {
      let response: Dispatcher.ResponseData;
      try {
        response = await request(url, { method: method as Dispatcher.HttpMethod, headers, body, signal, dispatcher });
      } catch (error) {
        throw networkError(error, url, policy, signal);
      }
      // a body we abandon errors after we stopped listening; that must not become an uncaught exception
      response.body.on('error', () => {});
      const next = sameOriginRedirect(response, url, redirects < policy.maxRedirects);
      if (next) {
        await response.body.dump().catch(() => undefined);
        if (response.statusCode === 303 || ((response.statusCode === 301 || response.statusCode === 302) && method === 'POST')) {
          method = 'GET';
          body = undefined;
        }
        url = next;
        continue;
      }
      const text = await readCapped(response, policy, url, signal);
      return { status: response.statusCode, headers: flattenHeaders(response.headers), body: text };
    }
  } finally {
    await dispatcher.destroy().catch(() => undefined);
  }
}

/** The redirect target when it may be followed (same origin, under the cap), else undefined. */
function sameOriginRedirect(response: Dispatcher.ResponseData, url: URL, mayFollow: boolean): URL | undefined {
  const location = response.headers.location;
  if (!mayFollow || response.statusCode < 300 || response.statusCode >= 400 || typeof location !== 'string') return undefined;
  let next: URL;
  try {
    next = new URL(location, url);
  } catch {
    return undefined; // handed back as the 3xx it is
  }
  return next.origin === url.origin ? next : undefined;
}

function parseUrl(value: unknown): URL {
  if (typeof value !== 'string' || value.length > 4096) throw new CapabilityError('E_INVALID_ARGUMENT', 'fetch: url must be a string');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CapabilityError('E_INVALID_ARGUMENT', 'fetch: url is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CapabilityError('E_INVALID_ARGUMENT', `fetch: only http and https URLs, not ${url.protocol}`);
  if (url.username || url.password) throw new CapabilityError('E_INVALID_ARGUMENT', 'fetch: URLs with credentials are not allowed');
  return url;
}

function checkHost(policy: FetchPolicy, url: URL): void {
  if (!hostAllowed(url, policy.hosts) || (policy.operatorHosts !== undefined && !hostAllowed(url, policy.operatorHosts))) {
    throw new CapabilityError('E_FETCH_HOST', `fetch: host "${url.host}" is not on this plugin's allow-list`);
  }
}

function cleanHeaders(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (value === undefined || value === null) return out;
  if (typeof value !== 'object' || Array.isArray(value)) throw new CapabilityError('E_INVALID_ARGUMENT', 'fetch: init.headers must be an object of strings');
  for (const [name, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw new CapabilityError('E_INVALID_ARGUMENT', `fetch: header ${name.slice(0, 64)} must be a string`);
    if (!DROPPED_HEADERS.has(name.toLowerCase())) out[name] = v;
  }
  return out;
}

async function readCapped(response: Dispatcher.ResponseData, policy: FetchPolicy, url: URL, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size > policy.maxResponseBytes) {
        throw new CapabilityError('E_FETCH_TOO_LARGE', `fetch: response from ${url.host} exceeds ${policy.maxResponseBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (error) {
    if (error instanceof CapabilityError) throw error;
    throw networkError(error, url, policy, signal);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function networkError(error: unknown, url: URL, policy: FetchPolicy, signal?: AbortSignal): CapabilityError {
  const e = error as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  // the refusal from publicOnlyLookup, as the socket reported it; its message is ours
  const refusal = e.code === 'E_FETCH_ADDRESS' ? e : e.cause?.code === 'E_FETCH_ADDRESS' ? e.cause : undefined;
  if (refusal) return new CapabilityError('E_FETCH_ADDRESS', String(refusal.message));
  if (signal?.aborted || e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
    return new CapabilityError('E_FETCH_TIMEOUT', `fetch: ${url.host} did not answer within ${policy.timeoutMs} ms`);
  }
  const code = typeof e.code === 'string' && /^[A-Z_]{2,40}$/.test(e.code) ? ` (${e.code})` : '';
  return new CapabilityError('E_FETCH_FAILED', `fetch: request to ${url.host} failed${code}`);
}

function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}
