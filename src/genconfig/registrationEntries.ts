import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseYamlQuietly } from '../config/yamlText.js';

/** What this deployment's registration is, to know an entry of app_service_config_files for it whatever its path. */
export interface OurRegistration {
  /** Where genconfig writes it (absolute). */
  readonly file: string;
  readonly id: string;
  readonly url: string;
  readonly asToken: string;
  readonly hsToken: string;
  /** The user namespace regexes it writes: a file with others (the Go original's `@.*`) is replaced. */
  readonly userRegexes: readonly string[];
  /**
   * The service's own copy, when Synapse has a copy of its own (separate accounts): an entry naming the service's copy
   * is stale, since Synapse's account cannot read it.
   */
  readonly serviceCopy?: string | undefined;
}

export type EntryKind =
  | { readonly kind: 'ours'; readonly why: string }
  /**
   * Another file that is this deployment's registration by its id or tokens, but with another url or tokens than this
   * run writes (the Go original's, moved to another port or to several gates): Synapse must be pointed at ours instead.
   */
  | { readonly kind: 'stale'; readonly why: string }
  | { readonly kind: 'other' }
  /** A relative path genconfig cannot place for certain: Synapse resolves it from its working directory. */
  | { readonly kind: 'unresolved'; readonly why: string };

/** The path as the file system resolves links, for a file that may not exist yet (its directory must). */
function realPath(path: string): string {
  if (existsSync(path)) return realpathSync(path);
  const dir = dirname(path);
  return existsSync(dir) ? resolve(realpathSync(dir), basename(path)) : path;
}

function sameRegistration(path: string, ours: OurRegistration): EntryKind {
  let doc: unknown;
  try {
    doc = parseYamlQuietly(readFileSync(path, 'utf8'));
  } catch {
    return { kind: 'other' };
  }
  if (typeof doc !== 'object' || doc === null) return { kind: 'other' };
  const fields = doc as Record<string, unknown>;
  const why =
    fields.id === ours.id
      ? `it has this deployment's id ${ours.id}`
      : fields.as_token === ours.asToken || fields.hs_token === ours.hsToken
        ? "it has this deployment's tokens"
        : fields.url === ours.url
          ? `it has this deployment's url ${ours.url}`
          : undefined;
  if (why === undefined) return { kind: 'other' };
  const namespaces = fields.namespaces as { users?: { regex?: unknown }[] } | undefined;
  const regexes = Array.isArray(namespaces?.users) ? namespaces.users.map((entry) => entry.regex) : [];
  const current =
    fields.url === ours.url &&
    fields.as_token === ours.asToken &&
    fields.hs_token === ours.hsToken &&
    isDeepStrictEqual(regexes, [...ours.userRegexes]);
  return current
    ? { kind: 'ours', why: `${path}: ${why}` }
    : { kind: 'stale', why: `${path}: ${why}, but another url, tokens or user namespace` };
}

/** Whether a path from Synapse's configuration (relative ones from any of `bases`) names `file`, links followed. */
export function namesFile(path: string, bases: readonly string[], file: string): boolean {
  const candidates = isAbsolute(path) ? [path] : bases.map((base) => resolve(base, path));
  return candidates.some((candidate) => realPath(candidate) === realPath(file));
}

/**
 * Whether an entry of app_service_config_files is this deployment's registration: the same file (by any path: relative
 * to homeserver.yaml's directory or to Synapse's working directory, or through a link), or a registration with our url,
 * id or tokens (the Go original's, whose id and tokens genconfig keeps). `bases` are the directories a relative entry
 * may be relative to; one that exists under two of them as different files cannot be placed for certain.
 */
export function classifyEntry(entry: string, bases: readonly string[], ours: OurRegistration): EntryKind {
  const candidates = isAbsolute(entry) ? [entry] : [...new Set(bases.map((base) => resolve(base, entry)))];
  const existing = candidates.filter((path) => existsSync(path));
  const target = realPath(ours.file);
  if (candidates.some((path) => realPath(path) === target)) return { kind: 'ours', why: `it is ${ours.file}` };
  const serviceCopy = ours.serviceCopy === undefined ? undefined : realPath(ours.serviceCopy);
  if (serviceCopy !== undefined && serviceCopy !== target && candidates.some((path) => realPath(path) === serviceCopy))
    return { kind: 'stale', why: `${entry} is the service's own copy, which Synapse's account cannot read` };
  const places = new Set(existing.map(realPath));
  if (!isAbsolute(entry) && places.size !== 1) {
    const where = bases.join(' or ');
    return {
      kind: 'unresolved',
      why:
        places.size === 0
          ? `${entry} is relative, and no such file is in ${where}`
          : `${entry} is relative, and names different files in ${where}, depending on where Synapse runs`,
    };
  }
  const file = existing[0];
  return file === undefined ? { kind: 'other' } : sameRegistration(file, ours);
}
