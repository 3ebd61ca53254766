export const EXIT_FAILURE = 1;
/** Settings or arguments that cannot be used. */
export const EXIT_BAD_SETTINGS = 2;

/** A command could not do what it was asked: the message for standard error, and the exit status. */
export class CommandFailure extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = 'CommandFailure';
    this.exitCode = exitCode;
  }
}

export function failCommand(message: string, exitCode: number): never {
  throw new CommandFailure(message, exitCode);
}

/** Where a command writes: the process's streams, or a test's. */
export interface Output {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}
