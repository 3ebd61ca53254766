import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from '../support/timedTests.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { generateGate, type Gate } from '../support/gate.js';
import { childrenOf } from '../support/processTree.js';
import { freePort, waitFor } from '../support/ports.js';
import { suiteScope } from '../support/scope.js';
import { startSynapse, synapseAvailability, type RunningSynapse } from '../support/synapse.js';
import { tempDir } from '../support/tempDir.js';

const RULES = new URL('../../deploy/monitoring/regservice-rules.yml', import.meta.url).pathname;
const DASHBOARD = new URL('../../deploy/monitoring/regservice-dashboard.json', import.meta.url).pathname;
const serverName = 'photon.test';

/**
 * Grafana's variables in the dashboard's queries, each replaced as Grafana would for this test's Prometheus (a scrape
 * every second): one fixed table, and a variable it does not hold fails the test.
 */
const GRAFANA_VARIABLES: Readonly<Record<string, string>> = {
  $__rate_interval: '2m',
  $instance: '.+',
};

function expandVariables(expr: string): string {
  let expanded = expr;
  for (const [name, value] of Object.entries(GRAFANA_VARIABLES)) expanded = expanded.replaceAll(name, value);
  const unknown = /\$\{?[A-Za-z_]\w*/.exec(expanded);
  if (unknown !== null)
    throw new Error(`the dashboard's query uses ${unknown[0]}, which the test's table of Grafana variables does not hold: ${expr}`);
  return expanded;
}

/** Prometheus, from Debian's prometheus package (test/provision.sh); in CI its absence fails, as every real part's does. */
function monitoringSkip(): string | false {
  const missing = spawnSync('prometheus', ['--version']).error !== undefined;
  if (missing && process.env.CI === 'true') throw new Error("prometheus is not installed: test/provision.sh installs Debian's prometheus");
  if (missing) return 'prometheus not installed: run test/provision.sh first';
  const synapse = synapseAvailability();
  return synapse.available ? false : synapse.reason;
}

interface Panel {
  readonly title: string;
  readonly targets: readonly { readonly expr: string; readonly legendFormat: string }[];
}

interface Series {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

describe('monitoring: a real Prometheus scrapes the service in front of the real Synapse', { skip: monitoringSkip() }, () => {
  const scope = suiteScope();
  let synapse: RunningSynapse;
  let gate: Gate;
  let prometheusUrl: string;

  const query = async (expr: string): Promise<Series[]> => {
    const answer = await fetch(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await answer.json()) as { status: string; error?: string; data?: { resultType: string; result: Series[] } };
    assert.equal(body.status, 'success', `${expr}: ${body.error ?? ''}`);
    return body.data?.result ?? [];
  };
  const alertState = async (name: string): Promise<string | undefined> => {
    const answer = await fetch(`${prometheusUrl}/api/v1/alerts`, { signal: AbortSignal.timeout(10_000) });
    const body = (await answer.json()) as { data: { alerts: { labels: { alertname: string }; state: string }[] } };
    return body.data.alerts.find((alert) => alert.labels.alertname === name)?.state;
  };
  /** A node's POST from its own client address (the service believes loopback's X-Forwarded-For). */
  const register = async (body: unknown, client: string): Promise<number> =>
    (
      await fetch(`${gate.url}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': client },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(40_000),
      })
    ).status;
  const sign = () => signRegistration(randomPrivateKey(), serverName);

  before(
    async () => {
      const secretFile = join(tempDir('regservice-monitoring-'), 'shared_secret');
      writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
      const synapsePort = await freePort();
      gate = await generateGate(scope, {
        serverName,
        homeserverUrl: `http://127.0.0.1:${synapsePort}`,
        genconfigArgs: ['--sharesecret-file', secretFile],
      });
      synapse = await startSynapse(scope, {
        serverName,
        port: synapsePort,
        sharedSecretFile: secretFile,
        appserviceFiles: [gate.registrationFile],
      });
      const metricsPort = await freePort();
      await gate.start(['--workers', '2', '--metrics-port', String(metricsPort), '--accounts-per-hour-ipv4', '1']);

      // Prometheus in a directory of its own, scraping every second; its rules are the shipped ones with a short `for:`.
      const dir = tempDir('regservice-prometheus-');
      writeFileSync(join(dir, 'rules.yml'), readFileSync(RULES, 'utf8').replace(/^(\s+)for: \S+$/gm, '$1for: 2s'));
      writeFileSync(
        join(dir, 'prometheus.yml'),
        [
          'global: { scrape_interval: 1s, evaluation_interval: 1s }',
          'rule_files: [rules.yml]',
          'scrape_configs:',
          '  - job_name: matrix-regservice',
          `    static_configs: [{ targets: ['127.0.0.1:${metricsPort}'] }]`,
          '',
        ].join('\n'),
      );
      const port = await freePort();
      prometheusUrl = `http://127.0.0.1:${port}`;
      let output = '';
      const prometheus = spawn(
        'prometheus',
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
        ],
        { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      prometheus.stderr.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-5000)));
      scope.after(async () => {
        if (prometheus.exitCode !== null) return;
        const exited = new Promise((resolve) => prometheus.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await exited;
      });
      process.once('exit', () => prometheus.kill('SIGKILL'));
      await waitFor(
        'Prometheus ready',
        async () => ((await fetch(`${prometheusUrl}/-/ready`).catch(() => undefined))?.ok === true ? true : undefined),
        60_000,
        () => (prometheus.exitCode !== null ? `prometheus exited:\n${output}` : undefined),
      );
      await waitFor('a first scrape', async () => ((await query('regservice_ready == 1')).length === 1 ? true : undefined), 30_000);
    },
    { timeout: 150_000 },
  );

  it('sees the service up and ready, the homeserver and the store answering, with no traffic yet', async () => {
    for (const expr of ['up{job="matrix-regservice"}', 'regservice_homeserver_up', 'regservice_store_up', 'regservice_ready']) {
      const [series] = await query(expr);
      assert.equal(series?.value[1], '1', expr);
    }
    assert.equal((await query('regservice_workers_serving'))[0]?.value[1], '3', 'the primary and its two workers');
  });

  it('fires the homeserver-down alert during an outage of Synapse, and clears it after', async () => {
    // Traffic first: valid registrations, forged ones, a second account from one address (its ceiling), a transaction.
    for (let n = 1; n <= 4; n++) assert.equal(await register(sign(), `198.51.100.${n}`), 200);
    for (let n = 1; n <= 4; n++) assert.equal(await register({ ...sign(), password: sign().password }, `203.0.113.${n}`), 403);
    assert.equal(await register(sign(), '198.51.100.1'), 429, 'the second account from one address: its ceiling');
    const transaction = await fetch(`${gate.url}/_matrix/app/v1/transactions/monitoring-${Date.now()}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${String(gate.registration.hs_token)}` },
      body: '{"events":[]}',
    });
    assert.equal(transaction.status, 200);

    await synapse.halt();
    try {
      const status = await register(sign(), '198.51.100.20');
      assert.equal(status, 503, 'a registration while Synapse is down: 503 with Retry-After');
      await waitFor(
        'RegserviceHomeserverUnreachable firing',
        async () => ((await alertState('RegserviceHomeserverUnreachable')) === 'firing' ? true : undefined),
        60_000,
      );
    } finally {
      await synapse.resume();
    }
    await waitFor(
      'RegserviceHomeserverUnreachable resolved',
      async () => ((await alertState('RegserviceHomeserverUnreachable')) === undefined ? true : undefined),
      60_000,
    );
  });

  it('keeps its counters across a worker killed with -9: Prometheus reads no reset', async () => {
    const primary = gate.process()?.child.pid as number;
    const workers = childrenOf(primary);
    process.kill(workers[0]!, 'SIGKILL');
    await waitFor(
      'the replacement',
      async () => ((await query('regservice_worker_restarts_total == 1')).length === 1 ? true : undefined),
      30_000,
    );
    for (let n = 30; n < 34; n++) assert.equal(await register(sign(), `198.51.100.${n}`), 200);
    await waitFor(
      'both workers serving, and the primary',
      async () => ((await query('regservice_workers_serving == 3')).length === 1 ? true : undefined),
      30_000,
    );
    const resets = await query('resets(regservice_registrations_total[10m]) > 0');
    assert.deepEqual(
      resets.map((series) => series.metric),
      [],
      'no counter of the service went down',
    );
    const processes = new Set((await query('regservice_process_resident_memory_bytes')).map((series) => series.metric.process));
    assert.deepEqual([...processes].sort(), ['0', '1', 'primary']);
  });

  it("answers every panel's query of the Grafana dashboard with data carrying the labels its legend names", async () => {
    await new Promise((resolve) => setTimeout(resolve, 3000)); // a few more scrapes of the last registrations
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
    assert.ok(dashboard.panels.length >= 10);
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const expr = expandVariables(target.expr);
        const result = await query(expr);
        assert.ok(result.length > 0, `${panel.title}: no data for ${expr}`);
        const named = [...target.legendFormat.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((match) => match[1] as string);
        for (const series of result) {
          for (const label of named)
            assert.ok(series.metric[label] !== undefined, `${panel.title}: ${expr} gives a series without ${label}`);
        }
      }
    }
  });
});
