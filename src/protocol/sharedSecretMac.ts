import { createHmac } from 'node:crypto';

export interface SharedSecretRegistration {
  readonly nonce: string;
  readonly username: string;
  readonly password: string;
  readonly admin: boolean;
}

/** Synapse's shared-secret registration MAC: HMAC-SHA1 over nonce\0user\0password\0(admin|notadmin). */
export function sharedSecretMac(secret: string, registration: SharedSecretRegistration): string {
  return createHmac('sha1', secret)
    .update(registration.nonce)
    .update('\0')
    .update(registration.username)
    .update('\0')
    .update(registration.password)
    .update('\0')
    .update(registration.admin ? 'admin' : 'notadmin')
    .digest('hex');
}
