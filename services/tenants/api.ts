import { randomBytes, randomUUID } from 'node:crypto';
import { hash as argonHash, verify as argonVerify } from '@node-rs/argon2';
import { Router } from 'express';
import { v5 as uuidv5 } from 'uuid';
import { z } from 'zod';
import { ROLES, type Role } from '../../contracts/events';
import { redisKey, streamId } from '../../contracts/naming';
import { handle, record } from '../core/commandHandler';
import { ForbiddenError, NotFoundError, TooManyRequestsError, UnauthorizedError } from '../core/errors';
import { API_TOKEN_PREFIX, requireOperator, requireRole, roleAtLeast, sha256, signAccessToken } from '../gateway/auth';
import { type AppDeps, commandContext, principalOf, waitForProjections } from '../gateway/context';
import { idParam, parseBody } from '../gateway/validation';
import { decide, type TenantCommand } from './decide';
import { tenantAggregate } from './tenant';

/** Tenant ids derive from the slug, so a slug can be taken once, by one tenant, ever. */
const TENANT_NAMESPACE = '6f1c2d84-5d0e-4a8e-9a57-0c1a0a7e2b11';
export const tenantIdForSlug = (slug: string) => uuidv5(slug, TENANT_NAMESPACE);

const email = z.string().trim().toLowerCase().email().max(254);
const password = z.string().min(12, 'at least 12 characters').max(256);
const role = z.enum(ROLES as [Role, ...Role[]]);
const limitsSchema = z
  .object({
    quotas: z.object({ max_documents: z.number().int().min(1).max(10_000_000), max_bytes: z.number().int().min(1).max(1e13) }).strict().optional(),
    rate_limit: z.object({ per_second: z.number().min(0.1).max(100_000), burst: z.number().int().min(1).max(1_000_000) }).strict().optional(),
  })
  .strict();

const provisionSchema = z
  .object({
    name: z.string().trim().min(1).max(200),
    slug: z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'lower-case letters, digits and dashes, 1-63 characters'),
    owner: z.object({ email, password }).strict(),
  })
  .merge(limitsSchema);

// Hash of a random password: verifying against it when the user does not exist keeps the
// failure path as slow as the success path (no user-enumeration by timing).
let dummyHash: Promise<string> | null = null;

export function tenantView(row: { tenant_id: string; slug: string; name: string; status: string; quotas: unknown; rate_limit: unknown; created_at: Date }) {
  return { id: row.tenant_id, slug: row.slug, name: row.name, status: row.status, quotas: row.quotas, rate_limit: row.rate_limit, created_at: row.created_at };
}

