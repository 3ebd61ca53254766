import type { NodeRecord } from '../store/nodeStore.js';
import { openStoreForReading, type StoreSettings } from '../store/openStore.js';

export type UsersAction = 'list' | 'count' | 'show' | 'export';

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
      case 'export':
        for await (const record of nodes.list()) out.write(`${JSON.stringify(record)}\n`);
        return 0;
      case 'list': {
        const row = (record: NodeRecord): string => `${record.localpart}  ${record.registeredAt}  ${record.lastSeen ?? '-'}`;
        out.write('address                                     registered                last seen\n');
        for await (const record of nodes.list()) out.write(`${row(record)}\n`);
        return 0;
      }
    }
  } finally {
    await reading.close();
  }
}
