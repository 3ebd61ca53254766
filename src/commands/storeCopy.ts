import { databaseUrlProblem, describeDatabaseUrl } from '../config/databaseUrl.js';
import { copyStore, type CopyCount } from '../store/copyStore.js';
import { openLevelStoreForReading } from '../store/leveldb/readOnlyStore.js';
import { openPgStore } from '../store/postgres/pgStore.js';
import { MatrixError } from '../protocol/matrixError.js';
import { StoreOpenError } from '../store/store.js';
import { CommandFailure, EXIT_BAD_SETTINGS, EXIT_FAILURE } from './commandFailure.js';

export interface StoreCopyOptions {
  /** The --datapath of the LevelDB registry. */
  readonly from: string;
  /** postgresql:// URL of the target. */
  readonly to: string;
  readonly password: string | undefined;
}

const line = (what: string, count: CopyCount): string => `${what}: ${count.copied} copied, ${count.present} already there\n`;

/** `store copy --from <datapath> --to postgresql://…`: moves a LevelDB registry into PostgreSQL; safe to run again. */
export async function runStoreCopy(options: StoreCopyOptions, io: { readonly stdout: NodeJS.WritableStream }): Promise<void> {
  const problem = databaseUrlProblem(options.to);
  if (problem !== undefined) throw new CommandFailure(`--to ${describeDatabaseUrl(options.to)} ${problem}`, EXIT_BAD_SETTINGS);
  try {
    const source = await openLevelStoreForReading(options.from);
    try {
      if (source.snapshot)
        io.stdout.write('the service is running on this datapath: copying a snapshot of it (stop it first to copy everything)\n');
      // Lease 0: a copied pending entry is reconcilable by any gate at once.
      const target = await openPgStore({ url: options.to, password: options.password, poolSize: 1, leaseMs: 0, migrate: true });
      try {
        const summary = await copyStore(source.store, target);
        io.stdout.write(`copied ${options.from} to ${describeDatabaseUrl(options.to)}\n`);
        io.stdout.write(line('registered nodes', summary.nodes));
        io.stdout.write(line('pending registrations', summary.pending));
        io.stdout.write(line('transaction ids', summary.transactions));
      } finally {
        await target.close();
      }
    } finally {
      await source.close();
    }
  } catch (error) {
    if (error instanceof StoreOpenError && error.reason === 'missing') {
      throw new CommandFailure(
        `there is no LevelDB registry at ${options.from}: is --from right? (the --datapath of the registry to copy)`,
        EXIT_FAILURE,
      );
    }
    if (error instanceof StoreOpenError || error instanceof MatrixError) throw new CommandFailure(error.message, EXIT_FAILURE);
    throw error;
  }
}
