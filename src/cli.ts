import { createWriteStream, openSync } from 'node:fs';
import { Command, Option } from 'commander';
import { ignoredGoFlagsWarning, translateGoArgv } from './goOriginal/goFlags.js';
import { loadSettingsForGoRunScript } from './goOriginal/goSettings.js';
import { loadSettings, readSettingsFile, type SettingsSources } from './config/loadSettings.js';
import { isNodeLocalpart } from './protocol/nodeId.js';
import { urlSecrets } from './config/databaseUrl.js';
import { envName, OPTION_SPECS } from './config/options.js';
import {
  describeDefault,
  SettingsError,
  type RawSettings,
  type ResolveOptions,
  type Settings,
  type SettingsLayer,
} from './config/settings.js';
import { MatrixError } from './protocol/matrixError.js';
import { startPrimary, StartError, type RunningPrimary } from './cluster/primary.js';
import { createLogger } from './log/logger.js';
import { packageVersion } from './packageRoot.js';
import { StoreOpenError } from './store/store.js';
import { UntrustedFileError } from './config/trustedFile.js';
import { CommandFailure, EXIT_BAD_SETTINGS, EXIT_FAILURE } from './commands/commandFailure.js';
import type { GenconfigOptions } from './commands/genconfig.js';
import type { UsersAction } from './commands/users.js';

// The operator commands are loaded when run: the daemon's primary never carries their modules (about 8 MB of RSS).

function fail(message: string, code: number): never {
  process.stderr.write(`matrix-regservice: ${message}\n`);
  process.exit(code);
}

/** Settings from this command's flags and MATRIX_REGSERVICE_* variables (files are read by loadSettings). */
/** Runs a command; a CommandFailure becomes its message on standard error and its exit status. */
async function reportFailure(run: () => void | Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    if (error instanceof CommandFailure) fail(error.message, error.exitCode);
    throw error;
  }
}

/** The database password, however it was given, so that no log line ever carries it. */
function databaseSecrets(settings: Settings): string[] {
  const fromUrl = settings.database === undefined ? [] : urlSecrets(settings.database);
  return [settings.databasePassword ?? '', ...fromUrl].filter((secret) => secret !== '');
}

function sourcesOf(command: Command): SettingsSources {
  const opts = command.optsWithGlobals<Record<string, string | boolean | undefined>>();
  const commandLine: RawSettings = {};
  const environment: RawSettings = {};
  for (const spec of OPTION_SPECS) {
    const attribute = new Option(`--${spec.key}`).attributeName();
    const value = opts[attribute];
    if (value !== undefined) commandLine[spec.key] = value;
    const fromEnv = process.env[envName(spec.key)];
    if (fromEnv !== undefined) environment[spec.key] = fromEnv;
  }
  const configFile = (opts.config as string | undefined) ?? process.env[envName('config')];
  return { commandLine, environment, configFile };
}

function settingsOrExit(command: Command, options?: ResolveOptions, fallback?: SettingsLayer): ReturnType<typeof loadSettings> {
  return settingsFromOrExit({ ...sourcesOf(command), fallback }, options);
}

function settingsFromOrExit(sources: SettingsSources, options?: ResolveOptions): ReturnType<typeof loadSettings> {
  try {
    return loadSettings(sources, options);
  } catch (error) {
    if (error instanceof SettingsError) fail(error.message, EXIT_BAD_SETTINGS);
    throw error;
  }
}

/** The daemon's and doctor's settings: a run.sh of the Go original's works too (src/goOriginal/). */
function serviceSettingsOrExit(command: Command): ReturnType<typeof loadSettings> {
  try {
    return loadSettingsForGoRunScript(sourcesOf(command), { requireSecrets: true }, process.cwd());
  } catch (error) {
    if (error instanceof SettingsError) fail(error.message, EXIT_BAD_SETTINGS);
    throw error;
  }
}

