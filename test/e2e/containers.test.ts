import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { before, describe, it } from '../support/timedTests.js';
import { promisify } from 'node:util';
import { addressOfPrivateKey, registerNode } from '../../src/index.js';
import { randomPrivateKey, signRegistration } from '../../src/protocol/signRegistration.js';
import { buildServiceImage, containerLogs, containerSkip, IMAGES, podman, podmanEnv, podmanSocket } from '../support/containers.js';
import { passwordLogin, requestJson } from '../support/matrixClient.js';
import { freePort, waitFor } from '../support/ports.js';
import { suiteScope } from '../support/scope.js';

const execute = promisify(execFile);
const COMPOSE_DIR = new URL('../../deploy/compose/', import.meta.url).pathname;
const serverName = 'containers.test';
/** Not the default 172.28.56: every pinned address, and the one the service trusts, must follow TRANSPORT_SUBNET. */
const subnet = '172.31.77';

describe('Running with Docker: the image and the compose deployment, in real containers (podman)', { skip: containerSkip() }, () => {
  const scope = suiteScope();
  const project = `regsvc${process.pid}`;
  let env: NodeJS.ProcessEnv;
  let publicUrl: string;
  const key = randomPrivateKey();
  /** docker-compose, as README's "Running with Docker" runs it, against podman. */
  const compose = async (...args: string[]): Promise<string> =>
    (await execute('docker-compose', ['-p', project, '-f', join(COMPOSE_DIR, 'compose.yaml'), ...args], { env, timeout: 180_000 })).stdout;
  const container = (service: string): string => `${project}_${service}_1`;

  // The service's image is built from this checkout on every run (test/provision.sh made the bases).
  before(
    async () => {
      await buildServiceImage();
      const port = await freePort();
      publicUrl = `http://127.0.0.1:${port}`;
      env = {
        ...podmanEnv(),
        DOCKER_HOST: await podmanSocket(scope),
        SERVER_NAME: serverName,
        PUBLIC_PORT: `127.0.0.1:${port}`,
        VOLUME_PREFIX: project,
        SYNAPSE_IMAGE: IMAGES.synapse,
        NGINX_IMAGE: IMAGES.nginx,
        REGSERVICE_IMAGE: IMAGES.service,
        NETWORK: `${project}-transport`,
        TRANSPORT_SUBNET: subnet,
      };
      await podman(['network', 'create', '--subnet', `${subnet}.0/24`, `${project}-transport`]);
      scope.after(async () => {
        await compose('down', '--volumes', '--remove-orphans').catch(() => undefined);
        await podman(['network', 'rm', '--force', `${project}-transport`]).catch(() => undefined);
      });
    },
    { timeout: 600_000 }, // npm ci and tsc in the builder container: about a minute, more on a cold npm cache
  );

  it('builds an image that runs as 991 with the libsecp256k1 prebuild, and a HEALTHCHECK', async () => {
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

  it('first start as the README has it: Synapse generates its config, genconfig runs once in the image against its volume', async () => {
    await compose('run', '--rm', 'synapse', 'generate');
    const genconfig = await compose('run', '--rm', 'setup');
    assert.match(genconfig, /client listener|server_name containers\.test/);
    assert.match(genconfig, /Patched \/data\/homeserver\.yaml/);
    assert.equal((await podman(['ps', '-q', '--filter', `name=${container('synapse')}`])).trim(), '', 'setup started no Synapse');
    await compose('up', '-d');
    await waitFor(
      'Synapse through nginx',
      async () => ((await fetch(`${publicUrl}/_matrix/client/versions`)).ok ? true : undefined),
      90_000,
    );
    // Synapse reads the copy in its own volume, the service its own: neither volume was chowned.
    const copy = await podman(['exec', container('synapse'), 'stat', '-c', '%u:%g %a', '/data/matrix-regservice.yaml']);
    assert.equal(copy.trim(), '991:991 600');
    const ls = await podman(['exec', container('regservice'), 'ls', '/var/lib/matrix-regservice']);
    assert.deepEqual(ls.trim().split('\n').sort(), ['registration.yaml', 'registration_shared_secret', 'regservice.yaml', 'state'].sort());
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

  it('stops an idle service container on SIGTERM by itself, as an operator stops it: exit 0 within its grace period', async () => {
    await podman(['stop', container('regservice')]);
    const state = JSON.parse(await podman(['inspect', container('regservice')])) as { State: { ExitCode: number } }[];
    assert.equal(state[0]?.State.ExitCode, 0);
  });
});
