import { randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { photonUserRegex, renderRegistration, type AppserviceRegistration } from '../config/registrationFile.js';
import type { Settings } from '../config/settings.js';
import { localServiceUrl } from '../config/connectAddress.js';
import { describeDatabaseUrl, urlHasPassword } from '../config/databaseUrl.js';
import { BIN_PATH, PACKAGE_ROOT } from '../packageRoot.js';
import { GenconfigError } from './genconfigError.js';
import type { CarriedSetting } from './carriedSettings.js';
import type { FileOwner } from './fileOwners.js';
import { changesSynapseMustReload, type PreviousDeployment } from './previousDeployment.js';
import { renderTemplate, shellQuote } from './template.js';
import { systemdPath, systemdUserName } from './unitValues.js';
import { PRIMARY_NODE_FLAGS } from '../cluster/nodeFlags.js';

export { GenconfigError } from './genconfigError.js';

export interface GeneratedFile {
  readonly name: string;
  readonly content: string;
  readonly mode: number;
  /** Replaced without --force: a file genconfig edits (homeserver.yaml) or owns (its conf.d file). */
  readonly replaces?: boolean;
  /** Written into the existing file, which keeps its owner and mode (homeserver.yaml): not replaced by a new one. */
  readonly inPlace?: boolean;
  /** The account that is to own it (and, at 0600, alone read it); written by root only. */
  readonly owner?: FileOwner | undefined;
}

export interface GenconfigPlan {
  readonly files: readonly GeneratedFile[];
  readonly registrationFile: string;
  readonly registration: AppserviceRegistration;
  /** The file run.sh names for the shared secret (shared-secret backend). */
  readonly sharedSecretFile: string | undefined;
  /** A shared-secret file genconfig made up, which the homeserver must be told to read. */
  readonly newSecretFile: string | undefined;
  /** What the operator must add to homeserver.yaml and do next. */
  readonly instructions: string;
  /** What Synapse holds from an earlier run that this one changes: Synapse must be restarted to read it. */
  readonly synapseMustReload: readonly string[];
  /** Where the id and tokens came from, when they were kept. */
  readonly keptFrom: string | undefined;
}

export interface GenconfigInput {
  readonly settings: Settings;
  /** Absolute directory the files go to. */
  readonly outDir: string;
  readonly runTemplate: string;
  readonly nodePath: string;
  readonly binPath: string;
  readonly now: Date;
  readonly randomToken: () => string;
  /** Defaults to matrix-regservice-<server name>. */
  readonly appserviceId?: string | undefined;
  /**
   * Where the homeserver reaches the service, when it is not this gate: nginx's upstream of several gates (Synapse takes
   * one url per application service, so its transactions fail over too). Defaults to this gate's own address.
   */
  readonly registrationUrl?: string | undefined;
  /**
   * The id and tokens to keep: the Go original's registration, which Synapse and the Go original's run.sh already hold.
   * Fresh ones otherwise.
   */
  readonly keep?: { readonly id: string; readonly asToken: string; readonly hsToken: string; readonly path: string } | undefined;
  /** What an earlier run wrote into outDir: its id, tokens and generated secret are kept. */
  readonly previous?: PreviousDeployment | undefined;
  /** New tokens even where an earlier run's or the Go original's could be kept. */
  readonly newTokens?: boolean | undefined;
  /** A new shared secret even where an earlier run generated one. */
  readonly newSharedSecret?: boolean | undefined;
  /**
   * The shared secret Synapse's configuration names is a file genconfig wrote (its copy in outDir, or Synapse's own copy):
   * --new-shared-secret may replace it. Any other secret is the operator's, changed in Synapse's configuration.
   */
  readonly secretWrittenByGenconfig?: boolean | undefined;
  /**
   * The service reads a copy of its own of the shared secret, in outDir, even when Synapse's configuration names a file:
   * that file is Synapse's to read (0600, Synapse's account).
   */
  readonly ownSecretCopy?: boolean | undefined;
  /** The daemon settings given to genconfig that run.sh carries as flags (carriedSettings). */
  readonly carried?: readonly CarriedSetting[] | undefined;
}

export const REGISTRATION_FILE = 'registration.yaml';
export const RUN_FILE = 'run.sh';
export const SECRET_FILE = 'registration_shared_secret';

/** run.sh's store flags: --datapath, or --database with its password only ever in a file. */
function storeFlags(settings: Settings): string {
  if (settings.database === undefined && settings.databasePasswordFile !== undefined)
    throw new GenconfigError('--database-password-file goes with --database (the PostgreSQL store): give both, or neither for LevelDB');
  if (settings.database === undefined) return `  --datapath ${shellQuote(resolve(settings.datapath))} \\\n`;
  if (urlHasPassword(settings.database)) {
    throw new GenconfigError(
      `--database ${describeDatabaseUrl(settings.database)} has a password or another secret in it (user:password@, ?password= or ?sslpassword=): run.sh is readable, so put the password in a file (mode 0600) and give --database-password-file FILE`,
    );
  }
  const passwordFile =
    settings.databasePasswordFile === undefined ? '' : `  --database-password-file ${shellQuote(settings.databasePasswordFile)} \\\n`;
  return `  --database ${shellQuote(settings.database)} \\\n${passwordFile}`;
}

/** Decides every file genconfig writes; pure apart from the tokens it is given. */
export function planGenconfig(input: GenconfigInput): GenconfigPlan {
  const { settings, outDir } = input;
  const registrationPath = join(outDir, REGISTRATION_FILE);
  const files: GeneratedFile[] = [];

  let backendFlags = '';
  let secretNote = '';
  let newSecretFile: string | undefined;
  let sharedSecretFile: string | undefined;
  let writtenSecret: string | undefined;
  if (settings.backend === 'shared-secret') {
    const renew = input.newSharedSecret === true;
    if (renew && settings.sharedSecret !== '' && input.secretWrittenByGenconfig !== true) {
      throw new GenconfigError(
        `--new-shared-secret: the shared secret is the operator's own (${settings.sharedSecretFile ?? "Synapse's registration_shared_secret"}), not one genconfig generated: change it there, restart Synapse, and run genconfig again without --new-shared-secret`,
      );
    }
    // A secret genconfig generated and Synapse reads is made anew where asked: written again in the same places.
    const ownSecret = renew || settings.sharedSecret === '' ? '' : settings.sharedSecret;
    let secretFile = input.ownSecretCopy === true || renew ? undefined : settings.sharedSecretFile;
    if (secretFile === undefined) {
      secretFile = join(outDir, SECRET_FILE);
      const earlier = renew ? undefined : input.previous?.sharedSecret;
      const secret = ownSecret !== '' ? ownSecret : (earlier ?? input.randomToken());
      writtenSecret = secret;
      files.push({ name: SECRET_FILE, content: `${secret}\n`, mode: 0o600 });
      // Synapse gets a copy of its own of a secret genconfig made, also one that it read from the service's copy before.
      if (ownSecret === '' || (input.ownSecretCopy === true && input.secretWrittenByGenconfig === true)) newSecretFile = secretFile;
      secretNote =
        ownSecret !== ''
          ? `  (registration_shared_secret stays as it is: the same secret is now in ${secretFile})\n`
          : `  registration_shared_secret_path: ${secretFile}\n`;
    }
    backendFlags = `  --sharesecret-file ${shellQuote(secretFile)} \\\n`;
    sharedSecretFile = secretFile;
  } else if (settings.backend === 'admin-api') {
    if (settings.adminTokenFile === undefined) {
      throw new GenconfigError('the admin-api backend needs --admin-token-file FILE (a server admin access token)');
    }
    backendFlags =
      `  --admin-token-file ${shellQuote(settings.adminTokenFile)} \\\n` +
      (settings.allowPasswordReset ? '  --allow-password-reset \\\n' : '');
  }

  // An earlier run's id and tokens (or the Go original's), which Synapse already holds, stay unless asked otherwise.
  const earlier = input.previous?.registration;
  const kept =
    input.newTokens === true
      ? undefined
      : earlier !== undefined
        ? { id: earlier.id, asToken: earlier.as_token, hsToken: earlier.hs_token, path: earlier.path }
        : input.keep;
  const registration: AppserviceRegistration = {
    id: input.appserviceId ?? earlier?.id ?? input.keep?.id ?? `matrix-regservice-${settings.serverName}`,
    url: input.registrationUrl ?? localServiceUrl(settings),
    // Tokens given to genconfig (--astoken and --hstoken) win: the operator names what Synapse holds.
    as_token: settings.asToken !== '' ? settings.asToken : (kept?.asToken ?? input.randomToken()),
    hs_token: settings.hsToken !== '' ? settings.hsToken : (kept?.hsToken ?? input.randomToken()),
    sender_localpart: 'regservice',
    namespaces: {
      // Synapse refuses shared-secret registration inside an exclusive namespace (M_EXCLUSIVE);
      // registering as the application service is what exclusive namespaces are for.
      users: [{ exclusive: settings.backend === 'appservice', regex: photonUserRegex(settings.serverName) }],
      aliases: [],
      rooms: [],
    },
    rate_limited: false,
  };
  files.push({ name: REGISTRATION_FILE, content: renderRegistration(registration), mode: 0o600 });

  const run = renderTemplate(input.runTemplate, {
    DATE: input.now.toISOString(),
    NODE: shellQuote(input.nodePath),
    NODE_FLAGS: PRIMARY_NODE_FLAGS.join(' '),
    BIN: shellQuote(input.binPath),
    SERVER_NAME: shellQuote(settings.serverName),
    HOMESERVER_URL: shellQuote(settings.homeserverUrl),
    HOST: shellQuote(settings.host),
    PORT: String(settings.port),
    STORE_FLAGS: storeFlags(settings),
    REGISTRATION: shellQuote(registrationPath),
    BACKEND: settings.backend,
    BACKEND_FLAGS: backendFlags,
    VERBOSITY: String(settings.verbosity),
    CARRIED_FLAGS: (input.carried ?? [])
      .map((setting) => `  --${setting.key}${setting.value === true ? '' : ` ${shellQuote(setting.value)}`} \\\n`)
      .join(''),
  });
  files.push({ name: RUN_FILE, content: run, mode: 0o755 });

  const instructions =
    `Add to homeserver.yaml (Synapse must be able to read ${registrationPath}), then restart Synapse:\n` +
    `  enable_registration: false\n` +
    `  app_service_config_files:\n` +
    `    - ${registrationPath}\n` +
    secretNote +
    `Then start the service: ${join(outDir, RUN_FILE)}\n`;
  const synapseMustReload = changesSynapseMustReload(input.previous ?? {}, {
    url: registration.url,
    asToken: registration.as_token,
    hsToken: registration.hs_token,
    sharedSecret: writtenSecret,
  });
  if (earlier !== undefined && earlier.id !== registration.id)
    synapseMustReload.push(`the registration's id (${earlier.id} → ${registration.id})`);
  return {
    files,
    instructions,
    registrationFile: registrationPath,
    registration,
    newSecretFile,
    sharedSecretFile,
    synapseMustReload,
    keptFrom: kept?.path,
  };
}

/** What the systemd unit names. */
export interface UnitOptions {
  readonly user: string;
  readonly runScript: string;
}

/** The hardened systemd unit running run.sh as a dedicated user. */
export function renderSystemdUnit(template: string, settings: Settings, site: UnitOptions, now: Date): string {
  return renderTemplate(template, {
    DATE: now.toISOString(),
    SERVER_NAME: settings.serverName,
    USER: systemdUserName(site.user),
    RUN_SH: systemdPath(site.runScript, 'run.sh path'),
    // With --database the service writes no file of its own: a datapath that is never made would stop the unit (226).
    READ_WRITE_PATHS: [
      ...(settings.database === undefined ? [systemdPath(resolve(settings.datapath), '--datapath')] : []),
      ...(settings.logfile === undefined ? [] : [systemdPath(dirname(resolve(settings.logfile)), "--logfile's directory")]),
    ].join(' '),
    CAPABILITIES: settings.port < 1024 || (settings.metricsPort > 0 && settings.metricsPort < 1024) ? 'CAP_NET_BIND_SERVICE' : '',
    HOME_SHELL: settings.database === undefined ? shellQuote(resolve(settings.datapath)) : '/nonexistent',
    STATE_NOTE:
      settings.database === undefined
        ? ` and\n#          makes the datapath ${shellQuote(resolve(settings.datapath))} for it (ReadWritePaths= needs it)`
        : ' (its registry is in PostgreSQL)',
    README: pathToFileURL(join(PACKAGE_ROOT, 'README.md')).href.replaceAll('%', '%%'),
  });
}

export function readTemplate(name: string): string {
  return readFileSync(join(PACKAGE_ROOT, 'templates', name), 'utf8');
}

/** Why a file cannot be written where it is to go, checked before anything is written; undefined when it can. */
function unwritable(path: string, file: GeneratedFile, force: boolean, creatable: ReadonlySet<string>): string | undefined {
  if (existsSync(path)) {
    if (!force && file.replaces !== true) return `refusing to overwrite ${path} (use --force)`;
    if (!statSync(path).isFile()) return `${path} is not a file`;
    if (file.inPlace === true) {
      try {
        accessSync(path, constants.W_OK);
        return undefined;
      } catch {
        return `cannot write ${path}: it is not writable by this user`;
      }
    }
  }
  const dir = dirname(path);
  if (creatable.has(dir)) return undefined;
  if (!existsSync(dir)) return `cannot write ${path}: the directory ${dir} does not exist`;
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    return `cannot write ${path}: the directory ${dir} is not writable`;
  }
  return undefined;
}

