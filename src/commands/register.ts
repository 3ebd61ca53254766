import { readFileSync } from 'node:fs';
import { registerNode } from '../node/registerNode.js';
import { privateKeyBytes } from '../protocol/privateKey.js';
import { EXIT_BAD_SETTINGS, EXIT_FAILURE, failCommand, type Output } from './commandFailure.js';

/** `register`: signs as a Photon node does from a key file, registers, logs in, and prints the user id. */
export async function runRegister(
  options: { keyFile: string; homeserver: string; serverName?: string; gate?: string },
  out: Output,
): Promise<void> {
  let text: string;
  try {
    text = readFileSync(options.keyFile, 'utf8');
  } catch (error) {
    failCommand(`cannot read ${options.keyFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT_BAD_SETTINGS);
  }
  let key: Uint8Array;
  try {
    key = privateKeyBytes(text);
  } catch (error) {
    failCommand(`${options.keyFile}: ${(error as Error).message}`, EXIT_BAD_SETTINGS);
  }
  try {
    const node = await registerNode({
      privateKey: key,
      homeserverUrl: options.homeserver,
      serverName: options.serverName,
      gateUrl: options.gate,
    });
    out.stdout.write(`${node.userId}\n`);
  } catch (error) {
    failCommand(error instanceof Error ? error.message : String(error), EXIT_FAILURE);
  }
}
