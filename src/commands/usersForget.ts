import { createInterface } from 'node:readline/promises';
import { localServiceUrl } from '../config/connectAddress.js';
import type { Settings } from '../config/settings.js';
import { openLevelStore } from '../store/leveldb/levelStore.js';
import { StoreOpenError } from '../store/store.js';
import { CommandFailure, EXIT_BAD_SETTINGS, EXIT_FAILURE } from './commandFailure.js';

export interface ForgetOptions {
  readonly which: readonly string[] | 'all';
  /** Confirmed on the command line (--yes): no question asked. */
  readonly yes: boolean;
}

interface Terminal {
  readonly stdin: NodeJS.ReadableStream & { readonly isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

async function confirmed(which: readonly string[] | 'all', io: Terminal): Promise<boolean> {
  if (io.stdin.isTTY !== true) {
    throw new CommandFailure('users forget asks before it forgets, and there is no terminal to ask on: give --yes', EXIT_BAD_SETTINGS);
  }
  const what = which === 'all' ? 'EVERY registered node record' : `${which.length} registered node record${which.length === 1 ? '' : 's'}`;
  const ask = createInterface({ input: io.stdin, output: io.stdout });
  try {
    const answer = await ask.question(
      `Forget ${what}? Their next correctly signed requests reach the homeserver again. Type "yes" to go on: `,
    );
    return answer.trim() === 'yes';
  } finally {
    ask.close();
  }
}

/** Through the running service, which holds the LevelDB store: its hs_token-authenticated forget route. */
async function forgetThroughService(settings: Settings, which: readonly string[] | 'all'): Promise<number> {
  if (settings.hsToken === '') {
    throw new CommandFailure(
      'the service is running and holds the registry: give --registration (run.sh does) so that this asks it to forget',
      EXIT_BAD_SETTINGS,
    );
  }
  const url = `${localServiceUrl(settings)}/_regservice/forget`;
  let answer: Response;
  try {
    answer = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${settings.hsToken}` },
      body: JSON.stringify(which === 'all' ? { all: true } : { localparts: which }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new CommandFailure(
      `the registry is in use, and the service at ${url} does not answer: ${(error as Error).message}`,
      EXIT_FAILURE,
    );
  }
  const body = (await answer.json().catch(() => ({}))) as { forgotten?: unknown; error?: unknown };
  if (answer.status !== 200 || typeof body.forgotten !== 'number') {
    throw new CommandFailure(
      `the service at ${url} refused: HTTP ${answer.status} ${typeof body.error === 'string' ? body.error : ''}`,
      EXIT_FAILURE,
    );
  }
  return body.forgotten;
}

/**
 * `users forget 0x… | --all`: forgets node records, so that the nodes' next signed requests reach the homeserver
 * (moving from the appservice backend to admin-api with --allow-password-reset). Asks first unless --yes. With the
 * service stopped it writes the store itself; while the service holds the LevelDB store, it asks the service.
 */
export async function runUsersForget(settings: Settings, options: ForgetOptions, io: Terminal): Promise<void> {
  if (!options.yes && !(await confirmed(options.which, io))) {
    io.stderr.write('nothing forgotten\n');
    process.exitCode = EXIT_FAILURE;
    return;
  }
  let forgotten: number;
  if (settings.database !== undefined) {
    const { openPgStore } = await import('../store/postgres/pgStore.js');
    const store = await openPgStore({
      url: settings.database,
      password: settings.databasePassword,
      poolSize: 1,
      leaseMs: settings.pendingLeaseMs,
      migrate: false,
    });
    try {
      forgotten = await store.nodes.forget(options.which);
    } finally {
      await store.close();
    }
  } else {
    let store: Awaited<ReturnType<typeof openLevelStore>> | undefined;
    try {
      store = await openLevelStore(settings.datapath, { create: false });
    } catch (error) {
      if (!(error instanceof StoreOpenError && error.reason === 'locked')) throw error;
    }
    if (store === undefined) forgotten = await forgetThroughService(settings, options.which);
    else {
      try {
        forgotten = await store.nodes.forget(options.which);
      } finally {
        await store.close();
      }
    }
  }
  io.stdout.write(
    `forgot ${forgotten} registered node record${forgotten === 1 ? '' : 's'}: their next signed requests reach the homeserver\n`,
  );
}
