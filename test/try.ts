/**
 * `npm run try`: the gate at work without a Synapse of your own. Starts a throwaway Synapse (the tests' chroot, built
 * by test/provision.sh), writes a deployment with the built CLI's genconfig and runs its run.sh in front of it,
 * registers a node with the smoke test (`register`), prints what happened, and keeps both running until Ctrl-C.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN } from './support/gate.js';
import { spawnDaemon, waitUntilListening } from './support/daemonProcess.js';
import { freePort } from './support/ports.js';
import type { Scope } from './support/scope.js';
import { startSynapse, synapseAvailability } from './support/synapse.js';
import { tempDir } from './support/tempDir.js';

const run = promisify(execFile);
const SERVER_NAME = 'try.localhost';

async function main(): Promise<void> {
  const availability = synapseAvailability();
  if (!availability.available) {
    process.stderr.write(`npm run try: ${availability.reason}\n`);
    process.exit(1);
  }
  const enders: (() => unknown)[] = [];
  const scope: Scope = { after: (end) => void enders.push(end) };
  const stop = async (): Promise<void> => {
    for (const end of enders.splice(0).reverse()) await end();
  };
  const dir = tempDir('regservice-try-');
  enders.push(() => rmSync(dir, { recursive: true, force: true }));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      process.stdout.write('\nstopping the service and Synapse…\n');
      void stop().then(() => process.exit(0));
    });
  }
  try {
    const [synapsePort, gatePort] = [await freePort(), await freePort()];
    const out = join(dir, 'deployment');
    const genconfig = await run(BIN, [
      'genconfig',
      '--out',
      out,
      '--matrixdomain',
      SERVER_NAME,
      '--matrixurl',
      `http://127.0.0.1:${synapsePort}`,
      '--port',
      String(gatePort),
    ]);
    process.stdout.write(`$ matrix-regservice genconfig --out ${out} …\n${genconfig.stdout}\n`);
    const synapse = await startSynapse(scope, {
      serverName: SERVER_NAME,
      port: synapsePort,
      sharedSecretFile: join(out, 'registration_shared_secret'),
      appserviceFiles: [join(out, 'registration.yaml')],
    });
    process.stdout.write(`Synapse ${SERVER_NAME} serves ${synapse.url} (a throwaway one, with the registration above loaded)\n`);
    const gate = spawnDaemon(scope, join(out, 'run.sh'), [], { cwd: out });
    const gateUrl = `http://127.0.0.1:${gatePort}/regapp/1`;
    await waitUntilListening(gate, gateUrl);
    const keyFile = join(dir, 'node.key');
    writeFileSync(keyFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    const smoke = ['register', '--key-file', keyFile, '--homeserver', synapse.url, '--gate', gateUrl, '--server-name', SERVER_NAME];
    const registered = await run(BIN, smoke);
    process.stdout.write(
      `\n$ matrix-regservice ${smoke.join(' ')}\n${registered.stdout}` +
        `A node with a fresh key registered at ${gateUrl}/register and logged in to Synapse with its signature as password.\n\n` +
        `The service's log so far:\n${gate.output()}\n` +
        `Both keep running: register more nodes with the command above (a new key file each), or POST to ${gateUrl}/register.\n` +
        'Ctrl-C stops both and removes everything this made.\n',
    );
  } catch (error) {
    process.stderr.write(`npm run try: ${(error as Error).message}\n`);
    await stop();
    process.exit(1);
  }
}

await main();
