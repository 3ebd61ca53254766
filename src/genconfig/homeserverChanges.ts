import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import { configValue, confDirFiles, type SynapseConfig } from './homeserverConfig.js';
import { listsOurs, planHomeserverPatch, type HomeserverChange, type WantedHomeserverConfig } from './homeserverPatch.js';
import { classifyEntry, namesFile, type OurRegistration } from './registrationEntries.js';

/** The first line of the conf.d file genconfig writes: how it knows the file for its own on a later run. */
export const CONF_D_MARKER = '# matrix-regservice:';
const CONF_D_NAME = 'matrix-regservice.yaml';

/** What homeserver.yaml (or, in Debian's layout, a conf.d file of ours) must become for this deployment. */
export type HomeserverUpdate =
  | { readonly kind: 'none'; readonly where: string }
  | {
      readonly kind: 'write';
      /** homeserver.yaml patched in place, or a conf.d file of our own. */
      readonly path: string;
      readonly inPlace: boolean;
      readonly text: string;
      readonly changes: readonly HomeserverChange[];
    }
  | {
      readonly kind: 'refused';
      readonly where: string;
      readonly problems: readonly string[];
      readonly changes: readonly HomeserverChange[];
    };

export interface WantedDeployment {
  readonly registration: OurRegistration;
  /** A shared-secret file genconfig made, which Synapse must be told to read (when it has no secret yet). */
  readonly sharedSecretFile: string | undefined;
  /** The service's own copy of the secret, when Synapse has one of its own: Synapse's configuration must not name it. */
  readonly serviceSecretCopy?: string | undefined;
  /** Directories a relative entry of app_service_config_files may be relative to: homeserver.yaml's, Synapse's working one. */
  readonly bases: readonly string[];
  readonly now: Date;
}

function isOurConfD(path: string): boolean {
  return readFileSync(path, 'utf8').startsWith(CONF_D_MARKER);
}

/** Our conf.d file: the one a run before wrote, or a new name that sorts after every file there (Synapse reads it last). */
function confDPath(confDir: string): string {
  const files = confDirFiles(confDir);
  const ours = files.find(isOurConfD);
  if (ours !== undefined) return ours;
  let name = `zz-${CONF_D_NAME}`;
  while (files.some((file) => basename(file) >= name)) name = `z${name}`;
  return join(confDir, name);
}

/**
 * Plans homeserver.yaml's changes: `enable_registration: false`, this deployment's registration among the application
 * services (never a second entry for it: an entry naming the same file by another path, or the Go original's
 * registration with our id and tokens, is ours), and the shared secret's file when genconfig made it. A relative entry
 * that cannot be placed for certain refuses the patch. In Debian's layout (conf.d next to homeserver.yaml) the
 * package's files are left alone: the changes go into a conf.d file of ours that sorts last, and since Synapse merges
 * top-level keys whole, it carries the full list of application services.
 */
