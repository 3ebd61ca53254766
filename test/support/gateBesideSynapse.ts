import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateGate, type Gate } from './gate.js';
import { freePort } from './ports.js';
import type { Scope } from './scope.js';
import { startSynapse, type RunningSynapse } from './synapse.js';

export interface GateBesideSynapse {
  readonly gate: Gate;
  /** Undefined where SYNAPSE_URL names a homeserver the tests do not run. */
  readonly synapse: RunningSynapse | undefined;
  readonly homeserverUrl: string;
  /** A directory of the test's own, holding the shared secret. */
  readonly dir: string;
  readonly secretFile: string;
  /** Kills the gate, stops Synapse, removes both directories. */
  end(): Promise<void>;
}

/** A gate generated with genconfig for a Synapse of its own (or SYNAPSE_URL's), which lists its registration. */
export async function gateBesideSynapse(scope: Scope, serverName: string, prefix: string): Promise<GateBesideSynapse> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const secretFile = join(dir, 'shared_secret');
  writeFileSync(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  const synapsePort = await freePort();
  const homeserverUrl = process.env.SYNAPSE_URL ?? `http://127.0.0.1:${synapsePort}`;
  const gate = await generateGate(scope, { serverName, homeserverUrl, genconfigArgs: ['--sharesecret-file', secretFile] });
  const synapse =
    process.env.SYNAPSE_URL === undefined
      ? await startSynapse(scope, { serverName, port: synapsePort, sharedSecretFile: secretFile, appserviceFiles: [gate.registrationFile] })
      : undefined;
  return {
    gate,
    synapse,
    homeserverUrl,
    dir,
    secretFile,
    async end() {
      await gate.stop('SIGKILL');
      await synapse?.stop();
      for (const each of [dir, gate.dir]) rmSync(each, { recursive: true, force: true });
    },
  };
}
