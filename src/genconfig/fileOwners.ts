import { existsSync, readFileSync, statSync } from 'node:fs';

/** A system account that is to own (and alone read) a file genconfig writes. */
export interface FileOwner {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

interface PasswdEntry extends FileOwner {
  readonly home: string;
}

function passwd(file = '/etc/passwd'): PasswdEntry[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .filter((fields) => fields.length >= 7 && /^\d+$/.test(fields[2] ?? '') && /^\d+$/.test(fields[3] ?? ''))
    .map((fields) => ({ name: fields[0] ?? '', uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? '' }));
}

/** The account of this name, from /etc/passwd; undefined when there is none. */
export function lookupUser(name: string): FileOwner | undefined {
  const entry = passwd().find((candidate) => candidate.name === name);
  return entry === undefined ? undefined : { name: entry.name, uid: entry.uid, gid: entry.gid };
}

/** The account that owns a path (its name from /etc/passwd, else the uid). */
export function ownerOf(path: string): FileOwner {
  const { uid, gid } = statSync(path);
  const entry = passwd().find((candidate) => candidate.uid === uid);
  return { name: entry?.name ?? String(uid), uid, gid: entry?.gid ?? gid };
}

/** The account genconfig runs as. */
export function currentUser(): FileOwner {
  const uid = process.getuid?.() ?? 0;
  const entry = passwd().find((candidate) => candidate.uid === uid);
  return { name: entry?.name ?? String(uid), uid, gid: entry?.gid ?? process.getgid?.() ?? 0 };
}
