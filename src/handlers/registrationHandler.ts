import { userInUse } from '../protocol/matrixError.js';
import { userIdFor, type RegistrationRequest, type RegistrationVerifier } from '../protocol/registrationRequest.js';
import type { Registrar, RegisteredUser } from '../homeserver/registrar.js';
import type { NodeStore } from '../store/nodeStore.js';
import type { Logger } from '../log/logger.js';

export type RegistrationHandler = (request: RegistrationRequest) => Promise<RegisteredUser>;

export interface RegistrationHandlerDeps {
  readonly serverName: string;
  readonly verify: RegistrationVerifier;
  readonly nodes: NodeStore;
  readonly registrar: Registrar;
  readonly log: Logger;
  readonly now?: () => Date;
}

/** Decides a verified request: refuse a known node, else create it on the homeserver and record it. */
export function createRegistrationHandler(deps: RegistrationHandlerDeps): RegistrationHandler {
  const inFlight = new Set<string>();
  const now = deps.now ?? (() => new Date());

  return async (request) => {
    deps.verify(request);
    const { localpart } = request;
    if (inFlight.has(localpart)) throw userInUse('a registration of this node is already in progress');
    inFlight.add(localpart);
    try {
      if ((await deps.nodes.get(localpart)) !== undefined) {
        throw userInUse('this node is already registered');
      }
      const user = await deps.registrar.register(request);
      if (user.warning !== undefined) deps.log.warn(user.warning, { localpart });
      const expected = userIdFor(localpart, deps.serverName);
      if (user.userId !== expected) {
        deps.log.error('homeserver created a different user id than expected: is --matrixdomain its server_name?', {
          expected,
          got: user.userId,
        });
      }
      try {
        await deps.nodes.put({
          localpart,
          userId: user.userId,
          displayname: request.displayname,
          registeredAt: now().toISOString(),
        });
      } catch (error) {
        deps.log.error('registered on the homeserver but could not record it', {
          localpart,
          reason: (error as Error).message,
        });
      }
      return { ...user, homeServer: user.homeServer || deps.serverName };
    } finally {
      inFlight.delete(localpart);
    }
  };
}
