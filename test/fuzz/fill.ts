import { PLACEHOLDERS } from './arbitraries.js';

/** What each placeholder stands for in one case; one without a value stays as it is. */
export type PlaceholderValues = Readonly<Partial<Record<keyof typeof PLACEHOLDERS, string>>>;

/** A case's string with its placeholders replaced. */
export function fillText(text: string, values: PlaceholderValues): string {
  let filled = text;
  for (const [name, placeholder] of Object.entries(PLACEHOLDERS)) {
    const value = values[name as keyof typeof PLACEHOLDERS];
    if (value !== undefined) filled = filled.replaceAll(placeholder, () => value);
  }
  return filled;
}

/** Every string of a JSON value, however deep in arrays and objects, with its placeholders replaced. */
export function fillValue(value: unknown, values: PlaceholderValues): unknown {
  if (typeof value === 'string') return fillText(value, values);
  if (Array.isArray(value)) return value.map((each) => fillValue(each, values));
  if (typeof value === 'object' && value !== null)
    return Object.fromEntries(Object.entries(value).map(([key, each]) => [key, fillValue(each, values)]));
  return value;
}
