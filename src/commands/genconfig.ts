import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { DEFAULTS, type RawSettings, type ResolvedSettings, type SettingsLayer } from '../config/settings.js';
import { carriedSettings, type CarriedSetting } from '../genconfig/carriedSettings.js';
import { configValue, readHomeserverFacts, readSynapseConfig, type SynapseConfig } from '../genconfig/homeserverConfig.js';
import { planHomeserverUpdate, type HomeserverUpdate } from '../genconfig/homeserverChanges.js';
import { namesFile } from '../genconfig/registrationEntries.js';
import { DEBIAN_HOMESERVER_YAML, DEBIAN_SYNAPSE_WORKDIR } from '../genconfig/debianLayout.js';
import type { HomeserverChange } from '../genconfig/homeserverPatch.js';
import { findGoRegistration } from '../goOriginal/goRegistration.js';
import { containerDefaults, containerFiles } from '../container/containerDeployment.js';
import {
  defaultGenconfigInput,
  GenconfigError,
  planGenconfig,
  readTemplate,
  renderSystemdUnit,
  REGISTRATION_FILE,
  RUN_FILE,
  SECRET_FILE,
  writeGenconfig,
} from '../genconfig/genconfig.js';
import { currentUser, lookupUser, ownerOf, type FileOwner } from '../genconfig/fileOwners.js';
import { guessSynapseAccount } from '../genconfig/synapseAccount.js';
import { settleOwnership } from '../genconfig/ownership.js';
import { readerCopies, separateReaders, SYNAPSE_COPY_NAMES, type Readers } from '../genconfig/readerCopies.js';
import { moveRegistry, planRegistryMove } from '../genconfig/registryMove.js';
import { readPreviousDeployment } from '../genconfig/previousDeployment.js';
import {
  registrationUrlThroughNginx,
  renderNginxSite,
  renderNginxSnippet,
  renderNginxUpstream,
  upstreamAddress,
  type NginxTemplates,
} from '../genconfig/nginxSite.js';
import { gateWarnings } from '../genconfig/gateWarnings.js';
import { EXIT_BAD_SETTINGS, EXIT_FAILURE, failCommand, type Output } from './commandFailure.js';

export interface GenconfigOptions {
  /** Default: the current directory (with --container, the image's /var/lib/matrix-regservice). */
  readonly out?: string | undefined;
  readonly force: boolean;
  readonly id?: string | undefined;
  readonly homeserverConfig?: string | undefined;
  readonly patchHomeserver: boolean;
  readonly nginx?: string | undefined;
  /** A location snippet to include in the operator's own server block. */
  readonly nginxLocation?: string | undefined;
  /** With --nginx-location and --upstream: the gates' upstream block and loopback server, for nginx's http block. */
  readonly nginxUpstream?: string | undefined;
  readonly tlsCertificate?: string | undefined;
  readonly tlsKey?: string | undefined;
  readonly appservicePort: string;
  readonly systemd?: string | undefined;
  /** Default: 443 with TLS, else 80. */
  readonly publicPort?: string | undefined;
  readonly publicName?: string | undefined;
  readonly systemdUser: string;
  /** host:port of each gate behind nginx (several gates sharing one --database). */
  readonly upstream: readonly string[];
  /** Synapse's working directory, from which it resolves relative paths in its configuration. */
  readonly synapseWorkdir?: string | undefined;
  /** The compose deployment's defaults: run in this service's image, with Synapse's volume at /data. */
  readonly container: boolean;
  /** Where Synapse reaches the service (registration.yaml's url), when not this gate's own address. */
  readonly registrationUrl?: string | undefined;
  /** With --container: where Synapse reads its copy of the registration, as Synapse sees the path. */
  readonly synapseRegistration?: string | undefined;
  /** Synapse's account, to own its copies of the registration and secret (default: the owner of its working directory). */
  readonly synapseUser?: string | undefined;
  /** New as_token and hs_token, instead of keeping an earlier run's (or the Go original's). */
  readonly newTokens: boolean;
  /** A new shared secret, instead of keeping the one an earlier run generated. */
  readonly newSharedSecret: boolean;
}

