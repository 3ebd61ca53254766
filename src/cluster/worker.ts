import cluster from 'node:cluster';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createLogger, type Logger } from '../log/logger.js';
import { RefusalTally } from '../log/refusalTally.js';
import { createWorkerMetrics, type WorkerMetrics } from '../metrics/metrics.js';
import { createAddressRecovery } from '../protocol/addressRecovery.js';
import { createRegistrationVerifier } from '../protocol/registrationRequest.js';
import { createRequestListener } from '../http/app.js';
import { answerClientError } from '../http/clientErrors.js';
import { connectionRequests } from '../http/connectionRequests.js';
import { expectationFailed } from '../http/errorResponses.js';
import { clientKeyOf, createClientKey } from '../http/clientKey.js';
import { registerRoute } from '../http/registerRoute.js';
import { transactionForPrimary } from '../handlers/transactionHandler.js';
import { eventLoopLoad } from './connectionSpreading.js';
import { ANSWER_WAIT_MS } from './answersOnTheirWay.js';
import { batchedDeliveryReports } from './deliveryReports.js';
import { IpcPeer } from './ipc.js';
import { primaryApiOver, type PrimaryApi } from './primaryApi.js';
import { listenerIn, type ListenerHandle } from './listenerHandle.js';
import type { WorkerSettings } from './workerSettings.js';

/**
 * How often a worker hands its refusal counts to the primary, which logs them per summary interval, and its load, by
 * which the primary knows whether to pass connections on (ConnectionSpreading).
 */
const REPORT_INTERVAL_MS = 1000;

export interface WorkerServerDeps {
  readonly settings: WorkerSettings;
  readonly api: PrimaryApi;
  readonly log: Logger;
  readonly metrics: WorkerMetrics;
  readonly refusals: RefusalTally;
  /** Whether a 200 reached its node (the primary marks it unanswered again if not). */
  readonly delivered: (localpart: string, reached: boolean) => void;
  /**
   * Whether a refusal's answer closes its connection now (the primary's, while it passes a flood on to its workers):
   * only a connection with nothing else in hand, so that no answer queued behind the refusal is lost.
   */
  readonly closeAfterRefusal?: () => boolean;
}

export interface WorkerServer {
  readonly server: Server;
  /**
   * Stops accepting connections and answers every request from now on with `Connection: close`; idle connections are
   * closed as they become idle, so that a client on keep-alive cannot keep the worker serving. Resolves once every
   * connection is gone: the requests in flight have been answered, or `cutAfterMs` passed and they were cut.
   */
  close(cutAfterMs: number): Promise<void>;
}

/**
 * How long a stop waits for requests in flight: at most the wait for an earlier answer's fate, one homeserver call, and
 * the primary's store around it.
 */
export function stopCutAfterMs(settings: WorkerSettings): number {
  return ANSWER_WAIT_MS + settings.homeserverTimeoutMs + 1000;
}

/** How often, while stopping, connections that have become idle are closed. */
const IDLE_SWEEP_MS = 100;

/**
 * A worker's public listener: it reads, validates, rate-limits (through the primary) and verifies;
 * verified registrations, transactions and user queries go to the primary.
 */
