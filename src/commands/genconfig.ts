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
  renderNginxSite,
  renderSystemdUnit,
  RUN_FILE,
  writeGenconfig,
} from '../genconfig/genconfig.js';
import { EXIT_BAD_SETTINGS, EXIT_FAILURE, failCommand, type Output } from './commandFailure.js';

export interface GenconfigOptions {
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
  const publicPort = Number(options.publicPort);
  if (!Number.isInteger(publicPort) || publicPort < 1 || publicPort > 65535)
    failCommand(`--public-port must be a port, got "${options.publicPort}"`, EXIT_BAD_SETTINGS);
  const upstreams = options.upstream;
  if (upstreams.length > 0 && options.nginx === undefined) {
    failCommand('--upstream lists the gates of an nginx upstream block: give --nginx FILE too', EXIT_BAD_SETTINGS);
  }
  if (upstreams.length > 1 && settings.database === undefined) {
    out.stderr.write('warning: several gates without --database each keep their own LevelDB registry and limits\n');
  }
  const input = {
    ...defaultGenconfigInput(settings, options.out),
    appserviceId: options.id,
    // Several gates: the homeserver reaches them through nginx's upstream, so its transactions fail over too.
    registrationUrl: upstreams.length > 0 ? `http://127.0.0.1:${publicPort}${settings.basePath}` : undefined,
  };
  try {
    const plan = planGenconfig(input);
    const site = {
      upstreams,
      publicPort,
      publicName: options.publicName ?? settings.serverName.replace(/:\d+$/, ''),
      user: options.systemdUser,
      runScript: join(input.outDir, RUN_FILE),
    };
    const files = [
      ...plan.files,
      ...(options.nginx === undefined
        ? []
        : [
            {
              name: resolve(options.nginx),
              content: renderNginxSite(readTemplate('nginx-site.conf.template'), settings, site, input.now),
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
