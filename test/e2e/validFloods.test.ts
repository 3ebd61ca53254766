import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { generateGate, type Gate } from '../support/gate.js';
import { requestJson } from '../support/matrixClient.js';
import { freePort, waitFor } from '../support/ports.js';
import { count, floodAddresses, registerAs, startFlood, type Attempt, type Flood, type FloodTally } from '../support/registrationFlood.js';
import { suiteScope } from '../support/scope.js';
import { createAdmin, ownSynapseSkip, startSynapse, type RunningSynapse } from '../support/synapse.js';

const serverName = 'floods.regservice.test';

/** The refusal summaries in `output`: each one's counts per outcome and its top clients. */
function summariesOf(output: string): { outcomes: Map<string, number>; clients: Map<string, number> }[] {
  return [...output.matchAll(/refused requests interval_s=\S+ total=\d+ (.*?) top_clients="?([^"\s]*)/g)].map((match) => ({
    outcomes: new Map([...(match[1] ?? '').matchAll(/(\w+)=(\d+)/g)].map((pair) => [pair[1] as string, Number(pair[2])])),
    clients: new Map(
      (match[2] ?? '')
        .split(',')
        .filter((entry) => entry !== '')
        .map((entry) => {
          const at = entry.lastIndexOf('=');
          return [entry.slice(0, at), Number(entry.slice(at + 1))];
        }),
    ),
  }));
}

const answersOf = (tally: FloodTally): string => JSON.stringify([...tally.answers]);

const summed = (
  summaries: ReturnType<typeof summariesOf>,
  pick: (summary: ReturnType<typeof summariesOf>[number]) => Map<string, number>,
  key: string,
): number => summaries.reduce((sum, summary) => sum + (pick(summary).get(key) ?? 0), 0);

