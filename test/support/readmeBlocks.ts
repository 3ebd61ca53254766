import { readFileSync } from 'node:fs';

/**
 * The README's shell blocks, as the executable-README tests run them. Every ```sh block of a section these tests cover
 * is preceded by a marker line: `<!-- README test: SCENARIO -->` (run in that scenario, in README order),
 * `<!-- README test: SCENARIO, background -->` (run in the background: it starts a process that keeps running),
 * `<!-- README test: SCENARIO, after: EDIT -->` (the test first makes an edit the README asks for in words), or
 * `<!-- README test: not run: REASON -->`.
 */
export const README_PATH = new URL('../../README.md', import.meta.url).pathname;

export interface ReadmeBlock {
  /** The `##` section the block is in. */
  readonly section: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly text: string;
  readonly marker:
    | { readonly scenario: string; readonly background: boolean; readonly after: string | undefined }
    | { readonly notRun: string }
    | undefined;
}

const MARKER = /^\s*<!-- README test: (.+?) -->\s*$/;

export function readmeShellBlocks(markdown: string = readFileSync(README_PATH, 'utf8')): ReadmeBlock[] {
  const lines = markdown.split('\n');
  const blocks: ReadmeBlock[] = [];
  let section = '';
  for (let index = 0; index < lines.length; index += 1) {
    const line = lines[index] ?? '';
    if (/^## /.test(line)) section = line.slice(3).trim();
    const fence = /^(\s*)```(\S*)\s*$/.exec(line);
    if (fence === null) continue;
    const indent = fence[1] ?? '';
    const end = lines.findIndex((candidate, at) => at > index && candidate.trim() === '```');
    if (end === -1) throw new Error(`README.md:${index + 1}: a code block that does not end`);
    if (fence[2] === 'sh') {
      const text = lines
        .slice(index + 1, end)
        .map((body) => (body.startsWith(indent) ? body.slice(indent.length) : body))
        .join('\n');
      const previous =
        lines
          .slice(0, index)
          .reverse()
          .find((candidate) => candidate.trim() !== '') ?? '';
      const found = MARKER.exec(previous)?.[1];
      let marker: ReadmeBlock['marker'];
      if (found !== undefined) {
        const notRun = /^not run: (.+)$/.exec(found);
        const [scenario = '', ...flags] = found.split(',').map((part) => part.trim());
        const after = flags.map((flag) => /^after: (\S+)$/.exec(flag)?.[1]).find((name) => name !== undefined);
        marker = notRun !== null ? { notRun: notRun[1] ?? '' } : { scenario, background: flags.includes('background'), after };
      }
      blocks.push({ section, line: index + 1, text, marker });
    }
    index = end;
  }
  return blocks;
}

/** The blocks of one scenario, in README order. */
export function scenarioBlocks(scenario: string, blocks: readonly ReadmeBlock[] = readmeShellBlocks()): ReadmeBlock[] {
  return blocks.filter((block) => block.marker !== undefined && 'scenario' in block.marker && block.marker.scenario === scenario);
}
