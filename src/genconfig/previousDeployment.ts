import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseRegistration, type RegistrationSecrets } from '../config/registrationFile.js';

/** What an earlier genconfig run left in the output directory, which Synapse may already hold. */
export interface PreviousDeployment {
  /** The registration written before: its id and tokens are kept unless new ones are asked for. */
  readonly registration?: RegistrationSecrets & { readonly path: string };
  /** The shared secret genconfig generated (or copied) before: kept unless a new one is asked for. */
  readonly sharedSecret?: string;
  /** A registration.yaml in outDir that does not parse: replacing it unasked could drop the tokens Synapse holds. */
  readonly unreadable?: { readonly path: string; readonly reason: string };
}

function readIfFile(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Reads the registration and secret an earlier run wrote into `outDir`; what is missing or unreadable is left out. */
export function readPreviousDeployment(outDir: string, registrationName: string, secretName: string): PreviousDeployment {
  const registrationPath = join(outDir, registrationName);
  const registrationText = readIfFile(registrationPath);
  let registration: PreviousDeployment['registration'];
  let unreadable: PreviousDeployment['unreadable'];
  if (registrationText !== undefined) {
    try {
      registration = { ...parseRegistration(registrationText), path: registrationPath };
    } catch (error) {
      // The first line only: a YAML error goes on to quote the file, tokens and all.
      unreadable = { path: registrationPath, reason: (error as Error).message.split('\n')[0] ?? '' };
    }
  }
  const secret = readIfFile(join(outDir, secretName))?.trim();
  return {
    ...(registration === undefined ? {} : { registration }),
    ...(unreadable === undefined ? {} : { unreadable }),
    ...(secret === undefined || secret === '' ? {} : { sharedSecret: secret }),
  };
}

/** What Synapse must be restarted for: a registration or secret it holds that this run changes. */
export function changesSynapseMustReload(
  previous: PreviousDeployment,
  next: { readonly url: string; readonly asToken: string; readonly hsToken: string; readonly sharedSecret: string | undefined },
): string[] {
  const changes: string[] = [];
  const before = previous.registration;
  if (before !== undefined) {
    if (before.url !== next.url) changes.push(`the registration's url (${before.url} → ${next.url})`);
    if (before.as_token !== next.asToken || before.hs_token !== next.hsToken) changes.push("the registration's tokens");
  }
  if (previous.sharedSecret !== undefined && next.sharedSecret !== undefined && previous.sharedSecret !== next.sharedSecret)
    changes.push('the shared secret');
  return changes;
}
