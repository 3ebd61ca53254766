import { GenconfigError } from './genconfigError.js';

const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * A path as one word of a systemd unit setting (ExecStart=, ReadWritePaths=): double-quoted with C escapes, `%`
 * specifiers and `$` variables escaped. Control characters cannot be written safely: refused.
 */
export function systemdPath(path: string, what: string): string {
  if (CONTROL.test(path)) throw new GenconfigError(`${what} ${JSON.stringify(path)} has a control character: systemd units cannot hold it`);
  if (/^[A-Za-z0-9_./:@+=,-]+$/.test(path)) return path;
  return `"${path.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('%', '%%').replaceAll('$', '$$')}"`;
}

/** A user name for User= and Group=: what useradd accepts, nothing that could end the line or start another. */
export function systemdUserName(user: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(user)) {
    throw new GenconfigError(
      `--systemd-user ${JSON.stringify(user)} is not a user name (letters, digits, _ . -, at most 32, not starting with a digit or -)`,
    );
  }
  return user;
}

/**
 * A word of an nginx directive (server_name, a location path). nginx reads `;`, `{`, `}`, quotes, `#`, `$`,
 * backslashes and white space as syntax: a value holding one is refused rather than allowed to add directives.
 */
export function nginxWord(value: string, what: string): string {
  if (value === '' || /[\s;{}"'\\#$]/.test(value) || CONTROL.test(value)) {
    throw new GenconfigError(
      `${what} ${JSON.stringify(value)} cannot go into an nginx site: it has white space or one of ; { } " ' \\ # $`,
    );
  }
  return value;
}
