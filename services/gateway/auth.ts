import { type KeyObject, createHash, createSecretKey, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import jwt from 'jsonwebtoken';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy } from 'passport-jwt';
import type { Pool } from 'pg';
import type { RateLimit, Role } from '../../contracts/events';
import { ForbiddenError, UnauthorizedError } from '../core/errors';

export interface Principal {
  kind: 'user' | 'token';
  tenantId: string;
  role: Role;
  /** `user:<id>` or `token:<id>`: recorded as the actor of every event this request causes. */
  actor: string;
  userId: string | null;
  tokenId: string | null;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface User {
      principal?: Principal;
    }
    interface Request {
      principal?: Principal;
      tenantLimit?: RateLimit;
      correlationId?: string;
    }
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const JWT_ISSUER = 'tenant-rag';
export const JWT_AUDIENCE = 'tenant-rag-api';
export const API_TOKEN_PREFIX = 'trk_';

export interface JwtClaims {
  sub: string;
  tid: string;
  role: Role;
}

/**
 * The HMAC key as a KeyObject: given a string, jsonwebtoken first tries (and fails) to parse it
 * as a public key on every verify, which was the top cost of an authenticated request.
 */
const keyCache = new Map<string, KeyObject>();
export function hmacKey(secret: string): KeyObject {
  let k = keyCache.get(secret);
  if (!k) {
    k = createSecretKey(Buffer.from(secret, 'utf8'));
    keyCache.set(secret, k);
  }
  return k;
}

export function signAccessToken(secret: string, claims: JwtClaims, ttlSeconds: number): string {
  return jwt.sign({ tid: claims.tid, role: claims.role }, hmacKey(secret), {
    algorithm: 'HS256',
    subject: claims.sub,
    issuer: JWT_ISSUER,
    audience: JWT_AUDIENCE,
    expiresIn: ttlSeconds,
  });
}

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function constantTimeEqual(a: string, b: string): boolean {
  // Compare digests so neither length nor content leaks through timing.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

interface TenantRow {
  status: string;
  rateLimit: RateLimit;
}

/**
 * Resolves credentials to a Principal bound to exactly one tenant, before any handler runs:
 * a JWT (passport-jwt: HS256 only, issuer and audience checked) or an API token (SHA-256 lookup).
 * The tenant's state is re-read at most every second, so a suspension bites within a second.
 */
export function createAuthenticator(pool: Pool, secret: string) {
  const tenantCache = new Map<string, { row: TenantRow | null; at: number }>();
  const userCache = new Map<string, { role: Role | null; at: number }>();
  const TTL_MS = 1000;

  passport.use(
    'jwt',
    new JwtStrategy(
      {
        jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
        secretOrKey: hmacKey(secret) as unknown as string,
        algorithms: ['HS256'],
        issuer: JWT_ISSUER,
        audience: JWT_AUDIENCE,
        ignoreExpiration: false,
      },
      (payload: { sub?: string; tid?: string; role?: Role }, done: (err: unknown, user?: Express.User | false) => void) => {
        // Claims are used only once their shape is right (ids are UUIDs). The role claim is
        // informational: the user's current role is always read from the platform read model.
        if (typeof payload.sub !== 'string' || typeof payload.tid !== 'string' || !UUID_RE.test(payload.sub) || !UUID_RE.test(payload.tid)) {
          return done(null, false);
        }
        done(null, {
          principal: { kind: 'user', tenantId: payload.tid, role: 'viewer', actor: `user:${payload.sub}`, userId: payload.sub, tokenId: null },
        });
      },
    ),
  );

  async function tenant(tenantId: string): Promise<TenantRow | null> {
    const hit = tenantCache.get(tenantId);
    if (hit && Date.now() - hit.at < TTL_MS) return hit.row;
    const r = await pool.query<{ status: string; rate_limit: RateLimit }>('SELECT status, rate_limit FROM platform.tenants WHERE tenant_id = $1', [tenantId]);
    const row = r.rows[0] ? { status: r.rows[0].status, rateLimit: r.rows[0].rate_limit } : null;
    tenantCache.set(tenantId, { row, at: Date.now() });
    return row;
  }

  /** Current role of a user: a removed user or a changed role takes effect within a second. */
  async function userRole(tenantId: string, userId: string): Promise<Role | null> {
    const key = `${tenantId}/${userId}`;
    const hit = userCache.get(key);
    if (hit && Date.now() - hit.at < TTL_MS) return hit.role;
    const r = await pool.query<{ role: Role }>('SELECT role FROM platform.users WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
    const role = r.rows[0]?.role ?? null;
    userCache.set(key, { role, at: Date.now() });
    return role;
  }

  async function fromApiToken(token: string): Promise<Principal | null> {
    const r = await pool.query<{ token_id: string; tenant_id: string; role: Role; revoked_at: Date | null }>(
      'SELECT token_id, tenant_id, role, revoked_at FROM platform.api_tokens WHERE hash = $1',
      [sha256(token)],
    );
    const row = r.rows[0];
    if (!row || row.revoked_at) return null;
    return { kind: 'token', tenantId: row.tenant_id, role: row.role, actor: `token:${row.token_id}`, userId: null, tokenId: row.token_id };
  }

  const authenticate: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const header = req.headers.authorization ?? '';
    const finish = async (principal: Principal | null) => {
      if (!principal) throw new UnauthorizedError();
      const t = await tenant(principal.tenantId);
      if (!t || t.status === 'deleted') throw new UnauthorizedError();
      if (t.status === 'suspended') throw new ForbiddenError('This tenant is suspended');
      if (principal.kind === 'user') {
        const role = await userRole(principal.tenantId, principal.userId!);
        if (!role) throw new UnauthorizedError();
        principal.role = role;
      }
      // A tenant named by header must agree with the credentials (it never chooses the tenant).
      const claimed = req.headers['x-tenant-id'];
      if (claimed !== undefined && claimed !== principal.tenantId) throw new ForbiddenError('X-Tenant-Id does not match the credentials');
      req.principal = principal;
      req.tenantLimit = t.rateLimit;
    };
    if (/^Bearer\s+trk_/i.test(header)) {
      const token = header.replace(/^Bearer\s+/i, '').trim();
      fromApiToken(token).then(finish).then(() => next(), next);
      return;
    }
    passport.authenticate('jwt', { session: false }, (err: unknown, user: Express.User | false) => {
      if (err) return next(err);
      finish(user ? user.principal ?? null : null).then(() => next(), next);
    })(req, res, next);
  };

  return {
    authenticate,
    invalidateTenant(tenantId: string) {
      tenantCache.delete(tenantId);
      for (const k of userCache.keys()) if (k.startsWith(`${tenantId}/`)) userCache.delete(k);
    },
  };
}

const RANK: Record<Role, number> = { viewer: 0, member: 1, admin: 2, owner: 3 };

/** Allows the route to principals with at least `min` role. */
export function requireRole(min: Role): RequestHandler {
  return (req, _res, next) => {
    const p = req.principal;
    if (!p) return next(new UnauthorizedError());
    if (RANK[p.role] < RANK[min]) return next(new ForbiddenError(`This requires the ${min} role or higher`));
    next();
  };
}

export function roleAtLeast(role: Role, min: Role): boolean {
  return RANK[role] >= RANK[min];
}

/** Operator credential for the admin API (separate from every tenant's users). */
export function requireOperator(adminToken: string): RequestHandler {
  return (req, _res, next) => {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header);
    if (!m || !constantTimeEqual(m[1]!.trim(), adminToken)) return next(new UnauthorizedError('Operator credentials required'));
    next();
  };
}
