import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { loadSettings, type SettingsSources } from './config/loadSettings.js';
import { envName, OPTION_SPECS } from './config/options.js';
import { DEFAULTS, describeDefault, SettingsError, type RawSettings, type ResolveOptions, type SettingsLayer } from './config/settings.js';
import { readHomeserverFacts } from './genconfig/homeserverConfig.js';
import { planHomeserverPatch, type HomeserverChange } from './genconfig/homeserverPatch.js';
import { startPrimary, StartError, type RunningPrimary } from './cluster/primary.js';
import {
  defaultGenconfigInput,
  GenconfigError,
  planGenconfig,
  readTemplate,
  renderNginxSite,
  renderSystemdUnit,
  RUN_FILE,
  writeGenconfig,
} from './genconfig/genconfig.js';
import { createLogger } from './log/logger.js';
import { packageVersion } from './packageRoot.js';
import { StoreOpenError } from './store/database.js';
import { formatCheck, runDoctor } from './commands/doctor.js';
import { runUsersCommand, type UsersAction } from './commands/users.js';
import { registerNode } from './node/registerNode.js';

const EXIT_FAILURE = 1;
const EXIT_BAD_SETTINGS = 2;

function fail(message: string, code: number): never {
  process.stderr.write(`matrix-regservice: ${message}\n`);
  process.exit(code);
}

/** Settings from this command's flags and MATRIX_REGSERVICE_* variables (files are read by loadSettings). */
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
  try {
    return loadSettings({ ...sourcesOf(command), fallback }, options);
  } catch (error) {
    if (error instanceof SettingsError) fail(error.message, EXIT_BAD_SETTINGS);
    throw error;
  }
}

async function runDaemon(command: Command): Promise<void> {
  const { settings, warnings } = settingsOrExit(command);
  const log = createLogger({
    verbosity: settings.verbosity,
    secrets: [settings.sharedSecret, settings.adminToken, settings.asToken, settings.hsToken],
  });
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
    const known = error instanceof StoreOpenError || error instanceof StartError;
    log.critical(known ? (error as Error).message : `cannot start: ${(error as Error).message}`);
    await log.close();
    process.exit(EXIT_FAILURE);
  }
  if (signalled) await stopAndExit(0);
}

interface GenconfigOptions {
  readonly out: string;
  readonly force: boolean;
  readonly id?: string | undefined;
  readonly homeserverConfig?: string | undefined;
  readonly patchHomeserver: boolean;
  readonly nginx?: string | undefined;
  readonly systemd?: string | undefined;
  readonly publicPort: string;
  readonly publicName?: string | undefined;
  readonly systemdUser: string;
}

