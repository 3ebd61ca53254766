import { isDeepStrictEqual } from 'node:util';
import { isAlias, isMap, isNode, isScalar, isSeq, parseAllDocuments, parseDocument, type Document, type Pair, type YAMLMap } from 'yaml';

/** What the deployment needs homeserver.yaml to say. */
export interface WantedHomeserverConfig {
  readonly registrationFile: string;
  /** A shared-secret file genconfig made, which Synapse must be told to read (when it has no secret yet). */
  readonly sharedSecretFile?: string | undefined;
  /**
   * Whether an entry of app_service_config_files is already this deployment's registration (by another path, or the Go
   * original's with the same id and tokens): then none is added. By default, only the same path.
   */
  readonly isOurs?: (entry: string) => boolean;
  /** Entries that were this deployment's registration with another url or tokens: replaced by registrationFile. */
  readonly stale?: readonly string[];
  /**
   * registration_shared_secret_path names the service's own copy, which Synapse's account cannot read: replaced by
   * sharedSecretFile (Synapse's copy).
   */
  readonly staleSecretPath?: boolean;
}

/** Whether `listed` (app_service_config_files as Synapse reads it) already has this deployment's registration. */
export function listsOurs(listed: unknown, wanted: WantedHomeserverConfig): boolean {
  const isOurs = wanted.isOurs ?? ((entry: string) => entry === wanted.registrationFile);
  return Array.isArray(listed) && listed.some((entry) => typeof entry === 'string' && isOurs(entry));
}

export interface HomeserverChange {
  readonly key: string;
  /** The lines an operator would add by hand. */
  readonly describe: string;
}

export type HomeserverPatch =
  | { readonly ok: true; readonly changes: readonly HomeserverChange[]; readonly text: string }
  | { readonly ok: false; readonly changes: readonly HomeserverChange[]; readonly problems: readonly string[] };

/** Keys this service reads or changes: a duplicate of one of them is refused, any other is left as PyYAML reads it. */
const KEYS_WE_USE = [
  'server_name',
  'listeners',
  'enable_registration',
  'app_service_config_files',
  'registration_shared_secret',
  'registration_shared_secret_path',
] as const;

interface Edit {
  readonly at: number;
  readonly end: number;
  readonly text: string;
}

/** Synapse reads homeserver.yaml with PyYAML: YAML 1.1 (`no` is false, `0644` octal), the last duplicate key wins. */
export function parseLikePyYaml(text: string): Document.Parsed {
  return parseDocument(text, { version: '1.1', uniqueKeys: false });
}

/** The top-level value PyYAML would read for `key` (the last of duplicates); undefined when absent. */
export function pyYamlValue(doc: Document.Parsed, key: string): unknown {
  const last = pairsOf(doc, key).at(-1);
  if (last === undefined) return undefined;
  return isNode(last.value) ? last.value.toJS(doc) : (last.value ?? null);
}

function pairsOf(doc: Document.Parsed, key: string): Pair[] {
  if (!isMap(doc.contents)) return [];
  return (doc.contents as YAMLMap).items.filter((pair) => isScalar(pair.key) && pair.key.value === key);
}

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length;
}

function yamlString(value: string): string {
  return /^[A-Za-z0-9_./@-]+$/.test(value) && !/^[-.]/.test(value) ? value : JSON.stringify(value);
}

function endOfLine(text: string, offset: number): number {
  const newline = text.indexOf('\n', offset);
  return newline === -1 ? text.length : newline;
}

/** What homeserver.yaml lacks, as PyYAML reads it (the last of duplicated keys). */
function changesNeeded(doc: Document.Parsed, wanted: WantedHomeserverConfig): HomeserverChange[] {
  const changes: HomeserverChange[] = [];
  if (pyYamlValue(doc, 'enable_registration') !== false)
    changes.push({ key: 'enable_registration', describe: 'enable_registration: false' });
  const listed = pyYamlValue(doc, 'app_service_config_files');
  const stale = (wanted.stale ?? []).filter((entry) => Array.isArray(listed) && listed.includes(entry));
  if (stale.length > 0) {
    changes.push({
      key: 'app_service_config_files',
      describe: `app_service_config_files: in place of ${stale.join(', ')}\n  - ${wanted.registrationFile}`,
    });
  } else if (!listsOurs(listed, wanted)) {
    changes.push({ key: 'app_service_config_files', describe: `app_service_config_files:\n  - ${wanted.registrationFile}` });
  }
  const hasSecret = pairsOf(doc, 'registration_shared_secret').length > 0 || pairsOf(doc, 'registration_shared_secret_path').length > 0;
  if (wanted.sharedSecretFile !== undefined && (!hasSecret || wanted.staleSecretPath === true)) {
    changes.push({ key: 'registration_shared_secret_path', describe: `registration_shared_secret_path: ${wanted.sharedSecretFile}` });
  }
  return changes;
}

