import { strict as assert } from 'node:assert';
import { after, before, describe, it } from '../support/timedTests.js';
import { suiteScope } from '../support/scope.js';
import { appserviceCase, framingCase, homeserverCase, ipcCase, registerCase } from '../fuzz/arbitraries.js';
import { startFuzzedGate, type FuzzedGate } from '../fuzz/fuzzedGate.js';
import { startFuzzedPrimary, type FuzzedPrimary } from '../fuzz/ipcProperty.js';
import { appserviceProperty, framingProperty, homeserverProperty, registerProperty } from '../fuzz/properties.js';
import { fuzzSeconds, fuzzSeed, runProperty } from '../fuzz/runProperty.js';

/**
 * The fuzzer (test/fuzz/): property-based cases against the built service (two workers, verbosity 5) and a fake
 * homeserver, and against the primary's IPC handlers in this process, each case followed by the invariants. In CI a
 * bounded run from a fixed seed; `npm run fuzz` runs longer from a random one (FUZZ_SECONDS, FUZZ_SEED). The seed is
 * printed; every case that failed is replayed first (test/fuzz/regressions.json).
 */
const seed = fuzzSeed();
const seconds = fuzzSeconds();
/** Shares of the run's time, by how much each property has to search. */
const SHARES = { register: 0.25, framing: 0.2, appservice: 0.2, homeserver: 0.25, ipc: 0.1 } as const;
const timeMs = (property: keyof typeof SHARES): number => Math.round(seconds * 1000 * SHARES[property]);
/** Room past each property's own time: its regressions, the case in flight when time runs out, and its shrinking. */
const timeout = (property: keyof typeof SHARES): number => timeMs(property) + 120_000;

describe(`the fuzzer: seed ${seed}, ${seconds} s`, () => {
  const scope = suiteScope();
  let gate: FuzzedGate | undefined;
  let primary: FuzzedPrimary | undefined;
  const runs: string[] = [];
  const made = (): FuzzedGate => {
    assert.ok(gate !== undefined, 'the service started');
    return gate;
  };

  before(async () => {
    process.stdout.write(`# fuzz seed ${seed} (FUZZ_SEED=${seed} replays this run), ${seconds} s\n`);
    gate = await startFuzzedGate(scope);
    primary = await startFuzzedPrimary();
  });

  after(async () => {
    process.stdout.write(`# fuzz cases: ${runs.join(', ')}\n`);
    await gate?.end();
    await primary?.close();
  });

  it('POST /register: bodies, headers (X-Forwarded-For above all) and paths', { timeout: timeout('register') }, async () => {
    runs.push(
      `register ${await runProperty('register', registerCase, (input) => registerProperty(made(), input), { seed, timeMs: timeMs('register') })}`,
    );
  });

  it('framing: pipelined requests, split at any byte, half-closed, followed by garbage', { timeout: timeout('framing') }, async () => {
    runs.push(
      `framing ${await runProperty('framing', framingCase, (input) => framingProperty(made(), input), { seed, timeMs: timeMs('framing') })}`,
    );
  });

  it("the application-service routes, with the homeserver's token and without", { timeout: timeout('appservice') }, async () => {
    runs.push(
      `appservice ${await runProperty('appservice', appserviceCase, (input) => appserviceProperty(made(), input), { seed, timeMs: timeMs('appservice') })}`,
    );
  });

  it(
    "the homeserver's answers: statuses, bodies, slow, cut and missing answers, and the node's retry",
    { timeout: timeout('homeserver') },
    async () => {
      runs.push(
        `homeserver ${await runProperty('homeserver', homeserverCase, (input) => homeserverProperty(made(), input), { seed, timeMs: timeMs('homeserver') })}`,
      );
    },
  );

  it("what a compromised worker can send to the primary's handlers", { timeout: timeout('ipc') }, async () => {
    assert.ok(primary !== undefined);
    const fuzzed = primary;
    runs.push(`ipc ${await runProperty('ipc', ipcCase, (input) => fuzzed.run(input), { seed, timeMs: timeMs('ipc') })}`);
  });
});
