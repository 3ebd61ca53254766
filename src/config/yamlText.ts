import { parseDocument } from 'yaml';

/**
 * Parses YAML from a file that may hold secrets (registration.yaml, the config file, homeserver.yaml): a syntax error
 * names the line and column and what is wrong there, never the text itself (the yaml library's message quotes it).
 */
export function parseYamlQuietly(text: string): unknown {
  const doc = parseDocument(text);
  const error = doc.errors[0];
  if (error !== undefined) {
    const at = error.linePos?.[0];
    const where = at === undefined ? '' : ` at line ${at.line}, column ${at.col}`;
    throw new Error(`is not valid YAML${where} (${error.code.toLowerCase().replaceAll('_', ' ')})`);
  }
  return doc.toJS();
}
