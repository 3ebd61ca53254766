import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './tempDir.js';

const run = promisify(execFile);
const PACKAGE_ROOT = new URL('../..', import.meta.url).pathname;

export interface InstalledPackage {
  /** The directory holding the `matrix-regservice` command (put it first on PATH). */
  readonly binDir: string;
  readonly bin: string;
}

let installed: Promise<InstalledPackage> | undefined;

/**
 * The install an operator makes (README, Installing): `npm pack` of this checkout (built by npm test beforehand), then
 * `npm install -g` of the tarball, into a prefix of its own rather than /usr/local. Once per test process.
 */
export function installedPackage(): Promise<InstalledPackage> {
  installed ??= (async () => {
    const dir = tempDir('regservice-install-');
    await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: PACKAGE_ROOT });
    const tarball = readdirSync(dir).find((name) => name.endsWith('.tgz'));
    if (tarball === undefined) throw new Error(`npm pack wrote no tarball into ${dir}`);
    const prefix = join(dir, 'prefix');
    await run('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', join(dir, tarball)], { cwd: dir });
    return { binDir: join(prefix, 'bin'), bin: join(prefix, 'bin', 'matrix-regservice') };
  })();
  return installed;
}
