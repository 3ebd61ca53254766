import { execFileSync } from 'node:child_process';

/** A self-signed certificate for `name` (also its subjectAltName), made by openssl, with its key. */
export function selfSignedCertificate(name: string, files: { readonly cert: string; readonly key: string }): void {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`].concat(
      ['-keyout', files.key, '-out', files.cert],
    ),
    { stdio: 'ignore' },
  );
}
