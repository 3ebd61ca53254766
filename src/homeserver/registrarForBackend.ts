import type { Settings } from '../config/settings.js';
import { createAdminApiRegistrar } from './adminApiRegistrar.js';
import { createAppserviceRegistrar } from './appserviceRegistrar.js';
import type { Registrar } from './registrar.js';
import { createSharedSecretRegistrar } from './sharedSecretRegistrar.js';

/** The registrar the --backend setting names. */
export function registrarForBackend(settings: Settings): Registrar {
  const common = { homeserverUrl: settings.homeserverUrl, serverName: settings.serverName, timeoutMs: settings.homeserverTimeoutMs };
  switch (settings.backend) {
    case 'shared-secret':
      return createSharedSecretRegistrar({ ...common, sharedSecret: settings.sharedSecret, login: settings.loginAfterRegister });
    case 'admin-api':
      return createAdminApiRegistrar({
        ...common,
        adminToken: settings.adminToken,
        allowPasswordReset: settings.allowPasswordReset,
      });
    case 'appservice':
      return createAppserviceRegistrar({ ...common, asToken: settings.asToken });
  }
}
