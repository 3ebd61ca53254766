import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { gateBesideSynapse, type GateBesideSynapse } from '../support/gateBesideSynapse.js';
import { passwordLogin, requestJson } from '../support/matrixClient.js';
import { alive, childrenOf } from '../support/processTree.js';
import { startFaultProxy, type FaultProxy } from '../support/faultProxy.js';
import { freePort, waitFor } from '../support/ports.js';
import { synapseAvailability } from '../support/synapse.js';

const availability = synapseAvailability();
const serverName = 'photon.test';
const sign = () => signRegistration(randomPrivateKey(), serverName);
const forged = () => ({ ...sign(), password: sign().password });

/** A registration request on a connection of its own, from `forwardedFor` as nginx would name it. */
async function register(url: string, body: unknown, forwardedFor?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await fetch(`${url}/register`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      connection: 'close',
      ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }),
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: answer.status, body: (await answer.json()) as Record<string, unknown> };
}

describe(
  'one process (--workers 0): the primary serves requests itself, against a real Synapse',
  { skip: availability.available ? false : availability.reason },
  () => {
    const scope = suiteScope();
    let deployment: GateBesideSynapse | undefined;
    /** The deployment of this suite, made by `before`. */
    const made = (): GateBesideSynapse => {
      assert.ok(deployment !== undefined, 'the deployment was made');
      return deployment;
    };
    let denyFile: string;
    let proxy: FaultProxy;
    let metricsPort: number;
    const ONE_PROCESS = ['--workers', '0'];
    const metrics = async (path = '/metrics'): Promise<{ status: number; text: string }> => {
      const answer = await fetch(`http://127.0.0.1:${metricsPort}${path}`, { signal: AbortSignal.timeout(10_000) });
      return { status: answer.status, text: await answer.text() };
    };
    const value = (text: string, series: string): number => {
      const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
      assert.ok(line !== undefined, `no ${series} in:\n${text}`);
      return Number(line.slice(series.length + 1));
    };

    before(async () => {
      deployment = await gateBesideSynapse(scope, serverName, 'regservice-one-process-');
      denyFile = join(deployment.dir, 'deny.txt');
      writeFileSync(denyFile, '', { mode: 0o644 });
      proxy = await startFaultProxy(scope, deployment.homeserverUrl);
      metricsPort = await freePort();
    });

    after(async () => {
      await deployment?.end();
    });

    it('runs no worker; nodes register, log in, and a second registration gets 409', async () => {
      await made().gate.start([...ONE_PROCESS, '--metrics-port', String(metricsPort), '--deny-list', denyFile]);
      await made().gate.waitForLog(/matrix-regservice listening .* workers=0/);
      assert.deepEqual(childrenOf(made().gate.process()?.child.pid as number), [], 'no worker process');
      const nodes = Array.from({ length: 4 }, sign);
      for (const node of nodes) {
        const answer = await register(made().gate.url, node);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.user_id, `@${node.localpart}:${serverName}`);
        assert.equal((await passwordLogin(made().homeserverUrl, node.localpart, node.password)).status, 200);
      }
      assert.equal((await register(made().gate.url, nodes[0])).status, 409);
      await made().gate.waitForLog(/ info registration .* worker=0 outcome=registered/);
    });

    it('tells the truth on /ready, /health and /metrics: one listener, the primary, counted as process 0', async () => {
      const ready = await waitFor('ready', async () => ((await metrics('/ready')).status === 200 ? true : undefined), 30_000);
      assert.ok(ready);
      assert.equal((await metrics('/health')).status, 200);
      const text = (await metrics()).text;
      assert.ok(value(text, 'regservice_registrations_total{outcome="registered"}') >= 4, text);
      assert.equal(value(text, 'regservice_workers_serving'), 1);
      assert.equal(value(text, 'regservice_ready'), 1);
      const processes = new Set([...text.matchAll(/^regservice_process_resident_memory_bytes\{process="([^"]+)"\}/gm)].map((m) => m[1]));
      assert.deepEqual([...processes], ['primary'], 'one process, whose Node.js metrics are collected once');
      // The homeserver gone: /ready says so, and says it again once it is back.
      const { synapse } = made();
      if (synapse === undefined) return;
      await synapse.halt();
      try {
        await waitFor('not ready', async () => ((await metrics('/ready')).status === 503 ? true : undefined), 30_000);
      } finally {
        await synapse.resume();
      }
      await waitFor('ready again', async () => ((await metrics('/ready')).status === 200 ? true : undefined), 30_000);
    });

    it("holds a client's allowance and an address's ceiling, and summarizes refusals", async () => {
      await made().gate.stop();
      await made().gate.start([
        ...ONE_PROCESS,
        '--rate-limit-client',
        '5',
        '--accounts-per-hour-ipv4',
        '2',
        '--refusal-summary-interval',
        '1',
      ]);
      const since = made().gate.mark();
      const statuses = [];
      for (let i = 0; i < 7; i++) statuses.push((await register(made().gate.url, forged(), '203.0.113.50')).status);
      assert.deepEqual(statuses, [403, 403, 403, 403, 403, 429, 429]);
      await made().gate.waitForLog(/ info refused requests interval_s=1 total=\d+ .*top_clients="?203\.0\.113\.50=/, 15_000, since);
      const accounts = [];
      for (let i = 0; i < 3; i++) accounts.push(await register(made().gate.url, sign(), '198.51.100.7'));
      assert.deepEqual(
        accounts.map((answer) => answer.status),
        [200, 200, 429],
      );
      assert.equal(accounts[2]?.body.errcode, 'M_LIMIT_EXCEEDED');
    });

    it('rereads the deny list on SIGHUP', async () => {
      await made().gate.stop();
      await made().gate.start([...ONE_PROCESS, '--deny-list', denyFile]);
      const node = sign();
      const since = made().gate.mark();
      writeFileSync(denyFile, `${node.localpart}\n`);
      made().gate.process()?.child.kill('SIGHUP');
      await made().gate.waitForLog(/reloaded address lists: .*deny list: 1 addresses/, 30_000, since);
      assert.equal((await register(made().gate.url, node)).status, 403);
      writeFileSync(denyFile, '');
      made().gate.process()?.child.kill('SIGHUP');
      await made().gate.waitForLog(/reloaded address lists: .*deny list: 0 addresses/, 30_000, since);
      assert.equal((await register(made().gate.url, node)).status, 200);
    });

    it('acknowledges transactions and answers user queries with the hs_token', async () => {
      const hsToken = String(made().gate.registration.hs_token);
      const transaction = await requestJson(
        'PUT',
        `${made().gate.url}/_matrix/app/v1/transactions/one-${Date.now()}`,
        { events: [{ type: 'm.room.message', sender: `@someone:${serverName}`, origin_server_ts: Date.now(), content: {} }] },
        hsToken,
      );
      assert.equal(transaction.status, 200, JSON.stringify(transaction.body));
      const unknown = await requestJson(
        'GET',
        `${made().gate.url}/_matrix/app/v1/users/${encodeURIComponent(`@0x${'1'.repeat(40)}:${serverName}`)}`,
        undefined,
        hsToken,
      );
      assert.equal(unknown.status, 404);
      assert.equal((await requestJson('PUT', `${made().gate.url}/_matrix/app/v1/transactions/x`, { events: [] }, 'wrong')).status, 403);
    });

    it('on SIGTERM finishes the registration in flight, exits 0 and leaves no process', async () => {
      await made().gate.stop();
      await made().gate.start([...ONE_PROCESS, '--matrixurl', proxy.url]);
      const pid = made().gate.process()?.child.pid as number;
      const node = sign();
      const seen = proxy.seen.length;
      proxy.fault = (method, path) => (method === 'POST' && path === '/_synapse/admin/v1/register' ? 'slow' : 'pass');
      try {
        const inFlight = register(made().gate.url, node);
        await waitFor(
          'the registration at the homeserver',
          async () => (proxy.seen.slice(seen).includes('GET /_synapse/admin/v1/register') ? true : undefined),
          30_000,
        );
        const code = made().gate.stop('SIGTERM');
        assert.equal((await inFlight).status, 200);
        assert.equal(await code, 0);
      } finally {
        proxy.fault = () => 'pass';
      }
      assert.equal(alive(pid), false);
      assert.equal((await passwordLogin(made().homeserverUrl, node.localpart, node.password)).status, 200);
    });
  },
);
