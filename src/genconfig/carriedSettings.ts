import { resolve } from 'node:path';
import { envName, OPTION_SPECS, type OptionKind, type SettingKey } from '../config/options.js';
import { parseFlag, type RawSettings } from '../config/settings.js';
import { GenconfigError } from './genconfigError.js';

/** A daemon setting given to genconfig that the deployment's file must carry as given: `--key value` in run.sh. */
export interface CarriedSetting {
  readonly key: SettingKey;
  /** The value as given (a path made absolute); `true` for a flag without a value. */
  readonly value: string | true;
}

/**
 * The daemon settings genconfig's command line gave that run.sh (or regservice.yaml) must carry, in the options
 * table's order. genconfig writes the others itself (`written`), puts the tokens into the registration, and refuses
 * what names a file it writes; a secret never lands on a command line. Throws GenconfigError naming a refused one.
 */
export function carriedSettings(given: RawSettings, cwd: string = process.cwd()): CarriedSetting[] {
  const carried: CarriedSetting[] = [];
  for (const spec of OPTION_SPECS) {
    const value = given[spec.key];
    if (value === undefined) continue;
    if ('genconfig' in spec && spec.genconfig === 'refused') {
      throw new GenconfigError(
        `--${spec.key} (${spec.key} in a --config file) names the file genconfig writes itself (registration.yaml in --out); to keep a registration's id and tokens, run genconfig where it is or give --astoken and --hstoken`,
      );
    }
    // A secret never lands on a command line: each has a file of its own that genconfig writes.
    if ('genconfig' in spec || (spec.kind as OptionKind) === 'secret') continue;
    if (spec.kind === 'boolean') {
      if (parseFlag(typeof value === 'boolean' ? value : String(value)) === true) carried.push({ key: spec.key, value: true });
      continue;
    }
    carried.push({ key: spec.key, value: spec.kind === 'path' ? resolve(cwd, String(value)) : String(value) });
  }
  return carried;
}

/** The MATRIX_REGSERVICE_* variables set in genconfig's own environment: not carried into the deployment. */
export function ignoredEnvironment(environment: NodeJS.ProcessEnv): string[] {
  return [...OPTION_SPECS.map((spec) => envName(spec.key)), envName('config')].filter((name) => environment[name] !== undefined);
}
