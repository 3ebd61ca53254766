import { readFileSync } from 'node:fs';

/** Descriptors a worker keeps for itself beyond its connections: its IPC channel, log file, epoll, the listener. */
export const RESERVED_DESCRIPTORS = 64;

/**
 * The soft limit of open files in `/proc/self/limits`' text ("Max open files  1024  524288  files"); undefined when it
 * says none or is unlimited.
 */
export function openFileLimitIn(limitsText: string): number | undefined {
  const soft = /^Max open files\s+(\S+)/m.exec(limitsText)?.[1];
  const value = Number(soft);
  return soft === undefined || !Number.isSafeInteger(value) ? undefined : value;
}

/**
 * Connections one worker holds at most, unless --max-connections says: its open-file limit less what it keeps for
 * itself. Past it, a worker would fail to take connections it had already been given (EMFILE), and they would hang.
 */
export function defaultMaxConnections(limitsFile = '/proc/self/limits'): number {
  let limit: number | undefined;
  try {
    limit = openFileLimitIn(readFileSync(limitsFile, 'utf8'));
  } catch {
    limit = undefined; // not Linux: Node's own default of 1024 descriptors is a fair guess
  }
  return Math.max(16, Math.min(limit ?? 1024, 1_000_000) - RESERVED_DESCRIPTORS);
}
