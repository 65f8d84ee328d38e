/** Typed errors, mapped once to RFC 7807 problem details by the gateway's error middleware. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(detail: string, readonly errors: { path: string; message: string }[] = []) {
    super(400, 'Invalid request', detail, errors.length ? { errors } : {});
  }
}

export class UnauthorizedError extends AppError {
  constructor(detail = 'Missing or invalid credentials') {
    super(401, 'Unauthorized', detail);
  }
}

export class ForbiddenError extends AppError {
  constructor(detail = 'Your role does not allow this') {
    super(403, 'Forbidden', detail);
  }
}

/** Also used for another tenant's ids: same status and body as a missing id. */
export class NotFoundError extends AppError {
  constructor(what = 'Resource') {
    super(404, 'Not found', `${what} not found`);
  }
}

export class ConflictError extends AppError {
  constructor(detail: string) {
    super(409, 'Conflict', detail);
  }
}

export class PreconditionFailedError extends AppError {
  constructor(detail: string) {
    super(412, 'Precondition failed', detail);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(detail: string) {
    super(413, 'Payload too large', detail);
  }
}

export class UnsupportedMediaTypeError extends AppError {
  constructor(detail: string) {
    super(415, 'Unsupported media type', detail);
  }
}

/** A command that the current state does not allow (e.g. revoke a revoked token). */
export class IllegalStateError extends AppError {
  constructor(detail: string) {
    super(422, 'Unprocessable', detail);
  }
}

export class TooManyRequestsError extends AppError {
  constructor(detail: string, readonly retryAfterSeconds: number) {
    super(429, 'Too many requests', detail);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(detail: string) {
    super(503, 'Service unavailable', detail);
  }
}

/**
 * Whether an error is a backing server being unreachable or restarting (PostgreSQL, Weaviate,
 * Redis, Kafka), not a fault of the request or a bug: the gateway answers those 503 with
 * Retry-After, so clients back off and retry instead of seeing a storm of 500s.
 * Looks at `code` (Node socket errors, PostgreSQL SQLSTATE) and the message, along the cause chain.
 */
const OUTAGE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTCONN', '57P01', '57P02', '57P03', '53300']);
const OUTAGE_MESSAGE =
  /Connection terminated|connection timeout|timeout exceeded when trying to connect|terminating connection due to administrator command|the database system is (starting up|shutting down|in recovery mode)|Client has encountered a connection error|UNAVAILABLE|fetch failed|Connection is closed|ECONNREFUSED|ECONNRESET|no read replica found/i;
export function isDependencyOutage(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof AppError) return false;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (OUTAGE_CODES.has(code) || code.startsWith('08'))) return true;
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string' && OUTAGE_MESSAGE.test(message)) return true;
  }
  return false;
}

export function assertNever(x: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(x)}`);
}