function runGenconfig(command: Command, options: GenconfigOptions): void {
  const homeserverConfig = options.homeserverConfig ?? (existsSync('homeserver.yaml') ? 'homeserver.yaml' : undefined);
  let homeserverText: string | undefined;
  let fallback: SettingsLayer | undefined;
  if (homeserverConfig !== undefined) {
    const path = resolve(homeserverConfig);
    try {
      homeserverText = readFileSync(path, 'utf8');
      const facts = readHomeserverFacts(homeserverText, dirname(path));
      fallback = { source: `homeserver.yaml ${path}`, values: facts.settings };
      process.stdout.write(`Read ${path}: ${facts.found.join('; ') || 'nothing this service uses'}\n`);
    } catch (error) {
      fail(`cannot read the homeserver config ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT_BAD_SETTINGS);
    }
  }
  // The state directory defaults to the deployment directory, next to run.sh, not to where genconfig ran.
  const deploymentDefaults: SettingsLayer = {
    source: fallback?.source ?? 'genconfig defaults',
    values: { datapath: join(resolve(options.out), DEFAULTS.datapath), ...fallback?.values },
  };
  const { settings, warnings } = settingsOrExit(command, { requireSecrets: false }, deploymentDefaults);
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  const input = { ...defaultGenconfigInput(settings, options.out), appserviceId: options.id };
  const publicPort = Number(options.publicPort);
  if (!Number.isInteger(publicPort) || publicPort < 1 || publicPort > 65535) fail(`--public-port must be a port, got "${options.publicPort}"`, EXIT_BAD_SETTINGS);
  try {
    const plan = planGenconfig(input);
    const site = {
      publicPort,
      publicName: options.publicName ?? settings.serverName.replace(/:\d+$/, ''),
      user: options.systemdUser,
      runScript: join(input.outDir, RUN_FILE),
    };
    const files = [
      ...plan.files,
      ...(options.nginx === undefined ? [] : [{ name: resolve(options.nginx), content: renderNginxSite(readTemplate('nginx-site.conf.template'), settings, site, input.now), mode: 0o644 }]),
      ...(options.systemd === undefined ? [] : [{ name: resolve(options.systemd), content: renderSystemdUnit(readTemplate('matrix-regservice.service.template'), settings, site, input.now), mode: 0o644 }]),
    ];
    // homeserver.yaml is checked before anything is written: a file that cannot be patched safely leaves no trace.
    const path = homeserverConfig === undefined ? undefined : resolve(homeserverConfig);
    const patch =
      homeserverText === undefined ? undefined : planHomeserverPatch(homeserverText, { registrationFile: plan.registrationFile, sharedSecretFile: plan.newSecretFile });
    const byHand = (changes: readonly HomeserverChange[]): string => changes.map((change) => `  ${change.describe.replaceAll('\n', '\n  ')}`).join('\n');
    if (patch !== undefined && !patch.ok && options.patchHomeserver) {
      fail(
        `cannot patch ${path} safely; nothing was written:\n${patch.problems.map((problem) => `  - ${problem}`).join('\n')}\n` +
          `Fix that and run again, or run without --patch-homeserver and add by hand:\n${byHand(patch.changes)}`,
        EXIT_FAILURE,
      );
    }
    const written = writeGenconfig({ files }, input.outDir, options.force);
    process.stdout.write(`Wrote ${written.join(', ')}\n`);
    if (patch === undefined || path === undefined) {
      process.stdout.write(plan.instructions);
      return;
    }
    if (patch.changes.length === 0) {
      process.stdout.write(`${path} already has what this deployment needs.\n`);
    } else if (options.patchHomeserver && patch.ok) {
      const backup = `${path}.bak-${input.now.toISOString().replace(/[:.]/g, '')}`;
      copyFileSync(path, backup);
      writeFileSync(path, patch.text);
      process.stdout.write(`Patched ${path} (backup: ${backup}):\n${byHand(patch.changes)}\nRestart Synapse, then start the service: ${site.runScript}\n`);
      return;
    } else {
      const caveat = patch.ok ? '' : ` (--patch-homeserver cannot: ${patch.problems.join('; ')})`;
      process.stdout.write(`Add to ${path}${patch.ok ? ' (or run again with --patch-homeserver)' : caveat}, then restart Synapse:\n${byHand(patch.changes)}\n`);
    }
    process.stdout.write(`Then start the service: ${site.runScript}\n`);
  } catch (error) {
    if (error instanceof GenconfigError) fail(error.message, EXIT_FAILURE);
    throw error;
  }
}

export function buildProgram(): Command {
  const program = new Command('matrix-regservice')
    .description(
      'Registration gate for a Matrix homeserver: registers @0x<address>:<server_name> for holders of the key',
    )
    .version(packageVersion())
    .showHelpAfterError();
  for (const spec of OPTION_SPECS) {
    const flags = 'argName' in spec ? `--${spec.key} ${spec.argName}` : `--${spec.key}`;
    const fallback = describeDefault(spec.key);
    program.addOption(new Option(flags, `${spec.description}${fallback === undefined ? '' : ` (default ${fallback})`} [env ${envName(spec.key)}]`));
  }
  program.addOption(new Option('--config <file>', `YAML file of the same settings [env ${envName('config')}]`));
  program.action(async (_options, command: Command) => runDaemon(command));

  program
    .command('genconfig')
    .description('write registration.yaml (0600) and run.sh (0755) for this deployment')
    .option('--out <dir>', 'directory to write to', '.')
    .option('--force', 'overwrite existing files', false)
    .option('--id <id>', 'application-service id, unique on the homeserver (default matrix-regservice-<matrixdomain>)')
    .option('--homeserver-config <file>', "Synapse's homeserver.yaml to take server_name, shared secret and client listener from (default ./homeserver.yaml if present)")
    .option('--patch-homeserver', 'apply the needed homeserver.yaml changes (keeps comments, writes a backup)', false)
    .option('--nginx <file>', 'also write an nginx site for this deployment')
    .option('--systemd <file>', 'also write a hardened systemd unit for this deployment')
    .option('--public-port <port>', 'public port of the nginx site', '80')
    .option('--public-name <name>', 'server_name of the nginx site (default: the matrix domain)')
    .option('--systemd-user <user>', 'system user of the systemd unit', 'matrix-regservice')
    .action((options: GenconfigOptions, command: Command) => runGenconfig(command, options));
  program
    .command('doctor')
    .description('check the deployment: homeserver, backend access, application-service ping, datapath, public routing')
    .option('--public-url <url>', 'the public homeserver URL nodes use, to check its routing of /regapp/1 and /_matrix')
    .action((options: { publicUrl?: string }, command: Command) => runDoctorCommand(command, options.publicUrl));

  program
    .command('users')
    .description('read the registered nodes: list, count, show 0x…, export (JSON lines); works while the service runs')
    .argument('<action>', 'list, count, show or export')
    .argument('[address]', 'the node address, for show')
    .action((action: string, address: string | undefined, _options: unknown, command: Command) => runUsers(command, action, address));

  program
    .command('register')
    .description("register as a Photon node does (sign, POST /regapp/1/register, log in) and print the user id: an operator's smoke test")
    .requiredOption('--key-file <file>', 'file holding the node private key as 64 hex characters')
    .requiredOption('--homeserver <url>', 'public homeserver URL')
    .option('--server-name <name>', "the homeserver's server_name (default: the URL's host)")
    .action((options: { keyFile: string; homeserver: string; serverName?: string }) => runRegister(options));
  return program;
}

async function runDoctorCommand(command: Command, publicUrl: string | undefined): Promise<void> {
  const { settings, warnings } = settingsOrExit(command);
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  const results = await runDoctor(settings, publicUrl);
  for (const result of results) process.stdout.write(`${formatCheck(result)}\n`);
  const failed = results.filter((result) => !result.ok).length;
  process.stdout.write(failed === 0 ? 'All checks passed.\n' : `${failed} check(s) failed.\n`);
  process.exitCode = failed === 0 ? 0 : EXIT_FAILURE;
}

async function runUsers(command: Command, action: string, address: string | undefined): Promise<void> {
  if (!['list', 'count', 'show', 'export'].includes(action)) fail(`users: unknown action "${action}" (list, count, show 0x…, export)`, EXIT_BAD_SETTINGS);
  if (action === 'show' && address === undefined) fail('users show needs a node address (0x…)', EXIT_BAD_SETTINGS);
  const { settings } = settingsOrExit(command, { requireSecrets: false, requireServerName: false });
  try {
    process.exitCode = await runUsersCommand(settings.datapath, action as UsersAction, address, process.stdout, process.stderr);
  } catch (error) {
    if (error instanceof StoreOpenError) fail(error.message, EXIT_FAILURE);
    throw error;
  }
}

async function runRegister(options: { keyFile: string; homeserver: string; serverName?: string }): Promise<void> {
  let key: Buffer;
  try {
    const text = readFileSync(options.keyFile, 'utf8').trim().replace(/^0x/i, '');
    if (!/^[0-9a-fA-F]{64}$/.test(text)) fail(`${options.keyFile} must hold a 32-byte private key as 64 hex characters`, EXIT_BAD_SETTINGS);
    key = Buffer.from(text, 'hex');
  } catch (error) {
    fail(`cannot read ${options.keyFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT_BAD_SETTINGS);
  }
  try {
    const node = await registerNode({ privateKey: key, homeserverUrl: options.homeserver, serverName: options.serverName });
    process.stdout.write(`${node.userId}\n`);
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error), EXIT_FAILURE);
  }
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  await buildProgram().parseAsync([...argv]);
}
