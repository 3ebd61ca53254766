import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';

/** The direct children of a process (the service's workers, for its primary). */
export function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when there is none
  }
}

/** Sends `name` to `target` (a pid, or a process group as -pgid), which may be gone already. */
export function signalIfAlive(target: number, name: NodeJS.Signals): void {
  try {
    process.kill(target, name);
  } catch {
    // already gone
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process is stopped (SIGSTOP took effect: /proc/PID/stat says T); false once it is gone. */
export function stopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T';
  } catch {
    return false;
  }
}

/**
 * Which of `needles` a process's memory holds, read through /proc/PID/maps and /proc/PID/mem (root only): every
 * readable private or anonymous mapping, as ASCII and as UTF-16 (V8 keeps strings either way).
 */
export function memoryHolds(pid: number, needles: readonly string[]): string[] {
  const forms = needles.map((needle) => ({ needle, ascii: Buffer.from(needle, 'latin1'), utf16: Buffer.from(needle, 'utf16le') }));
  const found = new Set<string>();
  const mem = openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const match = /^([0-9a-f]+)-([0-9a-f]+) (r)[-w][-x]p \S+ \S+ \S+\s*(.*)$/.exec(line);
      if (match === null || /\[(vvar|vsyscall|vdso)\]/.test(match[4] ?? '')) continue;
      const start = Number.parseInt(match[1] as string, 16);
      const length = Number.parseInt(match[2] as string, 16) - start;
      for (let offset = 0; offset < length; offset += 64 * 1024 * 1024) {
        const chunk = Buffer.alloc(Math.min(64 * 1024 * 1024, length - offset));
        try {
          readSync(mem, chunk, 0, chunk.length, start + offset);
        } catch {
          continue; // a guard page or a mapping gone meanwhile
        }
        for (const { needle, ascii, utf16 } of forms) if (chunk.includes(ascii) || chunk.includes(utf16)) found.add(needle);
      }
    }
  } finally {
    closeSync(mem);
  }
  return [...found];
}

/**
 * Which of `pids` holds the service's end of the TCP connection whose client end has local port `clientPort` (both
 * ends in this network namespace): which process accepted it, the primary or a worker.
 */
export function holderOfConnection(pids: readonly number[], clientPort: number): number | undefined {
  return holdersOfConnections(pids, [clientPort]).get(clientPort);
}

/** holderOfConnection for many connections at once, /proc read once: each client port's holder among `pids`. */
export function holdersOfConnections(pids: readonly number[], clientPorts: readonly number[]): Map<number, number> {
  const wanted = new Set(clientPorts);
  /** The service end's socket inode, to the client port it is connected to. */
  const portOfInode = new Map<string, number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const remotePort = Number.parseInt(fields[2]?.split(':')[1] ?? '', 16);
      if (wanted.has(remotePort) && fields[9] !== undefined && fields[9] !== '0') portOfInode.set(fields[9], remotePort);
    }
  }
  const holders = new Map<number, number>();
  for (const pid of pids) {
    let descriptors: string[];
    try {
      descriptors = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited meanwhile
    }
    for (const fd of descriptors) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        const port = inode === undefined ? undefined : portOfInode.get(inode);
        if (port !== undefined && !holders.has(port)) holders.set(port, pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  return holders;
}
