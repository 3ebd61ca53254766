import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log/logger.js';

/** A real logger at trace level whose lines are kept for assertions. */
export function capturingLogger(secrets: readonly string[] = []): { log: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((line) => line !== ''),
      );
      callback();
    },
  });
  return { log: createLogger({ verbosity: 5, secrets, stream }), lines: () => lines };
}