/** The port of a registration url on this machine (loopback or an unspecified address), which the gate listens on. */
function localPortOf(url: string | undefined): number | undefined {
  if (url === undefined) return undefined;
  try {
    const parsed = new URL(url);
    if (!['127.0.0.1', 'localhost', '[::1]', '0.0.0.0', '[::]'].includes(parsed.hostname)) return undefined;
    const port = Number(parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : parsed.port);
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a shared-secret file is one genconfig writes: its copy in the output directory, or Synapse's copy. */
function isGenconfigSecret(file: string | undefined, outDir: string, homeserverYaml: string | undefined): boolean {
  if (file === undefined) return false;
  const ours = [
    join(outDir, SECRET_FILE),
    ...(homeserverYaml === undefined ? [] : [join(dirname(homeserverYaml), SYNAPSE_COPY_NAMES.secret)]),
  ];
  return ours.some((copy) => namesFile(file, [outDir], copy));
}

function readConfigOrFail(path: string): SynapseConfig {
  try {
    return readSynapseConfig(path);
  } catch (error) {
    failCommand(
      `cannot read the homeserver config ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      EXIT_BAD_SETTINGS,
    );
  }
}

/**
 * `genconfig`: reads Synapse's configuration when there is one (homeserver.yaml, and conf.d in Debian's layout), plans
 * every file and Synapse's changes, checks them all, then writes all or nothing. `settingsFor` resolves the settings
 * with what Synapse's configuration gave as the lowest layer.
 */
export async function runGenconfig(
  given: GenconfigOptions,
  settingsFor: (fallback: SettingsLayer) => ResolvedSettings,
  out: Output,
  /** The daemon settings on genconfig's command line, as given: the deployment carries them. */
  commandLine: RawSettings = {},
): Promise<void> {
  let carried: CarriedSetting[];
  try {
    carried = carriedSettings(commandLine);
  } catch (error) {
    if (error instanceof GenconfigError) failCommand(error.message, EXIT_BAD_SETTINGS);
    throw error;
  }
  const container = given.container ? containerDefaults() : undefined;
  const options = {
    ...given,
    out: given.out ?? container?.out ?? '.',
    patchHomeserver: given.patchHomeserver || container !== undefined,
  };
  // Run as root anywhere on a Debian machine, genconfig still finds the package's configuration (else Synapse's copies
  // go stale); not as another user, who could not write Synapse's copies there (a deployment of their own, elsewhere).
  const homeserverConfig =
    options.homeserverConfig ??
    container?.homeserverConfig ??
    ['homeserver.yaml', ...(process.getuid?.() === 0 ? [DEBIAN_HOMESERVER_YAML] : [])].find((path) => existsSync(path));
  const config = homeserverConfig === undefined ? undefined : readConfigOrFail(resolve(homeserverConfig));
  let fallback: SettingsLayer | undefined;
  if (config !== undefined) {
    const facts = readHomeserverFacts((key) => configValue(config, key), dirname(config.homeserverYaml.path));
    const read = [config.homeserverYaml.path, ...config.confFiles.map((file) => file.path)].join(', ');
    fallback = { source: `Synapse's configuration ${read}`, values: facts.settings };
    out.stdout.write(`Read ${read}: ${facts.found.join('; ') || 'nothing this service uses'}\n`);
  }
  // The state directory defaults to the deployment directory, next to run.sh, not to where genconfig ran.
  const deploymentDefaults: SettingsLayer = {
    source:
      container === undefined
        ? (fallback?.source ?? 'genconfig defaults')
        : `genconfig --container, then ${fallback?.source ?? 'defaults'}`,
    values: { datapath: join(resolve(options.out), DEFAULTS.datapath), ...fallback?.values, ...container?.settings },
  };
  const resolveWith = (extra: SettingsLayer['values']): ResolvedSettings =>
    settingsFor({ ...deploymentDefaults, values: { ...deploymentDefaults.values, ...extra } });
  let { settings, warnings } = resolveWith({});
  const outDir = resolve(options.out);
  const previous = readPreviousDeployment(outDir, REGISTRATION_FILE, SECRET_FILE);
  if (previous.unreadable !== undefined && !options.newTokens) {
    failCommand(
      `cannot read the registration written before, ${previous.unreadable.path} (${previous.unreadable.reason}): Synapse may hold its tokens. ` +
        'Fix it, or give --new-tokens to replace it (then restart Synapse)',
      EXIT_BAD_SETTINGS,
    );
  }
  // Run where the Go original's genconfig ran (Synapse's config directory), keep its registration's id and tokens:
  // Synapse and the Go original's run.sh hold them.
  const goRegistration = [process.cwd(), ...(config === undefined ? [] : [dirname(config.homeserverYaml.path)])]
    .map((dir) => findGoRegistration(dir, settings.serverName))
    .find((found) => found !== undefined);
  // The port Synapse reaches the service on stays that of the registration it holds, unless --port says otherwise.
  const ownUrl = options.registrationUrl === undefined && options.upstream.length === 0 && container === undefined;
  const keptPort = ownUrl ? localPortOf(previous.registration?.url ?? goRegistration?.url) : undefined;
  if (keptPort !== undefined && keptPort !== settings.port) ({ settings, warnings } = resolveWith({ port: keptPort }));
  for (const warning of warnings) out.stderr.write(`warning: ${warning}\n`);
  const port = (value: string, flag: string): number => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < 1 || number > 65535) failCommand(`${flag} must be a port, got "${value}"`, EXIT_BAD_SETTINGS);
    return number;
  };
  if ((options.tlsCertificate === undefined) !== (options.tlsKey === undefined)) {
    failCommand('--tls-certificate and --tls-key go together: give both, or neither for plain HTTP', EXIT_BAD_SETTINGS);
  }
  const tls =
    options.tlsCertificate === undefined || options.tlsKey === undefined
      ? undefined
      : { certificate: resolve(options.tlsCertificate), key: resolve(options.tlsKey) };
  if (tls !== undefined && options.nginx === undefined)
    failCommand('--tls-certificate and --tls-key are for the site --nginx FILE writes', EXIT_BAD_SETTINGS);
  const publicPort = port(options.publicPort ?? (tls === undefined ? '80' : '443'), '--public-port');
  if (tls === undefined && publicPort === 443) {
    out.stderr.write('warning: --public-port 443 without --tls-certificate and --tls-key: the site serves plain HTTP there\n');
  }
  const upstreams = options.upstream;
  if (upstreams.length > 0 && options.nginx === undefined && options.nginxUpstream === undefined) {
    failCommand(
      options.nginxLocation === undefined
        ? '--upstream lists the gates of an nginx upstream block: give --nginx FILE too (a whole site), or --nginx-location FILE and --nginx-upstream FILE (your own server block)'
        : "--upstream with --nginx-location: give --nginx-upstream FILE too, where the upstream block the location proxies to goes (nginx's http block: /etc/nginx/conf.d/ on Debian)",
      EXIT_BAD_SETTINGS,
    );
  }
  if (options.nginxUpstream !== undefined && (upstreams.length === 0 || options.nginxLocation === undefined)) {
    failCommand(
      '--nginx-upstream writes the upstream block of several gates for --nginx-location: give --nginx-location and --upstream once per gate',
      EXIT_BAD_SETTINGS,
    );
  }
  if (options.nginx !== undefined && options.nginxUpstream !== undefined) {
    failCommand(
      "--nginx writes a whole site with the gates' upstream in it: give it, or --nginx-location and --nginx-upstream for your own server block, not both",
      EXIT_BAD_SETTINGS,
    );
  }
  try {
    upstreams.forEach(upstreamAddress);
  } catch (error) {
    failCommand((error as Error).message, EXIT_BAD_SETTINGS);
  }
  for (const warning of gateWarnings({
    upstreams,
    homeserverUrl: settings.homeserverUrl,
    host: settings.host,
    trustedProxies: settings.trustedProxies,
  }))
    out.stderr.write(`warning: ${warning}\n`);
  if (upstreams.length > 1 && settings.database === undefined) {
    out.stderr.write('warning: several gates without --database each keep their own LevelDB registry and limits\n');
  }
  const nginxOptions = {
    upstreams,
    publicPort,
    publicName: options.publicName ?? settings.serverName.replace(/:\d+$/, ''),
    tls,
    appservicePort: port(options.appservicePort, '--appservice-port'),
  };
  // Who reads what: Synapse and the service each get a 0600 copy of their own when they run as different accounts.
  const synapseHome =
    options.synapseWorkdir !== undefined
      ? resolve(options.synapseWorkdir)
      : config?.confDir !== undefined && existsSync(DEBIAN_SYNAPSE_WORKDIR)
        ? DEBIAN_SYNAPSE_WORKDIR
        : config === undefined
          ? undefined
          : dirname(config.homeserverYaml.path);
  const service = options.systemd === undefined ? currentUser() : lookupUser(options.systemdUser);
  const synapseAccount = (): FileOwner | undefined => {
    if (options.synapseUser !== undefined)
      return lookupUser(options.synapseUser) ?? failCommand(`--synapse-user ${options.synapseUser}: no such user`, EXIT_BAD_SETTINGS);
    if (synapseHome === undefined || config === undefined) return undefined;
    const written = ['signing_key_path', 'media_store_path'].map((key) => configValue(config, key));
    const guess = guessSynapseAccount(synapseHome, written, synapseHome, service);
    if (guess.kind === 'unknown') {
      failCommand(
        `cannot tell which account Synapse runs as (${guess.why}); nothing was written. Give --synapse-user USER ` +
          "(root if Synapse runs as root): Synapse's copies of the registration and secret are made for it",
        EXIT_BAD_SETTINGS,
      );
    }
    if (guess.from !== synapseHome) out.stdout.write(`Synapse's account: ${guess.owner.name}, the owner of ${guess.from}\n`);
    return guess.owner;
  };
  // In containers each volume's owner is its reader: Synapse's image runs as its UID:GID (991 unless set), the service's
  // as 991. Run as root (compose's setup), genconfig gives each its own files; otherwise it writes them as itself.
  const readers: Readers =
    container === undefined
      ? { synapse: synapseAccount(), service, homeserverYaml: config?.homeserverYaml.path }
      : {
          synapse: config === undefined ? undefined : ownerOf(config.homeserverYaml.path),
          service: existsSync(outDir) ? ownerOf(outDir) : undefined,
          homeserverYaml: undefined,
        };
  const input = {
    ...defaultGenconfigInput(settings, options.out),
    ownSecretCopy: separateReaders(readers),
    carried,
    appserviceId: options.id,
    // Several gates: the homeserver reaches them through nginx's upstream, so its transactions fail over too.
    registrationUrl:
      options.registrationUrl ??
      (upstreams.length > 0 ? registrationUrlThroughNginx(settings, nginxOptions) : container?.options.registrationUrl),
    keep: goRegistration,
    previous,
    newTokens: options.newTokens,
    newSharedSecret: options.newSharedSecret,
    secretWrittenByGenconfig: isGenconfigSecret(settings.sharedSecretFile, outDir, config?.homeserverYaml.path),
  };
  try {
    const plan = planGenconfig(input);
    if (plan.keptFrom !== undefined) {
      const whose = plan.keptFrom === goRegistration?.path ? "the Go original's registration" : 'the registration written before,';
      out.stdout.write(`Keeping the id and tokens of ${whose} ${plan.keptFrom} (--new-tokens makes new ones)\n`);
    }
    const synapseRegistration =
      container === undefined ? undefined : resolve(options.synapseRegistration ?? container.options.synapseRegistration);
    const copies = readerCopies(plan, readers);
    const site = { user: options.systemdUser, runScript: join(input.outDir, RUN_FILE) };
    const templates: NginxTemplates = {
      site: readTemplate('nginx-site.conf.template'),
      location: readTemplate('nginx-location.conf.template'),
      snippet: readTemplate('nginx-snippet.conf.template'),
      appservice: readTemplate('nginx-appservice.conf.template'),
      upstream: readTemplate('nginx-upstream.conf.template'),
      errors: readTemplate('nginx-errors.conf.template'),
    };
    const update =
      config === undefined
        ? undefined
        : planHomeserverUpdate(config, {
            registration: {
              // In containers, the copy Synapse reads, by the path it sees.
              file: synapseRegistration ?? copies.synapseRegistration,
              id: plan.registration.id,
              url: plan.registration.url,
              asToken: plan.registration.as_token,
              hsToken: plan.registration.hs_token,
              userRegexes: plan.registration.namespaces.users.map((namespace) => namespace.regex),
              serviceCopy: plan.registrationFile,
            },
            sharedSecretFile: copies.synapseSecret,
            serviceSecretCopy: input.ownSecretCopy ? join(input.outDir, SECRET_FILE) : undefined,
            bases: [
              ...new Set([
                dirname(config.homeserverYaml.path),
                options.synapseWorkdir !== undefined
                  ? resolve(options.synapseWorkdir)
                  : config.confDir !== undefined
                    ? DEBIAN_SYNAPSE_WORKDIR
                    : dirname(config.homeserverYaml.path),
              ]),
            ],
            now: input.now,
          });
    const byHand = (changes: readonly HomeserverChange[]): string =>
      changes.map((change) => `  ${change.describe.replaceAll('\n', '\n  ')}`).join('\n');
    // Synapse's configuration is checked before anything is written: a file that cannot be patched safely leaves no trace.
    if (update?.kind === 'refused' && options.patchHomeserver) {
      failCommand(
        `cannot patch ${update.where} safely; nothing was written:\n${update.problems.map((problem) => `  - ${problem}`).join('\n')}\n` +
          `Fix that and run again, or run without --patch-homeserver and add by hand:\n${byHand(update.changes)}`,
        EXIT_FAILURE,
      );
    }
    const patching = update?.kind === 'write' && options.patchHomeserver ? update : undefined;
    const backup = patching?.inPlace === true ? `${patching.path}.bak-${input.now.toISOString().replace(/[:.]/g, '')}` : undefined;
    const files = [
      ...(container === undefined || synapseRegistration === undefined
        ? copies.files
        : containerFiles(plan, settings, { registrationUrl: plan.registration.url, synapseRegistration, carried }, input.now).map(
            (file) => ({ ...file, owner: file.name === synapseRegistration ? readers.synapse : readers.service }),
          )),
      ...(options.nginx === undefined
        ? []
        : [{ name: resolve(options.nginx), content: renderNginxSite(templates, settings, nginxOptions, input.now), mode: 0o644 }]),
      ...(options.nginxLocation === undefined
        ? []
        : [
            {
              name: resolve(options.nginxLocation),
              content: renderNginxSnippet(templates, settings, { upstreams, snippetPath: resolve(options.nginxLocation) }, input.now),
              mode: 0o644,
            },
          ]),
      ...(options.nginxUpstream === undefined
        ? []
        : [
            {
              name: resolve(options.nginxUpstream),
              content: renderNginxUpstream(templates, settings, nginxOptions, input.now),
              mode: 0o644,
            },
          ]),
      ...(options.systemd === undefined
        ? []
        : [
            {
              name: resolve(options.systemd),
              content: renderSystemdUnit(readTemplate('matrix-regservice.service.template'), settings, site, input.now),
              mode: 0o644,
            },
          ]),
      ...(patching === undefined
        ? []
        : [
            ...(backup === undefined || config === undefined ? [] : [{ name: backup, content: config.homeserverYaml.text, mode: 0o600 }]),
            { name: patching.path, content: patching.text, mode: 0o644, replaces: true, inPlace: patching.inPlace },
          ]),
    ];
    // The registry kept while the service ran from the Go original's run.sh (its --datapath .matrix) moves along.
    const registryMove =
      goRegistration === undefined || container !== undefined || settings.database !== undefined
        ? undefined
        : await planRegistryMove(join(dirname(goRegistration.path), '.matrix'), resolve(settings.datapath));
    const { written, backups } = writeGenconfig({ files }, input.outDir, options.force, input.now);
    out.stdout.write(`Wrote ${written.join(', ')}\n`);
    if (backups.length > 0) out.stdout.write(`Kept what it replaced (0600): ${backups.join(', ')}\n`);
    out.stdout.write(
      settleOwnership(
        files.map((file) => ({ path: resolve(input.outDir, file.name), owner: 'owner' in file ? file.owner : undefined })),
        readers,
        options.systemd === undefined ? undefined : options.systemdUser,
        settings.database === undefined ? resolve(settings.datapath) : undefined,
        plan.files.filter((file) => file.mode === 0o600).map((file) => join(input.outDir, file.name)),
      ),
    );
    const start =
      container === undefined
        ? site.runScript
        : 'docker compose up -d (the image reads regservice.yaml); a Synapse already running: docker compose restart synapse';
    // Synapse reads its registration and secret at its start only: every change to what it holds needs a restart.
    const reload =
      plan.synapseMustReload.length === 0
        ? ''
        : `This run changed what Synapse holds (${plan.synapseMustReload.join('; ')}): restart Synapse so that it reads it, then restart the service.\n`;
    out.stdout.write(closingWords(update, patching, backup, byHand, reload, plan.instructions, start));
    // Last, once everything else is said: a copy that fails leaves the files above written and says what to do.
    if (registryMove !== undefined)
      out.stdout.write(moveRegistry(registryMove, readers.service, readers.service?.name ?? options.systemdUser));
  } catch (error) {
    if (error instanceof GenconfigError) failCommand(error.message, EXIT_FAILURE);
    throw error;
  }
}

/** What genconfig says last: what Synapse needs, and how to start the service. */
function closingWords(
  update: HomeserverUpdate | undefined,
  patching: Extract<HomeserverUpdate, { kind: 'write' }> | undefined,
  backup: string | undefined,
  byHand: (changes: readonly HomeserverChange[]) => string,
  reload: string,
  instructions: string,
  start: string,
): string {
  if (update === undefined) return instructions + reload;
  if (update.kind === 'none') {
    return `Synapse's configuration already lists this deployment's registration (${update.where}).\n${reload === '' ? `Start the service: ${start}\n` : reload}`;
  }
  if (patching !== undefined) {
    return (
      `${patching.inPlace ? `Patched ${patching.path} (backup: ${backup})` : `Added ${patching.path} for Synapse`}:\n${byHand(patching.changes)}\n` +
      reload +
      `Restart Synapse, then start the service: ${start}\n`
    );
  }
  const target = update.kind === 'write' ? (update.inPlace ? update.path : `a file ${update.path}`) : update.where;
  const caveat =
    update.kind === 'refused' ? ` (--patch-homeserver cannot: ${update.problems.join('; ')})` : ' (or run again with --patch-homeserver)';
  return `Add to ${target}${caveat}, then restart Synapse:\n${byHand(update.changes)}\n${reload}Then start the service: ${start}\n`;
}
