import { createPrimaryApi, type PrimaryState } from '../../src/cluster/primaryApi.js';
import type { Settings } from '../../src/config/settings.js';
import type { NewNode, RegisteredUser } from '../../src/homeserver/registrar.js';
import type { Logger } from '../../src/log/logger.js';
import type { RefusalTally } from '../../src/log/refusalTally.js';
import { createMemoryCeilingCounter } from '../../src/store/memoryCeilingCounter.js';
import { createMemoryRateLimiter } from '../../src/store/memoryRateLimiter.js';
import type { Store } from '../../src/store/store.js';

/**
 * The primary's state in this process, on a real store, with a homeserver that creates every user it is asked to
 * (and knows them afterwards); `onRegister` sees each registration that reached it.
 */
export function primaryBesideFakeHomeserver(options: {
  readonly settings: Settings;
  readonly store: Store;
  readonly log: Logger;
  readonly tally: RefusalTally;
  readonly onRegister?: (node: NewNode) => void;
}): PrimaryState {
  const { settings, tally } = options;
  const users = new Set<string>();
  return createPrimaryApi({
    settings,
    store: options.store,
    registrar: {
      register: async (node): Promise<RegisteredUser> => {
        options.onRegister?.(node);
        users.add(node.localpart);
        return { userId: `@${node.localpart}:${settings.serverName}`, homeServer: settings.serverName };
      },
    },
    userExists: async (userId) => users.has(userId.slice(1, userId.indexOf(':'))),
    policy: () => () => {},
    makeLimiter: (limit) => createMemoryRateLimiter(limit.points, { windowMs: limit.windowMs }),
    makeCeiling: (limit) => createMemoryCeilingCounter(limit),
    log: options.log,
    onRefusals: (report) => tally.merge(report),
    refused: (outcome, client) => tally.add(outcome, client),
    refusalLine: () => tally.lineAllowed(),
  });
}
