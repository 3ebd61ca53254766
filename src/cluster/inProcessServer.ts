import type { Server } from 'node:http';
import type { Logger } from '../log/logger.js';
import type { RefusalTally } from '../log/refusalTally.js';
import { createWorkerMetrics } from '../metrics/metrics.js';
import { batchedDeliveryReports, type DeliveryReports } from './deliveryReports.js';
import type { PrimaryApi } from './primaryApi.js';
import type { RequestServers, ServersMetrics } from './requestServers.js';
import { StartError } from './supervisor.js';
import { createWorkerServer, listen, stopCutAfterMs, type WorkerServer } from './worker.js';
import type { WorkerSettings } from './workerSettings.js';

/**
 * The primary's own listener: it serves requests through the same request path a worker has, calling the primary's
 * API directly instead of over IPC. Alone with `--workers 0` (one process, for machines with one core); otherwise its
 * workers accept from its socket beside it (ServingProcesses).
 */
export class InProcessServer implements RequestServers {
  readonly count = 1;
  readonly replacements = 0;
  private readonly metricsOfRequests = createWorkerMetrics({ processMetrics: false });
  private readonly reports: DeliveryReports;
  private readonly worker: WorkerServer;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly options: {
      readonly settings: WorkerSettings;
      readonly api: PrimaryApi;
      readonly log: Logger;
      /** The primary's own tally: refusals counted here are in its summaries at once. */
      readonly refusals: RefusalTally;
      /** Whether a refusal's answer closes its connection now (ConnectionSpreading, beside workers). */
      readonly closeAfterRefusal?: () => boolean;
    },
  ) {
    const { settings, api, log, refusals, closeAfterRefusal } = options;
    // Worker 0: what its registrations carry (createWorkerServer, outside a cluster worker).
    this.reports = batchedDeliveryReports((localparts, reached) => api.delivered(localparts, reached, 0));
    this.worker = createWorkerServer({
      settings,
      api,
      log,
      metrics: this.metricsOfRequests,
      refusals,
      delivered: this.reports.delivered,
      closeAfterRefusal,
    });
  }

  /** The listening socket, which workers accept from too. */
  get server(): Server {
    return this.worker.server;
  }

  async start(): Promise<void> {
    try {
      await listen(this.worker.server, this.options.settings);
    } catch (error) {
      throw new StartError((error as Error).message);
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.worker.server.listening) await this.worker.close(stopCutAfterMs(this.options.settings));
      this.reports.flush();
    })();
    return this.stopping;
  }

  serving(): Promise<number> {
    const { server } = this.worker;
    if (!server.listening || this.stopping !== undefined) return Promise.resolve(0);
    return new Promise((resolve) =>
      server.getConnections((error, count) => resolve(error === null && count < server.maxConnections ? 1 : 0)),
    );
  }

  async metrics(): Promise<ServersMetrics> {
    return { live: [{ slot: 0, value: await this.metricsOfRequests.registry.getMetricsAsJSON() }], retired: [] };
  }
}
