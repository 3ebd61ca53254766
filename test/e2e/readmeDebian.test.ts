import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from '../support/timedTests.js';
import { debianMachine, removeMachineFiles, type DebianMachine } from '../support/debianMachine.js';
import { readmeShellBlocks, scenarioBlocks } from '../support/readmeBlocks.js';
import { blockStatuses, scenarioScript } from '../support/readmeScenario.js';
import { ownSynapseSkip } from '../support/synapse.js';

/** The sections whose shell blocks are executable documentation: each is run by a scenario or says why not. */
const EXECUTABLE_SECTIONS = ['Installing', 'Deploying with Synapse', 'Moving from the Go original'];
const SERVER_NAME = 'transport01.example.org';

describe('the README: every shell block of the deployment sections is run by a test or says why not', () => {
  it('has a marker on each block, and the scenarios this file runs hold blocks', () => {
    const blocks = readmeShellBlocks().filter((block) => EXECUTABLE_SECTIONS.includes(block.section));
    assert.ok(blocks.length >= 5, `${blocks.length} blocks`);
    const unmarked = blocks.filter((block) => block.marker === undefined);
    assert.deepEqual(
      unmarked.map((block) => `README.md:${block.line}`),
      [],
      'each needs <!-- README test: SCENARIO --> or <!-- README test: not run: REASON -->',
    );
    const scenarios = new Set(
      blocks.flatMap((block) => (block.marker !== undefined && 'scenario' in block.marker ? [block.marker.scenario] : [])),
    );
    assert.deepEqual(
      [...scenarios].sort(),
      ['debian', 'go', 'install'],
      'each scenario this file runs holds a block, and no other is named',
    );
    for (const block of blocks) {
      if (block.marker !== undefined && 'notRun' in block.marker)
        assert.ok(block.marker.notRun.length > 10, `README.md:${block.line}: say why`);
    }
  });
});

function output(run: { output: string }): string {
  return run.output.slice(-6000);
}

