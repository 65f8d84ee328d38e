/**
 * Isolation by structure, not by filters (DESIGN.md section 3): inside withTenant() a query
 * deliberately written WITHOUT a tenant filter sees only the tenant's own rows, and a query that
 * names another tenant's schema, the platform schema, the content store or the event store fails
 * with permission denied. Pooled connections carry nothing from one tenant's transaction into
 * the next.
 */
import type { Pool, PoolClient } from 'pg';
import { randomUUID } from 'node:crypto';
import { tenantRole, tenantSchema } from '../../contracts/naming';
import { createPostgresEventStore, type PostgresEventStore } from '../../infra/eventstore/postgres';
import { createPool, withTransaction } from '../../infra/postgres/pool';
import { createTenantSchema, migratePlatform, withTenant } from '../../infra/postgres/schema';
import { dropDatabase, freshDatabase } from '../support/postgres';

const PERMISSION_DENIED = '42501';
const READ_ONLY_TX = '25006';
const UNDEFINED_TABLE = '42P01';

/** Runs sql in the tenant's scope; returns the SQLSTATE it failed with, or 'ok'. */
async function sqlstate(pool: Pool, tenantId: string, sql: string, params: unknown[] = []): Promise<string> {
  try {
    await withTenant(pool, tenantId, (c) => c.query(sql, params));
    return 'ok';
  } catch (err) {
    return String((err as { code?: string }).code ?? (err as Error).message);
  }
}

