import { Router } from 'express';
import { z } from 'zod';
import { readAudit } from '../audit/api';
import { NotFoundError, ValidationError } from '../core/errors';
import { idParam, limitParam, parseBody } from '../gateway/validation';
import { createSnapshot, snapshotStatus } from '../snapshots/snapshots';
import { servingStatus } from '../../projections/index/servingEmbedders';
import { requireOperator, requireRole } from '../gateway/auth';
import { type AppDeps, principalOf } from '../gateway/context';

const rangeSchema = z
  .object({
    from: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'YYYY-MM-DD').optional(),
    to: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'YYYY-MM-DD').optional(),
  })
  .strict();

function range(query: unknown) {
  const r = rangeSchema.safeParse(query);
  if (!r.success) throw new ValidationError(r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const to = r.data.to ?? new Date().toISOString().slice(0, 10);
  const from = r.data.from ?? new Date(Date.parse(to) - 29 * 86400_000).toISOString().slice(0, 10);
  if (Number.isNaN(Date.parse(from)) || Number.isNaN(Date.parse(to)) || from > to) throw new ValidationError('from must be a date before or equal to to');
  return { from, to };
}

async function usageTable(deps: AppDeps): Promise<string | null> {
  const r = await deps.pool.query<{ active_version: number }>(`SELECT active_version FROM platform.projection_versions WHERE name = 'analytics'`);
  const t = `analytics.usage_daily_v${r.rows[0]?.active_version ?? 1}`;
  const e = await deps.pool.query('SELECT to_regclass($1) AS t', [t]);
  return e.rows[0]?.t ? t : null;
}

const usageView = (r: Record<string, unknown>) => ({
  tenant_id: r.tenant_id,
  day: r.day instanceof Date ? r.day.toISOString().slice(0, 10) : r.day,
  documents_uploaded: r.documents_uploaded,
  documents_deleted: r.documents_deleted,
  bytes_uploaded: Number(r.bytes_uploaded),
  chunks_indexed: r.chunks_indexed,
  searches: r.searches,
  questions: r.questions,
  prompt_tokens: Number(r.prompt_tokens),
  completion_tokens: Number(r.completion_tokens),
  documents_stored: r.documents_stored,
  bytes_stored: Number(r.bytes_stored),
  chunks_stored: r.chunks_stored,
});

/** Usage for the tenant (admins) from the analytics projection, and the tenant's snapshots. */
export function usageApi(deps: AppDeps): Router {
  const r = Router();
  r.get('/v1/snapshots', requireRole('admin'), async (req, res) => {
    res.json({ items: await snapshotStatus(deps.pool, principalOf(req).tenantId) });
  });
  r.get('/v1/usage', requireRole('admin'), async (req, res) => {
    const p = principalOf(req);
    const { from, to } = range(req.query);
    const t = await usageTable(deps);
    const rows = t ? (await deps.pool.query(`SELECT * FROM ${t} WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day`, [p.tenantId, from, to])).rows : [];
    res.json({ from, to, days: rows.map(usageView).map(({ tenant_id: _t, ...d }) => d) });
  });
  return r;
}

/** Operator routes: projections (progress, lag, rebuild) and usage of every tenant. */
export function adminApi(deps: AppDeps): Router {
  const r = Router();
  const operator = requireOperator(deps.config.adminToken);

  r.get('/v1/admin/projections', operator, async (_req, res) => {
    res.json({
      items: await deps.manager.list(),
      indexer: deps.indexer ? await deps.indexer.status() : null,
      // Re-embedding per tenant: serving and building embedder, documents done of total.
      embedders: await servingStatus(deps.pool, deps.embedder.id),
      // The vector index's in-process figures (embedded: loaded tenants, bytes, budget, evictions); null where it has none.
      index: deps.index.stats?.() ?? null,
    });
  });

  const snapshotSchema = z.object({ tenant: z.string().min(1).max(63), until: z.string().min(1).max(64), name: z.string().min(1).max(40) }).strict();
  r.post('/v1/admin/snapshots', operator, async (req, res) => {
    const body = parseBody(snapshotSchema, req.body);
    const t = (await deps.pool.query<{ tenant_id: string }>(`SELECT tenant_id FROM platform.tenants WHERE slug = $1 AND status <> 'deleted'`, [body.tenant])).rows[0];
    if (!t) throw new NotFoundError('Tenant');
    const made = await createSnapshot(
      { pool: deps.pool, store: deps.store, content: deps.content, index: deps.index, wakeIndexer: () => deps.indexer?.wake() },
      t.tenant_id,
      body.name,
      body.until,
    );
    res.status(202).json({ tenant: body.tenant, name: body.name, until: body.until, documents: made.documents, state: 'building' });
  });

  r.get('/v1/admin/snapshots', operator, async (req, res) => {
    const slug = typeof req.query.tenant === 'string' ? req.query.tenant : '';
    const t = (await deps.pool.query<{ tenant_id: string }>(`SELECT tenant_id FROM platform.tenants WHERE slug = $1 AND status <> 'deleted'`, [slug])).rows[0];
    if (!t) throw new NotFoundError('Tenant');
    res.json({ items: await snapshotStatus(deps.pool, t.tenant_id) });
  });

  r.get('/v1/admin/projections/history', operator, async (_req, res) => {
    res.json({ items: deps.manager.history() });
  });

  r.get('/v1/admin/tenants/:id/audit', operator, async (req, res) => {
    const id = idParam(req.params.id, 'Tenant');
    const limit = limitParam(req.query.limit, 20, 200);
    const t = (await deps.pool.query(`SELECT 1 FROM platform.tenants WHERE tenant_id = $1 AND status <> 'deleted'`, [id])).rows[0];
    if (!t) throw new NotFoundError('Tenant');
    const rows = await readAudit(deps, id, [], async (c, table) => (await c.query(`SELECT seq, type, actor, subject, occurred_at, result FROM ${table} ORDER BY seq DESC LIMIT $1`, [limit])).rows);
    res.json({ items: rows.map((r) => ({ ...r, seq: Number(r.seq) })) });
  });

  // No body (or {}): the whole projection from position 0 beside the live version. {"tenant": slug}:
  // only that tenant's rows, rebuilt into a scratch copy and swapped in (projections/tenantRebuild.ts).
  const rebuildSchema = z.object({ tenant: z.string().min(1).max(63).optional() }).strict();
  r.post('/v1/admin/projections/:name/rebuild', operator, async (req, res) => {
    const name = String(req.params.name);
    const body = parseBody(rebuildSchema, req.body ?? {});
    if (body.tenant === undefined) {
      const { progress } = await deps.manager.rebuild(name);
      res.status(202).location('/v1/admin/projections').json(progress);
      return;
    }
    deps.manager.rebuildable(name, true);
    const t = (await deps.pool.query<{ tenant_id: string }>(`SELECT tenant_id FROM platform.tenants WHERE slug = $1 AND status <> 'deleted'`, [body.tenant])).rows[0];
    if (!t) throw new NotFoundError('Tenant');
    const { progress } = await deps.manager.rebuildTenant(name, { id: t.tenant_id, slug: body.tenant });
    res.status(202).location('/v1/admin/projections').json(progress);
  });

  r.get('/v1/admin/usage', operator, async (req, res) => {
    const { from, to } = range(req.query);
    const t = await usageTable(deps);
    const rows = t ? (await deps.pool.query(`SELECT * FROM ${t} WHERE day BETWEEN $1 AND $2 ORDER BY day, tenant_id`, [from, to])).rows : [];
    res.json({ from, to, days: rows.map(usageView) });
  });

  return r;
}