/**
 * Plans the homeserver.yaml changes the deployment needs and applies them as byte edits: every byte outside the
 * edited ranges stays as it was (comments, quoting, `0644`, `1e3`, anchors). Checks first and changes nothing when the
 * file cannot be patched safely, saying why and what to add by hand; afterwards, checks that PyYAML would read every
 * other key exactly as before.
 */
export function planHomeserverPatch(text: string, wanted: WantedHomeserverConfig): HomeserverPatch {
  const problems: string[] = [];
  const documents = parseAllDocuments(text, { version: '1.1', uniqueKeys: false });
  const doc = parseLikePyYaml(text);
  const newline = text.includes('\r\n') ? '\r\n' : '\n';
  for (const error of doc.errors) {
    const at = error.linePos?.[0];
    problems.push(`line ${at?.line ?? '?'}, column ${at?.col ?? '?'}: ${error.code.toLowerCase().replaceAll('_', ' ')}`);
  }
  if (Array.isArray(documents) && documents.length > 1) problems.push('it holds more than one YAML document');
  if (problems.length === 0 && !(isMap(doc.contents) && !(doc.contents as YAMLMap).flow))
    problems.push('its top level is not a block mapping of settings');
  if (problems.length === 0) {
    for (const key of KEYS_WE_USE) {
      const pairs = pairsOf(doc, key);
      if (pairs.length > 1) {
        const lines = pairs.map((pair) => lineOf(text, (pair.key as { range?: [number, number, number] }).range?.[0] ?? 0));
        problems.push(`${key} is set ${pairs.length} times (lines ${lines.join(', ')}): keep one`);
      }
    }
  }

  let changes: HomeserverChange[];
  try {
    changes = changesNeeded(doc, wanted);
  } catch {
    // A document too broken to read: all three are what an operator would check by hand.
    changes = changesNeeded(parseLikePyYaml(''), wanted);
  }
  const needs = (key: string): boolean => changes.some((change) => change.key === key);
  const edits: Edit[] = [];
  const appended: string[] = [];
  const registrationLine = yamlString(wanted.registrationFile);

  if (problems.length === 0 && needs('enable_registration')) {
    const [pair] = pairsOf(doc, 'enable_registration');
    if (pair === undefined) appended.push('enable_registration: false');
    else if (isScalar(pair.value) && pair.value.range !== undefined && pair.value.range !== null && !pair.value.anchor) {
      edits.push({ at: pair.value.range[0], end: pair.value.range[1], text: 'false' });
    } else {
      problems.push(`enable_registration (line ${lineOf(text, (pair.key as { range?: number[] }).range?.[0] ?? 0)}) is not a plain value`);
    }
  }

  if (problems.length === 0 && needs('app_service_config_files')) {
    const [filesPair] = pairsOf(doc, 'app_service_config_files');
    const value = filesPair?.value;
    const keyLine = filesPair === undefined ? 0 : lineOf(text, (filesPair.key as { range?: number[] }).range?.[0] ?? 0);
    if (filesPair === undefined) {
      appended.push(`app_service_config_files:${newline}  - ${registrationLine}`);
    } else if (isAlias(value) || (value as { anchor?: string } | null)?.anchor !== undefined) {
      problems.push(
        `app_service_config_files (line ${keyLine}) is an alias or anchor: add ${wanted.registrationFile} to the list it names`,
      );
    } else if (isSeq(value) && value.range && (wanted.stale ?? []).length > 0) {
      // Synapse must read ours in place of a stale one: the first stale item's value is replaced, its line kept; the
      // other stale items' lines go, and all of them when ours is listed already (never two entries of ours).
      let placed = listsOurs(
        value.items.map((item) => (isScalar(item) ? item.value : undefined)).filter((item) => !wanted.stale?.includes(item as string)),
        wanted,
      );
      for (const item of value.items) {
        if (!(isScalar(item) && typeof item.value === 'string' && wanted.stale?.includes(item.value) && item.range)) continue;
        if (!placed) {
          edits.push({ at: item.range[0], end: item.range[1], text: registrationLine });
          placed = true;
          continue;
        }
        const lineStart = text.lastIndexOf('\n', item.range[0] - 1) + 1;
        if (value.flow || !/^\s*-\s+$/.test(text.slice(lineStart, item.range[0]))) {
          problems.push(`app_service_config_files (line ${keyLine}): remove ${item.value} by hand, ours is listed already`);
          continue;
        }
        const end = endOfLine(text, item.range[1]);
        edits.push({ at: lineStart, end: Math.min(end + 1, text.length), text: '' });
      }
      if (edits.length === 0 && problems.length === 0)
        problems.push(`app_service_config_files (line ${keyLine}): cannot replace ${wanted.stale?.join(', ')}`);
    } else if (isSeq(value) && value.range) {
      if (value.flow) {
        // [a, b] → [a, b, ours]: before the closing bracket.
        const close = text.lastIndexOf(']', value.range[1]);
        edits.push({ at: close, end: close, text: `${value.items.length > 0 ? ', ' : ''}${registrationLine}` });
      } else {
        const first = value.items[0] as { range?: [number, number, number] } | undefined;
        const last = value.items.at(-1) as { range?: [number, number, number] } | undefined;
        if (first?.range === undefined || last?.range === undefined) {
          problems.push(`app_service_config_files (line ${keyLine}) has an item this cannot place a new one after`);
        } else {
          const lineStart = text.lastIndexOf('\n', first.range[0] - 1) + 1;
          const marker = text.slice(lineStart, first.range[0]);
          if (!/^\s*-\s+$/.test(marker)) {
            problems.push(`app_service_config_files (line ${keyLine}) is not a list of one item a line`);
          } else {
            const after = endOfLine(text, last.range[1]);
            edits.push({ at: after, end: after, text: `${newline}${marker}${registrationLine}` });
          }
        }
      }
    } else if (value === null || (isScalar(value) && value.value === null)) {
      // `~` or `null` is replaced; an empty value (an empty range, placed at the next line) gets one after the colon.
      if (isScalar(value) && value.range && value.range[0] < value.range[1])
        edits.push({ at: value.range[0], end: value.range[1], text: `[${registrationLine}]` });
      else {
        const colon = text.indexOf(':', (filesPair.key as { range?: number[] }).range?.[1] ?? 0);
        edits.push({ at: colon + 1, end: colon + 1, text: ` [${registrationLine}]` });
      }
    } else {
      problems.push(`app_service_config_files (line ${keyLine}) is not a list`);
    }
  }

  if (problems.length === 0 && needs('registration_shared_secret_path') && wanted.sharedSecretFile !== undefined) {
    const [pair] = pairsOf(doc, 'registration_shared_secret_path');
    if (pair === undefined) appended.push(`registration_shared_secret_path: ${yamlString(wanted.sharedSecretFile)}`);
    else if (isScalar(pair.value) && pair.value.range && !pair.value.anchor) {
      edits.push({ at: pair.value.range[0], end: pair.value.range[1], text: yamlString(wanted.sharedSecretFile) });
    } else {
      problems.push(
        `registration_shared_secret_path (line ${lineOf(text, (pair.key as { range?: number[] }).range?.[0] ?? 0)}) is not a plain value`,
      );
    }
  }

  if (problems.length > 0) return { ok: false, changes, problems };
  let patched = text;
  for (const edit of [...edits].sort((a, b) => b.at - a.at)) patched = patched.slice(0, edit.at) + edit.text + patched.slice(edit.end);
  if (appended.length > 0) {
    const separator = patched === '' || patched.endsWith('\n') ? '' : newline;
    patched += `${separator}${appended.map((line) => `${line}${newline}`).join('')}`;
  }
  return verify(text, patched, wanted, changes);
}

/** The patched file must read, as PyYAML would, exactly as before but for the keys changed. */
function verify(original: string, patched: string, wanted: WantedHomeserverConfig, changes: readonly HomeserverChange[]): HomeserverPatch {
  const before = parseLikePyYaml(original);
  const after = parseLikePyYaml(patched);
  const problems: string[] = [];
  if (after.errors.length > 0) problems.push(`the patched file would not parse (${after.errors[0]?.code ?? '?'})`);
  const changed = new Set(changes.map((change) => change.key));
  const items = isMap(before.contents) ? (before.contents as YAMLMap).items : [];
  const keys = new Set(items.map((pair) => (isScalar(pair.key) ? String(pair.key.value) : String(pair.key))));
  for (const key of keys) {
    if (changed.has(key)) continue;
    if (!isDeepStrictEqual(pyYamlValue(after, key), pyYamlValue(before, key))) problems.push(`patching would change ${key}`);
  }
  if (pyYamlValue(after, 'enable_registration') !== false) problems.push('patching would not disable enable_registration');
  if (!listsOurs(pyYamlValue(after, 'app_service_config_files'), wanted)) problems.push('patching would not list the registration file');
  return problems.length === 0 ? { ok: true, changes, text: patched } : { ok: false, changes, problems };
}