export function planHomeserverUpdate(config: SynapseConfig, wanted: WantedDeployment): HomeserverUpdate {
  const ours = wanted.registration;
  const ownConfD = config.confDir === undefined ? undefined : confDPath(config.confDir);
  // Without the conf.d file of ours a run before wrote: what the rest of the configuration says.
  const rest: SynapseConfig = { ...config, confFiles: config.confFiles.filter((file) => file.path !== ownConfD) };
  const listed = configValue(rest, 'app_service_config_files');
  const entries = Array.isArray(listed) ? listed.filter((entry): entry is string => typeof entry === 'string') : [];
  const kinds = new Map(entries.map((entry) => [entry, classifyEntry(entry, wanted.bases, ours)]));
  const unresolved = [...kinds.values()].flatMap((kind) => (kind.kind === 'unresolved' ? [kind.why] : []));
  const stale = entries.filter((entry) => kinds.get(entry)?.kind === 'stale');
  const secretPath = configValue(rest, 'registration_shared_secret_path');
  const staleSecretPath =
    wanted.sharedSecretFile !== undefined &&
    wanted.serviceSecretCopy !== undefined &&
    typeof secretPath === 'string' &&
    namesFile(secretPath, wanted.bases, wanted.serviceSecretCopy);
  const wantedConfig: WantedHomeserverConfig = {
    registrationFile: ours.file,
    sharedSecretFile: wanted.sharedSecretFile,
    isOurs: (entry) => entry === ours.file || kinds.get(entry)?.kind === 'ours',
    stale,
    staleSecretPath,
  };
  const listChange: HomeserverChange = { key: 'app_service_config_files', describe: `app_service_config_files:\n  - ${ours.file}` };

  if (ownConfD === undefined) {
    const where = config.homeserverYaml.path;
    if (unresolved.length > 0) {
      const absolute = `write each relative entry of app_service_config_files as an absolute path`;
      return { kind: 'refused', where, problems: [...unresolved, absolute], changes: listsOurs(listed, wantedConfig) ? [] : [listChange] };
    }
    const patch = planHomeserverPatch(config.homeserverYaml.text, wantedConfig);
    if (!patch.ok) return { kind: 'refused', where, problems: patch.problems, changes: patch.changes };
    if (patch.changes.length === 0) return { kind: 'none', where };
    return { kind: 'write', path: where, inPlace: true, text: patch.text, changes: patch.changes };
  }

  const changes: HomeserverChange[] = [];
  const values: Record<string, unknown> = {};
  if (configValue(rest, 'enable_registration') !== false) {
    values.enable_registration = false;
    changes.push({ key: 'enable_registration', describe: 'enable_registration: false' });
  }
  if (unresolved.length > 0) {
    return { kind: 'refused', where: ownConfD, problems: [...unresolved, 'write each relative entry as an absolute path'], changes };
  }
  if (stale.length > 0 || !listsOurs(listed, wantedConfig)) {
    // Ours takes the first stale entry's place, unless it is listed already; other stale entries go: never two of ours.
    let placed = entries.some((entry) => kinds.get(entry)?.kind === 'ours');
    const replaced = entries.flatMap((entry) => {
      if (!stale.includes(entry)) return [entry];
      if (placed) return [];
      placed = true;
      return [ours.file];
    });
    values.app_service_config_files = stale.length > 0 ? [...new Set(replaced)] : [...entries, ours.file];
    changes.push({
      key: 'app_service_config_files',
      describe: stringify({ app_service_config_files: values.app_service_config_files }).trim(),
    });
  }
  const written = config.confFiles.find((file) => file.path === ownConfD);
  const previous = (written?.doc.toJS() ?? {}) as Record<string, unknown>;
  const hasSecret =
    configValue(rest, 'registration_shared_secret') !== undefined || configValue(rest, 'registration_shared_secret_path') !== undefined;
  // The secret's file a run before told Synapse of, and which genconfig now reads back from there, stays.
  const ourSecretPath =
    wanted.sharedSecretFile ??
    (typeof previous.registration_shared_secret_path === 'string' ? previous.registration_shared_secret_path : undefined);
  if (ourSecretPath !== undefined && (!hasSecret || staleSecretPath)) {
    values.registration_shared_secret_path = ourSecretPath;
    changes.push({ key: 'registration_shared_secret_path', describe: `registration_shared_secret_path: ${ourSecretPath}` });
  }
  // A run before wrote just this: nothing to change (its date aside).
  if (changes.length === 0 || (written !== undefined && isDeepStrictEqual(previous, values))) {
    return { kind: 'none', where: config.confDir ?? ownConfD };
  }
  const text =
    `${CONF_D_MARKER} written by \`matrix-regservice genconfig\` on ${wanted.now.toISOString()} for ${ours.url}.\n` +
    '# Synapse reads conf.d/*.yaml after homeserver.yaml, in name order, each top-level key replacing the one before: the\n' +
    '# list of application services here is the whole list. Add another application service here, not in homeserver.yaml.\n' +
    stringify(values, { lineWidth: 0 });
  return { kind: 'write', path: ownConfD, inPlace: false, text, changes };
}
