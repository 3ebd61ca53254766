import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from '../support/timedTests.js';
import { debianMachine, removeMachineFiles, runJoined, type DebianMachine } from '../support/debianMachine.js';
import { selfSignedCertificate } from '../support/certificates.js';
import { tempDir } from '../support/tempDir.js';
import { readmeShellBlocks, scenarioBlocks } from '../support/readmeBlocks.js';
import { blockStatuses, scenarioScript } from '../support/readmeScenario.js';
import { ownSynapseSkip, SYNAPSE_ROOT } from '../support/synapse.js';

/** The sections whose shell blocks are executable documentation: each is run by a scenario or says why not. */
const EXECUTABLE_SECTIONS = ['Installing', 'Deploying with Synapse', 'Moving from the Go original', 'Stores: LevelDB or PostgreSQL'];
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
      ['debian', 'gates', 'go', 'install', 'second'],
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
  "the README on Debian's matrix-synapse, as written: Installing, Deploying with Synapse, Moving from the Go original, Two gates",
  { skip: ownSynapseSkip() },
  () => {
    let machine: DebianMachine;
    let goMachine: DebianMachine;
    let install: { code: number; output: string };
    let deploy: { code: number; output: string };
    let moved: { code: number; output: string };
    let secondMachine: DebianMachine;
    let firstMachine: DebianMachine;
    let gates: { code: number; output: string };
    let second: { code: number; output: string };

    before(
      async () => {
        machine = debianMachine({ serverName: SERVER_NAME });
        install = await machine.run(scenarioScript(scenarioBlocks('install')), { network: 'host', timeoutMs: 150_000 });
        goMachine = goOriginalMachine(machine.fork());
        secondMachine = machine.fork();
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
        firstMachine = withDatabase(machine.fork());
        [gates = { code: 1, output: '' }, second = { code: 1, output: '' }] = await runTwoGates(firstMachine, secondMachine);
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
      for (const made of [machine, goMachine, firstMachine, secondMachine]) if (made !== undefined) removeMachineFiles(made);
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

    it('two gates: the database made, the nodes moved, the deployment generated for both and unpacked on the second machine', () => {
      assert.equal(gates.code, 0, output(gates));
      assert.match(gates.output, /^::blocks done$/m, output(gates));
      assert.equal(second.code, 0, output(second));
      assert.match(second.output, /^::blocks done$/m, output(second));
      assert.match(gates.output, /^registered nodes: [1-9]\d* copied, 0 already there$/m, output(gates));
      assert.doesNotMatch(
        gates.output,
        /^warning: --(matrixurl|host|trusted-proxies) /m,
        'each gate can listen, reach Synapse and believe nginx',
      );
    });

    it('two gates: nodes register through nginx on both gates, on the second alone when the first stops, users lists every node, and with neither nginx answers Synapse in JSON', () => {
      const user = (label: string): string[] =>
        [...gates.output.matchAll(new RegExp(`^::${label} @(0x[0-9a-f]{40}):transport01\\.example\\.org$`, 'gm'))].map(
          (match) => match[1] ?? '',
        );
      const [before] = user('before-move');
      const nodes = user('node');
      const [alone] = user('alone');
      assert.ok(before !== undefined && alone !== undefined && nodes.length === 3, output(gates));
      const servedBy = (run: { output: string }): string[] =>
        [...run.output.matchAll(/^::served (0x[0-9a-f]{40})$/gm)].map((match) => match[1] ?? '');
      const [first, other] = [servedBy(gates), servedBy(second)];
      for (const node of nodes) assert.equal(Number(first.includes(node)) + Number(other.includes(node)), 1, `${node}: one gate served it`);
      assert.ok(
        nodes.some((node) => first.includes(node)),
        'the first gate served a node',
      );
      assert.ok(other.includes(alone), `the second gate served ${alone} while the first was stopped\n${output(second)}`);
      assert.match(
        gates.output,
        /^::loopback 503 5 \{"errcode":"M_UNKNOWN","error":"the registration service is unavailable; retry later"\}$/m,
        "with both gates down, nginx's loopback server answers Synapse in Matrix JSON",
      );
      const listed = gates.output.split('::users')[1] ?? '';
      for (const node of [before, alone, ...nodes]) assert.match(listed, new RegExp(`^${node}\\s`, 'm'), `${node} listed`);
    });
  },
);

const DATABASE_NAME = 'db.example.org';

/** The first machine's PostgreSQL (Debian's package, its cluster main), and a certificate for the database's name where the README names it. */
function withDatabase(machine: DebianMachine): DebianMachine {
  const inChroot = (...args: string[]): number =>
    Number(
      execFileSync('chroot', [SYNAPSE_ROOT, ...args], { encoding: 'utf8' })
        .trim()
        .split(':')[2] ?? 'NaN',
    );
  const sslCert = inChroot('getent', 'group', 'ssl-cert');
  const dir = tempDir('regservice-db-tls-');
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  selfSignedCertificate(DATABASE_NAME, files);
  for (const [from, to, group, mode] of [
    [files.cert, `/etc/ssl/certs/${DATABASE_NAME}.pem`, 0, 0o644],
    [files.key, `/etc/ssl/private/${DATABASE_NAME}.key`, sslCert, 0o640],
  ] as const) {
    cpSync(from, machine.hostPath(to));
    chownSync(machine.hostPath(to), 0, group);
    chmodSync(machine.hostPath(to), mode);
  }
  rmSync(dir, { recursive: true, force: true });
  return machine;
}

/**
 * The README's "Two gates" on two machines joined by a network: 10.0.0.1, the deployed Debian machine with the one
 * gate (a node registered on it first), and 10.0.0.2, a machine with matrix-regservice installed. Each then registers
 * nodes and reports what its gate served.
 */
async function runTwoGates(first: DebianMachine, second: DebianMachine): Promise<Array<{ code: number; output: string }>> {
  const shared = '/run/readme-transfer';
  const waitFor = (file: string): string =>
    `for i in $(seq 1200); do [ -e ${shared}/${file} ] && break; sleep 0.25; done; [ -e ${shared}/${file} ] || echo "::no ${file}"`;
  const register = (label: string): string =>
    `openssl rand -hex 32 >/root/${label}.key && echo "::${label} $(matrix-regservice register --key-file /root/${label}.key --homeserver https://transport01.example.org 2>&1)"`;
  // The nodes this machine's gate registered since it moved to the database.
  const served =
    "sed -n '/store=\"postgresql/,$ s/.* localpart=\\(0x[0-9a-f]*\\) .*outcome=registered.*/::served \\1/p' /var/log/unit-matrix-regservice.log";
  const firstScript = scenarioScript(scenarioBlocks('gates'), {
    before: [
      `export README_DB_PASSWORD=${randomBytes(12).toString('hex')}`,
      'systemctl start postgresql && systemctl start matrix-synapse && nginx && systemctl start matrix-regservice',
      register('before-move'),
    ].join('\n'),
    edits: {
      'synapse-listener': `sed -i "/^  - port: 8008/,/^    type: http/ s/^      - '127.0.0.1'$/      - '127.0.0.1'\\n      - '10.0.0.1'/" /etc/matrix-synapse/homeserver.yaml`,
    },
    after: [
      `touch ${shared}/first-blocks-ended`,
      waitFor('second-ready'),
      // Three, and one with the first gate stopped: Synapse lets one address log in five times in a row.
      ...[1, 2, 3].map(() => register('node')),
      'systemctl stop matrix-regservice',
      register('alone'),
      served,
      'echo "::users"; (cd /etc/matrix-regservice && sudo -u matrix-regservice ./run.sh users list 2>&1)',
      'echo "::unit log"; tail -n 20 /var/log/unit-matrix-regservice.log',
      `touch ${shared}/first-done`,
      // Both gates down: Synapse's way to them through nginx answers as the service would.
      waitFor('second-stopped'),
      `node -e "fetch('http://127.0.0.1:8019/regapp/1/_matrix/app/v1/ping', { method: 'POST', body: '{}' }).then(async (r) => console.log('::loopback', r.status, r.headers.get('retry-after'), await r.text()))"`,
      'systemctl stop matrix-synapse; nginx -s quit; systemctl stop postgresql',
    ].join('\n'),
  });
  const secondScript = scenarioScript(scenarioBlocks('second'), {
    before: [waitFor('first-blocks-ended'), 'take_transfers 10.0.0.2'].join('\n'),
    after: [
      `touch ${shared}/second-ready`,
      waitFor('first-done'),
      served,
      'echo "::unit log"; tail -n 20 /var/log/unit-matrix-regservice.log',
      'systemctl stop matrix-regservice',
      `touch ${shared}/second-stopped`,
    ].join('\n'),
  });
  return runJoined(
    [
      { machine: first, script: firstScript, address: '10.0.0.1/24' },
      { machine: second, script: secondScript, address: '10.0.0.2/24' },
    ],
    150_000,
  );
}

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
