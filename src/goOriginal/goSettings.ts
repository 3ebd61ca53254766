import { loadSettings, type SettingsSources } from '../config/loadSettings.js';
import { SettingsError, type ResolveOptions, type ResolvedSettings } from '../config/settings.js';
import { contradictedTokens, findGoRegistration, GO_GENERATED_FORM, goRegistrationLayer } from './goRegistration.js';

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
  if (found === undefined) return loadOrExplainGoForm(sources, options);
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

function loadOrExplainGoForm(sources: SettingsSources, options: ResolveOptions): ResolvedSettings {
  try {
    return loadSettings(sources, options);
  } catch (error) {
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
