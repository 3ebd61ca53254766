import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';
import { networkOf, parseClientAddress } from '../access/networks.js';

/**
 * The key a client's rate limit and refusal counts are kept under: its IPv4 address, or its IPv6
 * network of `ipv6Prefix` bits (one subscriber usually holds a whole /64, so a per-address key would
 * give them an unlimited supply of allowances). IPv4-mapped IPv6 addresses count as IPv4.
 */
export const clientKeyOf = (address: string, ipv6Prefix: number): string => networkOf(address, { ipv4: 32, ipv6: ipv6Prefix });

/**
 * The one client-address rule every limit and log uses: the client is the peer's address; or, when the peer is a
 * trusted proxy, the right-most X-Forwarded-For entry that is not itself a trusted proxy, if that entry is a valid IP
 * address (as parseClientAddress reads it: without a zone id, IPv4-mapped as IPv4); otherwise the address of the last trusted proxy reached. `hops` are the header's entries, right-most first.
 */
export function clientAddressOf(peer: string, hops: readonly string[], trusted: (address: string, index: number) => boolean): string {
  let client = parseClientAddress(peer)?.toString() ?? peer;
  for (let index = 0; index < hops.length && trusted(client, index); index++) {
    const next = parseClientAddress((hops[index] ?? '').trim());
    if (next === undefined) return client;
    client = next.toString();
  }
  return client;
}

/** X-Forwarded-For's entries, right-most first (several headers count as one list, as proxies append). */
function forwardedHops(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  return (Array.isArray(header) ? header.join(',') : header).split(',').reverse();
}

/** The answer header that names the client a /register request was taken for (doctor checks the proxy with it). */
export const CLIENT_ADDRESS_HEADER = 'x-regservice-client';

/** What the service says, once per summary interval, of requests whose proxy named no client. */
export const UNNAMED_CLIENTS_WARNING =
  'registration requests came from a trusted proxy address (--trusted-proxies) without a client address (X-Forwarded-For): ' +
  'they all count as one client in every limit. Direct requests from this machine (a smoke test) are counted so too; if ' +
  'they come through a proxy, add "proxy_set_header X-Forwarded-For $remote_addr;" to its nginx location of /regapp/1';

/** What the service says, once per summary interval, of a local peer it does not trust that sent X-Forwarded-For. */
export function untrustedForwarderWarning(peer: string): string {
  return (
    `requests from ${peer}, which is not in --trusted-proxies, carry X-Forwarded-For: it is not believed, and each counts as ` +
    `${peer} in every limit. If ${peer} is your proxy, add it to --trusted-proxies`
  );
}

export interface ClientOfRequest {
  /** The client's rate-limit key: its address, or its IPv6 network. */
  readonly key: string;
  /** The client's address, by the rule (for the account ceilings, which count its networks). */
  readonly address: string;
  /** No client was named: the address is a trusted proxy's own (it sent no usable X-Forwarded-For). */
  readonly unnamedByProxy: boolean;
  /**
   * A loopback, private or unique-local peer, not a trusted proxy, that sent X-Forwarded-For (not believed): perhaps a
   * proxy the operator forgot to trust. A public peer may send the header at will, so it is never named.
   */
  readonly untrustedForwarder?: string;
}

const LOCAL_RANGES: ReadonlySet<string> = new Set(['loopback', 'private', 'uniqueLocal', 'linkLocal']);

function isLocalPeer(address: string): boolean {
  const parsed = parseClientAddress(address);
  return parsed !== undefined && LOCAL_RANGES.has(parsed.range());
}

/** The client of a request, by the rule above, with proxies as --trusted-proxies names them (proxy-addr's syntax). */
export function createClientKey(trustedProxies: string, ipv6Prefix: number): (req: IncomingMessage) => ClientOfRequest {
  const trust = proxyaddr.compile(trustedProxies.split(',').map((entry) => entry.trim()));
  return (req) => {
    const peer = req.socket.remoteAddress ?? '';
    const hops = forwardedHops(req.headers['x-forwarded-for']);
    const address = clientAddressOf(peer, hops, trust);
    const forwarded = hops.some((hop) => hop.trim() !== '');
    const peerAddress = parseClientAddress(peer)?.toString() ?? peer;
    return {
      key: clientKeyOf(address, ipv6Prefix),
      address,
      unnamedByProxy: trust(address, hops.length),
      ...(forwarded && !trust(peerAddress, 0) && isLocalPeer(peerAddress) ? { untrustedForwarder: peerAddress } : {}),
    };
  };
}
