import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from '../support/timedTests.js';
import { promisify } from 'node:util';
import { addressOfPrivateKey, registerNode } from '../../src/index.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { containerLogs, containerSkip, IMAGES, podman, podmanEnv, podmanSocket, removeEndedRuns } from '../support/containers.js';
import { passwordLogin, requestJson } from '../support/matrixClient.js';
import { freePort, waitFor } from '../support/ports.js';
import { readmeShellBlocks, scenarioBlocks } from '../support/readmeBlocks.js';
import { blockStatuses, scenarioScript } from '../support/readmeScenario.js';
import { suiteScope } from '../support/scope.js';
import { tempDir } from '../support/tempDir.js';

const execute = promisify(execFile);
const REPO = new URL('../../', import.meta.url).pathname;
const COMPOSE_PRELUDE = new URL('../support/readmeComposePrelude.sh', import.meta.url).pathname;
const SECTION = 'Running with Docker';
/** The scenarios this file runs, each of README blocks marked with its name. */
const SCENARIOS = ['compose', 'compose-backup', 'compose-earlier', 'compose-monitoring', 'compose-postgres'];
const serverName = 'containers.test';
/** Not the default 172.28.56: every pinned address, and the one the service trusts, must follow TRANSPORT_SUBNET. */
const subnet = '172.31.77';
/** What the operator writes into .env for compose.postgres.yaml. */
const PG_PASSWORD = 'a-long-random-password-for-the-test';

describe(`the README: every shell block of "${SECTION}" is run by the container test or says why not`, () => {
  it('has a marker on each block, and each scenario this file runs holds blocks', () => {
    const blocks = readmeShellBlocks().filter((block) => block.section === SECTION);
    const unmarked = blocks.filter((block) => block.marker === undefined);
    assert.deepEqual(
      unmarked.map((block) => `README.md:${block.line}`),
      [],
      'each needs <!-- README test: SCENARIO --> or <!-- README test: not run: REASON -->',
    );
    const named = new Set(
      blocks.flatMap((block) => (block.marker !== undefined && 'scenario' in block.marker ? [block.marker.scenario] : [])),
    );
    assert.deepEqual([...named].sort(), [...SCENARIOS].sort());
  });
});

/** What a scenario printed, and how it ended. */
interface ScenarioRun {
  readonly code: number;
  readonly output: string;
}

