import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** What every figure here is measured for. */
export const SERVER = 'photon.test';

/** Every request here comes from one client (loopback): the request limits and account ceilings would measure themselves. */
export const NO_CEILINGS = ['ipv4', 'ipv4-24', 'ipv6-64', 'ipv6-56', 'ipv6-48'].flatMap((ceiling) => [
  `--accounts-per-hour-${ceiling}`,
  '0',
]);
export const NO_LIMITS = ['--rate-limit-client', '0', '--rate-limit-node', '0', ...NO_CEILINGS];

/** The report's lines, also printed as they come. */
export const lines: string[] = [];
export const note = (text: string): void => {
  lines.push(text);
  process.stdout.write(`${text}\n`);
};

export const fmt = (n: number): string => Math.round(n).toLocaleString('en');

export function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** A daemon the bench started: the service (its primary's pid) or the Go original. */
export interface Daemon {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export function childrenOf(pid: number): number[] {
  return spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
}

/** utime+stime of one process (all its threads), in seconds; 0 once it has exited. */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /, '')
      .split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return 0;
  }
}

/** utime+stime of a process and its children (the service's workers), in seconds. */
export function treeCpuSeconds(pid: number): number {
  return [pid, ...childrenOf(pid)].reduce((sum, each) => sum + cpuSeconds(each), 0);
}

/**
 * Context switches of one process, every thread counted (voluntary and not): how often its threads went to sleep and
 * were woken again, what each costs most when the work comes one piece at a time. 0 once it has exited.
 */
function contextSwitches(pid: number): number {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let total = 0;
  for (const task of tasks) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
      for (const match of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) total += Number(match[1]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return total;
}

export interface TreeUsage {
  /** utime+stime of the process and its children, seconds. */
  readonly cpuSeconds: number;
  readonly switches: number;
}

/** CPU and context switches of a process and its children (the service's workers), its children listed once. */
export function treeUsage(pid: number): TreeUsage {
  const tree = [pid, ...childrenOf(pid)];
  return {
    cpuSeconds: tree.reduce((sum, each) => sum + cpuSeconds(each), 0),
    switches: tree.reduce((sum, each) => sum + contextSwitches(each), 0),
  };
}

/** Peak RSS in MB of the process and of its largest child. */
export function peakRss(pid: number): { main: number; worker: number | undefined } {
  const hwm = (each: number): number =>
    Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${each}/status`, 'utf8'))?.[1] ?? NaN) / 1024);
  const children = childrenOf(pid);
  return { main: hwm(pid), worker: children.length === 0 ? undefined : Math.max(...children.map(hwm)) };
}

/**
 * The memory of a process tree as if nothing else ran on the machine, MB: each process's private pages, plus its
 * shared pages divided among the tree's processes that map the same file (or anonymous region) alone. The kernel's
 * PSS would also divide the Node binary's pages with the bench's own Node processes, and understate the service.
 */
export function treeMemoryAlone(pid: number): number {
  const tree = [pid, ...childrenOf(pid)];
  const mappings = tree.map((each) => {
    const byName = new Map<string, { private: number; shared: number }>();
    let name = '';
    for (const line of readFileSync(`/proc/${each}/smaps`, 'utf8').split('\n')) {
      const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (head !== null) {
        name = head[1] === '' ? `anonymous:${each}` : (head[1] as string);
        continue;
      }
      const field = /^(Private_Clean|Private_Dirty|Shared_Clean|Shared_Dirty):\s+(\d+) kB/.exec(line);
      if (field === null) continue;
      const entry = byName.get(name) ?? { private: 0, shared: 0 };
      if (field[1]?.startsWith('Private')) entry.private += Number(field[2]);
      else entry.shared += Number(field[2]);
      byName.set(name, entry);
    }
    return byName;
  });
  let kb = 0;
  for (const byName of mappings) {
    for (const [name, { private: own, shared }] of byName) {
      const sharers = mappings.filter((other) => other.has(name)).length;
      kb += own + shared / sharers;
    }
  }
  return Math.round(kb / 1024);
}