describe('floods of valid registrations against a real Synapse', { skip: ownSynapseSkip() }, () => {
  const scope = suiteScope();
  let work: string;
  let synapse: RunningSynapse;
  let gate: Gate;
  let adminToken: string;
  const floods: Flood[] = [];

  /** Users on the Synapse, counted by its admin API. */
  const synapseUsers = async (): Promise<number> => {
    const answer = await requestJson('GET', `${synapse.url}/_synapse/admin/v2/users?limit=1`, undefined, adminToken);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    return Number(answer.body.total);
  };
  const flood = (address: (n: number) => string, concurrency: number): Flood => {
    const started = startFlood({ gateUrl: gate.url, serverName, concurrency, address });
    floods.push(started);
    return started;
  };
  const stopFloods = async (): Promise<void> => {
    await Promise.all(floods.splice(0).map((started) => started.stop()));
  };
  /**
   * The summaries written since `since`, once they count at least `refusals` of `outcome`: the interval that holds the
   * last refusals ends when the service's timer fires, which a busy machine delays.
   */
  const summariesCounting = (since: number, outcome: string, refusals: number): Promise<ReturnType<typeof summariesOf>> =>
    waitFor(
      `refusal summaries counting ${refusals} ${outcome}`,
      async () => {
        const found = summariesOf(gate.output().slice(since));
        return summed(found, (summary) => summary.outcomes, outcome) >= refusals ? found : undefined;
      },
      30_000,
    );

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'regservice-floods-'));
    const secretFile = join(work, 'shared_secret');
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
    adminToken = await createAdmin(synapse, `admin${randomBytes(4).toString('hex')}`, randomBytes(16).toString('hex'));
  });

  after(async () => {
    await stopFloods();
    if (gate !== undefined) await gate.stop();
    if (synapse !== undefined) await synapse.stop();
    for (const dir of [work, gate?.dir]) if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it(
    'shares the homeserver fairly: 20 nodes from other networks get 200 at their first try during two floods',
    { timeout: 100_000 },
    async (t) => {
      // Ceilings out of the way: what holds the floods back here is the homeserver's pace and the queue's fairness.
      const raised = ['ipv4', 'ipv4-24', 'ipv6-64', 'ipv6-56', 'ipv6-48'].flatMap((ceiling) => [
        `--accounts-per-hour-${ceiling}`,
        '1000000',
      ]);
      // A smaller queue than the default 256 fills with fewer loops: the floods' refusals then cost the 2 cores less.
      await gate.start(['--refusal-summary-interval', '1', '--max-queued', '64', ...raised]);
      t.after(() => gate.stop());
      const since = gate.mark();
      const usersBefore = await synapseUsers();

      // One home connection's /56 (256 /64s) and one /24, both well past what the 32 homeserver slots and 64 queued hold.
      const fromSite = flood(floodAddresses.ipv6Site('2001:db8:0:56'), 60);
      const fromNetwork = flood(floodAddresses.ipv4Network('203.0.113'), 60);
      await waitFor(
        'both floods refused for a full queue',
        async () => (count(fromSite.tally(), 503) > 0 && count(fromNetwork.tally(), 503) > 0 ? true : undefined),
        30_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: /56 ${answersOf(fromSite.tally())}, /24 ${answersOf(fromNetwork.tally())}`);
      });

      const legitimate = Array.from({ length: 20 }, (_, index) => ({
        body: signRegistration(randomPrivateKey(), serverName),
        client: index % 2 === 0 ? `198.51.${100 + index}.7` : `2001:db8:${(0x100 + index).toString(16)}::7`,
      }));
      const attempts: Attempt[] = await Promise.all(
        legitimate.map(async ({ body, client }, index) => {
          await new Promise((resolve) => setTimeout(resolve, index * 250));
          return registerAs(gate.url, body, client);
        }),
      );
      const [site, network] = await Promise.all([fromSite.stop(), fromNetwork.stop()]);
      floods.length = 0;

      const slowest = Math.round(Math.max(...attempts.map((attempt) => attempt.ms)));
      t.diagnostic(`/56 flood ${answersOf(site)}, /24 flood ${answersOf(network)}; the slowest legitimate node took ${slowest} ms`);
      attempts.forEach((attempt, index) => assert.equal(attempt.status, 200, `legitimate node ${index}: ${JSON.stringify(attempt)}`));
      for (const [name, tally] of [
        ['/56', site],
        ['/24', network],
      ] as const) {
        assert.deepEqual(
          [...tally.answers.keys()].sort(),
          ['200 -', '503 M_UNKNOWN'],
          `the ${name} flood is held back by the queue only: ${JSON.stringify([...tally.answers])}`,
        );
        assert.equal(tally.withoutRetryAfter, 0);
      }
      // Round robin between the two floods: neither took the homeserver from the other.
      const [fewer, more] = [count(site, 200), count(network, 200)].sort((a, b) => a - b) as [number, number];
      assert.ok(more <= 2 * fewer, `the floods' shares of the homeserver: /56 ${count(site, 200)}, /24 ${count(network, 200)}`);

      // Every 200 is an account on Synapse, and nothing else is.
      assert.equal((await synapseUsers()) - usersBefore, count(site, 200) + count(network, 200) + legitimate.length);

      for (const { body, client } of legitimate) {
        // An IPv6 client is named by its /64, as its request limit counts it.
        const named = client.includes(':') ? `${client.replace(/::7$/, '::')}/64` : client;
        await gate.waitForLog(
          new RegExp(`registration localpart=${body.localpart} client=${named} worker=\\d+ outcome=registered status=200`),
          30_000,
          since,
        );
      }
      // The summaries name the networks held back, each with every one of its refusals, and nobody else.
      const summaries = await summariesCounting(since, 'busy', count(site, 503) + count(network, 503));
      assert.equal(
        summed(summaries, (summary) => summary.outcomes, 'busy'),
        count(site, 503) + count(network, 503),
      );
      assert.equal(
        summed(summaries, (summary) => summary.clients, '2001:db8::/48'),
        count(site, 503),
      );
      assert.equal(
        summed(summaries, (summary) => summary.clients, '203.0.113.0/24'),
        count(network, 503),
      );
      const named = new Set(summaries.flatMap((summary) => [...summary.clients.keys()]));
      assert.deepEqual([...named].sort(), ['2001:db8::/48', '203.0.113.0/24']);
    },
  );

  it(
    'with the default ceilings, a /56 flood stops at 120 accounts and a /24 flood at 240; other networks still register',
    { timeout: 100_000 },
    async (t) => {
      await gate.start(['--refusal-summary-interval', '1']);
      t.after(() => gate.stop());
      const since = gate.mark();
      const usersBefore = await synapseUsers();

      const fromSite = flood(floodAddresses.ipv6Site('2001:db8:1:56'), 16);
      const fromNetwork = flood(floodAddresses.ipv4Network('192.0.2'), 16);
      await waitFor(
        'both floods at their ceilings',
        async () => (count(fromSite.tally(), 429) >= 10 && count(fromNetwork.tally(), 429) >= 10 ? true : undefined),
        60_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: /56 ${answersOf(fromSite.tally())}, /24 ${answersOf(fromNetwork.tally())}`);
      });
      const [site, network] = await Promise.all([fromSite.stop(), fromNetwork.stop()]);
      floods.length = 0;

      assert.equal(count(site, 200), 120, JSON.stringify([...site.answers]));
      assert.equal(count(network, 200), 240, JSON.stringify([...network.answers]));
      for (const tally of [site, network]) {
        assert.deepEqual([...tally.answers.keys()].sort(), ['200 -', '429 M_LIMIT_EXCEEDED']);
        assert.equal(tally.withoutRetryAfter, 0);
      }
      const refused = await registerAs(gate.url, signRegistration(randomPrivateKey(), serverName), '2001:db8:1:56aa::9');
      assert.equal(refused.status, 429);
      const retryAfter = Number(refused.retryAfter);
      assert.ok(retryAfter > 3000 && retryAfter <= 3600, `Retry-After ${refused.retryAfter}: the hour's window`);

      const others = await Promise.all([
        registerAs(gate.url, signRegistration(randomPrivateKey(), serverName), '2001:db8:1:5700::1'),
        registerAs(gate.url, signRegistration(randomPrivateKey(), serverName), '192.0.3.1'),
      ]);
      for (const other of others) assert.equal(other.status, 200, JSON.stringify(other));
      assert.equal((await synapseUsers()) - usersBefore, 120 + 240 + others.length);

      const summaries = await summariesCounting(since, 'account_limited', count(site, 429) + count(network, 429) + 1);
      assert.equal(
        summed(summaries, (summary) => summary.outcomes, 'account_limited'),
        count(site, 429) + count(network, 429) + 1,
      );
      assert.equal(
        summed(summaries, (summary) => summary.clients, '2001:db8:1:5600::/56'),
        count(site, 429) + 1,
      );
      assert.equal(
        summed(summaries, (summary) => summary.clients, '192.0.2.0/24'),
        count(network, 429),
      );
    },
  );

  it(
    'a service-wide ceiling refuses every new node once reached, says so in each interval that held a refusal and counts it in /metrics',
    { timeout: 60_000 },
    async (t) => {
      const metricsPort = await freePort();
      await gate.start(['--refusal-summary-interval', '1', '--accounts-per-hour', '3', '--metrics-port', String(metricsPort)]);
      t.after(() => gate.stop());
      const since = gate.mark();
      const warning = /warn the service-wide ceiling of new accounts is reached: every new node gets 429 until \S+ ceiling=accounts-hour/g;
      const fromEverywhere = ['198.51.7.1', '2001:db8:aaaa::1', '192.0.2.200', '203.0.113.77', '2001:db8:bbbb::1'];
      const answers: Attempt[] = [];
      for (const [index, client] of fromEverywhere.entries()) {
        // The second refusal only once the first one's interval has been summarized: the two are in two intervals
        // whatever the machine's pace. (That two refusals in one interval make one line is unit-tested on a clock
        // the test controls: refusalSummaries.test.ts.)
        if (index === 4) await gate.waitForLog(warning, 30_000, since);
        answers.push(await registerAs(gate.url, signRegistration(randomPrivateKey(), serverName), client));
      }
      assert.deepEqual(
        answers.map((answer) => answer.status),
        [200, 200, 200, 429, 429],
      );
      assert.deepEqual(
        answers.slice(3).map((answer) => answer.errcode),
        ['M_LIMIT_EXCEEDED', 'M_LIMIT_EXCEEDED'],
      );
      assert.ok(Number(answers[3]?.retryAfter) > 3000, `Retry-After ${answers[3]?.retryAfter}`);

      // An interval writes its ceiling line before its summary: once the summaries count both refusals, every line
      // about them is written.
      const summaries = await waitFor(
        'the summaries of both refusals',
        async () => {
          const found = summariesOf(gate.output().slice(since));
          return summed(found, (summary) => summary.clients, 'service') >= 2 ? found : undefined;
        },
        30_000,
      );
      assert.equal(
        summed(summaries, (summary) => summary.clients, 'service'),
        2,
        'the summaries name the whole service as held back',
      );
      assert.equal([...gate.output().slice(since).matchAll(warning)].length, 2, 'one line for each interval that held a refusal');
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /regservice_account_ceiling_refusals_total\{ceiling="accounts-hour"\} 2\b/);
    },
  );
});
