import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { redisKey } from '../../contracts/naming';
import { AppError, ConflictError, ValidationError } from '../core/errors';

export interface StoredResponse {
  requestHash: string;
  status: number;
  body: unknown;
  location: string | null;
  contentType?: string | null;
}

export type Reservation = { state: 'new' } | { state: 'in_progress' } | ({ state: 'done' } & StoredResponse);

/** Remembers command responses by Idempotency-Key. In memory embedded; Redis in production. */
export interface IdempotencyStore {
  readonly kind: 'memory' | 'redis';
  /** Atomically reserves `key` unless it is already reserved or completed. */
  begin(key: string, requestHash: string, ttlSeconds: number): Promise<Reservation>;
  complete(key: string, response: StoredResponse, ttlSeconds: number): Promise<void>;
  abandon(key: string): Promise<void>;
}

export function createMemoryIdempotencyStore(now: () => number = () => Date.now()): IdempotencyStore {
  const entries = new Map<string, { expires: number; value: { state: 'in_progress'; requestHash: string } | ({ state: 'done' } & StoredResponse) }>();
  const sweep = () => {
    const t = now();
    for (const [k, v] of entries) if (v.expires <= t) entries.delete(k);
  };
  return {
    kind: 'memory',
    async begin(key, requestHash, ttl) {
      if (entries.size > 50_000) sweep();
      const hit = entries.get(key);
      if (hit && hit.expires > now()) return hit.value.state === 'done' ? hit.value : { state: 'in_progress' };
      entries.set(key, { expires: now() + ttl * 1000, value: { state: 'in_progress', requestHash } });
      return { state: 'new' };
    },
    async complete(key, response, ttl) {
      entries.set(key, { expires: now() + ttl * 1000, value: { state: 'done', ...response } });
    },
    async abandon(key) {
      entries.delete(key);
    },
  };
}

const TTL_SECONDS = 24 * 3600;

/**
 * Idempotency-Key on commands: the first request's response is kept for 24 h and replayed for
 * a retry with the same key and body; the same key with another body answers 422; a retry
 * while the first is still running answers 409. Keys are scoped to the tenant and the actor.
 * Multipart uploads are keyed on headers only (their body is streamed, not hashed).
 */
export function idempotency(store: IdempotencyStore): RequestHandler {
  return async (req, res, next) => {
    const raw = req.headers['idempotency-key'];
    if (raw === undefined || !['POST', 'PATCH', 'DELETE'].includes(req.method) || !req.principal) return next();
    try {
      if (typeof raw !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(raw)) throw new ValidationError('Idempotency-Key must be 1-255 visible ASCII characters');
      const p = req.principal;
      const key = redisKey(p.tenantId, 'idem', createHash('sha256').update(`${p.actor}\n${req.method}\n${req.path}\n${raw}`).digest('hex'));
      const requestHash = createHash('sha256').update(JSON.stringify(req.body ?? null)).update(String(req.headers['content-length'] ?? '')).digest('hex');
      const r = await store.begin(key, requestHash, TTL_SECONDS);
      if (r.state === 'in_progress') throw new ConflictError('A request with this Idempotency-Key is still being processed');
      if (r.state === 'done') {
        if (r.requestHash !== requestHash) throw new AppError(422, 'Idempotency key reused', 'This Idempotency-Key was used with a different request');
        res.setHeader('Idempotent-Replayed', 'true');
        if (r.location) res.setHeader('Location', r.location);
        if (r.body === null) res.status(r.status).end();
        else res.status(r.status).type(r.contentType ?? 'application/json').send(JSON.stringify(r.body));
        return;
      }
      // Capture the response to store it once it is sent.
      const json = res.json.bind(res);
      let body: unknown = null;
      res.json = (b: unknown) => {
        body = b;
        return json(b);
      };
      res.on('finish', () => {
        const loc = res.getHeader('Location');
        if (res.statusCode < 500 && res.statusCode !== 409 && res.statusCode !== 429) {
          const ct = res.getHeader('Content-Type');
          store
            .complete(key, { requestHash, status: res.statusCode, body, location: typeof loc === 'string' ? loc : null, contentType: typeof ct === 'string' ? ct : null }, TTL_SECONDS)
            .catch(() => undefined);
        } else {
          store.abandon(key).catch(() => undefined);
        }
      });
      next();
    } catch (err) {
      next(err);
    }
  };
}
