import { stringify } from 'yaml';
import type { RawSettings, Settings } from '../config/settings.js';
import type { CarriedSetting } from '../genconfig/carriedSettings.js';
import type { GeneratedFile, GenconfigPlan } from '../genconfig/genconfig.js';

/**
 * The compose deployment (deploy/compose/): Synapse (the matrixdotorg/synapse image, its volume at /data), this service
 * and nginx on one network, where each reaches the others by service name. genconfig --container runs once in this
 * service's image, as a one-off container with Synapse's volume mounted where Synapse has it, and writes both sides.
 */
export const CONTAINER = {
  /** This service's volume in its image: configuration, secrets and the LevelDB state. */
  home: '/var/lib/matrix-regservice',
  /** Synapse's volume, at the path Synapse itself sees it. */
  synapseData: '/data',
  /** The compose network's service names. */
  synapseUrl: 'http://synapse:8008',
  serviceUrl: 'http://regservice:8009/regapp/1',
  /** nginx's address, pinned on the compose network: the one proxy whose X-Forwarded-For is believed. */
  nginxAddress: '172.28.56.10',
  /** What the image's command reads (--config). */
  configFile: 'regservice.yaml',
} as const;

export interface ContainerOptions {
  /** Where Synapse reaches the service (registration.yaml's url). */
  readonly registrationUrl: string;
  /** Where Synapse finds its copy of the registration, as Synapse sees the path (app_service_config_files). */
  readonly synapseRegistration: string;
  /** The daemon settings given to genconfig, which regservice.yaml carries. */
  readonly carried?: readonly CarriedSetting[];
}

/** genconfig's defaults in a container: every one can still be given as a flag. */
export function containerDefaults(): {
  readonly settings: RawSettings;
  readonly homeserverConfig: string;
  readonly out: string;
  readonly options: ContainerOptions;
} {
  return {
    settings: {
      matrixurl: CONTAINER.synapseUrl,
      host: '0.0.0.0',
      datapath: `${CONTAINER.home}/state`,
      'trusted-proxies': CONTAINER.nginxAddress,
    },
    homeserverConfig: `${CONTAINER.synapseData}/homeserver.yaml`,
    out: CONTAINER.home,
    options: { registrationUrl: CONTAINER.serviceUrl, synapseRegistration: `${CONTAINER.synapseData}/matrix-regservice.yaml` },
  };
}

/** The daemon's settings as the image reads them (a --config file): paths, never a secret. */
function renderConfigFile(
  settings: Settings,
  registrationFile: string,
  sharedSecretFile: string | undefined,
  carried: readonly CarriedSetting[],
  now: Date,
): string {
  const values: Record<string, string | number | boolean> = {
    matrixdomain: settings.serverName,
    matrixurl: settings.homeserverUrl,
    host: settings.host,
    port: settings.port,
    ...(settings.database === undefined
      ? { datapath: settings.datapath }
      : {
          database: settings.database,
          ...(settings.databasePasswordFile === undefined ? {} : { 'database-password-file': settings.databasePasswordFile }),
        }),
    registration: registrationFile,
    backend: settings.backend,
    ...(sharedSecretFile === undefined ? {} : { 'sharesecret-file': sharedSecretFile }),
    ...(settings.adminTokenFile === undefined ? {} : { 'admin-token-file': settings.adminTokenFile }),
    ...(settings.allowPasswordReset ? { 'allow-password-reset': true } : {}),
    'trusted-proxies': settings.trustedProxies,
    verbosity: settings.verbosity,
    ...Object.fromEntries(
      carried.map((setting) => [
        setting.key,
        setting.value === true || !/^\d+$/.test(setting.value) ? setting.value : Number(setting.value),
      ]),
    ),
  };
  return (
    `# matrix-regservice in its container, written by \`matrix-regservice genconfig --container\` on ${now.toISOString()}.\n` +
    '# The image runs the daemon on it (--config); secrets stay in the files it names. Flags and MATRIX_REGSERVICE_*\n' +
    '# variables given to the container win over it.\n' +
    stringify(values, { lineWidth: 0 })
  );
}

/**
 * The container deployment's files from genconfig's plan: the daemon's config file instead of run.sh, and a copy of the
 * registration where Synapse reads it. Both copies are 0600: the image runs as Synapse's uid (991), so both can read
 * their own, and neither volume is chowned.
 */
export function containerFiles(plan: GenconfigPlan, settings: Settings, options: ContainerOptions, now: Date): GeneratedFile[] {
  const registration = plan.files.find((file) => file.name === 'registration.yaml');
  const kept = plan.files.filter((file) => file.name !== 'run.sh');
  return [
    ...kept,
    {
      name: CONTAINER.configFile,
      content: renderConfigFile(settings, plan.registrationFile, plan.sharedSecretFile, options.carried ?? [], now),
      mode: 0o600,
    },
    ...(registration === undefined ? [] : [{ name: options.synapseRegistration, content: registration.content, mode: 0o600 }]),
  ];
}
