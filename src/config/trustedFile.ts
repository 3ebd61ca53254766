import { closeSync, fstatSync, openSync, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';

/** A file the service reads its settings, secrets or lists from, which another local user could have replaced. */
export class UntrustedFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UntrustedFileError';
  }
}

const WORLD_WRITABLE = 0o002;
const STICKY = 0o1000;

/** Why the file opened (its own mode) or its directory lets any local user replace its content; undefined when neither does. */
function untrusted(path: string, opened: Stats, what: string): string | undefined {
  if ((opened.mode & WORLD_WRITABLE) !== 0) {
    const mode = (opened.mode & 0o777).toString(8);
    return `${what} ${path} is writable by every user (mode ${mode}): anyone on this machine could change it; chmod o-w ${path}`;
  }
  const dir = dirname(path);
  const parent = statSync(dir);
  if ((parent.mode & WORLD_WRITABLE) !== 0 && (parent.mode & STICKY) === 0) {
    return `${what} ${path} is in ${dir}, which every user may write without the sticky bit: anyone could replace the file; chmod o-w ${dir}, or move it`;
  }
  return undefined;
}

/**
 * Reads a file the service trusts (registration, secret, config, address list), checking what was opened (its mode
 * through the open descriptor) and its directory: a file others may write is refused. A group may write: that is
 * the operator's choice. Throws UntrustedFileError, or the error of opening it.
 */
export function readTrustedFile(path: string, what: string): string {
  const fd = openSync(path, 'r');
  try {
    const reason = untrusted(path, fstatSync(fd), what);
    if (reason !== undefined) throw new UntrustedFileError(reason);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** The same check for a file another library opens (the database URL's certificate files). */
export function checkTrustedFile(path: string, what: string): void {
  readTrustedFile(path, what);
}
