import { createServer, type Server } from 'node:http';
import { METRICS_CONTENT_TYPE } from '../metrics/metrics.js';

export interface Readiness {
  readonly homeserver: boolean;
  readonly store: boolean;
  /** Workers that answered in time that they take connections, of the workers there should be. */
  readonly workers: { readonly serving: number; readonly of: number };
}

export interface MetricsServerDeps {
  /** The whole service's metrics in Prometheus text format. */
  readonly metricsText: () => Promise<string>;
  /** Whether the homeserver and the store answer now, and how many workers serve. */
  readonly readiness: () => Promise<Readiness>;
  /** How many workers answered in time that they take connections: /health fails at none. */
  readonly serving: () => Promise<number>;
}

const NO_WORKER = '{"status":"cannot serve","reason":"no worker takes connections"}';

/**
 * The operator's listener, apart from the public one and never routed through nginx:
 * GET (or HEAD) /metrics (Prometheus), /health (a worker takes connections), /ready (every worker does, and the
 * homeserver and the store answer).
 */
export function createMetricsServer(deps: MetricsServerDeps): Server {
  return createServer((req, res) => {
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type }).end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    // HEAD as GET (Node sends no body): a HEAD probe must not read the service as down.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, 'application/json', '{"errcode":"M_UNRECOGNIZED","error":"only GET and HEAD"}');
    }
    if (path === '/health') {
      void deps.serving().then(
        (serving) => (serving > 0 ? send(200, 'application/json', '{"status":"ok"}') : send(503, 'application/json', NO_WORKER)),
        () => send(503, 'application/json', NO_WORKER),
      );
      return;
    }
    if (path === '/ready') {
      void deps.readiness().then(
        ({ homeserver, store, workers }) => {
          const ready = homeserver && store && workers.serving === workers.of;
          send(
            ready ? 200 : 503,
            'application/json',
            JSON.stringify({
              status: ready ? 'ready' : 'not ready',
              homeserver: homeserver ? 'reachable' : 'unreachable',
              store: store ? 'reachable' : 'unreachable',
              workers,
            }),
          );
        },
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