describe('Running with Docker as the README writes it, in real containers (podman, Compose v1)', { skip: containerSkip() }, () => {
  const scope = suiteScope();
  const project = `regsvc${process.pid}`;
  /** A copy of this checkout, as an operator's clone: the README's `cd deploy/compose` and `cp .env.example .env` run in it. */
  const checkout = join(tempDir('regservice-clone-'), 'matrix-regservice');
  const composeDir = join(checkout, 'deploy', 'compose');
  /** Where the scenarios keep the operator's current directory between blocks. */
  const shellState = tempDir('regservice-readme-compose-');
  let env: NodeJS.ProcessEnv;
  let publicUrl: string;
  let prometheusUrl: string;
  let first: ScenarioRun;
  const key = randomPrivateKey();

  /** docker-compose in the clone's deploy/compose, on the test's variables (the project, images, volumes, network). */
  const compose = async (...args: string[]): Promise<string> =>
    (await execute('docker-compose', args, { cwd: composeDir, env, timeout: 180_000 })).stdout;
  const container = (service: string): string => `${project}_${service}_1`;

  /** The README's blocks of one scenario, as written, through the substitution table (README, "Tests"). */
  const runScenario = async (
    name: string,
    options: { before?: string; after?: string; edits?: Record<string, string>; env?: NodeJS.ProcessEnv } = {},
  ): Promise<ScenarioRun> => {
    const script = join(shellState, `${name}.sh`);
    writeFileSync(script, scenarioScript(scenarioBlocks(name), { stateDir: shellState, prelude: COMPOSE_PRELUDE, ...options }));
    return new Promise((resolve) => {
      const child = execFile(
        'bash',
        [script],
        { env: { ...env, ...options.env }, timeout: 480_000, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) =>
          resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), output: stdout + stderr }),
      );
      child.stdin?.end();
    });
  };
  const tail = (run: ScenarioRun): string => run.output.slice(-6000);

  before(
    async () => {
      await removeEndedRuns();
      cpSync(REPO, checkout, {
        recursive: true,
        filter: (source) => !/\/(node_modules|dist|\.git|\.matrix|\.bench)(\/|$)/.test(source.slice(REPO.length - 1)),
      });
      writeFileSync(join(shellState, '.readme-cwd'), `${checkout}\n`);
      const port = await freePort();
      publicUrl = `http://127.0.0.1:${port}`;
      const prometheusPort = await freePort();
      prometheusUrl = `http://127.0.0.1:${prometheusPort}`;
      // The variables the README names (.env.example lists them): shell variables win over .env.
      env = {
        ...podmanEnv(),
        DOCKER_HOST: await podmanSocket(scope),
        COMPOSE_PROJECT_NAME: project,
        SERVER_NAME: serverName,
        PUBLIC_PORT: `127.0.0.1:${port}`,
        TRANSPORT_SUBNET: subnet,
        NETWORK: `${project}-transport`,
        SYNAPSE_VOLUME: `${project}-synapse-data`,
        REGSERVICE_VOLUME: `${project}-regservice-data`,
        POSTGRES_VOLUME: `${project}-postgres-data`,
        SYNAPSE_IMAGE: IMAGES.synapse,
        NGINX_IMAGE: IMAGES.nginx,
        POSTGRES_IMAGE: IMAGES.postgres,
        PROMETHEUS_IMAGE: IMAGES.prometheus,
        PROMETHEUS_PORT: String(prometheusPort),
        PROMETHEUS_VOLUME: `${project}-prometheus-data`,
        REGSERVICE_IMAGE: IMAGES.service,
        BUILD_BASE: IMAGES.nodeBuild,
        RUNTIME_BASE: IMAGES.node,
      };
      scope.after(async () => {
        await compose('--profile', 'monitoring', 'down', '--volumes', '--remove-orphans').catch(() => undefined);
        await podman(['volume', 'rm', '--force', `${project}-guide-synapse-data`, `${project}-earlier-regservice-data`]).catch(
          () => undefined,
        );
        await podman(['network', 'rm', '--force', `${project}-transport`]).catch(() => undefined);
      });
      // The README's first start, block by block, `docker compose build regservice` included (npm ci and tsc in the
      // builder: about a minute, more on a cold npm cache).
      first = await runScenario('compose');
    },
    { timeout: 600_000 },
  );

  it("runs the README's first start as written: the network, the build, generate, setup, up", () => {
    assert.equal(first.code, 0, tail(first));
    assert.match(first.output, /^::blocks done$/m, tail(first));
    const statuses = blockStatuses(first.output);
    assert.ok(statuses.size >= 2 && [...statuses.values()].every((status) => status === 0), tail(first));
    assert.match(first.output, /Patched \/data\/homeserver\.yaml/);
  });

  it('built an image that runs as 991 with the libsecp256k1 prebuild, and a HEALTHCHECK', async () => {
    const config = JSON.parse(await podman(['image', 'inspect', IMAGES.service])) as {
      Config: { User: string };
      Healthcheck?: { Test: string[] };
    }[];
    assert.equal(config[0]?.Config.User, '991:991');
    assert.deepEqual(config[0]?.Healthcheck?.Test, ['CMD', 'node', '/app/dist/container/healthcheck.js']);
    const loads = await podman([
      'run',
      '--rm',
      '--entrypoint',
      'node',
      IMAGES.service,
      '-e',
      "require('/app/node_modules/secp256k1/bindings'); console.log('native')",
    ]);
    assert.equal(loads.trim(), 'native');
  });

  it("gives each volume's owner its own 0600 files: Synapse's copy in /data, the service's in its volume", async () => {
    await waitFor(
      'Synapse through nginx',
      async () => ((await fetch(`${publicUrl}/_matrix/client/versions`).catch(() => undefined))?.ok === true ? true : undefined),
      90_000,
    );
    const copy = await podman(['exec', container('synapse'), 'stat', '-c', '%u:%g %a', '/data/matrix-regservice.yaml']);
    assert.equal(copy.trim(), '991:991 600');
    const files = await podman(['exec', container('regservice'), 'sh', '-c', 'cd /var/lib/matrix-regservice && stat -c "%n %u %a" *']);
    assert.deepEqual(files.trim().split('\n').sort(), [
      'registration.yaml 991 600',
      'registration_shared_secret 991 600',
      'regservice.yaml 991 600',
      'state 991 700',
    ]);
  });

  it('registers a node through the nginx container; the node logs in; the healthcheck passes', async () => {
    const node = await waitFor(
      'a registration through nginx',
      async () => registerNode({ privateKey: key, homeserverUrl: publicUrl, serverName }).catch(() => undefined),
      60_000,
    );
    assert.equal(node.userId, `@${addressOfPrivateKey(key)}:${serverName}`);
    const health = await execute('podman', ['healthcheck', 'run', container('regservice')], { env }).then(
      () => 0,
      (error: { code?: number }) => error.code ?? 1,
    );
    assert.equal(health, 0, 'podman healthcheck run');
    const logs = await containerLogs(container('regservice'));
    const client = new RegExp(`info registration localpart=${addressOfPrivateKey(key)} client=(\\S+) worker=\\d+ outcome=registered`).exec(
      logs,
    )?.[1];
    assert.ok(client !== undefined, logs);
    assert.notEqual(client, `${subnet}.10`, "the client nginx named, not nginx: the service trusts nginx's address on this subnet");
    assert.doesNotMatch(
      logs,
      /warn registration requests came from a trusted proxy address \(--trusted-proxies\) without a client address/,
    );
  });

  it("backs up the registry while the service runs, as the README's command does: JSON lines alone", async () => {
    const backup = await runScenario('compose-backup');
    assert.equal(backup.code, 0, tail(backup));
    const lines = readFileSync(join(composeDir, 'nodes.jsonl'), 'utf8').trimEnd().split('\n');
    assert.ok(lines.length > 0);
    for (const line of lines) JSON.parse(line);
    assert.ok(
      lines.some((line) => line.includes(addressOfPrivateKey(key))),
      lines.join('\n'),
    );
  });

  it('monitors it with the monitoring profile: Prometheus scrapes the unpublished metrics listener, with the rules', async () => {
    const started = await runScenario('compose-monitoring');
    assert.equal(started.code, 0, tail(started));
    try {
      const target = await waitFor(
        'Prometheus scraping the service',
        async () => {
          const answer = await fetch(`${prometheusUrl}/api/v1/targets`).catch(() => undefined);
          if (answer?.ok !== true) return undefined;
          const body = (await answer.json()) as {
            data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] };
          };
          const found = body.data.activeTargets.find((candidate) => candidate.labels.job === 'matrix-regservice');
          return found?.health === 'up' ? found : undefined;
        },
        90_000,
      );
      assert.equal(target.lastError, '');
      const rules = (await (await fetch(`${prometheusUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: unknown[] }[] } };
      assert.equal(rules.data.groups.flatMap((group) => group.rules).length, 11, 'the alert rules are loaded');
      assert.equal((await podman(['port', container('regservice')])).trim(), '', "the service's ports are not published");
    } finally {
      await compose('--profile', 'monitoring', 'rm', '--stop', '--force', 'prometheus');
    }
  });

  it('keeps its registry across a restart of its container and across compose down and up (the volumes)', async () => {
    const again = () => requestJson('POST', `${publicUrl}/regapp/1/register`, signRegistration(key, serverName));
    await compose('restart', 'regservice');
    let seen = 0;
    await waitFor('the service after its restart', async () => ((seen = (await again()).status) === 409 ? true : undefined), 60_000).catch(
      async (error: Error) => {
        throw new Error(`${error.message}: last status ${seen}\n${await containerLogs(container('nginx'))}`);
      },
    );
    await compose('down');
    await compose('up', '-d');
    await waitFor('the deployment after down and up', async () => ((await again()).status === 409 ? true : undefined), 90_000);
    const login = await waitFor(
      'the node logging in after down and up',
      async () => {
        const answer = await passwordLogin(publicUrl, addressOfPrivateKey(key), signRegistration(key, serverName).password);
        return answer.status === 502 ? undefined : answer; // Synapse still starting behind nginx
      },
      90_000,
    );
    assert.equal(login.status, 200);
  });

  it('runs setup again while the deployment is up: no link, no address taken, and it says to restart', async () => {
    const again = await compose('run', '--rm', 'setup', '--force');
    assert.match(again, /Synapse's configuration already lists this deployment's registration/);
    assert.match(again, /docker compose restart synapse/);
  });

  it('moves the registry into PostgreSQL as the README says: the password from .env on standard input, store copy, up', async () => {
    const moved = await runScenario('compose-postgres', {
      edits: { 'postgres-password': `cd ${composeDir} && sed -i 's/^# POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=${PG_PASSWORD}/' .env` },
      after: `podman exec ${container('regservice')} stat -c "::password %u %a %s" /var/lib/matrix-regservice/db-password`,
    });
    assert.equal(moved.code, 0, tail(moved));
    assert.match(moved.output, /^::blocks done$/m, tail(moved));
    assert.match(moved.output, new RegExp(`^::password 991 600 ${PG_PASSWORD.length + 1}$`, 'm'), 'the password, and its line end, alone');
    assert.match(moved.output, /^registered nodes: 1 copied, 0 already there$/m, tail(moved));
    // The node registered on LevelDB is known to the PostgreSQL store; a new one registers there.
    const again = () => requestJson('POST', `${publicUrl}/regapp/1/register`, signRegistration(key, serverName));
    await waitFor('the service on PostgreSQL', async () => ((await again()).status === 409 ? true : undefined), 90_000);
    const other = randomPrivateKey();
    const node = await waitFor(
      'a registration stored in PostgreSQL',
      async () => registerNode({ privateKey: other, homeserverUrl: publicUrl, serverName }).catch(() => undefined),
      120_000,
    );
    assert.equal(node.userId, `@${addressOfPrivateKey(other)}:${serverName}`);
    assert.match(
      await containerLogs(container('regservice')),
      /store="postgresql postgresql:\/\/regservice@postgres\/regservice\?sslmode=disable"/,
    );
  });

  it('stops an idle service container on SIGTERM by itself, as an operator stops it: exit 0 within its grace period', async () => {
    await podman(['stop', container('regservice')]);
    const state = JSON.parse(await podman(['inspect', container('regservice')])) as { State: { ExitCode: number } }[];
    assert.equal(state[0]?.State.ExitCode, 0);
  });

  it('on an earlier Synapse volume (another name, UID 1000, open registration) with Synapse running: Synapse ends up on the patched file', async () => {
    await compose('down');
    // The earlier setup: a volume named otherwise, made by Synapse's image under UID 1000, with open registration,
    // and that Synapse running.
    const earlier = {
      SYNAPSE_VOLUME: `${project}-guide-synapse-data`,
      REGSERVICE_VOLUME: `${project}-earlier-regservice-data`,
      SYNAPSE_UID: '1000',
      SYNAPSE_GID: '1000',
    };
    const run = await runScenario('compose-earlier', {
      env: earlier,
      before: [
        `cd ${composeDir}`,
        'docker-compose run --rm synapse generate >/dev/null',
        `podman run --rm -v ${earlier.SYNAPSE_VOLUME}:/data --entrypoint sh ${IMAGES.synapse} -c ` +
          `'printf "enable_registration: true\\nenable_registration_without_verification: true\\n" >>/data/homeserver.yaml'`,
        'docker-compose up -d synapse',
        // Running means serving: its first start makes its database first.
        `for _ in $(seq 1 120); do podman exec ${container('synapse')} python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8008/health')" 2>/dev/null && break; sleep 1; done`,
      ].join('\n'),
      after: `podman exec ${container('synapse')} stat -c "::copy %u:%g %a" /data/matrix-regservice.yaml`,
    });
    assert.equal(run.code, 0, tail(run));
    assert.match(run.output, /^::copy 1000:1000 600$/m, 'Synapse reads its copy as its own UID');
    await waitFor(
      'Synapse through nginx',
      async () => ((await fetch(`${publicUrl}/_matrix/client/versions`).catch(() => undefined))?.ok === true ? true : undefined),
      90_000,
    );
    const intruder = await requestJson('POST', `${publicUrl}/_matrix/client/v3/register`, {
      username: 'intruder1',
      password: 'a-password-of-some-length',
      auth: { type: 'm.login.dummy' },
    });
    assert.notEqual(intruder.status, 200, 'open registration is off: Synapse runs the patched file');
    const other = randomPrivateKey();
    let last: unknown;
    const node = await waitFor(
      'a registration through nginx',
      async () => registerNode({ privateKey: other, homeserverUrl: publicUrl, serverName }).catch((error: unknown) => void (last = error)),
      120_000, // two tries of the homeserver's 30 s at least: Synapse was just restarted
    ).catch(async (error: Error) => {
      const logs = async (service: string): Promise<string> => (await containerLogs(container(service))).slice(-3000);
      throw new Error(`${error.message}: ${String(last)}\n${await logs('regservice')}\n${await logs('synapse')}`);
    });
    assert.equal(node.userId, `@${addressOfPrivateKey(other)}:${serverName}`);
  });
});