describe('PostgreSQL tenant scope: a forgotten or wrong filter errors or finds nothing', () => {
  let url: string;
  let pool: Pool;
  let single: Pool;
  let store: PostgresEventStore;
  const a = randomUUID();
  const b = randomUUID();
  const A_SECRET = 'ACME-PGSECRET-51d0';
  const B_SECRET = 'GLOBEX-PGSECRET-9e27';

  const insertDoc = (c: PoolClient, id: string, filename: string) =>
    c.query(
      `INSERT INTO documents (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
       VALUES ($1, $2, NULL, 'text/plain', 1, 'x', 1, 'user:x', now(), now(), '0')`,
      [id, filename],
    );

  beforeAll(async () => {
    url = await freshDatabase();
    pool = createPool(url, { max: 4 });
    single = createPool(url, { max: 1 });
    await migratePlatform(pool);
    store = await createPostgresEventStore(pool, { onError: () => undefined });
    for (const t of [a, b]) await withTransaction(pool, (c) => createTenantSchema(c, t));
    await pool.query(`INSERT INTO platform.tenants (tenant_id, slug, name, status, quotas, rate_limit, created_at, updated_at)
      VALUES ($1, 'a', 'A', 'active', '{}', '{}', now(), now()), ($2, 'b', 'B', 'active', '{}', '{}', now(), now())`, [a, b]);
    await pool.query(`INSERT INTO platform.users (tenant_id, user_id, email, role, password_hash, created_at) VALUES ($1, $2, 'x@b.test', 'owner', 'hash', now())`, [b, randomUUID()]);
    await pool.query(`INSERT INTO content.blobs (tenant_id, sha256, size_bytes, bytes) VALUES ($1, 'x', 1, $2)`, [b, Buffer.from(B_SECRET)]);
    await withTenant(pool, a, async (c) => {
      await insertDoc(c, randomUUID(), `${A_SECRET}-1.md`);
      await insertDoc(c, randomUUID(), `${A_SECRET}-2.md`);
    });
    await withTenant(pool, b, (c) => insertDoc(c, randomUUID(), `${B_SECRET}.md`));
  });

  afterAll(async () => {
    await store?.close();
    await single?.end();
    await pool?.end();
    if (url) await dropDatabase(url);
  });

  it('a query with no tenant filter returns only the own tenant\'s rows', async () => {
    const rowsA = await withTenant(pool, a, async (c) => (await c.query<{ filename: string }>('SELECT * FROM documents')).rows, { readOnly: true });
    expect(rowsA.map((r) => r.filename).sort()).toEqual([`${A_SECRET}-1.md`, `${A_SECRET}-2.md`]);
    const rowsB = await withTenant(pool, b, async (c) => (await c.query<{ filename: string }>('SELECT * FROM documents')).rows, { readOnly: true });
    expect(rowsB.map((r) => r.filename)).toEqual([`${B_SECRET}.md`]);
    // Joins and every other tenant table resolve to the own schema too.
    const joined = await withTenant(pool, a, async (c) => (await c.query('SELECT d.filename FROM documents d LEFT JOIN document_index di USING (document_id) LEFT JOIN chunks ch USING (document_id)')).rows);
    expect(JSON.stringify(joined)).not.toContain(B_SECRET);
  });

  it('naming another tenant\'s schema fails with permission denied, for reads and writes', async () => {
    const other = tenantSchema(b);
    expect(await sqlstate(pool, a, `SELECT * FROM ${other}.documents`)).toBe(PERMISSION_DENIED);
    expect(await sqlstate(pool, a, `SELECT * FROM ${other}.chunks`)).toBe(PERMISSION_DENIED);
    expect(await sqlstate(pool, a, `INSERT INTO ${other}.documents SELECT * FROM documents`)).toBe(PERMISSION_DENIED);
    expect(await sqlstate(pool, a, `DELETE FROM ${other}.documents`)).toBe(PERMISSION_DENIED);
    expect(await sqlstate(pool, a, `UPDATE ${other}.documents SET filename = 'x'`)).toBe(PERMISSION_DENIED);
    // Moving the search_path does not move the privileges (a schema without USAGE is skipped,
    // so the table is not found at all).
    expect([PERMISSION_DENIED, UNDEFINED_TABLE]).toContain(await sqlstate(pool, a, `SET LOCAL search_path TO ${other}; SELECT * FROM documents`));
    // NOTE: `SET LOCAL ROLE <other tenant's role>` or `RESET ROLE` inside the scope is NOT refused:
    // SET ROLE is checked against the session user (the product's own login), not the current
    // role. The role boundary stops forgotten or wrong filters, not SQL written to escape it.
    // And B's rows are untouched.
    const rowsB = await withTenant(pool, b, async (c) => (await c.query('SELECT filename FROM documents')).rows);
    expect(rowsB).toEqual([{ filename: `${B_SECRET}.md` }]);
  });

  it('the platform schema, the content store and the event store are out of reach', async () => {
    for (const table of ['platform.users', 'platform.tenants', 'platform.api_tokens', 'platform.index_jobs', 'platform.checkpoints', 'content.blobs', 'es.events', 'es.streams']) {
      expect([table, await sqlstate(pool, a, `SELECT * FROM ${table}`)]).toEqual([table, PERMISSION_DENIED]);
    }
    expect(await sqlstate(pool, a, `UPDATE platform.users SET role = 'owner'`)).toBe(PERMISSION_DENIED);
    expect(await sqlstate(pool, a, `DELETE FROM content.blobs`)).toBe(PERMISSION_DENIED);
    // No superuser file or program access either.
    expect(await sqlstate(pool, a, `SELECT pg_read_file('/etc/hostname')`)).toBe(PERMISSION_DENIED);
    expect(await sqlstate(pool, a, `COPY documents TO PROGRAM 'true'`)).toBe(PERMISSION_DENIED);
  });

  it('a tenant role cannot create objects other tenants could see', async () => {
    expect(await sqlstate(pool, a, 'CREATE TABLE documents_copy (x int)')).toBe(PERMISSION_DENIED);
    // The public schema is shared by every role: no tenant may write into it (PostgreSQL < 15
    // grants CREATE on it to PUBLIC unless revoked).
    expect(await sqlstate(pool, a, 'CREATE TABLE public.drop_box (x text)')).toBe(PERMISSION_DENIED);
  });

  it('read-only scopes refuse writes', async () => {
    const code = await withTenant(pool, a, (c) => insertDoc(c, randomUUID(), 'ro.md'), { readOnly: true }).then(
      () => 'ok',
      (err: { code?: string }) => err.code,
    );
    expect(code).toBe(READ_ONLY_TX);
  });

  it('a pooled connection carries neither role nor search_path into the next use, after success or failure', async () => {
    const probe = async () =>
      (await single.query<{ u: string; p: string }>(`SELECT current_user AS u, current_setting('search_path') AS p`)).rows[0]!;
    const base = await probe();
    expect(base.u).not.toBe(tenantRole(a));
    await withTenant(single, a, (c) => c.query('SELECT 1'));
    expect(await probe()).toEqual(base);
    await expect(withTenant(single, a, (c) => c.query(`SELECT * FROM ${tenantSchema(b)}.documents`))).rejects.toMatchObject({ code: PERMISSION_DENIED });
    expect(await probe()).toEqual(base);
    // The next tenant on the same connection sees its own rows only.
    const rows = await withTenant(single, b, async (c) => (await c.query('SELECT filename FROM documents')).rows);
    expect(JSON.stringify(rows)).not.toContain(A_SECRET);
  });

  it('a temporary table made in one tenant\'s scope does not survive into the next tenant\'s transaction on the same connection', async () => {
    // Temporary tables live for the SESSION, and pg_temp is searched before the search_path: a
    // tenant scope that may create one can shadow `documents` for whoever gets the connection next.
    await withTenant(single, a, (c) => c.query('CREATE TEMP TABLE documents AS SELECT * FROM documents; GRANT SELECT ON documents TO PUBLIC')).catch(() => undefined);
    const rows = await withTenant(single, b, async (c) => (await c.query<{ filename: string }>('SELECT filename FROM documents')).rows).catch(
      (err: Error) => [{ filename: `error: ${err.message}` }],
    );
    expect(rows).toEqual([{ filename: `${B_SECRET}.md` }]);
    await single.query('DISCARD TEMP').catch(() => undefined);
  });
});
