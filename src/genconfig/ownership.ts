import { chownSync, existsSync, mkdirSync } from 'node:fs';
import { shellQuote } from './template.js';
import type { FileOwner } from './fileOwners.js';
import type { Readers } from './readerCopies.js';

export interface OwnedFile {
  readonly path: string;
  readonly owner?: FileOwner | undefined;
}

/**
 * After the files are written: as root, the service's state directory is made for the service's account (the unit's
 * ReadWritePaths= needs it to exist); otherwise, or while the service's account does not exist yet, says what to run.
 * Returns what to print.
 */
export function settleOwnership(
  files: readonly OwnedFile[],
  readers: Readers,
  /** --systemd-user, when a unit was asked for. */
  systemdUser: string | undefined,
  /** The LevelDB datapath; undefined with --database. */
  datapath: string | undefined,
  /** The service's own secret files (registration, shared secret), which its account must own. */
  serviceFiles: readonly string[],
): string {
  const root = process.getuid?.() === 0;
  const quoted = (paths: readonly string[]): string => paths.map(shellQuote).join(' ');
  if (systemdUser !== undefined && readers.service === undefined) {
    const synapseFiles = files.filter((file) => file.owner !== undefined && file.owner.uid === readers.synapse?.uid);
    return (
      `The service's account ${systemdUser} does not exist yet. Create it and give it its files, then run genconfig again or:\n` +
      `  useradd --system --home-dir ${shellQuote(datapath ?? '/nonexistent')} --shell /usr/sbin/nologin ${systemdUser}\n` +
      `  chown ${systemdUser}: ${quoted(serviceFiles)}\n` +
      (datapath === undefined ? '' : `  install -d -o ${systemdUser} -g ${systemdUser} -m 0700 ${shellQuote(datapath)}\n`) +
      (synapseFiles.length === 0 ? '' : `(Synapse's own copies are ${synapseFiles.map((file) => file.path).join(', ')}.)\n`)
    );
  }
  const owned = files.filter((file): file is Required<OwnedFile> => file.owner !== undefined);
  const byOwner = new Map<string, { owner: FileOwner; paths: string[] }>();
  for (const file of owned) {
    const entry = byOwner.get(file.owner.name) ?? { owner: file.owner, paths: [] };
    entry.paths.push(file.path);
    byOwner.set(file.owner.name, entry);
  }
  const service = readers.service;
  const makeDatapath = datapath !== undefined && service !== undefined && service.uid !== 0 && !existsSync(datapath);
  if (!root) {
    const me = process.getuid?.();
    const foreign = [...byOwner.values()].filter((entry) => entry.owner.uid !== me);
    if (foreign.length === 0 && !makeDatapath) return '';
    return (
      'Not run as root: as root, give each reader its own files (0600, nobody else reads them):\n' +
      foreign.map((entry) => `  chown ${entry.owner.name}: ${quoted(entry.paths)}\n`).join('') +
      (makeDatapath && service.uid !== me ? `  install -d -o ${service.name} -g ${service.gid} -m 0700 ${shellQuote(datapath)}\n` : '')
    );
  }
  if (makeDatapath) {
    mkdirSync(datapath, { recursive: true, mode: 0o700 });
    chownSync(datapath, service.uid, service.gid);
  }
  const owners = [...byOwner.values()].filter((entry) => entry.owner.uid !== 0);
  if (owners.length === 0) return '';
  return (
    owners.map((entry) => `${entry.owner.name} alone reads ${entry.paths.join(', ')} (0600)`).join('; ') +
    (makeDatapath ? `; ${datapath} is ${service.name}'s` : '') +
    '.\n'
  );
}
