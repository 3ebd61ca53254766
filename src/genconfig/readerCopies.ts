import { dirname, join } from 'node:path';
import type { FileOwner } from './fileOwners.js';
import type { GeneratedFile, GenconfigPlan } from './genconfig.js';

/** The names of Synapse's own copies, beside its homeserver.yaml. */
export const SYNAPSE_COPY_NAMES = {
  registration: 'matrix-regservice-registration.yaml',
  secret: 'matrix-regservice-shared-secret',
} as const;

export interface ReaderCopies {
  readonly files: readonly GeneratedFile[];
  /** What Synapse's configuration must name: its own copies when it has them. */
  readonly synapseRegistration: string;
  readonly synapseSecret: string | undefined;
}

/**
 * Every reader its own 0600 copy, never a shared group (Debian's matrix-synapse has `nogroup`): when Synapse runs as an
 * account other than root and the service's, Synapse's copies of the registration (and of a secret genconfig made) go
 * beside its homeserver.yaml, owned by Synapse's account; the service's files are owned by the service's account.
 */
export interface Readers {
  /** Synapse's account (undefined without a homeserver.yaml: then genconfig cannot know it). */
  readonly synapse: FileOwner | undefined;
  /** The service's account (undefined when it does not exist yet). */
  readonly service: FileOwner | undefined;
  readonly homeserverYaml: string | undefined;
}

/** Whether Synapse needs copies of its own: it runs as an account that is neither root nor the service's. */
export function separateReaders(readers: Readers): boolean {
  const { synapse, service, homeserverYaml } = readers;
  return synapse !== undefined && homeserverYaml !== undefined && synapse.uid !== 0 && synapse.uid !== service?.uid;
}

const SECRET_NAMES: ReadonlySet<string> = new Set(['registration.yaml', 'registration_shared_secret']);

export function readerCopies(plan: Pick<GenconfigPlan, 'files' | 'registrationFile' | 'newSecretFile'>, readers: Readers): ReaderCopies {
  const { synapse, service, homeserverYaml } = readers;
  const forService = plan.files.map((file) => (service !== undefined && SECRET_NAMES.has(file.name) ? { ...file, owner: service } : file));
  if (!separateReaders(readers) || synapse === undefined || homeserverYaml === undefined)
    return { files: forService, synapseRegistration: plan.registrationFile, synapseSecret: plan.newSecretFile };
  const dir = dirname(homeserverYaml);
  const registration = plan.files.find((file) => file.name === 'registration.yaml');
  const secret = plan.files.find((file) => file.name === 'registration_shared_secret');
  const synapseRegistration = join(dir, SYNAPSE_COPY_NAMES.registration);
  const synapseSecret = plan.newSecretFile === undefined ? undefined : join(dir, SYNAPSE_COPY_NAMES.secret);
  return {
    files: [
      ...forService,
      ...(registration === undefined ? [] : [{ name: synapseRegistration, content: registration.content, mode: 0o600, owner: synapse }]),
      ...(synapseSecret === undefined || secret === undefined
        ? []
        : [{ name: synapseSecret, content: secret.content, mode: 0o600, owner: synapse }]),
    ],
    synapseRegistration,
    synapseSecret,
  };
}
