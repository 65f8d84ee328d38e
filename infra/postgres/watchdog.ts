/**
 * A PostgreSQL server started by a process must not outlive it. pg_ctl daemonises the server (its
 * own session, so a terminal's Ctrl-C never reaches it), which is what graceful shutdown wants,
 * but after a `kill -9` (or an OOM kill, or a supervisor's SIGKILL) nothing would stop it: it keeps
 * its port, and the next start on another data directory fails.
 *
 * The watchdog is a tiny detached shell (its own process group: a signal to the product's group
 * does not reach it). It polls the owner PID every 0.5 s; once the owner is gone it asks the
 * postmaster for a fast shutdown (SIGINT, what `pg_ctl stop -m fast` sends), escalates to an
 * immediate shutdown (SIGQUIT) if the server is still up after 30 s, then removes the paths it was
 * given (throwaway test clusters). A signal needs no `runuser`: root may signal the `postgres`
 * account's processes, and a non-root owner runs the server as itself.
 *
 * It signals only while `<dataDir>/postmaster.pid` still names the postmaster it was started for,
 * so a server stopped normally (pid file removed) and a PID reused since are left alone. A normal
 * stop also ends the watchdog (stop()).
 */
import { spawn } from 'node:child_process';

export interface PostgresWatchdogOptions {
  /** The process whose death stops the server (default: this process). */
  ownerPid?: number;
  /** PID of the postmaster (first line of postmaster.pid). */
  postmasterPid: number;
  /** The cluster's data directory. */
  dataDir: string;
  /** Removed (rm -rf) once the server is down, after the owner died (throwaway clusters only). */
  removeAfter?: string[];
}

export interface PostgresWatchdog {
  pid: number;
  /** Ends the watchdog (the server was stopped normally). */
  stop(): void;
}

const SCRIPT = `
while kill -0 "$OWNER_PID" 2>/dev/null; do sleep 0.5; done
ours() { [ "$(head -n 1 "$DATA_DIR/postmaster.pid" 2>/dev/null)" = "$PG_PID" ]; }
if ours && kill -0 "$PG_PID" 2>/dev/null; then
  kill -INT "$PG_PID" 2>/dev/null
  i=0; while kill -0 "$PG_PID" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  if ours && kill -0 "$PG_PID" 2>/dev/null; then kill -QUIT "$PG_PID" 2>/dev/null; sleep 2; fi
fi
if [ -n "$REMOVE_AFTER" ]; then
  i=0; while kill -0 "$PG_PID" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  printf '%s\\n' "$REMOVE_AFTER" | while IFS= read -r p; do [ -n "$p" ] && rm -rf -- "$p"; done
fi
`;

export function startPostgresWatchdog(opts: PostgresWatchdogOptions): PostgresWatchdog {
  if ((opts.removeAfter ?? []).some((p) => p.includes('\n') || !p.startsWith('/'))) throw new Error('watchdog paths must be absolute, one line each');
  const child = spawn('/bin/sh', ['-c', SCRIPT], {
    detached: true,
    stdio: 'ignore',
    cwd: '/',
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      OWNER_PID: String(opts.ownerPid ?? process.pid),
      PG_PID: String(opts.postmasterPid),
      DATA_DIR: opts.dataDir,
      REMOVE_AFTER: (opts.removeAfter ?? []).join('\n'),
    },
  });
  child.on('error', () => undefined); // no /bin/sh: nothing watches, the next start still handles a leftover
  child.unref();
  const pid = child.pid ?? 0;
  return {
    pid,
    stop() {
      if (pid > 0 && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* gone already */
        }
      }
    },
  };
}
