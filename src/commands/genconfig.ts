import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { DEFAULTS, type ResolvedSettings, type SettingsLayer } from '../config/settings.js';
import { readHomeserverFacts } from '../genconfig/homeserverConfig.js';
import { planHomeserverPatch, type HomeserverChange } from '../genconfig/homeserverPatch.js';
import {
  defaultGenconfigInput,
  GenconfigError,
  planGenconfig,
  readTemplate,
  renderSystemdUnit,
  RUN_FILE,
  writeGenconfig,
} from '../genconfig/genconfig.js';
import { registrationUrlThroughNginx, renderNginxSite, renderNginxSnippet, type NginxTemplates } from '../genconfig/nginxSite.js';
import { EXIT_BAD_SETTINGS, EXIT_FAILURE, failCommand, type Output } from './commandFailure.js';

export interface GenconfigOptions {
  readonly out: string;
  readonly force: boolean;
  readonly id?: string | undefined;
  readonly homeserverConfig?: string | undefined;
  readonly patchHomeserver: boolean;
  readonly nginx?: string | undefined;
  /** A location snippet to include in the operator's own server block. */
  readonly nginxLocation?: string | undefined;
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
}

/**
 * `genconfig`: reads homeserver.yaml when there is one, plans every file and the homeserver.yaml patch, checks them all,
 * then writes. `settingsFor` resolves the settings with what homeserver.yaml gave as the lowest layer.
 */
export function runGenconfig(options: GenconfigOptions, settingsFor: (fallback: SettingsLayer) => ResolvedSettings, out: Output): void {
  const homeserverConfig = options.homeserverConfig ?? (existsSync('homeserver.yaml') ? 'homeserver.yaml' : undefined);
  let homeserverText: string | undefined;
  let fallback: SettingsLayer | undefined;
  if (homeserverConfig !== undefined) {
    const path = resolve(homeserverConfig);
    try {
      homeserverText = readFileSync(path, 'utf8');
      const facts = readHomeserverFacts(homeserverText, dirname(path));
      fallback = { source: `homeserver.yaml ${path}`, values: facts.settings };
      out.stdout.write(`Read ${path}: ${facts.found.join('; ') || 'nothing this service uses'}\n`);
    } catch (error) {
      failCommand(
        `cannot read the homeserver config ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        EXIT_BAD_SETTINGS,
      );
    }
  }
  // The state directory defaults to the deployment directory, next to run.sh, not to where genconfig ran.
  const deploymentDefaults: SettingsLayer = {
    source: fallback?.source ?? 'genconfig defaults',
    values: { datapath: join(resolve(options.out), DEFAULTS.datapath), ...fallback?.values },
  };
  const { settings, warnings } = settingsFor(deploymentDefaults);
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
  if (upstreams.length > 0 && options.nginx === undefined) {
    failCommand('--upstream lists the gates of an nginx upstream block: give --nginx FILE too (a whole site)', EXIT_BAD_SETTINGS);
  }
  const nginxOptions = {
    upstreams,
    publicPort,
    publicName: options.publicName ?? settings.serverName.replace(/:\d+$/, ''),
    tls,
    appservicePort: port(options.appservicePort, '--appservice-port'),
  };
  if (upstreams.length > 1 && settings.database === undefined) {
    out.stderr.write('warning: several gates without --database each keep their own LevelDB registry and limits\n');
  }
  const input = {
    ...defaultGenconfigInput(settings, options.out),
    appserviceId: options.id,
    // Several gates: the homeserver reaches them through nginx's upstream, so its transactions fail over too.
    registrationUrl: upstreams.length > 0 ? registrationUrlThroughNginx(settings, nginxOptions) : undefined,
  };
  try {
    const plan = planGenconfig(input);
    const site = { user: options.systemdUser, runScript: join(input.outDir, RUN_FILE) };
    const templates: NginxTemplates = {
      site: readTemplate('nginx-site.conf.template'),
      location: readTemplate('nginx-location.conf.template'),
      snippet: readTemplate('nginx-snippet.conf.template'),
      appservice: readTemplate('nginx-appservice.conf.template'),
    };
    const files = [
      ...plan.files,
      ...(options.nginx === undefined
        ? []
        : [{ name: resolve(options.nginx), content: renderNginxSite(templates, settings, nginxOptions, input.now), mode: 0o644 }]),
      ...(options.nginxLocation === undefined
        ? []
        : [
            {
              name: resolve(options.nginxLocation),
              content: renderNginxSnippet(templates, settings, resolve(options.nginxLocation), input.now),
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
    ];
    // homeserver.yaml is checked before anything is written: a file that cannot be patched safely leaves no trace.
    const path = homeserverConfig === undefined ? undefined : resolve(homeserverConfig);
    const patch =
      homeserverText === undefined
        ? undefined
        : planHomeserverPatch(homeserverText, { registrationFile: plan.registrationFile, sharedSecretFile: plan.newSecretFile });
    const byHand = (changes: readonly HomeserverChange[]): string =>
      changes.map((change) => `  ${change.describe.replaceAll('\n', '\n  ')}`).join('\n');
    if (patch !== undefined && !patch.ok && options.patchHomeserver) {
      failCommand(
        `cannot patch ${path} safely; nothing was written:\n${patch.problems.map((problem) => `  - ${problem}`).join('\n')}\n` +
          `Fix that and run again, or run without --patch-homeserver and add by hand:\n${byHand(patch.changes)}`,
        EXIT_FAILURE,
      );
    }
    const written = writeGenconfig({ files }, input.outDir, options.force);
    out.stdout.write(`Wrote ${written.join(', ')}\n`);
    if (patch === undefined || path === undefined) {
      out.stdout.write(plan.instructions);
      return;
    }
    if (patch.changes.length === 0) {
      out.stdout.write(`${path} already has what this deployment needs.\n`);
    } else if (options.patchHomeserver && patch.ok) {
      const backup = `${path}.bak-${input.now.toISOString().replace(/[:.]/g, '')}`;
      copyFileSync(path, backup);
      writeFileSync(path, patch.text);
      out.stdout.write(
        `Patched ${path} (backup: ${backup}):\n${byHand(patch.changes)}\nRestart Synapse, then start the service: ${site.runScript}\n`,
      );
      return;
    } else {
      const caveat = patch.ok ? '' : ` (--patch-homeserver cannot: ${patch.problems.join('; ')})`;
      out.stdout.write(
        `Add to ${path}${patch.ok ? ' (or run again with --patch-homeserver)' : caveat}, then restart Synapse:\n${byHand(patch.changes)}\n`,
      );
    }
    out.stdout.write(`Then start the service: ${site.runScript}\n`);
  } catch (error) {
    if (error instanceof GenconfigError) failCommand(error.message, EXIT_FAILURE);
    throw error;
  }
}
