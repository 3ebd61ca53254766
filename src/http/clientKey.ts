import type { IncomingMessage } from 'node:http';
import { isIPv4 } from 'node:net';
import ipaddr from 'ipaddr.js';
import proxyaddr from 'proxy-addr';

/**
 * The key a client's rate limit and refusal counts are kept under: its IPv4 address, or its IPv6
 * network of `ipv6Prefix` bits (one subscriber usually holds a whole /64, so a per-address key would
 * give them an unlimited supply of allowances). IPv4-mapped IPv6 addresses count as IPv4.
 */
export function clientKeyOf(address: string, ipv6Prefix: number): string {
  if (isIPv4(address) || !ipaddr.isValid(address)) return address;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') return parsed.toString();
  const v6 = parsed as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  if (ipv6Prefix >= 128) return v6.toString();
  const bytes = v6.toByteArray();
  for (let bit = ipv6Prefix; bit < 128; bit++) {
    const index = bit >> 3;
    bytes[index] = (bytes[index] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${ipv6Prefix}`;
}

/** The client's key for a request: X-Forwarded-For believed only from `trustedProxies` (proxy-addr syntax). */
export function createClientKey(trustedProxies: string, ipv6Prefix: number): (req: IncomingMessage) => string {
  const trust = proxyaddr.compile(trustedProxies.split(',').map((entry) => entry.trim()));
  return (req) => clientKeyOf(proxyaddr(req, trust), ipv6Prefix);
}
