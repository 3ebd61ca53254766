import type { NodeRecord } from '../store/nodeStore.js';
import { openStoreForReading, type StoreSettings } from '../store/openStore.js';

export type UsersAction = 'list' | 'count' | 'show' | 'export';

/**
 * Writes to a reader that may fall behind or go away: waits while `out` is full (a million-node export into a slow
 * pipe never piles up in memory), and says false once the reader is gone (`| head`: EPIPE), so the command stops quietly.
 */
function pipeWriter(out: NodeJS.WritableStream): { write(text: string): Promise<boolean> } {
  let gone = false;
  let failure: Error | undefined;
  // Read through a function: the listeners set it while a write waits, which the compiler cannot follow.
  const failed = (): Error | undefined => failure;
  let wake: (() => void) | undefined;
  // They stay: what the stream still flushes after the reader left must not end the process either.
  out.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') gone = true;
    else failure = error;
    wake?.();
  });
  out.on('close', () => {
    gone = true;
    wake?.();
  });
  return {
    async write(text) {
      const before = failed();
      if (before !== undefined) throw before;
      if (gone) return false;
      if (!out.write(text)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          out.once('drain', resolve);
        });
        wake = undefined;
      }
      const after = failed();
      if (after !== undefined) throw after;
      return !gone;
    },
  };
}

/** `users list|count|show 0x…|export` over the store; writes to `out`, returns the exit status. */
export async function runUsersCommand(
  location: StoreSettings,
  action: UsersAction,
  address: string | undefined,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  const reading = await openStoreForReading(location);
  if (reading.snapshot) err.write('the service is running: reading a snapshot of its database\n');
  try {
    const { nodes } = reading.store;
    switch (action) {
      case 'show': {
        const localpart = (address ?? '').toLowerCase();
        const record = await nodes.get(localpart);
        if (record === undefined) {
          err.write(`no registered node ${localpart}\n`);
          return 1;
        }
        out.write(`${JSON.stringify(record, null, 2)}\n`);
        return 0;
      }
      case 'count': {
        let count = 0;
        for await (const _record of nodes.list()) count += 1;
        out.write(`${count}\n`);
        return 0;
      }
      case 'export': {
        const pipe = pipeWriter(out);
        for await (const record of nodes.list()) if (!(await pipe.write(`${JSON.stringify(record)}\n`))) break;
        return 0;
      }
      case 'list': {
        const pipe = pipeWriter(out);
        const row = (record: NodeRecord): string => `${record.localpart}  ${record.registeredAt}  ${record.lastSeen ?? '-'}`;
        if (!(await pipe.write('address                                     registered                last seen\n'))) return 0;
        for await (const record of nodes.list()) if (!(await pipe.write(`${row(record)}\n`))) break;
        return 0;
      }
    }
  } finally {
    await reading.close();
  }
}
