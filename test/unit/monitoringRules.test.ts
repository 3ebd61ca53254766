import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, it } from '../support/timedTests.js';

const execute = promisify(execFile);
const RULES = new URL('../../deploy/monitoring/regservice-rules.yml', import.meta.url).pathname;
const RULE_TESTS = new URL('../monitoring/regservice-rules.test.yml', import.meta.url).pathname;

/** promtool, from Debian's prometheus package (test/provision.sh); in CI its absence fails, as every real part's does. */
function promtoolSkip(): string | false {
  if (spawnSync('promtool', ['--version']).error === undefined) return false;
  if (process.env.CI === 'true') throw new Error("promtool is not installed: test/provision.sh installs Debian's prometheus");
  return 'promtool not installed: run test/provision.sh first';
}

describe('the alert rules, as Prometheus checks and tests them (promtool)', { skip: promtoolSkip() }, () => {
  it('are valid rules', async () => {
    const { stdout } = await execute('promtool', ['check', 'rules', RULES]);
    assert.match(stdout, /SUCCESS: 11 rules found/);
  });

  it('fire when they should, stay quiet when they should not, and resolve (test/monitoring/regservice-rules.test.yml)', async () => {
    const result = await execute('promtool', ['test', 'rules', RULE_TESTS]).catch((error: { stdout?: string; stderr?: string }) => ({
      stdout: `${error.stdout ?? ''}${error.stderr ?? ''}`,
    }));
    assert.match(result.stdout, /SUCCESS/, result.stdout);
    assert.doesNotMatch(result.stdout, /FAILED/, result.stdout);
  });

  it('has a test for every alert', () => {
    const rules = parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert: string }[] }[] };
    const tests = readFileSync(RULE_TESTS, 'utf8');
    for (const rule of rules.groups.flatMap((group) => group.rules)) {
      assert.match(
        tests,
        new RegExp(`alertname: ${rule.alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`),
        `${rule.alert} is never tested firing`,
      );
    }
  });
});
