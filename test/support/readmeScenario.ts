import { readFileSync } from 'node:fs';
import { packageVersion } from './debianMachine.js';
import type { ReadmeBlock } from './readmeBlocks.js';

const PRELUDE = new URL('./readmePrelude.sh', import.meta.url).pathname;

/**
 * The substitution table's text part (README, "Tests"): placeholders a block holds that no machine can run as
 * written. The shell part (sudo, systemctl) is readmePrelude.sh.
 */
export function substitute(text: string): string {
  return (
    text
      .replaceAll('git clone … matrix-regservice', 'cp -r /root/checkout matrix-regservice')
      .replaceAll('<version>', packageVersion())
      // The password createuser asks for twice, at a terminal the test has not: on its standard input.
      .replaceAll('--pwprompt', () => `--pwprompt <<<"$README_DB_PASSWORD"$'\\n'"$README_DB_PASSWORD"`)
  );
}

export interface ScenarioOptions {
  /** Shell run before a block whose marker says `after: NAME`: the edit the README asks for in words. */
  readonly edits?: Readonly<Record<string, string>>;
  /** Shell run before the blocks (the machine's own state: daemons its packages start). */
  readonly before?: string;
  /** Shell run after the blocks, whose output the test reads. */
  readonly after?: string;
  /** Where the script keeps the operator's current directory between blocks (default /root, the machine's). */
  readonly stateDir?: string;
  /** A substitution table of the scenario's own (shell functions), sourced after readmePrelude.sh. */
  readonly prelude?: string;
}

/**
 * One bash script running the blocks in README order, each in a subshell with `set -e` that starts in the directory
 * the block before ended in (an operator's shell); it stops at the first block that fails. Each block's start and exit
 * status are marked in the output (`::block N …`); a background block's output goes to /var/log/readme-block-N.log,
 * and `stop_background SIGNAL` (readmePrelude.sh) ends it and what it started, as Ctrl-C would.
 */
export function scenarioScript(blocks: readonly ReadmeBlock[], options: ScenarioOptions = {}): string {
  const state = options.stateDir ?? '/root';
  const cwdFile = `${state}/.readme-cwd`;
  const parts = [
    'set -u',
    readFileSync(PRELUDE, 'utf8'),
    options.prelude === undefined ? '' : readFileSync(options.prelude, 'utf8'),
    `[ -f ${cwdFile} ] || echo ${state} >${cwdFile}`,
    options.before ?? '',
  ];
  blocks.forEach((block, index) => {
    const marker = block.marker !== undefined && 'scenario' in block.marker ? block.marker : undefined;
    const after = marker?.after;
    if (after !== undefined) {
      const shell = options.edits?.[after];
      if (shell === undefined) throw new Error(`README.md:${block.line}: no edit named ${after} in the test`);
      parts.push(shell);
    }
    const body = `cd "$(cat ${cwdFile})"\nset -e\n${substitute(block.text)}\npwd >${cwdFile}`;
    parts.push(`echo "::block ${index} start README.md:${block.line}"`);
    if (marker?.background === true) {
      parts.push(
        `( ${body}\n) >/var/log/readme-block-${index}.log 2>&1 &\necho $! >/run/readme-background.pid\necho "::block ${index} exit 0 (background)"`,
      );
    } else {
      parts.push(
        `( ${body}\n)\nstatus=$?\necho "::block ${index} exit $status"\nif [ "$status" != 0 ]; then ${options.after ?? ':'}; exit "$status"; fi`,
      );
    }
  });
  parts.push('echo "::blocks done"', options.after ?? '');
  return `${parts.join('\n')}\n`;
}

/** The exit status of each block, from the script's output. */
export function blockStatuses(output: string): Map<number, number> {
  const statuses = new Map<number, number>();
  for (const match of output.matchAll(/^::block (\d+) exit (\d+)/gm)) statuses.set(Number(match[1]), Number(match[2]));
  return statuses;
}
