/**
 * "Port already in use" names the process that holds the port, so an operator can tell a leftover
 * server of a previous run from another program. Linux: the listening socket's inode from
 * /proc/net/tcp{,6}, then the process whose /proc/<pid>/fd links to it (all processes when root,
 * our own otherwise); `ss -ltnp` as a fallback. Elsewhere only the port is named.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';

export interface PortHolder {
  pid: number;
  command: string;
}

export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    readonly holder: PortHolder | null,
    what: string,
    hint = '',
  ) {
    const who = holder ? `process ${holder.pid} (${holder.command})` : 'another process (not visible to this user; try `ss -ltnp` as root)';
    super(`${what}: port ${port} on 127.0.0.1 is already in use by ${who}${hint ? `. ${hint}` : ''}`);
    this.name = 'PortInUseError';
  }
}

/** Resolves when nothing listens on host:port (we could bind it), else rejects with PortInUseError. */
export function assertPortFree(port: number, host: string, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new PortInUseError(port, findPortHolder(port), what));
      else resolve(); // e.g. EACCES: the real bind reports it
    });
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** The process listening on a TCP port, or null when it cannot be found out. */
export function findPortHolder(port: number): PortHolder | null {
  return fromProc(port) ?? fromSs(port);
}

function fromProc(port: number): PortHolder | null {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      const local = f[1];
      if (!local || f[3] !== '0A') continue; // 0A = LISTEN
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port && f[9] && f[9] !== '0') inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return null;
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return null;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // another user's process (not root) or gone
    }
    for (const fd of fds) {
      let target = '';
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) return { pid: Number(pid), command: commandOf(Number(pid)) };
    }
  }
  return null;
}

function fromSs(port: number): PortHolder | null {
  try {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const m = /pid=(\d+)/.exec(out);
    if (!m) return null;
    const pid = Number(m[1]);
    const name = /users:\(\("([^"]+)"/.exec(out)?.[1];
    return { pid, command: commandOf(pid, name) };
  } catch {
    return null;
  }
}

function commandOf(pid: number, fallback = '?'): string {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ').trim();
    return cmd.length > 300 ? `${cmd.slice(0, 300)}...` : cmd || fallback;
  } catch {
    return fallback;
  }
}
