import { OPTION_SPECS } from '../config/options.js';

/**
 * The Go original's command line, as its run.sh files hold it (urfave/cli over Go's flag package): long flags with one
 * dash or two (`-port 8009`, `--port=8009`), and go-ethereum's diagnostic flags, which mean nothing here.
 */

/** Go's diagnostic flags that take a value (`--pprofport 6060`); the others of theirs are booleans. */
const GO_DIAGNOSTIC_WITH_VALUE = [
  'vmodule',
  'backtrace',
  'pprofaddr',
  'pprofport',
  'memprofilerate',
  'blockprofilerate',
  'cpuprofile',
  'trace',
];
const GO_DIAGNOSTIC_BOOLEAN = ['debug', 'pprof'];

/** Long flags this program knows: its own settings, and the Go original's that it accepts. */
function knownLongFlags(extra: readonly string[]): Set<string> {
  return new Set([
    ...OPTION_SPECS.map((spec) => spec.key),
    'config',
    'help',
    'version',
    ...GO_DIAGNOSTIC_WITH_VALUE,
    ...GO_DIAGNOSTIC_BOOLEAN,
    ...extra,
  ]);
}

export interface GoArgv {
  /** The command line as this program's parser takes it. */
  readonly argv: readonly string[];
  /** The Go original's diagnostic flags that were given and are ignored here, as given (without values). */
  readonly ignored: readonly string[];
}

/**
 * Rewrites a command line the Go original would take into this program's: `-flag` becomes `--flag` for every long
 * flag either program knows (Go's flag package accepts both), and Go's diagnostic flags are taken out, with their values.
 * `commandFlags` are the long flags of the subcommands, which may come with one dash too. Anything else is left as it is.
 */
export function translateGoArgv(argv: readonly string[], commandFlags: readonly string[] = []): GoArgv {
  const known = knownLongFlags(commandFlags);
  const out: string[] = [];
  const ignored: string[] = [];
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] as string;
    const match = /^--?([a-z][a-z0-9-]*)(=.*)?$/.exec(arg);
    const name = match?.[1];
    if (match === null || name === undefined || !known.has(name) || (arg.startsWith('-') && !arg.startsWith('--') && name.length < 2)) {
      out.push(arg);
      continue;
    }
    if (GO_DIAGNOSTIC_WITH_VALUE.includes(name)) {
      ignored.push(`--${name}`);
      if (match[2] === undefined) index += 1; // its value is the next word
      continue;
    }
    if (GO_DIAGNOSTIC_BOOLEAN.includes(name)) {
      ignored.push(`--${name}`);
      continue;
    }
    out.push(`--${name}${match[2] ?? ''}`);
  }
  return { argv: out, ignored };
}

export function ignoredGoFlagsWarning(ignored: readonly string[]): string {
  return `ignoring the Go original's diagnostic flags ${[...new Set(ignored)].join(', ')}: they mean nothing to this service`;
}
