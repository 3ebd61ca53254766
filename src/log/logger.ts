import type { Verbosity } from '../config/settings.js';

export const LOG_LEVELS = { critical: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 } as const;
export type LogLevel = keyof typeof LOG_LEVELS;
export type LogFields = Readonly<Record<string, string | number | boolean | undefined>>;

export interface Logger {
  critical(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  trace(message: string, fields?: LogFields): void;
  /** Whether lines of `level` are written at this verbosity. */
  enabled(level: LogLevel): boolean;
  /**
   * A line another process formatted (a worker's): written as this logger writes its own, every known secret
   * replaced, on one line.
   */
  passOn(line: string): void;
  close(): Promise<void>;
}

const LEVEL_BY_VERBOSITY: readonly LogLevel[] = ['critical', 'error', 'warn', 'info', 'debug', 'trace'];
const REDACTED = '[redacted]';

function formatValue(value: unknown): string {
  const text = String(value);
  return /[\s"=]/.test(text) ? JSON.stringify(text) : text;
}

export interface LoggerOptions {
  readonly verbosity: Verbosity;
  readonly secrets?: readonly string[];
  /** Fields every line carries, e.g. the worker's id. */
  readonly fields?: LogFields;
  /** Where lines go; standard error by default so standard output stays free for command output. */
  readonly stream?: NodeJS.WritableStream;
  /**
   * Where each formatted line goes instead of a stream: a worker's go to the primary, which holds the secrets to
   * replace and writes them.
   */
  readonly send?: (line: string) => void;
}

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g;

/** A line passed on is cut here: a worker cannot make the primary write without bound. */
export const MAX_PASSED_LINE = 16 * 1024;

/**
 * One line per event: `time level message key=value …`, with every known secret replaced. Written straight to the
 * stream: a line per registration is on the hot path, and a logging framework here cost memory and CPU for nothing
 * this format needs (BENCHMARKS.md, section 4).
 */
export function createLogger(options: LoggerOptions): Logger {
  const secrets = [...new Set<string>((options.secrets ?? []).filter((secret) => secret.length >= 4))];
  const scrub = (text: string): string => {
    let result = text;
    for (const secret of secrets) if (result.includes(secret)) result = result.replaceAll(secret, REDACTED);
    return result;
  };
  const stream = options.stream ?? process.stderr;
  let writable = true;
  // A broken stream (standard error's reader gone, a full disk) must not take the service down: lines are dropped,
  // and where the stream is a file, standard error says so once.
  const broken = (error: Error): void => {
    if (!writable) return;
    writable = false;
    if (options.stream !== undefined) process.stderr.write(`matrix-regservice: log lines are dropped from now on: ${error.message}\n`);
  };
  if (options.send === undefined) stream.on('error', broken);
  // One event, one line: a value or message that carries a line break (an error's text) cannot forge another line.
  const out = (line: string): void => {
    if (options.send !== undefined) options.send(line);
    else stream.write(`${scrub(line.replace(CONTROL_CHARACTERS, ' '))}\n`);
  };

  const threshold = LOG_LEVELS[LEVEL_BY_VERBOSITY[options.verbosity] ?? 'info'];
  const write = (level: LogLevel, message: string, fields: LogFields): void => {
    let text = `${new Date().toISOString()} ${level} ${message}`;
    for (const key in fields) {
      if (options.fields !== undefined && key in options.fields) continue;
      const value = fields[key];
      if (value !== undefined) text += ` ${key}=${formatValue(value)}`;
    }
    for (const key in options.fields) {
      const value = options.fields[key];
      if (value !== undefined) text += ` ${key}=${formatValue(value)}`;
    }
    out(text);
  };
  // Lines above the verbosity are dropped before anything is formatted: this runs per request.
  const at =
    (level: LogLevel) =>
    (message: string, fields: LogFields = {}): void => {
      if (LOG_LEVELS[level] <= threshold && writable) write(level, message, fields);
    };
  return {
    critical: at('critical'),
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    enabled: (level) => LOG_LEVELS[level] <= threshold,
    passOn: (line) => {
      // Every secret replaced before the line is cut: one cut in two could leave part of it.
      if (writable) out(scrub(String(line).replace(CONTROL_CHARACTERS, ' ')).slice(0, MAX_PASSED_LINE));
    },
    close: () =>
      new Promise<void>((resolve) => {
        const wasWritable = writable;
        writable = false;
        stream.off('error', broken);
        // Standard error stays open for whatever comes after; a stream of our own is ended once its lines are out.
        if (options.stream === undefined || options.send !== undefined || !wasWritable) resolve();
        else options.stream.end(() => resolve());
      }),
  };
}
