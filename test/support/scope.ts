import { after } from './timedTests.js';

/**
 * Where a test registers how to end what it started: node:test's TestContext (`t`) has this shape, and runs the
 * registered functions after the test, whether it passed or failed. Every helper here that starts something takes one.
 */
export interface Scope {
  after(end: () => unknown): void;
}

/**
 * A scope for what a describe block starts in its `before` hook (a Synapse, a PostgreSQL server): ended by the suite's
 * `after` hook, last started first, each even when another fails. Call it in the describe body.
 */
export function suiteScope(): Scope {
  const enders: (() => unknown)[] = [];
  after(async () => {
    const failures: unknown[] = [];
    for (const end of enders.splice(0).reverse()) {
      try {
        await end();
      } catch (error) {
        failures.push(error);
      }
    }
    if (failures.length > 0) throw failures[0];
  });
  return { after: (end) => void enders.push(end) };
}
