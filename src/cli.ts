import { Command, Option } from 'commander';
import { loadSettings, type SettingsSources } from './config/loadSettings.js';
import { envName, OPTION_SPECS } from './config/options.js';
import { SettingsError, type RawSettings, type ResolveOptions } from './config/settings.js';
import { startDaemon, StartError } from './daemon.js';
import { defaultGenconfigInput, GenconfigError, planGenconfig, writeGenconfig } from './genconfig/genconfig.js';
import { createLogger } from './log/logger.js';
import { packageVersion } from './packageRoot.js';
import { StoreOpenError } from './store/database.js';

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

function settingsOrExit(command: Command, options?: ResolveOptions): ReturnType<typeof loadSettings> {
  try {
    return loadSettings(sourcesOf(command), options);
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

  let daemon;
  try {
    daemon = await startDaemon(settings, log);
  } catch (error) {
    if (error instanceof StoreOpenError || error instanceof StartError) {
      log.critical(error.message);
      await log.close();
      process.exit(EXIT_FAILURE);
    }
    throw error;
  }
  const running = daemon;
  let signalled = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (signalled) {
      log.warn(`second ${signal}: exiting without waiting`);
      process.exit(EXIT_FAILURE);
    }
    signalled = true;
    log.info(`received ${signal}`);
    void running
      .stop()
      .then(() => log.close())
      .then(() => process.exit(0));
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  process.on('SIGHUP', () => running.reloadLists());
}

function runGenconfig(command: Command, options: { out: string; force: boolean; id?: string | undefined }): void {
  const { settings, warnings } = settingsOrExit(command, { requireSecrets: false });
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  const input = { ...defaultGenconfigInput(settings, options.out), appserviceId: options.id };
  try {
    const plan = planGenconfig(input);
    const written = writeGenconfig(plan, input.outDir, options.force);
    process.stdout.write(`Wrote ${written.join(', ')}\n${plan.instructions}`);
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
    program.addOption(new Option(flags, `${spec.description} [env ${envName(spec.key)}]`));
  }
  program.addOption(new Option('--config <file>', `YAML file of the same settings [env ${envName('config')}]`));
  program.action(async (_options, command: Command) => runDaemon(command));

  program
    .command('genconfig')
    .description('write registration.yaml (0600) and run.sh (0755) for this deployment')
    .option('--out <dir>', 'directory to write to', '.')
    .option('--force', 'overwrite existing files', false)
    .option('--id <id>', 'application-service id, unique on the homeserver (default matrix-regservice-<matrixdomain>)')
    .action((options: { out: string; force: boolean; id?: string }, command: Command) => runGenconfig(command, options));
  return program;
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  await buildProgram().parseAsync([...argv]);
}