/** Where log lines go: standard error, or the --logfile (appended; the Go original's flag). */
/** The log file, opened now: a file that cannot be opened stops the start, saying why, instead of every line going nowhere. */
function logStream(settings: Settings): NodeJS.WritableStream | undefined {
  if (settings.logfile === undefined) return undefined;
  let fd: number;
  try {
    fd = openSync(settings.logfile, 'a', 0o640);
  } catch (error) {
    fail(
      `cannot open --logfile ${settings.logfile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      EXIT_BAD_SETTINGS,
    );
  }
  process.stderr.write(`matrix-regservice: logging to ${settings.logfile}\n`);
  return createWriteStream('', { fd });
}

async function runDaemon(command: Command, context: ProgramContext): Promise<void> {
  const { settings, warnings } = serviceSettingsOrExit(command);
  const stream = logStream(settings);
  const log = createLogger({
    verbosity: settings.verbosity,
    secrets: [settings.sharedSecret, settings.adminToken, settings.asToken, settings.hsToken, ...databaseSecrets(settings)],
    ...(stream === undefined ? {} : { stream }),
  });
  if (context.ignoredGoFlags.length > 0) log.warn(ignoredGoFlagsWarning(context.ignoredGoFlags));
  for (const warning of warnings) log.warn(warning);
  process.on('unhandledRejection', (reason) => {
    log.error('unhandled promise rejection', { reason: reason instanceof Error ? reason.message : String(reason) });
  });

  // Signals are handled from the start: the first workers may answer before the others listen.
  let primary: RunningPrimary | undefined;
  let signalled = false;
  const stopAndExit = async (code: number): Promise<never> => {
    await primary?.stop();
    await log.close();
    process.exit(code);
  };
  const shutdown = (signal: NodeJS.Signals): void => {
    if (signalled) {
      log.warn(`second ${signal}: exiting without waiting`);
      process.exit(EXIT_FAILURE);
    }
    signalled = true;
    log.info(`received ${signal}`);
    if (primary !== undefined) void stopAndExit(0);
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  process.on('SIGHUP', () => primary?.reloadLists());
  try {
    primary = await startPrimary(settings, log, (reason) => {
      log.critical(`stopping: ${reason}`);
      void stopAndExit(EXIT_FAILURE);
    });
  } catch (error) {
    const known = error instanceof StoreOpenError || error instanceof StartError || error instanceof UntrustedFileError;
    log.critical(known ? error.message : `cannot start: ${(error as Error).message}`);
    await log.close();
    process.exit(error instanceof UntrustedFileError ? EXIT_BAD_SETTINGS : EXIT_FAILURE);
  }
  if (signalled) await stopAndExit(0);
}

/** What parsing the command line learned before commander saw it. */
interface ProgramContext {
  /** The Go original's diagnostic flags that were given (and are ignored). */
  ignoredGoFlags: readonly string[];
}

export function buildProgram(context: ProgramContext = { ignoredGoFlags: [] }): Command {
  const program = new Command('matrix-regservice')
    .description('Registration gate for a Matrix homeserver: registers @0x<address>:<server_name> for holders of the key')
    .version(packageVersion(), '-v, --version', "print the version (the Go original's -v too)")
    .showHelpAfterError();
  for (const spec of OPTION_SPECS) {
    const flags = 'argName' in spec ? `--${spec.key} ${spec.argName}` : `--${spec.key}`;
    const fallback = describeDefault(spec.key);
    program.addOption(
      new Option(flags, `${spec.description}${fallback === undefined ? '' : ` (default ${fallback})`} [env ${envName(spec.key)}]`),
    );
  }
  program.addOption(new Option('--config <file>', `YAML file of the same settings [env ${envName('config')}]`));
  program.action(async (_options, command: Command) => runDaemon(command, context));

  program
    .command('genconfig')
    .description('write registration.yaml (0600) and run.sh (0755) for this deployment')
    .option('--out <dir>', 'directory to write to (default: the current one; with --container, /var/lib/matrix-regservice)')
    .option(
      '--container',
      "the compose deployment: run in this service's image with Synapse's volume at /data; writes regservice.yaml for the image, " +
        'a copy of the registration into /data, and patches /data/homeserver.yaml (README: Running with Docker)',
      false,
    )
    .option(
      '--registration-url <url>',
      "where Synapse reaches the service: registration.yaml's url (with --container, http://regservice:8009/regapp/1)",
    )
    .option(
      '--synapse-registration <file>',
      'with --container: where Synapse reads its copy of the registration, as Synapse sees the path (/data/matrix-regservice.yaml)',
    )
    .option('--force', 'replace existing files, keeping a 0600 backup of each under <out>/backups/', false)
    .option(
      '--new-tokens',
      "new as_token and hs_token instead of keeping the registration's already in --out (or the Go original's)",
      false,
    )
    .option('--new-shared-secret', 'a new shared secret instead of keeping the one genconfig generated before in --out', false)
    .option('--id <id>', 'application-service id, unique on the homeserver (default matrix-regservice-<matrixdomain>)')
    .option(
      '--homeserver-config <file>',
      "Synapse's homeserver.yaml to take server_name, shared secret and client listener from (default ./homeserver.yaml, else as root Debian's /etc/matrix-synapse/homeserver.yaml, if present)",
    )
    .option(
      '--patch-homeserver',
      "apply Synapse's changes: homeserver.yaml edited in place (with a backup), or in Debian's layout a conf.d file of ours",
      false,
    )
    .option(
      '--synapse-workdir <dir>',
      "Synapse's working directory, for relative paths in its configuration (default /var/lib/matrix-synapse with conf.d, else homeserver.yaml's directory)",
    )
    .option(
      '--synapse-user <user>',
      "Synapse's account, which alone reads its own copies of the registration and secret (default: the owner of Synapse's working directory, else of its signing key or media store)",
    )
    .option('--nginx-location <file>', 'also write the nginx location nodes register through, to include in your own server block')
    .option(
      '--nginx-upstream <file>',
      "with --nginx-location and --upstream: also write the gates' upstream block and the loopback server Synapse reaches them through, for nginx's http block",
    )
    .option('--nginx <file>', 'also write a whole nginx site (a server block for Synapse and the service) for this deployment')
    .option('--tls-certificate <file>', 'with --nginx: the site speaks TLS with this certificate (full chain)')
    .option('--tls-key <file>', "with --nginx: the certificate's private key")
    .option('--systemd <file>', 'also write a hardened systemd unit for this deployment')
    .option('--public-port <port>', 'public port of the nginx site (default 443 with TLS, else 80)')
    .option('--public-name <name>', 'server_name of the nginx site (default: the matrix domain)')
    .option('--systemd-user <user>', 'system user of the systemd unit', 'matrix-regservice')
    .option(
      '--upstream <host:port>',
      "a gate behind nginx, once per gate sharing --database: their upstream block (in --nginx's site, or --nginx-upstream's file), and the registration url points at nginx's loopback server for them",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option(
      '--appservice-port <port>',
      'with --upstream: the loopback port of the nginx server through which Synapse reaches the gates',
      '8019',
    )
    .action((options: GenconfigOptions, command: Command) =>
      reportFailure(async () => {
        const { runGenconfig } = await import('./commands/genconfig.js');
        const { ignoredEnvironment } = await import('./genconfig/carriedSettings.js');
        // The deployment runs on what genconfig writes, never on genconfig's own environment.
        // In a container, the image's environment is the service's too: nothing to warn about.
        for (const name of options.container ? [] : ignoredEnvironment(process.env))
          process.stderr.write(
            `warning: ${name} is set in genconfig's environment and is not carried into the deployment: give it as a flag\n`,
          );
        // Its settings come from its command line and --config FILE only, and the deployment carries both.
        const commandLine = sourcesOf(command).commandLine;
        const configFile = command.optsWithGlobals<{ config?: string }>().config;
        const sources = { commandLine, environment: {}, configFile };
        let fromFile: RawSettings = {};
        try {
          if (configFile !== undefined) fromFile = readSettingsFile(configFile);
        } catch (error) {
          if (error instanceof SettingsError) fail(error.message, EXIT_BAD_SETTINGS);
          throw error;
        }
        await runGenconfig(options, (fallback) => settingsFromOrExit({ ...sources, fallback }, { requireSecrets: false }), process, {
          ...fromFile,
          ...commandLine,
        });
      }),
    );
  program
    .command('doctor')
    .description('check the deployment: homeserver, backend access, application-service ping, datapath, public routing')
    .option('--public-url <url>', 'the public homeserver URL nodes use, to check its routing of /regapp/1 and /_matrix')
    .option(
      '--homeserver-config <file>',
      "Synapse's homeserver.yaml (and conf.d beside it), to compare the registration it lists (default: Debian's, else ./homeserver.yaml)",
    )
    .action((options: { publicUrl?: string; homeserverConfig?: string }, command: Command) =>
      runDoctorCommand(command, options.publicUrl, options.homeserverConfig),
    );

  program
    .command('users')
    .description(
      'the registered nodes: list, count, show 0x…, export (JSON lines), and forget 0x… | --all (their next signed requests reach the homeserver); all work while the service runs',
    )
    .argument('<action>', 'list, count, show, export or forget')
    .argument('[addresses...]', 'the node address, for show; the node addresses, for forget')
    .option('--all', 'forget: every registered node', false)
    .option('--yes', 'forget: without asking first (needed without a terminal)', false)
    .action((action: string, addresses: string[], options: { all: boolean; yes: boolean }, command: Command) =>
      action === 'forget' ? runForget(command, addresses, options) : runUsers(command, action, addresses[0]),
    );

  program
    .command('store')
    .description('move the registry between stores')
    .command('copy')
    .description(
      'copy a LevelDB registry (nodes, pending registrations, transaction ids) into PostgreSQL; running it again copies nothing twice',
    )
    .requiredOption('--from <datapath>', 'the --datapath of the LevelDB registry')
    .requiredOption('--to <url>', 'postgresql:// URL of the target (its password: --database-password-file)')
    .action((options: { from: string; to: string }, command: Command) =>
      reportFailure(() => {
        const { settings } = settingsOrExit(command, { requireSecrets: false, requireServerName: false });
        return import('./commands/storeCopy.js').then(({ runStoreCopy }) =>
          runStoreCopy({ ...options, password: settings.databasePassword }, process),
        );
      }),
    );

  program
    .command('register')
    .description("register as a Photon node does (sign, POST /regapp/1/register, log in) and print the user id: an operator's smoke test")
    .requiredOption('--key-file <file>', 'file holding the node private key as 64 hex characters')
    .requiredOption('--homeserver <url>', 'public homeserver URL')
    .option('--server-name <name>', "the homeserver's server_name (default: the URL's host)")
    .option(
      '--gate <url>',
      "the service's own URL, registration.yaml's url (e.g. http://127.0.0.1:8009/regapp/1), when no proxy puts it under --homeserver",
    )
    .action((options: { keyFile: string; homeserver: string; serverName?: string; gate?: string }) =>
      reportFailure(async () => (await import('./commands/register.js')).runRegister(options, process)),
    );
  return program;
}

