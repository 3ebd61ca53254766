import type { Settings } from '../config/settings.js';
import { hsTokenDigest } from '../http/hsTokenAuth.js';
import { REFUSAL_LINES_PER_SECOND } from '../log/lineBudget.js';
import { metricsOptionsFor } from '../metrics/metrics.js';

/** Each process's share of the per-refusal lines the service writes a second: the workers' and the primary's. */
export function refusalLineShare(workers: number): number {
  return REFUSAL_LINES_PER_SECOND / (workers + 1);
}

/**
 * What a worker is started with: only what serving the listener needs, named one by one (an allow-list, so that a
 * setting added later reaches workers only when it is added here). No secret: the hs_token travels as its SHA-256
 * digest, which is all a worker compares a presented token against.
 */
export interface WorkerSettings {
  readonly serverName: string;
  readonly host: string;
  readonly port: number;
  readonly basePath: string;
  readonly verbosity: Settings['verbosity'];
  readonly hsTokenSha256: string;
  readonly trustedProxies: string;
  readonly rateLimitClientPerMinute: number;
  readonly rateLimitIpv6Prefix: number;
  readonly clientTimeoutMs: number;
  /** Connections this worker holds at once; past it a new one is closed at once. */
  readonly maxConnections: number;
  /** This worker's share of the per-refusal lines the service writes a second. */
  readonly refusalLinesPerSecond: number;
  /** How long requests in flight may take when stopping, before their connections are cut. */
  readonly homeserverTimeoutMs: number;
  /** Collect the Node.js process metrics: /metrics is served. */
  readonly processMetrics: boolean;
}

export function workerSettingsOf(settings: Settings): WorkerSettings {
  return {
    serverName: settings.serverName,
    host: settings.host,
    port: settings.port,
    basePath: settings.basePath,
    verbosity: settings.verbosity,
    hsTokenSha256: hsTokenDigest(settings.hsToken),
    trustedProxies: settings.trustedProxies,
    rateLimitClientPerMinute: settings.rateLimitClientPerMinute,
    rateLimitIpv6Prefix: settings.rateLimitIpv6Prefix,
    clientTimeoutMs: settings.clientTimeoutMs,
    maxConnections: settings.maxConnections,
    refusalLinesPerSecond: refusalLineShare(settings.workers),
    homeserverTimeoutMs: settings.homeserverTimeoutMs,
    processMetrics: metricsOptionsFor(settings.metricsPort).processMetrics,
  };
}

/**
 * The environment variables a worker is started with. Everything else the primary has (MATRIX_REGSERVICE_* secrets,
 * PGPASSWORD, a config file's path, whatever the operator's shell exported) stays out of the worker's /proc/PID/environ.
 */
export const WORKER_ENVIRONMENT: readonly string[] = ['PATH', 'TZ', 'LANG', 'LC_ALL', 'NODE_OPTIONS', 'NODE_ENV'];
