import type { BatchOperation, Level } from 'level';

export type LevelWrite = BatchOperation<Level<string, unknown>, string, unknown>;

/**
 * Writes to LevelDB in groups: what is asked while one batch is being written goes, in order, into the next, written
 * as soon as the first is done. A write that finds none in progress goes at once (with whatever else is asked in the
 * same tick), so an idle service waits for nothing; under load one batch takes many registrations' writes, which
 * costs LevelDB far less than one write each. Each caller's promise settles when the batch holding its writes is
 * written, never before: a 200 still waits for its own record.
 */
export function createGroupCommit(db: Level<string, unknown>): (writes: readonly LevelWrite[]) => Promise<void> {
  let next: { writes: LevelWrite[]; settle: { resolve: () => void; reject: (error: unknown) => void }[] } | undefined;
  let writing = false;

  const writeNext = (): void => {
    const group = next;
    if (group === undefined) {
      writing = false;
      return;
    }
    next = undefined;
    writing = true;
    db.batch(group.writes).then(
      () => {
        for (const { resolve } of group.settle) resolve();
        writeNext();
      },
      (error: unknown) => {
        for (const { reject } of group.settle) reject(error);
        writeNext();
      },
    );
  };

  return (writes) =>
    new Promise<void>((resolve, reject) => {
      if (next === undefined) {
        next = { writes: [], settle: [] };
        // Idle: start once the writes of every event this turn of the event loop handles have joined the group.
        if (!writing) {
          writing = true;
          setImmediate(writeNext);
        }
      }
      next.writes.push(...writes);
      next.settle.push({ resolve, reject });
    });
}
