import { statSync } from 'node:fs';
import { readTrustedFile, UntrustedFileError } from './trustedFile.js';
import { dirname, resolve } from 'node:path';
import { isSettingKey, OPTION_SPECS } from './options.js';
import { namespaceIsWide, parseRegistration, WIDE_NAMESPACE_WARNING } from './registrationFile.js';
import { namespaceProblems } from './registrationNamespace.js';
import { parseYamlQuietly } from './yamlText.js';
import {
  COMMAND_LINE,
  resolveSettings,
  type ResolveOptions,
  SettingsError,
  type RawSettings,
  type ResolvedSettings,
  type SettingsLayer,
} from './settings.js';

export interface SettingsSources {
  readonly commandLine: RawSettings;
  readonly environment: RawSettings;
  /** --config FILE, from the command line or the environment. */
  readonly configFile?: string | undefined;
  /** Below the config file, above the defaults: e.g. what genconfig read from homeserver.yaml. */
  readonly fallback?: SettingsLayer | undefined;
}

interface Expansion {
  readonly layers: SettingsLayer[];
  readonly problems: string[];
  readonly warnings: string[];
}

function readSecretFile(path: string, what: string, expansion: Expansion): string | undefined {
  try {
    const text = readTrustedFile(path, what);
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0) {
      expansion.warnings.push(`${what} ${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); chmod 600 it`);
    }
    return text;
  } catch (error) {
    if (error instanceof UntrustedFileError) expansion.problems.push(error.message);
    else expansion.problems.push(`cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return undefined;
  }
}

/** Flags that name a file holding a secret, and the setting the file's content becomes. */
const SECRET_FILES = [
  { fileKey: 'sharesecret-file', valueKey: 'sharesecret', remember: 'sharesecret-source' },
  { fileKey: 'admin-token-file', valueKey: 'admin-token', remember: 'admin-token-source' },
  { fileKey: 'database-password-file', valueKey: 'database-password', remember: 'database-password-source' },
] as const;

/** Replaces secret files and registration by the values they point at, ranked with the layer that named them. */
function expandLayer(layer: SettingsLayer, baseDir: string, expansion: Expansion): void {
  const { registration, 'sharesecret-file': _s, 'admin-token-file': _a, 'database-password-file': _d, ...values } = layer.values;
  expansion.layers.push({ source: layer.source, values });

  for (const { fileKey, valueKey, remember } of SECRET_FILES) {
    const file = layer.values[fileKey];
    if (file === undefined) continue;
    if (values[valueKey] !== undefined) {
      expansion.problems.push(`${layer.source} gives both ${valueKey} and ${fileKey}; give one`);
    }
    const path = resolve(baseDir, String(file));
    // A layer above already gives this secret ("flags still win"): a file of this one that cannot be read only means
    // the two cannot be compared.
    const given = expansion.layers.find((earlier) => earlier !== expansion.layers.at(-1) && earlier.values[valueKey] !== undefined);
    const reading: Expansion = given === undefined ? expansion : { layers: [], problems: [], warnings: [] };
    const secret = readSecretFile(path, fileKey, reading);
    if (given !== undefined) {
      for (const problem of reading.problems) {
        expansion.warnings.push(`${problem} (from ${layer.source}); ${given.source} is used, unchecked against it`);
      }
    }
    if (secret !== undefined) {
      expansion.layers.push({
        source: `${fileKey} ${path}`,
        values: { [valueKey]: secret.trim(), [remember]: path },
      });
    }
  }
  if (registration !== undefined) {
    const path = resolve(baseDir, String(registration));
    const text = readSecretFile(path, 'registration', expansion);
    if (text !== undefined) {
      try {
        const parsed = parseRegistration(text);
        expansion.layers.push({
          source: `registration ${path}`,
          values: {
            astoken: parsed.as_token,
            hstoken: parsed.hs_token,
            'appservice-id': parsed.id,
            'appservice-url': parsed.url,
            'appservice-user-regexes': parsed.userRegexes.join('\n'),
            'appservice-exclusive-regexes': parsed.exclusiveUserRegexes.join('\n'),
            'appservice-file': path,
          },
        });
      } catch (error) {
        expansion.problems.push(`registration ${path} ${(error as Error).message}`);
      }
    }
  }
}

function readConfigFile(path: string, expansion: Expansion): RawSettings {
  let text: string;
  try {
    text = readTrustedFile(path, 'config file');
  } catch (error) {
    if (error instanceof UntrustedFileError) expansion.problems.push(error.message);
    else expansion.problems.push(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return {};
  }
  let doc: unknown;
  try {
    doc = parseYamlQuietly(text);
  } catch (error) {
    expansion.problems.push(`config file ${path} ${(error as Error).message}`);
    return {};
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    expansion.problems.push(`config file ${path} must be a YAML mapping of setting: value`);
    return {};
  }
  const values: RawSettings = {};
  for (const [rawKey, value] of Object.entries(doc as Record<string, unknown>)) {
    const key = rawKey.replaceAll('_', '-');
    if (!isSettingKey(key)) {
      expansion.problems.push(`config file ${path}: unknown setting "${rawKey}"`);
    } else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      // Paths in a config file are relative to the file, like the files it names for secrets.
      const isPath = OPTION_SPECS.some((spec) => spec.key === key && spec.kind === 'path');
      values[key] = isPath && typeof value === 'string' ? resolve(dirname(path), value) : value;
    } else {
      expansion.problems.push(`config file ${path}: ${rawKey} must be a string, number or boolean`);
    }
  }
  return values;
}

/** A config file's settings as written (paths made absolute): genconfig carries them into the deployment. */
export function readSettingsFile(path: string): RawSettings {
  const expansion: Expansion = { layers: [], problems: [], warnings: [] };
  const values = readConfigFile(resolve(path), expansion);
  if (expansion.problems.length > 0) throw new SettingsError(expansion.problems);
  return values;
}

/** Command line, then environment, then config file, then defaults; files they name are read here. */
export function loadSettings(sources: SettingsSources, options?: ResolveOptions): ResolvedSettings {
  const expansion: Expansion = { layers: [], problems: [], warnings: [] };
  const cwd = process.cwd();
  expandLayer({ source: COMMAND_LINE, values: sources.commandLine }, cwd, expansion);
  expandLayer({ source: 'environment', values: sources.environment }, cwd, expansion);
  if (sources.configFile !== undefined) {
    const path = resolve(cwd, sources.configFile);
    const values = readConfigFile(path, expansion);
    expandLayer({ source: `config file ${path}`, values }, dirname(path), expansion);
  }
  if (sources.fallback !== undefined) expandLayer(sources.fallback, cwd, expansion);
  let resolved: ResolvedSettings | undefined;
  try {
    resolved = resolveSettings(expansion.layers, options);
  } catch (error) {
    if (!(error instanceof SettingsError)) throw error;
    throw new SettingsError([...expansion.problems, ...error.problems]);
  }
  if (expansion.problems.length > 0) throw new SettingsError(expansion.problems);
  const { settings } = resolved;
  const wide = settings.serverName !== '' && namespaceIsWide(settings.appserviceUserRegexes, settings.serverName);
  // The service's own registration must fit the backend; genconfig and the store commands name none.
  const namespace = options?.requireSecrets === false ? { problems: [], warnings: [] } : namespaceProblems(settings);
  if (namespace.problems.length > 0) throw new SettingsError(namespace.problems);
  return {
    settings,
    warnings: [...expansion.warnings, ...resolved.warnings, ...(wide ? [WIDE_NAMESPACE_WARNING] : []), ...namespace.warnings],
  };
}
