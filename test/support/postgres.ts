/**
 * PostgreSQL for tests.
 *
 * - `DATABASE_URL` (or `TEST_DATABASE_URL`) set: that server is used (CI runs Debian's
 *   postgresql-15 through infra/scripts/up.sh). The role must be allowed to CREATE DATABASE.
 * - Otherwise ONE embedded server per jest worker process, in a fresh directory under
 *   os.tmpdir(), on a free port. Jest gives every test file its own module registry (and global
 *   object), so "one per worker" cannot live in a module variable: the server is recorded in a
 *   small registry file keyed by the worker's PID, and the next test file of the same worker
 *   finds and reuses it. The embedded server's detached watchdog (infra/postgres/watchdog.ts)
 *   stops it and deletes its directory when the worker process is gone, however it ends (normal
 *   exit, jest killing it, a crash): no 'exit' hook of a test file can do that reliably.
 *
 * Suites call freshDatabase() for a database of their own (so suites never see each other's
 * rows) and dropDatabase() in afterAll.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres } from '../../infra/postgres/embedded';
import { freePort } from './freePort';

interface Registry {
  url: string;
  pid: number;
  root: string;
}

const TEST_DB_PREFIX = 'test_';
let server: Promise<{ url: string }> | null = null;

export function getTestPostgres(): Promise<{ url: string }> {
  const external = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (external) return Promise.resolve({ url: external });
  server ??= reuseOrStart().catch((err) => {
    server = null;
    throw err;
  });
  return server;
}

/** Creates an empty database with a unique name on the test server; returns its URL. */
export async function freshDatabase(): Promise<string> {
  const { url } = await getTestPostgres();
  const name = `${TEST_DB_PREFIX}${process.pid}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  await withAdmin(url, (c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(name)}`));
  const target = new URL(url);
  target.pathname = `/${name}`;
  return target.toString();
}

/**
 * Drops a database made by freshDatabase (refuses any other name), disconnecting stragglers.
 * Close your pools first anyway: FORCE terminates their sessions, which pg reports as errors.
 */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  if (!name.startsWith(TEST_DB_PREFIX)) throw new Error(`refusing to drop ${name}: not a test database`);
  const { url } = await getTestPostgres();
  await withAdmin(url, (c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`));
}

async function withAdmin<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function registryPath(): string {
  return join(tmpdir(), `tenant-rag-test-pg-worker-${process.pid}.json`);
}

async function reuseOrStart(): Promise<{ url: string }> {
  const reg = readRegistry();
  if (reg && (await answers(reg.url))) return { url: reg.url };
  return start();
}

function readRegistry(): Registry | null {
  try {
    const reg = JSON.parse(readFileSync(registryPath(), 'utf8')) as Registry;
    return typeof reg.url === 'string' && existsSync(reg.root) ? reg : null;
  } catch {
    return null;
  }
}

async function answers(url: string): Promise<boolean> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function start(): Promise<{ url: string }> {
  const root = await mkdtemp(join(tmpdir(), 'tenant-rag-test-pg-'));
  let lastError: unknown;
  // A free port can be taken by someone else between our probe and postgres' bind: retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const pg = await startEmbeddedPostgres({
        dataDir: join(root, 'data'),
        port: await freePort(),
        // A throwaway cluster: durability buys nothing here and costs seconds per suite. (Commit
        // ordering and locking, which the suites test, are the same without it.)
        durable: false,
        settings: { max_connections: '200' },
        // When the worker is gone however it ends (normal exit, jest killing it, a crash), the
        // watchdog stops the server and deletes its directory and the registry file.
        watchdog: { removeAfter: [root, registryPath()] },
      });
      const reg: Registry = { url: pg.url, pid: pg.pid, root };
      await writeFile(registryPath(), JSON.stringify(reg), { mode: 0o600 });
      return { url: pg.url };
    } catch (err) {
      lastError = err;
      if (!/already in use|could not create any TCP\/IP sockets/i.test(String((err as Error)?.message))) break;
    }
  }
  await rm(root, { recursive: true, force: true });
  throw lastError;
}