async function runDoctorCommand(command: Command, publicUrl: string | undefined, homeserverConfig: string | undefined): Promise<void> {
  const { settings, warnings } = serviceSettingsOrExit(command);
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  const { formatCheck, runDoctor } = await import('./commands/doctor.js');
  const results = await runDoctor(settings, publicUrl, homeserverConfig);
  for (const result of results) process.stdout.write(`${formatCheck(result)}\n`);
  const failed = results.filter((result) => !result.ok).length;
  process.stdout.write(failed === 0 ? 'All checks passed.\n' : `${failed} check(s) failed.\n`);
  process.exitCode = failed === 0 ? 0 : EXIT_FAILURE;
}

async function runForget(command: Command, addresses: readonly string[], options: { all: boolean; yes: boolean }): Promise<void> {
  if (options.all === addresses.length > 0) fail('users forget takes node addresses (0x…) or --all, one of the two', EXIT_BAD_SETTINGS);
  const which = options.all ? 'all' : addresses.map((address) => address.toLowerCase());
  for (const address of which === 'all' ? [] : which)
    if (!isNodeLocalpart(address))
      fail(`users forget: not a node address: ${JSON.stringify(address)} (0x and 40 hex digits)`, EXIT_BAD_SETTINGS);
  const { settings } = settingsOrExit(command, { requireSecrets: false, requireServerName: false });
  await reportFailure(async () => {
    const { runUsersForget } = await import('./commands/usersForget.js');
    try {
      await runUsersForget(settings, { which, yes: options.yes }, process);
    } catch (error) {
      if (error instanceof StoreOpenError || error instanceof MatrixError) fail(error.message, EXIT_FAILURE);
      throw error;
    }
  });
}

