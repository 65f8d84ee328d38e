/**
 * The one way this codebase opens PostgreSQL connections, so every pool has the same limits.
 *
 * Type parsing is left at pg's defaults on purpose: int8/bigint arrives as a string (no silent
 * precision loss above 2^53; callers convert with BigInt), timestamptz as Date, json/jsonb parsed.
 */
import pg from 'pg';

export interface PoolOptions {
  /** Maximum connections. Default 10. */
  max?: number;
  /** Shown in pg_stat_activity. Default `tenant-rag`. */
  applicationName?: string;
  /**
   * Errors of idle pooled connections (server restart, network cut). pg emits them on the pool and
   * an unhandled 'error' event would crash the process; the broken connection is dropped by the
   * pool either way and the next query opens a new one. Default: ignore.
   */
  onError?: (err: Error) => void;
}

export function createPool(url: string, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'tenant-rag',
    // Fail a request instead of queueing forever when the server is unreachable or the pool is
    // exhausted by stuck work.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    // Detect half-open TCP connections (e.g. after a NAT or failover drops them silently).
    keepAlive: true,
    // Idle connections alone do not keep the process alive: scripts and tests can exit without
    // remembering pool.end(); servers are kept alive by their listeners anyway.
    allowExitOnIdle: true,
  });
  const onError = opts.onError ?? (() => undefined);
  pool.on('error', onError);
  // pg-pool listens for errors on idle clients only. A checked-out client between two queries
  // (inside a transaction, a relay's lock session) that loses its server (restart,
  // pg_terminate_backend) emits 'error' with no listener, and that crashes the process. The
  // client is marked unqueryable either way: its next query fails and the pool discards it on
  // release, so the error only needs a listener.
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/**
 * Runs `fn` in one transaction on one pooled connection: COMMIT when it resolves, ROLLBACK when
 * it throws (the original error is rethrown). A connection whose ROLLBACK fails is destroyed
 * rather than returned to the pool in an unknown state.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  opts: { isolation?: IsolationLevel; readOnly?: boolean; /** Sent with BEGIN, one round trip (e.g. SET LOCAL ...). */ then?: string } = {},
): Promise<T> {
  const mode = [opts.isolation ? `ISOLATION LEVEL ${opts.isolation.toUpperCase()}` : '', opts.readOnly ? 'READ ONLY' : '']
    .filter(Boolean)
    .join(' ');
  const client = await pool.connect();
  try {
    await client.query(`${mode ? `BEGIN ${mode}` : 'BEGIN'}${opts.then ? `; ${opts.then}` : ''}`);
  } catch (err) {
    client.release(toError(err));
    throw err;
  }
  let result: T;
  try {
    result = await fn(client);
  } catch (err) {
    try {
      await client.query('ROLLBACK');
      client.release();
    } catch (rollbackErr) {
      client.release(toError(rollbackErr));
    }
    throw err;
  }
  try {
    await client.query('COMMIT');
    client.release();
  } catch (err) {
    // A failed COMMIT with an SQL error (deferred constraint, serialization failure) has rolled
    // the transaction back and the connection is fine; a connection error leaves it unusable.
    client.release(isConnectionError(err) ? toError(err) : undefined);
    throw err;
  }
  return result;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Errors after which a connection must not be reused (no SQLSTATE: socket-level failures). */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return true;
  // Class 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03';
}
