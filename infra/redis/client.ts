import Redis from 'ioredis';

export interface RedisConnectOptions {
  /**
   * Errors of the connection after start-up (server restart, network cut). ioredis emits them on
   * the client and reconnects by itself; without a listener it prints each one to stderr.
   * Default: ignore (commands fail fast meanwhile, and readiness reports it).
   */
  onError?: (err: Error) => void;
  /** Shown in CLIENT LIST. Default `tenant-rag`. */
  connectionName?: string;
}

/** Start-up deadline: a production process should fail loudly rather than wait on a dead Redis. */
const CONNECT_TIMEOUT_MS = 5_000;

/** `redis://user:secret@host` -> `redis://user:***@host`, for error messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable redis url>';
  }
}

/**
 * Opens one Redis connection and resolves once it is ready (authenticated, db selected, not
 * loading), or rejects within about 5 s with the cause, leaving nothing running behind.
 *
 * After start-up, commands are not queued while the connection is down: a rate-limit check or an
 * idempotency lookup fails at once (the caller answers 503) instead of holding requests for an
 * unbounded reconnect. ioredis keeps reconnecting with backoff in the background.
 */
export async function connectRedis(url: string, opts: RedisConnectOptions = {}): Promise<Redis> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A command whose reply was lost in a disconnect may or may not have been applied; resending
    // it could take a second token or find our own SET NX reservation. Fail it instead, and let
    // the caller decide (both callers answer 503).
    autoResendUnfulfilledCommands: false,
    // Bounds how long any command can wait across reconnect attempts.
    maxRetriesPerRequest: 1,
    connectionName: opts.connectionName ?? 'tenant-rag',
    // Reconnect with capped backoff (50 ms, 100 ms, ... 2 s) for as long as the process lives.
    retryStrategy: (times) => Math.min(times * 50, 2_000),
  });

  let lastError: Error | undefined;
  const startupListener = (err: Error) => {
    lastError = err;
  };
  redis.on('error', startupListener);

  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    // Stop the background reconnect loop, or a failed start would keep the process alive.
    redis.disconnect();
    const cause = lastError ?? (err as Error);
    throw new Error(`Redis at ${redact(url)} is not reachable: ${cause.message}`, { cause });
  } finally {
    clearTimeout(timer);
    redis.off('error', startupListener);
  }

  redis.on('error', opts.onError ?? (() => undefined));
  // Read per command by ioredis, so switching it now affects every later command.
  redis.options.enableOfflineQueue = false;
  return redis;
}
