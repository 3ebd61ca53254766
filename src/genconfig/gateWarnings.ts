import proxyaddr from 'proxy-addr';
import { isIP } from 'node:net';
import { isLoopbackHost } from '../config/connectAddress.js';
import { upstreamHost } from './nginxSite.js';

export interface GatesPlan {
  /** host:port of every gate behind nginx (--upstream). */
  readonly upstreams: readonly string[];
  /** Where every gate calls the homeserver (--matrixurl). */
  readonly homeserverUrl: string;
  /** The address every gate listens on (--host): run.sh is the same for all of them. */
  readonly host: string;
  readonly trustedProxies: string;
}

/**
 * What would keep gates on other machines from working, though each setting is valid alone: a gate nginx reaches at
 * a network address must listen there, reach the homeserver, and believe nginx's X-Forwarded-For.
 */
export function gateWarnings(plan: GatesPlan): string[] {
  const remote = plan.upstreams.filter((upstream) => !isLoopbackHost(upstreamHost(upstream)));
  const [first] = remote;
  if (first === undefined) return [];
  const warnings: string[] = [];
  if (isLoopbackHost(new URL(plan.homeserverUrl).hostname))
    warnings.push(
      `--matrixurl ${plan.homeserverUrl} is loopback: the gate at ${first} cannot reach Synapse there if it runs on another machine; give --matrixurl an address every gate reaches`,
    );
  if (isLoopbackHost(plan.host) && plan.host !== '0.0.0.0' && plan.host !== '::')
    warnings.push(
      `--host ${plan.host}: every gate listens on loopback only, where nginx cannot reach ${first}; give --host 0.0.0.0 (or the gate's address)`,
    );
  const trusted = proxyaddr.compile(plan.trustedProxies.split(',').map((entry) => entry.trim()));
  const addresses = remote.map(upstreamHost).filter((host) => isIP(host) !== 0);
  if (addresses.length > 0 && !addresses.some((address) => trusted(address, 0)))
    warnings.push(
      `--trusted-proxies ${plan.trustedProxies} names none of the gates' addresses: nginx reaches the gates from its own network address (even the one beside it, at ${first}); name it (loopback,ADDRESS), or every client counts as nginx in the rate limits`,
    );
  return warnings;
}
