import { strict as assert } from 'node:assert';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import type { Gate } from '../support/gate.js';
import { gateBesideSynapse, type GateBesideSynapse } from '../support/gateBesideSynapse.js';
import { spawnDaemon, waitUntilListening } from '../support/daemonProcess.js';
import { passwordLogin } from '../support/matrixClient.js';
import { postText, RawConnection } from '../support/rawHttp.js';
import {
  alive,
  childrenOf,
  holderOfConnection,
  holdersOfConnections,
  memoryHolds,
  signalIfAlive,
  stopped,
} from '../support/processTree.js';
import { defaultWorkers, PRIMARY_DESCRIPTORS } from '../../src/config/settings.js';
import { RESERVED_DESCRIPTORS } from '../../src/config/openFileLimit.js';
import { startFaultProxy, type FaultProxy } from '../support/faultProxy.js';
import { freePort, waitFor } from '../support/ports.js';
import { synapseAvailability } from '../support/synapse.js';

const availability = synapseAvailability();
const serverName = 'photon.test';

/** One POST on a connection of its own, so that successive requests are spread over the workers. */
function postFresh(url: string, body: unknown, forwardedFor?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return sendFresh('POST', url, JSON.stringify(body), forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor });
}

/** A request on a connection of its own (so that requests spread over the workers), its JSON answer. */
function sendFresh(
  method: string,
  url: string,
  text: string,
  headers: Readonly<Record<string, string>>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(text),
          ...headers,
        },
      },
      (res) => {
        let answer = '';
        res.on('data', (chunk: Buffer) => (answer += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(answer) as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

const sign = () => signRegistration(randomPrivateKey(), serverName);
const forged = () => ({ ...sign(), password: sign().password });

/** A POST whose headers and half its body are sent now, the rest by `finish`, which resolves with the answer's head. */
function heldRequest(url: string, body: string, headers = ''): Promise<{ socket: Socket; finish(): Promise<string> }> {
  const { hostname, port, pathname } = new URL(`${url}/register`);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      const half = Math.floor(body.length / 2);
      socket.write(
        `POST ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}\r\n${body.slice(0, half)}`,
      );
      let answer = '';
      const head = new Promise<string>((done, failed) => {
        socket.on('data', (chunk: Buffer) => {
          answer += chunk.toString('latin1');
          const end = answer.indexOf('\r\n\r\n');
          if (end >= 0) done(answer.slice(0, end + 2));
        });
        socket.on('error', failed);
        socket.on('close', () => failed(new Error(`the connection closed before an answer: ${JSON.stringify(answer)}`)));
      });
      head.catch(() => undefined);
      resolve({
        socket,
        finish: () => {
          socket.write(body.slice(half));
          return head;
        },
      });
    });
    socket.once('error', reject);
  });
}

/** Whether a new connection to the port is refused: nothing listens on it any more. */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

