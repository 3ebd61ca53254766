import ipaddr from 'ipaddr.js';

/**
 * The host to connect to for a listen address, as it goes in a URL: a wildcard (0.0.0.0, ::, empty)
 * becomes loopback, an IPv6 address gets brackets.
 */
export function connectHost(listenAddress: string): string {
  if (listenAddress === '' || listenAddress === '0.0.0.0' || listenAddress === '::') return '127.0.0.1';
  return listenAddress.includes(':') ? `[${listenAddress}]` : listenAddress;
}

/** The service's own base URL as a local client reaches it, e.g. http://127.0.0.1:8009/regapp/1. */
export function localServiceUrl(settings: { readonly host: string; readonly port: number; readonly basePath: string }): string {
  return `http://${connectHost(settings.host)}:${settings.port}${settings.basePath}`;
}

/**
 * A host name or address (IPv6 with or without brackets) that only this machine reaches itself at: localhost,
 * loopback (127/8, ::1, IPv4-mapped too) or the unspecified address a wildcard listener takes (0.0.0.0, ::).
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || bare.endsWith('.localhost')) return true;
  if (!ipaddr.isValid(bare)) return false;
  const parsed = ipaddr.process(bare);
  return parsed.range() === 'loopback' || parsed.range() === 'unspecified';
}
