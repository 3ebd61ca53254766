import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ownerOf, type FileOwner } from './fileOwners.js';

/** Synapse's account as genconfig guesses it, and from what: or why it cannot tell. */
export type SynapseAccountGuess =
  { readonly kind: 'found'; readonly owner: FileOwner; readonly from: string } | { readonly kind: 'unknown'; readonly why: string };

/**
 * The account Synapse runs as, from the files it owns: its working directory first (Debian's /var/lib/matrix-synapse),
 * then the files Synapse itself wrote (its signing key, its media store). A configuration directory owned by root (Arch,
 * Fedora: /etc/synapse) says nothing about Synapse's account; when everything found is root's and the service has an
 * account of its own, genconfig cannot tell, and asks rather than give Synapse files it cannot read.
 */
export function guessSynapseAccount(
  workdir: string,
  /** Paths from Synapse's configuration (signing_key_path, media_store_path), relative ones to `base`. */
  writtenBySynapse: readonly unknown[],
  base: string,
  /** The service's account, when it has one other than root. */
  service: FileOwner | undefined,
): SynapseAccountGuess {
  const home = ownerOf(workdir);
  if (home.uid !== 0) return { kind: 'found', owner: home, from: workdir };
  const candidates = writtenBySynapse
    .filter((path): path is string => typeof path === 'string' && path !== '')
    .map((path) => resolve(base, path))
    .filter((path) => existsSync(path));
  for (const path of candidates) {
    const owner = ownerOf(path);
    if (owner.uid !== 0) return { kind: 'found', owner, from: path };
  }
  // Nothing but root's, Synapse's own signing key included: Synapse runs as root, which reads any file. Unless the
  // service runs under an account of its own already: then its 0600 files would be out of reach of any other account.
  if (service === undefined || service.uid === 0) return { kind: 'found', owner: home, from: workdir };
  return {
    kind: 'unknown',
    why: `${[workdir, ...candidates].join(', ')} ${candidates.length === 0 ? 'is' : 'are'} root's, which does not tell which account Synapse runs as`,
  };
}
