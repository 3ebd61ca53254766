import { coversPhotonNodes, photonUserRegex } from './registrationFile.js';
import type { Settings } from './settings.js';

/**
 * Whether the registration the service runs on fits it: its user namespace must take in Photon nodes (Synapse answers
 * the service's queries about users in its namespace only, and reconciliation asks about every interrupted node), and
 * be non-exclusive unless the service registers as the application service (Synapse refuses shared-secret and admin
 * API registrations inside an exclusive namespace: M_EXCLUSIVE).
 */
export function namespaceProblems(
  settings: Pick<Settings, 'registrationFile' | 'appserviceUserRegexes' | 'appserviceExclusiveRegexes' | 'serverName' | 'backend'>,
): { problems: string[]; warnings: string[] } {
  const file = settings.registrationFile;
  if (file === undefined || settings.serverName === '') return { problems: [], warnings: [] };
  const needed = photonUserRegex(settings.serverName);
  if (!coversPhotonNodes(settings.appserviceUserRegexes, settings.serverName)) {
    const given = settings.appserviceUserRegexes.length === 0 ? 'none' : settings.appserviceUserRegexes.join(', ');
    return {
      problems: [
        `registration ${file}: its user namespace (${given}) does not take in Photon nodes: Synapse would refuse this ` +
          `service's questions about them, and no interrupted registration could be completed. Is it another ` +
          `application service's? Give this service's registration, whose users namespace is ${needed}`,
      ],
      warnings: [],
    };
  }
  const exclusive = coversPhotonNodes(settings.appserviceExclusiveRegexes, settings.serverName);
  if (exclusive && settings.backend !== 'appservice') {
    return {
      problems: [
        `registration ${file}: its user namespace is exclusive, and Synapse refuses ${settings.backend} registrations inside an ` +
          'exclusive namespace (M_EXCLUSIVE): set "exclusive: false" there and restart Synapse, or use --backend appservice',
      ],
      warnings: [],
    };
  }
  if (!exclusive && settings.backend === 'appservice') {
    return {
      problems: [],
      warnings: [
        `registration ${file}: the appservice backend registers as the application service, and its namespace is not exclusive: ` +
          'other clients could take a Photon node\'s name before it does; set "exclusive: true" there and restart Synapse',
      ],
    };
  }
  return { problems: [], warnings: [] };
}
