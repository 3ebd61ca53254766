import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The installed package's directory (this file is compiled to dist/packageRoot.js). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

export const BIN_PATH = fileURLToPath(new URL('../bin/matrix-regservice', import.meta.url));

export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
  return manifest.version ?? '0.0.0';
}
