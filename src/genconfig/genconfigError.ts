/** genconfig cannot write what was asked: the message says why; nothing was written. */
export class GenconfigError extends Error {}
