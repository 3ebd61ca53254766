/** What the homeserver needs to create a node's account. */
export interface NewNode {
  readonly localpart: string;
  readonly password: string;
  readonly displayname: string;
}

export interface RegisteredUser {
  readonly userId: string;
  readonly homeServer: string;
  readonly accessToken?: string;
  readonly deviceId?: string;
  /** The user existed and its password was reset to the signature (admin-api with --allow-password-reset). */
  readonly passwordReset?: boolean;
  /** Something that did not stop the registration but the operator should know. */
  readonly warning?: string;
}

/**
 * A way of creating users on the homeserver (one per backend). A failure after which the homeserver surely holds no
 * account from the call is marked so (createdNothing.ts).
 */
export interface Registrar {
  register(node: NewNode): Promise<RegisteredUser>;
  /**
   * For a backend whose answers carry a token (appservice; shared-secret with --login-after-register): logs in as the
   * node's existing account, so that a completed interrupted registration answers what a direct one does.
   */
  readonly logIn?: (node: NewNode) => Promise<RegisteredUser>;
}