describe(
  "the README on Debian's matrix-synapse, as written: Installing, Deploying with Synapse, Moving from the Go original",
  { skip: ownSynapseSkip() },
  () => {
    let machine: DebianMachine;
    let goMachine: DebianMachine;
    let install: { code: number; output: string };
    let deploy: { code: number; output: string };
    let moved: { code: number; output: string };

    before(
      async () => {
        machine = debianMachine({ serverName: SERVER_NAME });
        install = await machine.run(scenarioScript(scenarioBlocks('install')), { network: 'host', timeoutMs: 150_000 });
        goMachine = goOriginalMachine(machine.fork());
        deploy = await machine.run(
          scenarioScript(scenarioBlocks('debian'), {
            // What the machine's packages start: Synapse under its unit, nginx.
            before: 'systemctl start matrix-synapse && nginx',
            edits: {
              include: "sed -i 's|^}$|  include /etc/nginx/snippets/matrix-regservice.conf;\\n}|' /etc/nginx/sites-enabled/matrix",
            },
            after: [
              'echo "::synapse uid $(awk \'/^Uid:/ {print $2}\' /proc/$(cat /run/unit-matrix-synapse.pid)/status)"',
              'echo "::regservice uid $(awk \'/^Uid:/ {print $2}\' /proc/$(cat /run/unit-matrix-regservice.pid)/status)"',
              'echo "::ids $(id -u matrix-synapse) $(id -u matrix-regservice 2>/dev/null)"',
              'stat -c "::file %U %a %n" /etc/matrix-regservice/registration.yaml /etc/matrix-regservice/registration_shared_secret /etc/matrix-synapse/matrix-regservice-* /etc/matrix-regservice/.matrix 2>&1',
              'echo "::unit log"; tail -n 30 /var/log/unit-matrix-regservice.log; echo "::synapse log"; grep -E "ERROR|Error|rror:" /var/log/unit-matrix-synapse.log | tail -n 20',
              // Run again from the service's directory (not Synapse's), with new tokens: Debian's configuration is
              // found all the same, and Synapse's own copy follows the service's.
              'cd /etc/matrix-regservice && matrix-regservice genconfig --out /etc/matrix-regservice --force --new-tokens --patch-homeserver --systemd /etc/systemd/system/matrix-regservice.service >/tmp/rerun.out 2>&1; echo "::rerun $?"; sed "s/^/::rerun-out /" /tmp/rerun.out',
              'if cmp -s <(grep hs_token /etc/matrix-regservice/registration.yaml) <(grep hs_token /etc/matrix-synapse/matrix-regservice-registration.yaml); then echo "::copies agree"; fi',
              'systemctl stop matrix-regservice; systemctl stop matrix-synapse; nginx -s quit',
            ].join('\n'),
          }),
          { network: 'private', timeoutMs: 150_000 },
        );
        moved = await goMachine.run(
          scenarioScript(scenarioBlocks('go'), {
            before: 'systemctl start matrix-synapse && nginx',
            edits: {
              // The test's own check while the Go run.sh serves (a node registers through the Go README's location),
              // then Ctrl-C, as the README's "stop the run.sh of step 3" asks.
              'stop-run-sh': [
                'unit_wait matrix-regservice',
                'openssl rand -hex 32 >/root/go-node.key',
                'echo "::go-node $(matrix-regservice register --key-file /root/go-node.key --homeserver https://transport01.example.org)"',
                'stop_background INT',
              ].join('\n'),
              include:
                "sed -i 's|^  location /regapp/1 .*$|  include /etc/nginx/snippets/matrix-regservice.conf;|' /etc/nginx/sites-enabled/matrix",
            },
            after: [
              'echo "::synapse lists"; cat /etc/matrix-synapse/conf.d/zz-matrix-regservice.yaml',
              'echo "::unit log"; tail -n 30 /var/log/unit-matrix-regservice.log',
              'systemctl stop matrix-regservice; systemctl stop matrix-synapse; nginx -s quit',
            ].join('\n'),
          }),
          { network: 'private', timeoutMs: 150_000 },
        );
      },
      { timeout: 290_000 },
    );

    after(() => {
      for (const made of [machine, goMachine]) if (made !== undefined) removeMachineFiles(made);
    });

    it('installs the tarball as root: matrix-regservice is on PATH under /usr/local', () => {
      assert.equal(install.code, 0, output(install));
      const statuses = blockStatuses(install.output);
      assert.ok(statuses.size > 0 && [...statuses.values()].every((status) => status === 0), output(install));
      assert.match(install.output, /^\/usr\/local\/bin\/matrix-regservice$/m);
    });

    it('deploys: every block exits 0, Synapse runs as matrix-synapse on the patched configuration, the service as its own account', () => {
      assert.equal(deploy.code, 0, output(deploy));
      assert.match(deploy.output, /^::blocks done$/m, output(deploy));
      const ids = /^::ids (\d+) (\d+)$/m.exec(deploy.output);
      assert.ok(ids !== null, output(deploy));
      assert.match(deploy.output, new RegExp(`^::synapse uid ${ids[1]}$`, 'm'), 'Synapse as its own user');
      assert.match(deploy.output, new RegExp(`^::regservice uid ${ids[2]}$`, 'm'), 'the service as its own account');
    });

    it("gives each reader its own 0600 copy: Synapse's beside its configuration, the service's in /etc/matrix-regservice", () => {
      for (const line of [
        /^::file matrix-regservice 600 \/etc\/matrix-regservice\/registration\.yaml$/m,
        /^::file matrix-regservice 600 \/etc\/matrix-regservice\/registration_shared_secret$/m,
        /^::file matrix-synapse 600 \/etc\/matrix-synapse\/matrix-regservice-registration\.yaml$/m,
        /^::file matrix-synapse 600 \/etc\/matrix-synapse\/matrix-regservice-shared-secret$/m,
        /^::file matrix-regservice 700 \/etc\/matrix-regservice\/\.matrix$/m,
      ]) {
        assert.match(deploy.output, line, output(deploy));
      }
    });

    it("run again from elsewhere, genconfig finds Debian's configuration and renews Synapse's copy with the service's", () => {
      assert.match(deploy.output, /^::rerun 0$/m, output(deploy));
      assert.match(deploy.output, /^::rerun-out Read \/etc\/matrix-synapse\/homeserver\.yaml, /m, output(deploy));
      assert.match(deploy.output, /^::copies agree$/m, output(deploy));
    });

    it('doctor passes as the service account, and the smoke test registers and logs in through nginx over TLS', () => {
      assert.match(deploy.output, /All checks passed\./, output(deploy));
      assert.match(deploy.output, /^ok {4}the running service holds the registration's hs_token/m);
      // Synapse's own copy is Synapse's alone: doctor, as the service's account, says it cannot compare it.
      assert.match(
        deploy.output,
        /^skip {2}the registration Synapse's configuration lists for this service: not checked: cannot read \/etc\/matrix-synapse\/matrix-regservice-registration\.yaml as this user/m,
      );
      assert.match(deploy.output, new RegExp(`^@0x[0-9a-f]{40}:${SERVER_NAME.replaceAll('.', '\\.')}$`, 'm'), output(deploy));
    });

    it("moves from the Go original: its run.sh serves as it is, then genconfig's deployment takes its registry, id and tokens", () => {
      assert.equal(moved.code, 0, output(moved));
      assert.match(moved.output, /^::blocks done$/m, output(moved));
      const node = /^::go-node @(0x[0-9a-f]{40}):/m.exec(moved.output)?.[1];
      assert.ok(node !== undefined, output(moved));
      assert.match(moved.output, /Copied the registry \/etc\/matrix-synapse\/\.matrix\/regservice\.leveldb/);
      assert.match(moved.output, new RegExp(`^${node}\\s`, 'm'), 'users list shows the node registered under the Go run.sh');
      const lists = moved.output.split('::synapse lists')[1] ?? '';
      assert.match(lists, /- \/etc\/matrix-synapse\/matrix-regservice-registration\.yaml/);
      assert.doesNotMatch(lists, /\/etc\/matrix-synapse\/registration\.yaml/, "the Go original's @.* registration is no longer loaded");
      assert.match(moved.output, /All checks passed\./, output(moved));
    });
  },
);

/** The Go original as its README set it up on this machine: its files in /etc/matrix-synapse, Synapse and nginx on them. */
function goOriginalMachine(machine: DebianMachine): DebianMachine {
  const fixture = (name: string): string =>
    readFileSync(new URL(`../fixtures/go-original/${name}`, import.meta.url), 'utf8').replaceAll('photon.test', SERVER_NAME);
  const path = (at: string): string => machine.hostPath(at);
  writeFileSync(path('/etc/matrix-synapse/registration.yaml'), fixture('registration.yaml'), { mode: 0o644 });
  writeFileSync(path('/etc/matrix-synapse/run.sh'), fixture('run.sh.v0.2'), { mode: 0o755 });
  const secret = /--sharesecret (\S+)/.exec(fixture('run.sh.v0.2'))?.[1] ?? '';
  writeFileSync(
    path('/etc/matrix-synapse/conf.d/go-original.yaml'),
    `# the operator's, for the Go original\nenable_registration: false\nregistration_shared_secret: ${secret}\napp_service_config_files:\n  - /etc/matrix-synapse/registration.yaml\n`,
  );
  const site = path('/etc/nginx/sites-enabled/matrix');
  writeFileSync(site, readFileSync(site, 'utf8').replace(/\n}\n$/, '\n  location /regapp/1 { proxy_pass http://127.0.0.1:8009; }\n}\n'));
  return machine;
}
