/** Full endpoint URLs the Go original took as --matrixurl; we keep only the base. */
const LEGACY_ENDPOINT_SUFFIXES = [
  '/_synapse/admin/v1/register',
  '/_matrix/client/api/v1/admin/register',
  '/_matrix/client/r0/admin/register',
  '/_matrix/client/api/v1/createUser',
];

export interface HomeserverUrl {
  readonly baseUrl: string;
  /** Set when a legacy full-path form was given and reduced to the base URL. */
  readonly reducedFrom?: string;
}

/** Returns the base URL without a trailing slash, or throws with a reason. */
export function normalizeHomeserverUrl(input: string): HomeserverUrl {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new Error(`not a URL: "${input}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`must be http:// or https://, got "${input}"`);
  if (url.search !== '' || url.hash !== '') throw new Error(`must not have a query or fragment: "${input}"`);
  let path = url.pathname.replace(/\/+$/, '');
  let reduced = false;
  for (const suffix of LEGACY_ENDPOINT_SUFFIXES) {
    if (path.endsWith(suffix)) {
      path = path.slice(0, -suffix.length);
      reduced = true;
      break;
    }
  }
  const baseUrl = `${url.protocol}//${url.host}${path}`;
  return reduced ? { baseUrl, reducedFrom: input } : { baseUrl };
}
