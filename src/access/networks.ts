import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The one parser of client addresses, for the client itself, its rate-limit key and its networks: an IPv4 address in
 * dotted form, or an IPv6 address; IPv4-mapped IPv6 counts as IPv4. An IPv6 zone id (`%eth0`) is dropped: no remote
 * client has one, and its text would otherwise make a client of its own in every limit. Anything else is undefined.
 */
export function parseClientAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  const zone = text.indexOf('%');
  const bare = zone < 0 ? text : text.slice(0, zone);
  const family = isIP(bare);
  if (family === 0 || (zone >= 0 && family !== 6)) return undefined;
  const parsed = ipaddr.parse(bare);
  return parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed;
}

/**
 * The network of `prefix` bits an address is in, as a key: `203.0.113.0/24`, `2001:db8:1::/48`; the address itself for a
 * full-length prefix. An address that is not one is its own key.
 */
export function networkOf(address: string, prefix: { readonly ipv4: number; readonly ipv6: number }): string {
  const parsed = parseClientAddress(address);
  if (parsed === undefined) return address;
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

export const isIpv4Address = (address: string): boolean => parseClientAddress(address)?.kind() === 'ipv4';

/** The network whose clients share the homeserver's queue fairly: its /24 (IPv4) or /48 (IPv6). */
export const queueNetworkOf = (address: string): string => networkOf(address, { ipv4: 24, ipv6: 48 });
