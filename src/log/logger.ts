import winston from 'winston';
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
}

/** One line per event: `time level message key=value …`, with every known secret replaced. */
export function createLogger(options: LoggerOptions): Logger {
  const secrets = new Set<string>((options.secrets ?? []).filter((secret) => secret.length >= 4));
  const scrub = (text: string): string => {
    let result = text;
    for (const secret of secrets) result = result.replaceAll(secret, REDACTED);
    return result;
  };

  const line = winston.format.printf((info) => {
    const { level, message, timestamp, ...fields } = info;
    const pairs = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => `${key}=${formatValue(value)}`);
    return scrub([String(timestamp), level, String(message), ...pairs].join(' '));
  });

  const transport =
    options.stream === undefined
      ? new winston.transports.Console({ stderrLevels: Object.keys(LOG_LEVELS) })
      : new winston.transports.Stream({ stream: options.stream });
  const winstonLogger = winston.createLogger({
    levels: LOG_LEVELS,
    level: LEVEL_BY_VERBOSITY[options.verbosity] ?? 'info',
    format: winston.format.combine(winston.format.timestamp(), line),
    transports: [transport],
  });

  const threshold = LOG_LEVELS[LEVEL_BY_VERBOSITY[options.verbosity] ?? 'info'];
  // Lines above the verbosity are dropped here, before winston formats them: this runs per request.
  const at =
    (level: LogLevel) =>
    (message: string, fields: LogFields = {}): void => {
      if (LOG_LEVELS[level] <= threshold)
        winstonLogger.log(level, message, options.fields === undefined ? fields : { ...fields, ...options.fields });
    };
  return {
    critical: at('critical'),
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    enabled: (level) => LOG_LEVELS[level] <= threshold,
    close: () =>
      new Promise<void>((resolve) => {
        winstonLogger.on('finish', () => resolve());
        winstonLogger.end();
      }),
  };
}
