/**
 * Which addresses `ctx.fetch` may connect to. An allow-listed name can still point at the host's
 * own network (a plugin author's DNS, or a rebinding attack), so the check runs on the address the
 * socket actually connects to: literals before connecting, names inside the connection's own lookup.
 */
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { QQBotError } from '../../errors.ts';
import { CapabilityError } from './capability-error.ts';

// IPv4 rules also match IPv4-mapped IPv6 addresses (::ffff:127.0.0.1), so those need no entry.
const RANGES: [network: string, prefix: number, type: 'ipv4' | 'ipv6', category: string][] = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'shared'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.0.0.0', 24, 'ipv4', 'reserved'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['198.18.0.0', 15, 'ipv4', 'reserved'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['100::', 64, 'ipv6', 'reserved'],
  ['fc00::', 7, 'ipv6', 'private'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fec0::', 10, 'ipv6', 'private'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const LISTS = RANGES.map(([network, prefix, type, category]) => {
  const list = new BlockList();
  list.addSubnet(network, prefix, type);
  return { list, category };
});

/** The special-purpose class of an IP address (`loopback`, `private`, `link-local`, …), or undefined when it is public. */
export function addressCategory(address: string): string | undefined {
  const bare = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) return undefined;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  return LISTS.find(({ list }) => list.check(bare, type))?.category;
}

function refusal(host: string, category: string, resolved: boolean): string {
  return `fetch: ${host} ${resolved ? 'resolves to' : 'is'} a ${category} address; ctx.fetch reaches public addresses only`;
}

/** A name's refusal inside the connection's lookup; `networkError` in fetch.ts turns it into E_FETCH_ADDRESS. */
export class NonPublicAddressError extends QQBotError {
  constructor(host: string, category: string) {
    super('E_FETCH_ADDRESS', refusal(host, category, true), { host, category });
  }
}

/** Throws E_FETCH_ADDRESS when `hostname` is an IP literal outside the public address space. */
export function checkLiteralAddress(hostname: string): void {
  const category = addressCategory(hostname);
  if (category !== undefined) throw new CapabilityError('E_FETCH_ADDRESS', refusal(hostname.replace(/^\[|\]$/g, ''), category, false));
}

/**
 * A `lookup` for net/tls connect that fails when any address a name resolves to is not public:
 * all of them, since the connection may try each (happy eyeballs).
 */
export function publicOnlyLookup(base: LookupFunction = dnsLookup as LookupFunction): LookupFunction {
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    base(hostname, { ...options, all: true }, (error: NodeJS.ErrnoException | null, result: string | LookupAddress[], family?: number) => {
      if (error) return callback(error);
      const addresses = Array.isArray(result) ? result : [{ address: result, family: family ?? isIP(result) }];
      for (const { address } of addresses) {
        const category = addressCategory(address);
        if (category !== undefined) return callback(new NonPublicAddressError(hostname, category));
      }
      if (options?.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  }) as LookupFunction;
}
