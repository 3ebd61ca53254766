/** Library entry: what a TypeScript/JavaScript node needs to register the way Photon nodes do. */
export { registerNode, RegistrationFailed, signRegistration } from './node/registerNode.js';
export type { PrivateKey, RegisteredNode, RegisterNodeOptions, RegistrationBody } from './node/registerNode.js';
export { addressOfPrivateKey } from './protocol/signRegistration.js';
