/**
 * What a platform rebuild in place leaves to reconcile (projections/platform/platformProjection.ts
 * reconcilePlatform), against a real PostgreSQL: the rebuilt rows say which tenants exist; their
 * schemas and roles follow, and nothing else is touched.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { tenantRole, tenantSchema } from '../../contracts/naming';
import { createPool, withTransaction } from '../../infra/postgres/pool';
import { createTenantSchema, migratePlatform } from '../../infra/postgres/schema';
import { dropDatabase, freshDatabase } from '../../test/support/postgres';
import { reconcilePlatform } from './platformProjection';

describe('reconciling tenant schemas with rebuilt platform rows (integration)', () => {
  let dbUrl: string;
  let pool: Pool;
  const active = randomUUID();
  const suspended = randomUUID();
  const erased = randomUUID();
  const untouched = randomUUID();

  beforeAll(async () => {
    dbUrl = await freshDatabase();
    pool = createPool(dbUrl, { max: 4 });
    await migratePlatform(pool);
    for (const [id, status] of [[active, 'active'], [suspended, 'suspended'], [erased, 'deleted'], [untouched, 'active']] as const) {
      await pool.query(`INSERT INTO platform.tenants (tenant_id, slug, name, status, quotas, rate_limit, created_at, updated_at) VALUES ($1, $2, $2, $3, '{}', '{}', now(), now())`, [id, `t-${id.slice(0, 8)}`, status]);
    }
    // Drift: the active tenant's schema is missing, the erased tenant's was left behind; the
    // suspended and the untouched tenants have theirs, with a row in it.
    for (const id of [suspended, erased, untouched]) await withTransaction(pool, (c) => createTenantSchema(c, id));
    await pool.query(`INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type) VALUES ($1, gen_random_uuid(), 1, 'x', 'left.md', 'text/markdown')`, [erased]);
    await pool.query(
      `INSERT INTO ${tenantSchema(untouched)}.documents (document_id, filename, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position) VALUES (gen_random_uuid(), 'kept.md', 'text/markdown', 1, 'x', 1, 'u', now(), now(), '0')`,
    );
  }, 120_000);

  afterAll(async () => {
    await pool?.end();
    if (dbUrl) await dropDatabase(dbUrl);
  });

  const hasSchema = async (id: string) => ((await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(id)])).rowCount ?? 0) > 0;
  const hasRole = async (id: string) => ((await pool.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [tenantRole(id)])).rowCount ?? 0) > 0;

  it('re-creates a missing schema and role, drops an erased tenant\'s left-over ones, and tells every tenant\'s caches', async () => {
    const changed: string[] = [];
    const provisioned: string[] = [];
    const deleted: string[] = [];
    const r = await reconcilePlatform(pool, { onTenantChanged: (t) => changed.push(t), onTenantProvisioned: (t) => provisioned.push(t), onTenantDeleted: (t) => deleted.push(t) }, null);
    expect(r).toEqual({ tenants: 4, created: [active], dropped: [erased] });
    expect([await hasSchema(active), await hasRole(active)]).toEqual([true, true]);
    expect([await hasSchema(erased), await hasRole(erased)]).toEqual([false, false]);
    expect([await hasSchema(suspended), await hasSchema(untouched)]).toEqual([true, true]);
    expect((await pool.query(`SELECT count(*)::int AS n FROM ${tenantSchema(untouched)}.documents`)).rows[0].n).toBe(1);
    expect((await pool.query('SELECT count(*)::int AS n FROM platform.index_jobs WHERE tenant_id = $1', [erased])).rows[0].n).toBe(0);
    expect(provisioned).toEqual([active]);
    expect(deleted).toEqual([erased]);
    expect(changed.sort()).toEqual([active, suspended, erased, untouched].sort());
    // A second pass finds nothing to do.
    expect(await reconcilePlatform(pool, {}, null)).toEqual({ tenants: 4, created: [], dropped: [] });
  });

  it('with a tenant given, looks at that tenant only', async () => {
    await withTransaction(pool, async (c) => {
      await c.query(`DROP SCHEMA ${tenantSchema(suspended)} CASCADE`);
      await c.query(`DROP SCHEMA ${tenantSchema(untouched)} CASCADE`);
    });
    expect(await reconcilePlatform(pool, {}, suspended)).toEqual({ tenants: 1, created: [suspended], dropped: [] });
    expect([await hasSchema(suspended), await hasSchema(untouched)]).toEqual([true, false]);
  });
});