describe(
  'the service on every core: a primary and its workers, against a real Synapse',
  { skip: availability.available ? false : availability.reason },
  () => {
    const scope = suiteScope();
    let deployment: GateBesideSynapse | undefined;
    let secretFile: string;
    let gate: Gate;
    let homeserverUrl: string;
    let proxy: FaultProxy;
    /**
     * The workers of every test but the first (which checks the default, one per core beside the primary): two whatever
     * the machine's cores, so that one can be lost while the other serves, on a machine of one core too.
     */
    const WORKERS = ['--workers', '2'];
    /** The refusal summary lines since `since`, once they count `refusals` in all. */
    const summariesCovering = (refusals: number, since: number): Promise<string[]> =>
      waitFor(
        `summary lines covering all ${refusals} refusals`,
        async () => {
          const lines = [
            ...gate
              .output()
              .slice(since)
              .matchAll(/ info refused requests interval_s=1 total=(\d+).*/g),
          ];
          return lines.reduce((sum, match) => sum + Number(match[1]), 0) === refusals ? lines.map((match) => match[0]) : undefined;
        },
        15_000,
      );

    before(async () => {
      deployment = await gateBesideSynapse(scope, serverName, 'regservice-cluster-');
      ({ gate, homeserverUrl, secretFile } = deployment);
      proxy = await startFaultProxy(scope, homeserverUrl);
    });

    after(async () => {
      await deployment?.end();
    });

    it('serves from the primary and a worker per other core by default; nodes register on each and log in', async () => {
      await gate.start();
      await gate.waitForLog(new RegExp(`matrix-regservice listening .* workers=${defaultWorkers(availableParallelism())}`));
      const nodes = Array.from({ length: 6 }, sign);
      for (const node of nodes) {
        const answer = await postFresh(`${gate.url}/register`, node);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.user_id, `@${node.localpart}:${serverName}`);
        assert.equal((await passwordLogin(homeserverUrl, node.localpart, node.password)).status, 200);
      }
      if (availableParallelism() > 1) {
        // The primary writes each outcome line; it may reach our pipe after the worker's answer reached us.
        const outcomes = / info registration .* worker=\d+ outcome=registered/g;
        await waitFor(
          'every outcome line',
          async () => ((gate.output().match(outcomes)?.length ?? 0) >= nodes.length ? true : undefined),
          10_000,
        );
        const workers = new Set(
          [...gate.output().matchAll(/ info registration .* worker=(\d+) outcome=registered/g)].map((match) => match[1]),
        );
        assert.ok(workers.size > 1, `registrations served by more than one process (0: the primary): ${[...workers].join(',')}`);
      }
      const again = await postFresh(`${gate.url}/register`, nodes[0]);
      assert.equal(again.status, 409, 'the one store in the primary knows every node, whichever worker answers');
    });

    it("holds a client's allowance across workers, and summarizes refusals instead of logging each", async () => {
      await gate.stop();
      await gate.start([...WORKERS, '--verbosity', '3', '--rate-limit-client', '5', '--refusal-summary-interval', '1']);
      const since = gate.mark();
      const answers = [];
      for (let i = 0; i < 12; i++) answers.push((await postFresh(`${gate.url}/register`, forged(), '203.0.113.50')).status);
      assert.deepEqual(answers, [...Array<number>(5).fill(403), ...Array<number>(7).fill(429)]);
      assert.equal((await postFresh(`${gate.url}/register`, forged(), '203.0.113.51')).status, 403, 'another client has its own allowance');

      const summaries = await summariesCovering(13, since);
      assert.ok(
        summaries.some((line) => /top_clients="?203\.0\.113\.50=/.test(line)),
        summaries.join('\n'),
      );
      assert.doesNotMatch(gate.output().slice(since), / registration .*outcome=forbidden/, 'no line per refusal at the default verbosity');
    });

    it("at verbosity 5, as the Go original's run.sh has it, writes at most 10 refusal lines a second and counts the rest", async () => {
      await gate.stop();
      await gate.start([...WORKERS, '--verbosity', '5', '--rate-limit-client', '0', '--refusal-summary-interval', '1']);
      const since = gate.mark();
      const started = Date.now();
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let i = 0; i < 50; i++) await postFresh(`${gate.url}/register`, forged(), '203.0.113.60');
        }),
      );
      const seconds = Math.ceil((Date.now() - started) / 1000) + 1;
      const counted = await summariesCovering(400, since);
      const written = [
        ...gate
          .output()
          .slice(since)
          .matchAll(/ debug registration .*outcome=forbidden/g),
      ].length;
      const unlogged = counted.reduce((sum, line) => sum + Number(/unlogged=(\d+)/.exec(line)?.[1] ?? 0), 0);
      assert.ok(written <= 10 * (seconds + 1), `${written} refusal lines in about ${seconds} s`);
      assert.equal(written + unlogged, 400, 'every refusal is either written or counted as unlogged');
    });

    it('replaces a worker killed with -9, and registrations go on', async () => {
      const primary = gate.process()?.child.pid as number;
      const workers = childrenOf(primary);
      assert.equal(workers.length, 2);
      const since = gate.mark();
      process.kill(workers[0]!, 'SIGKILL');
      await gate.waitForLog(
        new RegExp(`worker \\d+ \\(pid ${workers[0]}\\) exited with signal SIGKILL; starting a replacement`),
        30_000,
        since,
      );
      await waitFor(
        'the replacement',
        async () => (childrenOf(primary).length === workers.length && !childrenOf(primary).includes(workers[0]!) ? true : undefined),
        10_000,
      );
      for (let i = 0; i < 4; i++) {
        const node = sign();
        const answer = await postFresh(`${gate.url}/register`, node);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal((await passwordLogin(homeserverUrl, node.localpart, node.password)).status, 200);
      }
    });

    it("keeps the service's counters across a worker's replacement, and labels each process's metrics by its slot", async () => {
      await gate.stop();
      const metricsPort = await freePort();
      await gate.start([...WORKERS, '--metrics-port', String(metricsPort)]);
      const scrape = async (): Promise<string> =>
        (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      const value = (text: string, series: string): number => {
        const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
        assert.ok(line !== undefined, `no ${series} in:\n${text}`);
        return Number(line.slice(series.length + 1));
      };
      // One connection each: both workers take some.
      for (let i = 0; i < 6; i++) assert.equal((await postFresh(`${gate.url}/register`, sign())).status, 200);
      const before = await scrape();
      const registered = value(before, 'regservice_registrations_total{outcome="registered"}');
      assert.ok(registered >= 6, before);
      assert.equal(value(before, 'regservice_worker_restarts_total'), 0);
      for (const series of ['regservice_homeserver_up', 'regservice_store_up', 'regservice_ready'])
        assert.equal(value(before, series), 1, series);
      assert.equal(value(before, 'regservice_workers_serving'), 3, 'the primary and both workers');
      assert.equal(value(before, 'regservice_workers'), 3);

      const primary = gate.process()?.child.pid as number;
      const workers = childrenOf(primary);
      process.kill(workers[0]!, 'SIGKILL');
      await waitFor(
        'the replacement',
        async () => (childrenOf(primary).length === workers.length && !childrenOf(primary).includes(workers[0]!) ? true : undefined),
        10_000,
      );
      const after = await waitFor(
        'a scrape with both workers',
        async () => {
          const text = await scrape();
          return value(text, 'regservice_workers_serving') === 3 ? text : undefined;
        },
        20_000,
      );
      assert.ok(value(after, 'regservice_registrations_total{outcome="registered"}') >= registered, 'never lower: no reset to read');
      assert.equal(value(after, 'regservice_worker_restarts_total'), 1);
      const processes = new Set([...after.matchAll(/^regservice_process_resident_memory_bytes\{process="([^"]+)"\}/gm)].map((m) => m[1]));
      assert.deepEqual([...processes].sort(), ['0', '1', 'primary'], 'the replacement took its slot: the label does not grow');
    });

    it('acknowledges transactions whatever their events hold (content 6,000 arrays deep), and every worker serves on', async () => {
      const hsToken = String(gate.registration.hs_token);
      const deep = `${'['.repeat(6000)}${']'.repeat(6000)}`;
      const body = `{"events":[{"type":"m.room.message","sender":"@someone:${serverName}","origin_server_ts":${Date.now()},"content":{"body":${deep}}}]}`;
      // One connection each, so that every worker takes some.
      for (let n = 0; n < 4; n++) {
        const answer = await sendFresh('PUT', `${gate.url}/_matrix/app/v1/transactions/deep${n}-${Date.now()}`, body, {
          authorization: `Bearer ${hsToken}`,
        });
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
      }
      for (let n = 0; n < 10; n++) {
        const answer = await postFresh(`${gate.url}/register`, sign());
        assert.equal(answer.status, 200, `registration ${n}: ${JSON.stringify(answer.body)}`);
      }
      assert.doesNotMatch(gate.output(), /cannot be reached/);
    });

    it('tells the truth on /ready and /health within seconds after a worker stops answering, and /metrics still answers', async (t) => {
      await gate.stop();
      const metricsPort = await freePort();
      await gate.start([...WORKERS, '--metrics-port', String(metricsPort)]);
      const metricsUrl = `http://127.0.0.1:${metricsPort}`;
      const read = async (path: string): Promise<{ status: number; body: string }> => {
        const answer = await fetch(`${metricsUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
        return { status: answer.status, body: await answer.text() };
      };
      const workers = childrenOf(gate.process()?.child.pid as number);
      assert.equal(workers.length, 2);
      const stopped: number[] = [];
      t.after(() => stopped.forEach((pid) => process.kill(pid, 'SIGCONT')));
      const ready = await waitFor('ready', async () => ((await read('/ready')).status === 200 ? true : undefined), 30_000);
      assert.ok(ready);

      process.kill(workers[0]!, 'SIGSTOP'); // alive, but it answers nothing: neither the primary nor a client
      stopped.push(workers[0]!);
      const oneDown = await waitFor(
        '/ready to say a worker does not serve',
        async () => {
          const answer = await read('/ready');
          return answer.status === 503 ? answer : undefined;
        },
        10_000,
      );
      assert.deepEqual((JSON.parse(oneDown.body) as { workers: unknown }).workers, { serving: 2, of: 3 });
      assert.equal((await read('/health')).status, 200, 'the primary and a worker still serve');
      assert.match((await read('/metrics')).body, /regservice_registrations_total|regservice_homeserver_calls_in_flight/);

      process.kill(workers[1]!, 'SIGSTOP');
      stopped.push(workers[1]!);
      const primaryAlone = await waitFor(
        '/ready to count the primary alone',
        async () => {
          const answer = await read('/ready');
          const counted = (JSON.parse(answer.body) as { workers: { serving: number } }).workers;
          return counted.serving === 1 ? answer : undefined;
        },
        10_000,
      );
      assert.equal(primaryAlone.status, 503);
      assert.equal((await read('/health')).status, 200, 'the primary still serves');
      assert.equal((await postFresh(`${gate.url}/register`, sign())).status, 200, 'a connection the primary takes is served');

      for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');
      await waitFor('ready again', async () => ((await read('/ready')).status === 200 ? true : undefined), 10_000);
      assert.equal((await read('/health')).status, 200);
    });

    it('spreads a keep-alive flood of forged requests that landed on the primary alone: the workers refuse their share', async (t) => {
      await gate.stop();
      await gate.start([...WORKERS, '--rate-limit-client', '0', '--rate-limit-node', '0']);
      const primary = gate.process()?.child.pid as number;
      const workers = childrenOf(primary);
      assert.equal(workers.length, 2);
      const serving = [primary, ...workers];
      const { port, pathname } = new URL(gate.url);
      // Forged bodies of many nodes, as a flood sends them: each costs the service its signature checks.
      const requests = Array.from({ length: 200 }, () => postText(`${pathname}/register`, forged()));
      const open = new Set<RawConnection>();
      let flooding = true;
      t.after(() => {
        flooding = false;
        for (const pid of workers) signalIfAlive(pid, 'SIGCONT');
        for (const connection of open) connection.destroy();
      });
      // After a quiet spell the idle primary accepts about nine connections of a flood in ten; here all of them: the
      // workers are stopped while the flood connects.
      for (const pid of workers) process.kill(pid, 'SIGSTOP');
      await waitFor('the workers to stop', async () => (workers.every(stopped) ? true : undefined), 5000);
      const first = await Promise.all(Array.from({ length: 32 }, () => RawConnection.open(Number(port))));
      first.forEach((connection) => open.add(connection));
      await waitFor(
        'the primary to accept every connection of the flood',
        async () => {
          const holders = holdersOfConnections(
            serving,
            first.map((connection) => connection.localPort),
          );
          return first.every((connection) => holders.get(connection.localPort) === primary) ? true : undefined;
        },
        5000,
      );
      for (const pid of workers) process.kill(pid, 'SIGCONT');

      const statuses = new Map<number, number>();
      let unanswered = 0;
      let sent = 0;
      /** Answers that closed their connection, and all answers, since the flood began. */
      const answers = { closing: 0, all: 0 };
      /** One client of the flood, as wrk is: a request, its answer, the next; a new connection when one is closed. */
      const client = async (connection: RawConnection): Promise<void> => {
        while (flooding) {
          const answered = connection.responses.length;
          connection.write(requests[sent++ % requests.length] as string);
          const answer = (await connection.waitFor(answered + 1, 10_000))[answered];
          if (answer === undefined) unanswered += 1;
          else statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          answers.all += 1;
          if (answer === undefined || answer.headers.connection === 'close') {
            answers.closing += answer === undefined ? 0 : 1;
            connection.destroy();
            open.delete(connection);
            if (!flooding) return;
            connection = await RawConnection.open(Number(port));
            open.add(connection);
          }
        }
      };
      // A client that fails ends the flood at once (its error is the test's), instead of leaving the rest flooding.
      const flood = Promise.all(
        first.map((connection) =>
          client(connection).catch((error: unknown) => {
            flooding = false;
            throw error;
          }),
        ),
      );
      flood.catch(() => {}); // awaited below; its error must not go unhandled meanwhile
      let closingAfterSpread: { closing: number; all: number } | undefined;
      try {
        const heldByWorkers = (): RawConnection[] => {
          const holders = holdersOfConnections(
            serving,
            [...open].map((connection) => connection.localPort),
          );
          return [...open].filter((connection) => workers.includes(holders.get(connection.localPort) ?? 0));
        };
        const spread = await waitFor(
          "the workers to hold a quarter of the flood's connections",
          async () => {
            if (!flooding) return [];
            const held = heldByWorkers();
            if (held.length >= 8) return held;
            throw new Error(`the workers hold ${held.length} of ${open.size}`); // the last one is in the timeout's message
          },
          20_000,
          undefined,
          250,
        );
        const answeredBefore = new Map(spread.map((connection) => [connection, connection.responses.length]));
        const since = { ...answers };
        await waitFor(
          'the workers to answer on the connections they hold',
          async () =>
            !flooding || spread.some((connection) => connection.responses.length > (answeredBefore.get(connection) ?? 0))
              ? true
              : undefined,
          5000,
        );
        await new Promise((resolve) => setTimeout(resolve, 1000));
        closingAfterSpread = { closing: answers.closing - since.closing, all: answers.all - since.all };
      } finally {
        flooding = false;
        await flood;
      }
      assert.equal(unanswered, 0, 'every request of the flood is answered, on every connection the service closed too');
      assert.deepEqual([...statuses.keys()], [403], `every answer a refusal: ${JSON.stringify([...statuses])}`);
      assert.ok(answers.closing > 0, 'the primary passed connections on');
      // Once spread, workers busy, the primary stops passing connections on (none in a second, measured): no churn.
      const after = closingAfterSpread;
      assert.ok(after.closing <= after.all / 10, `answers closing their connection after the spread: ${JSON.stringify(after)}`);
      assert.equal((await postFresh(`${gate.url}/register`, sign())).status, 200, 'a node registers after the flood');
    });

    it('serves again once a connection flood past its descriptor limit ends: each process holds its bound, sheds the rest and counts them', async (t) => {
      await gate.stop();
      // As an operator's shell with `ulimit -n 300` starts run.sh; --max-connections is left to its default.
      const metricsPort = await freePort();
      const daemon = spawnDaemon(
        t,
        'prlimit',
        [
          '--nofile=300:300',
          join(gate.dir, 'run.sh'),
          ...WORKERS,
          '--refusal-summary-interval',
          '1',
          '--metrics-port',
          String(metricsPort),
        ],
        { cwd: gate.dir },
      );
      await waitUntilListening(daemon, gate.url);
      const ready = async (): Promise<{ status: number; workers?: unknown }> => {
        const answer = await fetch(`http://127.0.0.1:${metricsPort}/ready`, { signal: AbortSignal.timeout(10_000) });
        return { status: answer.status, workers: ((await answer.json()) as { workers?: unknown }).workers };
      };
      await waitFor('ready before the flood', async () => ((await ready()).status === 200 ? true : undefined), 30_000);
      const { port, pathname } = new URL(gate.url);
      const flood: Socket[] = [];
      t.after(() => flood.forEach((socket) => socket.destroy()));
      await Promise.all(
        Array.from(
          { length: 800 },
          () =>
            new Promise<void>((resolve) => {
              const socket = connect(Number(port), '127.0.0.1', () => {
                socket.write(`POST ${pathname}/register HTTP/1.1\r\nHost: gate\r\nContent-`); // half its headers, and no more
                resolve();
              });
              socket.on('error', () => resolve());
              flood.push(socket);
            }),
        ),
      );
      // 2 workers × (300 − 64) connections at most, and the primary fewer by 32 homeserver calls, its store's
      // descriptors and a channel per worker: the rest are shed, and said so in the summary.
      const perWorker = 300 - RESERVED_DESCRIPTORS;
      const held = 2 * perWorker + (perWorker - 32 - PRIMARY_DESCRIPTORS - 2);
      const shed = /refused requests interval_s=1 total=\d+ connection_shed=(\d+)/g;
      const counted = (): number => [...daemon.output().matchAll(shed)].reduce((sum, match) => sum + Number(match[1]), 0);
      await waitFor('the shed connections in the summaries', async () => (counted() >= 800 - held ? true : undefined), 30_000);
      for (const pid of [daemon.child.pid as number, ...childrenOf(daemon.child.pid as number)])
        assert.ok(readdirSync(`/proc/${pid}/fd`).length <= 300, `process ${pid} within its descriptor limit`);
      // A process at its bound takes no connection, and /ready says so. (Another may still have room: a full one goes
      // on accepting and shedding, so they need not fill alike.)
      const full = await waitFor(
        '/ready to say not every process takes connections',
        async () => {
          const answer = await ready();
          return answer.status === 503 ? answer : undefined;
        },
        10_000,
      );
      const workers = full.workers as { serving: number; of: number };
      assert.ok(workers.of === 3 && workers.serving < 3, JSON.stringify(workers));
      flood.splice(0).forEach((socket) => socket.destroy());
      await waitFor('ready again after the flood', async () => ((await ready()).status === 200 ? true : undefined), 10_000);

      const node = sign();
      const answer = await waitFor(
        'a registration after the flood',
        async () => postFresh(`${gate.url}/register`, node).catch(() => undefined),
        10_000,
      );
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      for (let n = 0; n < 6; n++)
        assert.equal((await postFresh(`${gate.url}/register`, sign())).status, 200, `registration ${n} after the flood`);
      assert.doesNotMatch(daemon.output(), /warn .*connection/, 'shed connections are counted, not logged one by one');
      assert.equal(await daemon.stop(), 0);
    });

    it('on SIGTERM finishes the registration in flight, exits 0 and leaves no process', async () => {
      await gate.stop();
      await gate.start([...WORKERS, '--matrixurl', proxy.url]);
      const primary = gate.process()?.child.pid as number;
      const workers = childrenOf(primary);
      const node = sign();
      const seen = proxy.seen.length;
      const inFlight = postFresh(`${gate.url}/register`, node);
      // In flight for sure: the gate has asked the homeserver for its nonce, and has yet to register the node.
      await waitFor(
        'the registration at the homeserver',
        async () => (proxy.seen.slice(seen).includes('GET /_synapse/admin/v1/register') ? true : undefined),
        30_000,
      );
      const code = gate.stop('SIGTERM');
      assert.equal((await inFlight).status, 200);
      assert.equal(await code, 0);
      assert.deepEqual(workers.filter(alive), [], 'no worker outlives the primary');
      assert.equal((await passwordLogin(homeserverUrl, node.localpart, node.password)).status, 200);
    });

    it('keeps every secret out of the workers: not in their environment, arguments or memory', async () => {
      await gate.start(WORKERS);
      await gate.waitForLog(/ping succeeded/);
      const primary = gate.process()?.child.pid as number;
      const registration = gate.registration as { as_token: string; hs_token: string };
      const sharedSecret = readFileSync(secretFile, 'utf8').trim();
      // The workers have served Synapse's pings and transactions, which present the hs_token: only its digest is theirs.
      const primaryCmdline = readFileSync(`/proc/${primary}/cmdline`, 'utf8');
      assert.ok(
        primaryCmdline.includes('--v8-pool-size=1') && primaryCmdline.includes('--no-concurrent-recompilation'),
        "run.sh's flags for the primary",
      );
      for (const worker of childrenOf(primary)) {
        const cmdline = readFileSync(`/proc/${worker}/cmdline`, 'utf8');
        assert.ok(
          !cmdline.includes('--v8-pool-size') &&
            !cmdline.includes('--no-concurrent-recompilation') &&
            cmdline.includes('--max-semi-space-size=2'),
          'the workers have their own V8 flags',
        );
        const environ = readFileSync(`/proc/${worker}/environ`, 'utf8') + cmdline;
        for (const secret of [sharedSecret, registration.as_token, registration.hs_token]) assert.ok(!environ.includes(secret));
        if (process.getuid?.() === 0) assert.deepEqual(memoryHolds(worker, [sharedSecret, registration.as_token]), [], `worker ${worker}`);
      }
      if (process.getuid?.() === 0) {
        assert.deepEqual(
          memoryHolds(primary, [sharedSecret, registration.as_token]).sort(),
          [sharedSecret, registration.as_token].sort(),
          'the scan finds what the primary holds',
        );
      }
    });

    it("completes a registration whose worker was killed mid-way: one outcome line, from the primary, and the node's retry gets 200 once", async (t) => {
      await gate.stop();
      await gate.start([...WORKERS, '--matrixurl', proxy.url]);
      const primary = gate.process()?.child.pid as number;
      const node = sign();
      proxy.fault = (method, path) => (method === 'POST' && path === '/_synapse/admin/v1/register' ? 'slow' : 'pass');
      const seen = proxy.seen.length;
      // The primary serves too: the request goes on a connection a worker accepted.
      const body = JSON.stringify(node);
      const opened: Socket[] = [];
      t.after(() => opened.forEach((socket) => socket.destroy()));
      const held = await waitFor(
        'a connection a worker accepted',
        async () => {
          const request = await heldRequest(gate.url, body, 'X-Forwarded-For: 198.51.100.77\r\n');
          opened.push(request.socket);
          const holder = await waitFor(
            'the process that accepted it',
            async () => holderOfConnection([primary, ...childrenOf(primary)], request.socket.localPort as number),
            5000,
          );
          return holder === primary ? undefined : request;
        },
        10_000,
      );
      const lost = held.finish().then(
        () => 'answered',
        () => 'connection lost',
      );
      await waitFor(
        'the homeserver call',
        async () => (proxy.seen.slice(seen).includes('POST /_synapse/admin/v1/register') ? true : undefined),
        10_000,
      );
      for (const worker of childrenOf(primary)) process.kill(worker, 'SIGKILL');
      assert.equal(await lost, 'connection lost');
      const line = new RegExp(
        `info registration localpart=${node.localpart} client=198\\.51\\.100\\.77 worker=\\d+ outcome=registered status=200`,
      );
      await gate.waitForLog(line, 30_000);
      proxy.fault = () => 'pass';
      await waitFor('replacement workers', async () => (childrenOf(primary).length === 2 ? true : undefined), 30_000);
      await waitFor(
        'the gate to answer again',
        async () => (await postFresh(`${gate.url}/register`, {}).then((answer) => answer.status === 400)) || undefined,
        10_000,
      );
      assert.equal([...gate.output().matchAll(new RegExp(line.source, 'g'))].length, 1, 'one outcome line for the lost answer');
      const retry = await postFresh(`${gate.url}/register`, node, '198.51.100.77');
      assert.equal(retry.status, 200, JSON.stringify(retry.body));
      assert.equal(retry.body.user_id, `@${node.localpart}:${serverName}`);
      assert.equal((await postFresh(`${gate.url}/register`, node)).status, 409, "the retry's 200 reached the node");
      assert.equal((await passwordLogin(homeserverUrl, node.localpart, node.password)).status, 200);
    });

    it("answers 409 to a node's copy of its request sent on a new connection the moment its 200 arrived, whichever process takes it", async () => {
      await gate.stop();
      // One worker beside the primary (the default on two cores), where the race showed most: 5 of 60 copies got a
      // second 200 without the wait, none with two workers in one run.
      await gate.start(['--workers', '1']);
      // The report that a 200 reached its node crosses the worker's channel, and may come after the copy, which
      // another process took: the primary waits for it.
      const answers = new Map<string, number>();
      for (let index = 0; index < 60; index++) {
        const node = sign();
        const client = `10.77.${index}.1`;
        const first = await postFresh(`${gate.url}/register`, node, client);
        assert.equal(first.status, 200, JSON.stringify(first.body));
        const copy = await postFresh(`${gate.url}/register`, node, client);
        const key = `${copy.status} ${typeof copy.body.errcode === 'string' ? copy.body.errcode : '-'}`;
        answers.set(key, (answers.get(key) ?? 0) + 1);
      }
      assert.deepEqual([...answers], [['409 M_USER_IN_USE', 60]]);
      await gate.stop();
      await gate.start(WORKERS);
    });

    it('stops on SIGTERM under keep-alive load: answers with Connection: close and exits while the load goes on', async () => {
      const primary = gate.process()?.child.pid as number;
      const workers = childrenOf(primary);
      const agent = new Agent({ keepAlive: true, maxSockets: 8 });
      let loading = true;
      const body = JSON.stringify(forged());
      const loop = async (): Promise<void> => {
        while (loading) {
          await new Promise<void>((resolve) => {
            const req = request(
              `${gate.url}/register`,
              { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
              (res) => {
                res.resume();
                res.on('end', resolve);
              },
            );
            req.on('error', () => setTimeout(resolve, 10));
            req.end(body);
          });
        }
      };
      const load = Promise.all(Array.from({ length: 8 }, loop));
      // Requests whose body is still on its way when the stop begins: whichever worker holds them is answering them
      // while it stops. (The load's own answers may all fall between requests, so they prove nothing either way.)
      const held = await Promise.all([heldRequest(gate.url, body), heldRequest(gate.url, body)]);
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const stopped = gate.stop('SIGTERM');
        const port = Number(new URL(gate.url).port);
        await waitFor('every worker to stop listening', async () => ((await connectionRefused(port)) ? true : undefined), 10_000);
        const heads = await Promise.all(held.map((request) => request.finish()));
        const code = await stopped;
        const stillLoading = loading;
        loading = false;
        await load;
        assert.equal(code, 0);
        assert.equal(stillLoading, true, 'the service stopped while clients kept their connections busy');
        for (const head of heads)
          assert.match(head, /^HTTP\/1\.1 \d{3} [^]*\r\nconnection: close\r\n/im, 'answers during the stop say Connection: close');
        assert.deepEqual(workers.filter(alive), [], 'no worker outlives the primary');
      } finally {
        loading = false;
        agent.destroy();
        for (const request of held) request.socket.destroy();
      }
    });

    it('ends the workers when the primary is killed', async () => {
      await gate.start(WORKERS);
      const primary = gate.process()?.child.pid as number;
      const workers = childrenOf(primary);
      assert.ok(workers.length > 0);
      assert.equal(await gate.stop('SIGKILL'), null);
      await waitFor('the workers to exit', async () => (workers.some(alive) ? undefined : true), 10_000);
    });
  },
);
