import { strict as assert } from 'node:assert';
import type { AddressInfo } from 'node:net';
import { describe, it } from '../support/timedTests.js';
import { createMetricsServer } from '../../src/http/metricsServer.js';
import { aggregateMetrics, createPrimaryMetrics, createWorkerMetrics } from '../../src/metrics/metrics.js';
import { labelProcess, RetiredCounts } from '../../src/metrics/processSnapshots.js';
import { HomeserverError, MatrixError } from '../../src/protocol/matrixError.js';

describe('metrics listener', () => {
  it('serves the counters of every process summed, health, and readiness that follows the homeserver and the store', async () => {
    let reachable = true;
    let storeAnswers = true;
    let serving = 2;
    const metrics = createPrimaryMetrics({ inFlight: () => 3, queued: () => 1 }, { processMetrics: true });
    const workers = [createWorkerMetrics({ processMetrics: true }), createWorkerMetrics({ processMetrics: true })];
    workers[0]?.registration('forbidden');
    workers[1]?.registration('forbidden');
    workers[1]?.registration('registered');
    metrics.transaction('duplicate');
    await metrics.timeHomeserverCall('register', async () => 'ok');
    await assert.rejects(metrics.timeHomeserverCall('register', async () => Promise.reject(new Error('down'))));
    const server = createMetricsServer({
      metricsText: async () =>
        aggregateMetrics(await Promise.all([metrics, ...workers].map((process) => process.registry.getMetricsAsJSON()))),
      readiness: async () => ({ homeserver: reachable, store: storeAnswers, workers: { serving, of: 2 } }),
      serving: async () => serving,
    }).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const text = await (await fetch(`${base}/metrics`)).text();
    assert.match(text, /regservice_registrations_total\{outcome="forbidden"\} 2/);
    assert.match(text, /regservice_registrations_total\{outcome="registered"\} 1/);
    assert.match(text, /regservice_transactions_total\{outcome="duplicate"\} 1/);
    assert.match(text, /regservice_homeserver_call_seconds_count\{call="register",result="ok"\} 1/);
    assert.match(text, /regservice_homeserver_call_seconds_count\{call="register",result="error"\} 1/);
    assert.match(text, /regservice_homeserver_calls_in_flight 3/);
    assert.match(text, /regservice_homeserver_calls_queued 1/);
    assert.match(text, /regservice_process_resident_memory_bytes/);

    assert.equal((await fetch(`${base}/health`)).status, 200);
    assert.equal((await fetch(`${base}/ready`)).status, 200);
    reachable = false;
    const notReady = await fetch(`${base}/ready`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), {
      status: 'not ready',
      homeserver: 'unreachable',
      store: 'reachable',
      workers: { serving: 2, of: 2 },
    });
    reachable = true;
    storeAnswers = false;
    const storeDown = await fetch(`${base}/ready`);
    assert.equal(storeDown.status, 503);
    assert.deepEqual(await storeDown.json(), {
      status: 'not ready',
      homeserver: 'reachable',
      store: 'unreachable',
      workers: { serving: 2, of: 2 },
    });
    storeAnswers = true;
    serving = 1;
    const oneWorker = await fetch(`${base}/ready`);
    assert.equal(oneWorker.status, 503, 'not ready while a worker does not serve');
    assert.deepEqual(((await oneWorker.json()) as { workers: unknown }).workers, { serving: 1, of: 2 });
    assert.equal((await fetch(`${base}/health`)).status, 200, 'healthy while one serves');
    serving = 0;
    const none = await fetch(`${base}/health`);
    assert.equal(none.status, 503, 'no worker takes connections: the public listener cannot serve');
    assert.deepEqual(await none.json(), { status: 'cannot serve', reason: 'no worker takes connections' });
    serving = 2;
    storeAnswers = false;
    assert.equal((await fetch(`${base}/other`)).status, 404);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    // A HEAD probe reads each as GET does, without a body.
    for (const [path, status] of [
      ['/health', 200],
      ['/ready', 503],
      ['/metrics', 200],
    ] as const) {
      const head = await fetch(`${base}${path}`, { method: 'HEAD' });
      assert.equal(head.status, status, `HEAD ${path}`);
      assert.equal(await head.text(), '');
    }
    server.close();
  });

  it("exports the ping's result only once a ping was answered: never a 0 that reads as a failure before the first", async () => {
    const metrics = createPrimaryMetrics({ inFlight: () => 0, queued: () => 0 }, { processMetrics: false });
    assert.doesNotMatch(await metrics.registry.metrics(), /regservice_appservice_ping/);
    metrics.pingResult(true, 1_700_000_000_000);
    metrics.pingResult(false, 1_700_000_300_000);
    const text = await metrics.registry.metrics();
    assert.match(text, /^regservice_appservice_ping_success 0$/m);
    assert.match(text, /^regservice_appservice_ping_timestamp_seconds 1700000300$/m);
  });

  it("keeps a replaced worker's counts in the sum, and labels each process's own metrics with a bounded label", async () => {
    const worker = (registered: number) => {
      const metrics = createWorkerMetrics({ processMetrics: true });
      for (let n = 0; n < registered; n++) metrics.registration('registered');
      return metrics.registry.getMetricsAsJSON();
    };
    const retired = new RetiredCounts();
    await retired.add([await worker(5)]);
    const text = await aggregateMetrics([labelProcess(await worker(2), '0'), labelProcess(await worker(1), '1'), retired.snapshot]);
    assert.match(text, /^regservice_registrations_total\{outcome="registered"\} 8$/m, "the exited worker's 5 stay counted");
    const processes = new Set([...text.matchAll(/^regservice_process_resident_memory_bytes\{process="([^"]+)"\}/gm)].map((m) => m[1]));
    assert.deepEqual([...processes].sort(), ['0', '1'], "the exited worker's process metrics are not kept");
    assert.match(text, /^regservice_process_start_time_seconds\{process="1"\} \d+/m, 'each process keeps its start time');
  });

  it("counts a homeserver's refusal apart from its failures", async () => {
    const metrics = createPrimaryMetrics({ inFlight: () => 0, queued: () => 0 }, { processMetrics: false });
    const fail = (error: Error) => metrics.timeHomeserverCall('register', () => Promise.reject(error)).catch(() => undefined);
    await fail(new MatrixError(400, 'M_USER_IN_USE', 'in use'));
    await fail(new HomeserverError(502, 'M_UNKNOWN', 'unreachable'));
    await fail(new Error('a bug'));
    const text = await metrics.registry.metrics();
    assert.match(text, /^regservice_homeserver_call_seconds_count\{call="register",result="refused"\} 1$/m);
    assert.match(text, /^regservice_homeserver_call_seconds_count\{call="register",result="error"\} 2$/m);
  });

  it('collects the Node.js process metrics only when asked (when /metrics is served): no event-loop sampling otherwise', async () => {
    const names = async (registry: { getMetricsAsJSON(): Promise<{ name: string }[]> }): Promise<string[]> =>
      (await registry.getMetricsAsJSON()).map((metric) => metric.name);
    const quiet = [
      createWorkerMetrics({ processMetrics: false }),
      createPrimaryMetrics({ inFlight: () => 0, queued: () => 0 }, { processMetrics: false }),
    ];
    for (const metrics of quiet) {
      const collected = await names(metrics.registry);
      assert.ok(collected.length > 0);
      assert.deepEqual(
        collected.filter((name) => name.startsWith('regservice_process_') || name.startsWith('regservice_nodejs_')),
        [],
      );
    }
    const served = await names(createWorkerMetrics({ processMetrics: true }).registry);
    assert.ok(served.includes('regservice_process_resident_memory_bytes'), served.join(' '));
    assert.ok(served.includes('regservice_nodejs_eventloop_lag_p99_seconds'), served.join(' '));
  });
});