export function tenantsApi(deps: AppDeps): { operatorAndLogin: Router; tenant: Router } {
  const r = Router();
  const t = Router();
  const operator = requireOperator(deps.config.adminToken);
  const tenantCmd = async (req: import('express').Request, tenantId: string, actor: string, command: TenantCommand) => {
    const result = await handle(deps.store, streamId('tenant', tenantId), tenantAggregate, commandContext(req, deps, tenantId, actor), (s) => decide(command, s));
    await waitForProjections(deps, result.position, ['platform'], tenantId);
    deps.onTenantChanged(tenantId);
    return result;
  };

  // ---- operators ----------------------------------------------------------------------------
  r.post('/v1/tenants', operator, async (req, res) => {
    const body = parseBody(provisionSchema, req.body);
    const tenantId = tenantIdForSlug(body.slug);
    const passwordHash = await argonHash(body.owner.password);
    const quotas = body.quotas ? { maxDocuments: body.quotas.max_documents, maxBytes: body.quotas.max_bytes } : deps.config.defaultQuotas;
    const rateLimit = body.rate_limit ? { perSecond: body.rate_limit.per_second, burst: body.rate_limit.burst } : deps.config.defaultRateLimit;
    const result = await tenantCmd(req, tenantId, 'operator', {
      type: 'ProvisionTenant',
      data: { tenantId, name: body.name, slug: body.slug, quotas, rateLimit, owner: { userId: randomUUID(), email: body.owner.email, passwordHash } },
    });
    const ready = await waitForProjections(deps, result.position, ['platform'], tenantId);
    res.status(ready ? 201 : 202).location(`/v1/tenants/${tenantId}`).json({
      id: tenantId,
      slug: body.slug,
      name: body.name,
      status: ready ? 'active' : 'provisioning',
      quotas,
      rate_limit: rateLimit,
      position: result.position,
    });
  });

  r.get('/v1/tenants', operator, async (_req, res) => {
    const rows = await deps.pool.query(`SELECT * FROM platform.tenants WHERE status <> 'deleted' ORDER BY created_at, tenant_id`);
    res.json({ items: rows.rows.map(tenantView) });
  });

  r.get('/v1/tenants/:id', operator, async (req, res) => {
    const id = idParam(req.params.id, 'Tenant');
    const row = (await deps.pool.query(`SELECT * FROM platform.tenants WHERE tenant_id = $1 AND status <> 'deleted'`, [id])).rows[0];
    if (!row) throw new NotFoundError('Tenant');
    res.json(tenantView(row));
  });

  const lifecycle = (path: string, command: (body: unknown) => TenantCommand) =>
    r.post(`/v1/tenants/:id/${path}`, operator, async (req, res) => {
      const id = idParam(req.params.id, 'Tenant');
      const result = await tenantCmd(req, id, 'operator', command(req.body));
      const row = (await deps.pool.query(`SELECT * FROM platform.tenants WHERE tenant_id = $1`, [id])).rows[0];
      res.status(200).json({ ...(row ? tenantView(row) : { id }), position: result.position });
    });
  lifecycle('suspend', (body) => ({
    type: 'SuspendTenant',
    data: { reason: parseBody(z.object({ reason: z.string().max(500).default('suspended by operator') }), body ?? {}).reason },
  }));
  lifecycle('reactivate', () => ({ type: 'ReactivateTenant' }));

  r.patch('/v1/tenants/:id/limits', operator, async (req, res) => {
    const id = idParam(req.params.id, 'Tenant');
    const body = parseBody(limitsSchema, req.body);
    const row = (await deps.pool.query(`SELECT * FROM platform.tenants WHERE tenant_id = $1 AND status <> 'deleted'`, [id])).rows[0];
    if (!row) throw new NotFoundError('Tenant');
    const quotas = body.quotas ? { maxDocuments: body.quotas.max_documents, maxBytes: body.quotas.max_bytes } : row.quotas;
    const rateLimit = body.rate_limit ? { perSecond: body.rate_limit.per_second, burst: body.rate_limit.burst } : row.rate_limit;
    const result = await tenantCmd(req, id, 'operator', { type: 'ChangeTenantLimits', data: { quotas, rateLimit } });
    res.json({ id, quotas, rate_limit: rateLimit, position: result.position });
  });

  r.delete('/v1/tenants/:id', operator, async (req, res) => {
    const id = idParam(req.params.id, 'Tenant');
    await tenantCmd(req, id, 'operator', { type: 'DeleteTenant' });
    res.status(204).end();
  });

  // ---- login --------------------------------------------------------------------------------
  const loginSchema = z.object({ tenant: z.string().min(1).max(63), email: z.string().max(254), password: z.string().min(1).max(256) }).strict();
  r.post('/v1/auth/login', async (req, res) => {
    const body = parseBody(loginSchema, req.body);
    const emailNorm = body.email.trim().toLowerCase();
    const throttleKey = redisKey(tenantIdForSlug(body.tenant), 'login', sha256(emailNorm));
    // Throttle per tenant+email: 10 attempts, refilling one every 6 s.
    const gate = await deps.limiter.take(throttleKey, { perSecond: 1 / 6, burst: 10 });
    const t = (await deps.pool.query<{ tenant_id: string; status: string }>('SELECT tenant_id, status FROM platform.tenants WHERE slug = $1', [body.tenant])).rows[0];
    const user = t
      ? (await deps.pool.query<{ user_id: string; role: Role; password_hash: string }>('SELECT user_id, role, password_hash FROM platform.users WHERE tenant_id = $1 AND email = $2', [t.tenant_id, emailNorm])).rows[0]
      : undefined;
    dummyHash ??= argonHash(randomBytes(16).toString('hex'));
    const ok = (await argonVerify(user?.password_hash ?? (await dummyHash), body.password).catch(() => false)) && !!user && !!t && t.status === 'active';
    const ctx = t ? commandContext(req, deps, t.tenant_id, user && ok ? `user:${user.user_id}` : 'anonymous') : null;
    if (!gate.allowed) {
      if (ctx && t && t.status !== 'deleted') await record(deps.store, streamId('security', t.tenant_id), ctx, [{ type: 'LoginFailed', data: { emailHash: sha256(emailNorm), reason: 'throttled' } }]);
      throw new TooManyRequestsError('Too many login attempts; try again later', gate.retryAfterSeconds);
    }
    if (!ok || !user || !t) {
      if (ctx && t && t.status !== 'deleted') await record(deps.store, streamId('security', t.tenant_id), ctx, [{ type: 'LoginFailed', data: { emailHash: sha256(emailNorm), reason: 'invalid_credentials' } }]);
      throw new UnauthorizedError('Invalid tenant, email or password');
    }
    await record(deps.store, streamId('security', t.tenant_id), ctx!, [{ type: 'LoginSucceeded', data: { userId: user.user_id } }]);
    const ttl = deps.config.jwtTtlSeconds;
    res.json({ access_token: signAccessToken(deps.config.jwtSecret, { sub: user.user_id, tid: t.tenant_id, role: user.role }, ttl), token_type: 'bearer', expires_in: ttl });
  });

  // ---- who am I -----------------------------------------------------------------------------
  t.get('/v1/me', async (req, res) => {
    const p = principalOf(req);
    const t = (await deps.pool.query('SELECT * FROM platform.tenants WHERE tenant_id = $1', [p.tenantId])).rows[0];
    res.json({ tenant: t ? tenantView(t) : null, actor: p.actor, role: p.role, kind: p.kind });
  });

  // ---- API tokens (admins) -----------------------------------------------------------------
  const tokenSchema = z.object({ name: z.string().trim().min(1).max(100), role: role.optional() }).strict();
  t.post('/v1/api-tokens', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const body = parseBody(tokenSchema, req.body);
    const tokenRole = body.role ?? 'member';
    if (!roleAtLeast(p.role, tokenRole)) throw new ForbiddenError('A token cannot have a higher role than its issuer');
    const tokenId = randomUUID();
    const secret = randomBytes(32).toString('base64url');
    const token = `${API_TOKEN_PREFIX}${secret}`;
    const prefix = token.slice(0, 12);
    const result = await tenantCmd(req, p.tenantId, p.actor, { type: 'IssueApiToken', data: { tokenId, name: body.name, prefix, hash: sha256(token), role: tokenRole } });
    res.status(201).json({ id: tokenId, name: body.name, role: tokenRole, prefix, token, position: result.position });
  });

  t.get('/v1/api-tokens', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const rows = await deps.pool.query(
      'SELECT token_id, name, prefix, role, created_by, created_at, revoked_at FROM platform.api_tokens WHERE tenant_id = $1 ORDER BY created_at DESC, token_id',
      [p.tenantId],
    );
    res.json({
      items: rows.rows.map((t) => ({ id: t.token_id, name: t.name, prefix: t.prefix, role: t.role, created_by: t.created_by, created_at: t.created_at, revoked_at: t.revoked_at })),
    });
  });

  t.delete('/v1/api-tokens/:id', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const id = idParam(req.params.id, 'API token');
    await tenantCmd(req, p.tenantId, p.actor, { type: 'RevokeApiToken', data: { tokenId: id } });
    res.status(204).end();
  });

  // ---- users (admins) -------------------------------------------------------------------------
  const userSchema = z.object({ email, password, role }).strict();
  t.post('/v1/users', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const body = parseBody(userSchema, req.body);
    if (!roleAtLeast(p.role, body.role)) throw new ForbiddenError('You cannot grant a role higher than yours');
    const userId = randomUUID();
    const result = await tenantCmd(req, p.tenantId, p.actor, { type: 'AddUser', data: { userId, email: body.email, role: body.role, passwordHash: await argonHash(body.password) } });
    res.status(201).json({ id: userId, email: body.email, role: body.role, position: result.position });
  });

  t.get('/v1/users', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const rows = await deps.pool.query('SELECT user_id, email, role, created_at FROM platform.users WHERE tenant_id = $1 ORDER BY created_at, user_id', [p.tenantId]);
    res.json({ items: rows.rows.map((u) => ({ id: u.user_id, email: u.email, role: u.role, created_at: u.created_at })) });
  });

  t.patch('/v1/users/:id', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const id = idParam(req.params.id, 'User');
    const body = parseBody(z.object({ role }).strict(), req.body);
    if (!roleAtLeast(p.role, body.role)) throw new ForbiddenError('You cannot grant a role higher than yours');
    const target = (await deps.pool.query<{ role: Role }>('SELECT role FROM platform.users WHERE tenant_id = $1 AND user_id = $2', [p.tenantId, id])).rows[0];
    if (!target) throw new NotFoundError('User');
    if (!roleAtLeast(p.role, target.role)) throw new ForbiddenError('You cannot change the role of a user above you');
    const result = await tenantCmd(req, p.tenantId, p.actor, { type: 'ChangeUserRole', data: { userId: id, role: body.role } });
    res.json({ id, role: body.role, position: result.position });
  });

  t.delete('/v1/users/:id', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const id = idParam(req.params.id, 'User');
    const target = (await deps.pool.query<{ role: Role }>('SELECT role FROM platform.users WHERE tenant_id = $1 AND user_id = $2', [p.tenantId, id])).rows[0];
    if (!target) throw new NotFoundError('User');
    if (!roleAtLeast(p.role, target.role)) throw new ForbiddenError('You cannot remove a user above you');
    await tenantCmd(req, p.tenantId, p.actor, { type: 'RemoveUser', data: { userId: id } });
    res.status(204).end();
  });

  return { operatorAndLogin: r, tenant: t };
}
