import * as nodeTest from 'node:test';

/**
 * node:test's `describe`, `it`, `before` and `after`, with a timeout for each test and each hook unless it names its
 * own. `--test-timeout` cannot give one: Node 20 and 22 apply it to a test file as a whole, Node 24 to each test
 * (test/run.ts bounds the files). Every test file imports these instead of node:test's (eslint says so).
 */
export const TEST_TIMEOUT_MS = 120_000;

type TestFn = (t: nodeTest.TestContext) => unknown;
type HookFn = (context: nodeTest.SuiteContext | nodeTest.TestContext) => unknown;

export const describe = nodeTest.describe;
/** node:test's mock (timers, functions), for tests that control time. */
export const mock = nodeTest.mock;

export function it(name: string, fn: TestFn): Promise<void>;
export function it(name: string, options: nodeTest.TestOptions, fn: TestFn): Promise<void>;
export function it(name: string, optionsOrFn: nodeTest.TestOptions | TestFn, maybeFn?: TestFn): Promise<void> {
  const [options, fn] = typeof optionsOrFn === 'function' ? [{}, optionsOrFn] : [optionsOrFn, maybeFn as TestFn];
  return nodeTest.it(name, { timeout: TEST_TIMEOUT_MS, ...options }, fn as nodeTest.TestFn);
}

export const before = (fn: HookFn, options: nodeTest.HookOptions = {}): void =>
  nodeTest.before(fn as nodeTest.HookFn, { timeout: TEST_TIMEOUT_MS, ...options });

export const after = (fn: HookFn, options: nodeTest.HookOptions = {}): void =>
  nodeTest.after(fn as nodeTest.HookFn, { timeout: TEST_TIMEOUT_MS, ...options });