export function createWorkerServer(deps: WorkerServerDeps): WorkerServer {
  const { settings, api, log } = deps;
  const connections = connectionRequests();
  const closeAfterRefusal = deps.closeAfterRefusal;
  const listener = createRequestListener({
    basePath: settings.basePath,
    hsTokenSha256: settings.hsTokenSha256,
    registerRoute: registerRoute({
      clientKey: createClientKey(settings.trustedProxies, settings.rateLimitIpv6Prefix),
      unnamedClient: () => deps.refusals.unnamedClient(),
      untrustedForwarder: (peer) => deps.refusals.untrustedForwarder(peer),
      refusalLine: () => deps.refusals.lineAllowed(),
      limitClient: settings.rateLimitClientPerMinute === 0 ? undefined : (key) => api.limitClient(key),
      verify: createRegistrationVerifier(settings.serverName, createAddressRecovery().recover),
      register: (node, request) => api.register(node, { ...request, worker: cluster.worker?.id ?? 0 }),
      delivered: deps.delivered,
      log,
      refused: (outcome, client) => deps.refusals.add(outcome, client),
      count: deps.metrics.registration,
      closeAfterRefusal: closeAfterRefusal === undefined ? undefined : (req) => closeAfterRefusal() && connections.alone(req),
    }),
    // Only what the primary uses crosses the channel: an event's content may be anything (6,000 arrays deep, say).
    onTransaction: (txnId, body) => api.transaction(txnId, transactionForPrimary(body)),
    queryUser: (userId) => api.queryUser(userId),
    forgetNodes: (which) => api.forget(which),
    log,
  });
  let stopping = false;
  /** Answers not sent yet: once stopping, each goes out with Connection: close. */
  const answering = new Set<ServerResponse>();
  /** Answers `res` by `answer`; once stopping, with Connection: close. */
  const serve = (res: ServerResponse, onGone: (callback: () => void) => void, answer: () => void): void => {
    if (stopping) res.shouldKeepAlive = false;
    else {
      answering.add(res);
      const forget = (): boolean => answering.delete(res);
      res.once('close', forget);
      onGone(forget);
    }
    answer();
  };
  const shedClient = (address: string | undefined): string =>
    address === undefined ? 'unknown' : clientKeyOf(address, settings.rateLimitIpv6Prefix);
  // Slow clients get clientTimeoutMs for headers and body; the check runs every second, not every 30 s. A request
  // without Host is answered by the listener, with a Matrix error instead of Node's bare 400.
  const server = createServer(
    {
      headersTimeout: settings.clientTimeoutMs,
      requestTimeout: settings.clientTimeoutMs,
      connectionsCheckingInterval: 1000,
      requireHostHeader: false,
    },
    (req, res) => connections.request(req, res, (onGone) => serve(res, onGone, () => listener(req, res))),
  );
  // A client that half-closes after a complete request still gets its answer; the connection closes after it.
  // (Node's http.Server reads this property when the client's end arrives; its default is false.)
  Object.assign(server, { httpAllowHalfOpen: true });
  server.on('clientError', (error: Error & { code?: string }, socket: Duplex) =>
    connections.clientError(socket, () => answerClientError(error, socket)),
  );
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) =>
    connections.request(req, res, (onGone) => serve(res, onGone, () => expectationFailed(req, res))),
  );
  // Past its bound a worker closes a new connection at once (Node's maxConnections): counted, not logged one by one.
  server.maxConnections = settings.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => deps.refusals.add('connection_shed', shedClient(data?.remoteAddress)));
  // A connection that cannot be accepted (out of descriptors: libuv then closes those waiting) is shed too; unheard,
  // the error would end the process.
  server.on('error', (error: NodeJS.ErrnoException) => {
    if (!server.listening) return; // listen's own failure: its caller says why
    deps.refusals.add('connection_shed', 'unknown');
    log.debug('cannot accept a connection', { reason: error.code ?? error.message });
  });
  return {
    server,
    close(cutAfterMs) {
      stopping = true;
      for (const res of answering) if (!res.headersSent) res.shouldKeepAlive = false;
      return new Promise<void>((resolve) => {
        const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
        const cut = setTimeout(() => server.closeAllConnections(), cutAfterMs);
        server.close(() => {
          clearInterval(sweep);
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}

/** Listens as `settings` say; rejects with a reason an operator can act on. */
export function listen(server: Server, settings: WorkerSettings): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      const reason = error.code === 'EADDRINUSE' ? 'the address is already in use' : error.message;
      reject(new Error(`cannot listen on ${settings.host}:${settings.port}: ${reason}`));
    };
    server.once('error', onError);
    server.listen(settings.port, settings.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Accepts connections from `listener`, the socket the primary listens on. */
function listenOn(server: Server, listener: ListenerHandle): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listener, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * The worker process: asks the primary for its settings, serves until told to stop (or SIGTERM/SIGINT),
 * and exits at once when the primary is gone. SIGHUP is the primary's: a worker ignores it.
 */
export function runWorker(): void {
  let log: Logger | undefined;
  let worker: WorkerServer | undefined;
  let stopping: Promise<void> | undefined;
  let cutAfterMs = 0;
  let refusals = new RefusalTally();
  /** Created with the settings, which say whether /metrics is served. */
  let metrics: WorkerMetrics | undefined;

  const peer = new IpcPeer(
    {
      send: (packet, done) => {
        if (process.send === undefined) done(new Error('this process has no IPC channel'));
        else process.send(packet, undefined, {}, done);
      },
      onMessage: (listener) => process.on('message', listener),
    },
    {
      start: (settings: WorkerSettings) => void start(settings),
      stop: () => void stop(),
      metrics: () => metrics?.registry.getMetricsAsJSON() ?? [],
      // The primary's /ready and /health ask.
      serving: () => takesConnections(),
    },
    (method, error) => log?.error(`the primary's ${method} failed here`, { reason: (error as Error).message }),
    // The primary cannot be reached: nothing can be registered any more; the primary replaces a worker that exits.
    (reason) => {
      // Nobody to pass the line on to: it is written here, and says nothing a request carried.
      process.stderr.write(
        `${new Date().toISOString()} error exiting: the primary cannot be reached reason=${JSON.stringify(reason)} worker=${cluster.worker?.id}\n`,
      );
      process.exit(1);
    },
  );
  const api = primaryApiOver(peer);
  /** The primary's listening socket, which this worker accepts from beside it. */
  const listener = new Promise<ListenerHandle>((resolve) =>
    process.on('message', (message: unknown, handle: unknown) => {
      const received = listenerIn(message, handle);
      if (received !== undefined) resolve(received);
    }),
  );

  const reports = batchedDeliveryReports((localparts, reached) => api.delivered(localparts, reached, cluster.worker?.id ?? 0));
  /** Log lines of this turn of the event loop, sent together. */
  let lines: string[] = [];
  const sendLines = (): void => {
    if (lines.length > 0) api.log(lines);
    lines = [];
  };
  const sendLine = (line: string): void => {
    if (lines.length === 0) setImmediate(sendLines);
    lines.push(line);
  };
  const report = (): void => {
    if (!refusals.empty) api.reportRefusals(refusals.drain());
    reports.flush();
  };
  /** Whether this worker can take a connection now: listening, not stopping, below --max-connections. */
  const takesConnections = (): Promise<boolean> =>
    new Promise((resolve) => {
      const server = worker?.server;
      if (server?.listening !== true || stopping !== undefined) return resolve(false);
      server.getConnections((error, count) => resolve(error === null && count < server.maxConnections));
    });
  const eventLoop = eventLoopLoad();
  /** The busy share of this worker's event loop since the last report; fully busy while it takes no connection. */
  const reportLoad = async (): Promise<void> => {
    const load = eventLoop.load();
    // The id is the primary's to know (primaryApiHandlers): primaryApiOver does not send it.
    api.reportLoad((await takesConnections()) ? load : 1, cluster.worker?.id ?? 0);
  };

  async function start(settings: WorkerSettings): Promise<void> {
    refusals = new RefusalTally(settings.refusalLinesPerSecond);
    // Lines go to the primary, which replaces every secret it knows (a worker holds none of them, and a request may
    // carry one) and writes them where its own go.
    log = createLogger({ verbosity: settings.verbosity, fields: { worker: cluster.worker?.id }, send: sendLine });
    try {
      metrics = createWorkerMetrics({ processMetrics: settings.processMetrics });
      worker = createWorkerServer({ settings, api, log, metrics, refusals, delivered: reports.delivered });
      cutAfterMs = stopCutAfterMs(settings);
      const handle = await listener;
      // Told to stop meanwhile: it exits without accepting a connection it would not answer.
      if (stopping !== undefined) return;
      await listenOn(worker.server, handle);
      peer.notify('listening', []);
      setInterval(() => {
        report();
        void reportLoad();
      }, REPORT_INTERVAL_MS).unref();
    } catch (error) {
      peer.notify('failedToStart', [(error as Error).message]);
      await peer.flushNow();
      process.exit(1);
    }
  }

  /** Stops accepting, lets requests in flight finish (cut after the homeserver timeout), reports, exits 0. */
  function stop(): Promise<void> {
    stopping ??= (async () => {
      if (worker?.server.listening === true) await worker.close(cutAfterMs);
      report();
      sendLines();
      await peer.flushNow();
      await log?.close();
      process.exit(0);
    })();
    return stopping;
  }

  process.on('SIGHUP', () => {});
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  // The primary is gone: nothing can be registered any more, and nobody would replace this worker.
  process.on('disconnect', () => process.exit(1));
  // A fault that escapes: its line and this turn's lines reach the primary before the worker exits (and is replaced).
  process.on('uncaughtException', (error) => {
    log?.critical('exiting on an unexpected error', { reason: error.message });
    sendLines();
    void peer.flushNow().finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (reason) => {
    log?.error('unhandled promise rejection', { reason: reason instanceof Error ? reason.message : String(reason) });
  });
  peer.notify('hello', []);
}
