import { chownSync, cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openLevelStore, STORE_DIRECTORY } from '../store/leveldb/levelStore.js';
import { StoreOpenError } from '../store/store.js';
import type { FileOwner } from './fileOwners.js';
import { GenconfigError } from './genconfigError.js';
import { shellQuote } from './template.js';

/** The registry this service kept while it ran from the Go original's run.sh (its `--datapath .matrix`). */
export interface RegistryMove {
  readonly from: string;
  readonly to: string;
}

/**
 * Whether a registry written under the Go original's run.sh should move to the generated deployment's datapath: it
 * exists, the new datapath has none yet, and no service holds it (a locked one is refused before anything is written).
 */
export async function planRegistryMove(goDatapath: string, datapath: string): Promise<RegistryMove | undefined> {
  const from = join(goDatapath, STORE_DIRECTORY);
  const to = join(datapath, STORE_DIRECTORY);
  if (from === to || !existsSync(from) || existsSync(to)) return undefined;
  try {
    const store = await openLevelStore(goDatapath, { create: false });
    await store.close();
  } catch (error) {
    if (error instanceof StoreOpenError && error.reason === 'locked') {
      throw new GenconfigError(
        `the registry ${from}, kept while the service ran from the Go original's run.sh, is in use: stop that service, then run genconfig again (it copies the registry to ${to}); nothing was written`,
      );
    }
    throw new GenconfigError(`cannot read the registry ${from}: ${(error as Error).message}; nothing was written`);
  }
  return { from, to };
}

function chownTree(path: string, owner: FileOwner): void {
  chownSync(path, owner.uid, owner.gid);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) chownTree(child, owner);
    else chownSync(child, owner.uid, owner.gid);
  }
}

/**
 * Copies the registry (its LOCK aside), owned by the service's account when run as root; otherwise, or while that
 * account does not exist yet, says what to run. Returns what to print.
 */
export function moveRegistry(move: RegistryMove, owner: FileOwner | undefined, ownerName: string): string {
  try {
    cpSync(move.from, move.to, { recursive: true, filter: (source) => !source.endsWith('/LOCK') });
  } catch (error) {
    // A half copy would be taken for the registry on the next run (and by the service): none is left.
    rmSync(move.to, { recursive: true, force: true });
    throw new GenconfigError(
      `cannot copy the registry ${move.from} to ${move.to} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); ` +
        'the other files are written: fix that and run genconfig again with --force, or copy it by hand with ' +
        `cp -a ${shellQuote(`${move.from}/.`)} ${shellQuote(move.to)} (then give it to the service's account)`,
    );
  }
  const copied = `Copied the registry ${move.from} (the nodes registered while the service ran from the Go original's run.sh) to ${move.to}; the original stays where it was.\n`;
  const root = process.getuid?.() === 0;
  if (owner !== undefined && root) {
    chownTree(move.to, owner);
    return copied;
  }
  if (owner !== undefined && owner.uid === process.getuid?.()) return copied;
  return `${copied}Give the copy to the service's account, or it cannot open it:\n  chown -R ${ownerName}: ${shellQuote(move.to)}\n`;
}
