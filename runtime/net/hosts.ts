import { isIP } from 'node:net';

/** True for addresses only this machine can reach. `localhost` counts: it resolves to loopback. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.toLowerCase().startsWith('::ffff:')) return isLoopbackHost(h.slice(7));
  return false;
}

/** True for the addresses that mean "every interface". */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

/** `host[:port]` or `[v6]:port` (a Host header) → host; undefined when the header is malformed. */
export function hostOfHeader(header: string): string | undefined {
  if (header.startsWith('[')) {
    const end = header.indexOf(']');
    return end > 0 ? header.slice(0, end + 1) : undefined;
  }
  const colon = header.lastIndexOf(':');
  const name = colon >= 0 ? header.slice(0, colon) : header;
  return name === '' ? undefined : name;
}
