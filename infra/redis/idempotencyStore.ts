import type Redis from 'ioredis';
import { AppError } from '../../services/core/errors';
import type { IdempotencyStore, Reservation, StoredResponse } from '../../services/gateway/idempotency';

/**
 * Idempotency-Key records in Redis, shared by every gateway process. Keys arrive already scoped
 * by the caller (`redisKey(tenant, 'idem', ...)`). One string per key holding JSON:
 * `{state: 'in_progress', requestHash}` while the first request runs, then
 * `{state: 'done', requestHash, status, body, location, contentType}` for the retention period.
 *
 * `begin` is `SET NX EX`: of any number of concurrent requests with one key, on any number of
 * processes, exactly one gets `new`.
 */
type Stored = { state: 'in_progress'; requestHash: string } | ({ state: 'done' } & StoredResponse);

function parse(key: string, raw: string): Stored {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new Error(`idempotency record ${key} is not JSON`);
  }
  const s = v as Partial<Stored> | null;
  if (s && s.state === 'in_progress' && typeof s.requestHash === 'string') return s as Stored;
  if (s && s.state === 'done' && typeof s.requestHash === 'string' && typeof s.status === 'number') return s as Stored;
  throw new Error(`idempotency record ${key} has an unknown shape`);
}

/** A reservation can vanish between a failed SET NX and the GET (expiry, abandon): try again, briefly. */
const BEGIN_ATTEMPTS = 3;

export function createRedisIdempotencyStore(redis: Redis): IdempotencyStore {
  return {
    kind: 'redis',

    async begin(key, requestHash, ttlSeconds): Promise<Reservation> {
      try {
        return await reserve(key, requestHash, ttlSeconds);
      } catch (err) {
        if (err instanceof AppError || redis.status === 'ready') throw err;
        // Without its record a retry could run twice: refuse the keyed request (503, retry) rather
        // than run it unprotected. Requests without an Idempotency-Key do not touch Redis.
        throw new AppError(503, 'Idempotency records unavailable', `the Idempotency-Key cannot be checked right now (${(err as Error).message}); retry shortly`);
      }
    },

    async complete(key, response, ttlSeconds) {
      const value: Stored = { ...response, state: 'done' };
      await redis.set(key, JSON.stringify(value), 'EX', Math.max(1, Math.ceil(ttlSeconds)));
    },

    async abandon(key) {
      await redis.del(key);
    },
  };

  async function reserve(key: string, requestHash: string, ttlSeconds: number): Promise<Reservation> {
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    const reservation = JSON.stringify({ state: 'in_progress', requestHash } satisfies Stored);
    for (let attempt = 1; attempt <= BEGIN_ATTEMPTS; attempt++) {
      if ((await redis.set(key, reservation, 'EX', ttl, 'NX')) === 'OK') return { state: 'new' };
      const raw = await redis.get(key);
      if (raw === null) continue;
      const cur = parse(key, raw);
      if (cur.state === 'in_progress') return { state: 'in_progress' };
      return { state: 'done', requestHash: cur.requestHash, status: cur.status, body: cur.body ?? null, location: cur.location ?? null, contentType: cur.contentType ?? null };
    }
    // The key keeps appearing and disappearing: treat it as busy rather than run twice.
    return { state: 'in_progress' };
  }
}
