import { createServer, type Server } from 'node:http';
import { METRICS_CONTENT_TYPE } from '../metrics/metrics.js';

export interface Readiness {
  readonly homeserver: boolean;
  readonly store: boolean;
}

export interface MetricsServerDeps {
  /** The whole service's metrics in Prometheus text format. */
  readonly metricsText: () => Promise<string>;
  /** Whether the homeserver and the store answer now (false for both while no worker listens). */
  readonly readiness: () => Promise<Readiness>;
}

/**
 * The operator's listener, apart from the public one and never routed through nginx:
 * GET /metrics (Prometheus), /health (the process answers), /ready (the homeserver and the store answer too).
 */
export function createMetricsServer(deps: MetricsServerDeps): Server {
  return createServer((req, res) => {
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type }).end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(405, 'application/json', '{"errcode":"M_UNRECOGNIZED","error":"only GET"}');
    if (path === '/health') return send(200, 'application/json', '{"status":"ok"}');
    if (path === '/ready') {
      void deps.readiness().then(
        ({ homeserver, store }) =>
          send(
            homeserver && store ? 200 : 503,
            'application/json',
            JSON.stringify({
              status: homeserver && store ? 'ready' : 'not ready',
              homeserver: homeserver ? 'reachable' : 'unreachable',
              store: store ? 'reachable' : 'unreachable',
            }),
          ),
        () => send(503, 'application/json', '{"status":"not ready"}'),
      );
      return;
    }
    if (path === '/metrics') {
      void deps.metricsText().then(
        (text) => send(200, METRICS_CONTENT_TYPE, text),
        () => send(500, 'text/plain', 'metrics unavailable\n'),
      );
      return;
    }
    send(404, 'application/json', '{"errcode":"M_UNRECOGNIZED","error":"unknown path"}');
  });
}
