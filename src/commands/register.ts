import { readFileSync } from 'node:fs';
import { registerNode } from '../node/registerNode.js';
import { EXIT_BAD_SETTINGS, EXIT_FAILURE, failCommand, type Output } from './commandFailure.js';

/** `register`: signs as a Photon node does from a key file, registers, logs in, and prints the user id. */
export async function runRegister(
  options: { keyFile: string; homeserver: string; serverName?: string; gate?: string },
  out: Output,
): Promise<void> {
  let text: string;
  try {
    text = readFileSync(options.keyFile, 'utf8').trim().replace(/^0x/i, '');
  } catch (error) {
    failCommand(`cannot read ${options.keyFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT_BAD_SETTINGS);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(text))
    failCommand(`${options.keyFile} must hold a 32-byte private key as 64 hex characters`, EXIT_BAD_SETTINGS);
  const key = Buffer.from(text, 'hex');
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