async function runUsers(command: Command, action: string, address: string | undefined): Promise<void> {
  if (!['list', 'count', 'show', 'export'].includes(action))
    fail(`users: unknown action "${action}" (list, count, show 0x…, export, forget)`, EXIT_BAD_SETTINGS);
  if (action === 'show' && address === undefined) fail('users show needs a node address (0x…)', EXIT_BAD_SETTINGS);
  if (action === 'show' && !isNodeLocalpart((address ?? '').toLowerCase()))
    fail(`users show: not a node address: ${JSON.stringify(address)} (0x and 40 hex digits)`, EXIT_BAD_SETTINGS);
  const { settings } = settingsOrExit(command, { requireSecrets: false, requireServerName: false });
  try {
    const { runUsersCommand } = await import('./commands/users.js');
    process.exitCode = await runUsersCommand(settings, action as UsersAction, address, process.stdout, process.stderr);
  } catch (error) {
    if (error instanceof StoreOpenError || error instanceof MatrixError) fail(error.message, EXIT_FAILURE);
    throw error;
  }
}

/** Every long flag of the program and its subcommands, as the Go original's flag package would also take them with one dash. */
function longFlagsOf(command: Command): string[] {
  return [
    ...command.options.map((option) => option.long?.replace(/^--/, '')).filter((flag): flag is string => flag !== undefined),
    ...command.commands.flatMap(longFlagsOf),
  ];
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  const context: ProgramContext = { ignoredGoFlags: [] };
  const program = buildProgram(context);
  const translated = translateGoArgv(argv.slice(2), longFlagsOf(program));
  context.ignoredGoFlags = translated.ignored;
  await program.parseAsync([...argv.slice(0, 2), ...translated.argv]);
}
