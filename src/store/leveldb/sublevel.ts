import type { Level } from 'level';

/** A section of the database whose keys are strings and values JSON, one per kind of record. */
export function openSublevel(db: Level<string, unknown>, name: string) {
  return db.sublevel<string, unknown>(name, { valueEncoding: 'json' });
}

export type Sublevel = ReturnType<typeof openSublevel>;
