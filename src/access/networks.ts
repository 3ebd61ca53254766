import { isIPv4 } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The network of `prefix` bits an address is in, as a key: `203.0.113.0/24`, `2001:db8:1::/48`; the address itself for a
 * full-length prefix. IPv4-mapped IPv6 addresses count as IPv4. An address that is not one is its own key.
 */
export function networkOf(address: string, prefix: { readonly ipv4: number; readonly ipv6: number }): string {
  if (!ipaddr.isValid(address)) return address;
  let parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) parsed = (parsed as ipaddr.IPv6).toIPv4Address();
  const bits = parsed.kind() === 'ipv4' ? prefix.ipv4 : prefix.ipv6;
  const length = parsed.kind() === 'ipv4' ? 32 : 128;
  if (bits >= length) return parsed.toString();
  const bytes = parsed.toByteArray();
  for (let bit = bits; bit < length; bit++) {
    const index = bit >> 3;
    bytes[index] = (bytes[index] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${bits}`;
}

export function isIpv4Address(address: string): boolean {
  if (isIPv4(address)) return true;
  return ipaddr.isValid(address) && ipaddr.parse(address).kind() === 'ipv6' && (ipaddr.parse(address) as ipaddr.IPv6).isIPv4MappedAddress();
}

/** The network whose clients share the homeserver's queue fairly: its /24 (IPv4) or /48 (IPv6). */
export const queueNetworkOf = (address: string): string => networkOf(address, { ipv4: 24, ipv6: 48 });
