import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadSettings, type SettingsSources } from '../config/loadSettings.js';
import { parseRegistration } from '../config/registrationFile.js';
import { SettingsError, type ResolveOptions, type ResolvedSettings } from '../config/settings.js';
import { contradictedTokens, findGoRegistration, GO_GENERATED_FORM, GO_REGISTRATION_FILE, goRegistrationLayer } from './goRegistration.js';

/**
 * The daemon's and doctor's settings, for a run.sh of the Go original's too. Run from Synapse's config directory, where
 * the Go original's genconfig left registration.yaml, a command line that names no registration takes its tokens from
 * that file (when it has the Go original's shape), below every flag, variable and config file; a file whose tokens
 * contradict the flags is refused. The Go original's generated form (tokens but no shared secret) stops with one line.
 */
export function loadSettingsForGoRunScript(sources: SettingsSources, options: ResolveOptions, cwd: string): ResolvedSettings {
  let named: ResolvedSettings | undefined;
  try {
    named = loadSettings(sources, { requireSecrets: false, requireServerName: false });
  } catch {
    // The full load below reports what is wrong.
  }
  const found =
    named === undefined || named.settings.appserviceId !== undefined ? undefined : findGoRegistration(cwd, named.settings.serverName);
  if (found === undefined) return loadOrExplainGoForm(sources, options, cwd);
  const resolved = loadOrExplainGoForm({ ...sources, fallback: goRegistrationLayer(found) }, options);
  const differing = contradictedTokens(found, { astoken: resolved.settings.asToken, hstoken: resolved.settings.hsToken });
  if (differing.length > 0) {
    throw new SettingsError([
      `the ${differing.join(' and ')} given differ from the Go original's registration ${found.path}, which Synapse holds: ` +
        'give the same tokens, or name the registration Synapse loads with --registration FILE',
    ]);
  }
  return {
    settings: resolved.settings,
    warnings: [...resolved.warnings, `using the Go original's registration ${found.path} (id ${found.id}) for the tokens`],
  };
}

function loadOrExplainGoForm(sources: SettingsSources, options: ResolveOptions, cwd?: string): ResolvedSettings {
  try {
    return loadSettings(sources, options);
  } catch (error) {
    const other = cwd === undefined ? undefined : otherRegistrationHere(cwd);
    if (
      error instanceof SettingsError &&
      other !== undefined &&
      error.problems.some((problem) => problem.startsWith('astoken is required') || problem.startsWith('hstoken is required'))
    ) {
      throw new SettingsError([
        `${other.path} belongs to another application service (id ${other.id}, users ${other.users || 'none'}), not to this one, ` +
          "so its tokens are not taken: give this service's registration with --registration FILE (one whose users namespace is " +
          'Photon nodes), or its tokens with --astoken and --hstoken',
      ]);
    }
    const tokensOnCommandLine = sources.commandLine.astoken !== undefined || sources.commandLine.hstoken !== undefined;
    if (
      error instanceof SettingsError &&
      tokensOnCommandLine &&
      error.problems.some((problem) => problem.startsWith('sharesecret is required'))
    ) {
      throw new SettingsError([GO_GENERATED_FORM]);
    }
    throw error;
  }
}

/** A registration.yaml in the run.sh's directory that is not the Go original's: another application service's, often a bridge's. */
function otherRegistrationHere(cwd: string): { path: string; id: string; users: string } | undefined {
  const path = join(cwd, GO_REGISTRATION_FILE);
  if (!existsSync(path)) return undefined;
  try {
    const parsed = parseRegistration(readFileSync(path, 'utf8'));
    return { path, id: parsed.id, users: parsed.userRegexes.join(', ') };
  } catch {
    return undefined;
  }
}