/**
 * Writes the files (names relative to `outDir`, or absolute), all or none: every target is checked first (existing
 * files are replaced only with `force`; every directory but `outDir` must exist), then each is written beside its
 * target and renamed into place once all were written. A failure leaves no file changed and no new one behind.
 */
export function writeGenconfig(
  plan: Pick<GenconfigPlan, 'files'>,
  outDir: string,
  force: boolean,
  now: Date = new Date(),
): { written: string[]; backups: string[] } {
  const paths = plan.files.map((file) => resolve(outDir, file.name));
  const problems = [
    ...new Set(
      paths
        .map((path, index) => unwritable(path, plan.files[index]!, force, new Set([resolve(outDir)])))
        .filter((problem) => problem !== undefined),
    ),
  ];
  if (problems.length > 0)
    throw new GenconfigError(problems.length === 1 ? problems[0]! : `nothing was written:\n  - ${problems.join('\n  - ')}`);
  const madeOutDir = !existsSync(outDir);
  const staged: string[] = [];
  // Each file this replaces with other content is kept, 0600, under <out>/backups/<time>/ by its absolute path (never
  // beside it: nginx and Synapse read whole directories).
  const backupDir = join(resolve(outDir), 'backups', now.toISOString().replace(/[:.]/g, ''));
  const backups: string[] = [];
  try {
    mkdirSync(outDir, { recursive: true });
    plan.files.forEach((file, index) => {
      const path = paths[index] as string;
      if (file.inPlace === true || !existsSync(path)) return;
      const old = readFileSync(path);
      if (old.equals(Buffer.from(file.content))) return;
      const backup = join(backupDir, path);
      mkdirSync(dirname(backup), { recursive: true, mode: 0o700 });
      writeFileSync(backup, old, { mode: 0o600 });
      chmodSync(backup, 0o600);
      backups.push(backup);
    });
    plan.files.forEach((file, index) => {
      if (file.inPlace === true) return;
      const temporary = `${paths[index] as string}.genconfig-${process.pid}`;
      writeFileSync(temporary, file.content, { mode: file.mode });
      chmodSync(temporary, file.mode);
      if (file.owner !== undefined && process.getuid?.() === 0) chownSync(temporary, file.owner.uid, file.owner.gid);
      staged[index] = temporary;
    });
  } catch (error) {
    for (const temporary of staged) if (temporary !== undefined) rmSync(temporary, { force: true });
    rmSync(backupDir, { recursive: true, force: true });
    if (madeOutDir) rmSync(outDir, { recursive: true, force: true });
    throw new GenconfigError(`nothing was written: ${(error as Error).message}`);
  }
  plan.files.forEach((file, index) => {
    const path = paths[index] as string;
    const temporary = staged[index];
    if (temporary !== undefined) renameSync(temporary, path);
    else if (file.inPlace === true) writeFileSync(path, file.content);
  });
  return { written: paths, backups };
}

export function defaultGenconfigInput(settings: Settings, outDir: string): GenconfigInput {
  return {
    settings,
    outDir: resolve(outDir),
    runTemplate: readFileSync(join(PACKAGE_ROOT, 'run.sh.template'), 'utf8'),
    nodePath: process.execPath,
    binPath: BIN_PATH,
    now: new Date(),
    randomToken: () => randomBytes(32).toString('hex'),
  };
}
