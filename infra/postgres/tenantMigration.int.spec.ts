/**
 * migrateTenantSchemas brings a tenant schema created before chunk sets were per embedder (chunks
 * keyed by document, version, chunk) to the current shape, keeping its rows, and is idempotent.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { tenantSchema } from '../../contracts/naming';
import { dropDatabase, freshDatabase } from '../../test/support/postgres';
import { createPool } from './pool';
import { SCHEMA_OWNER, createTenantSchema, migratePlatform, migrateTenantSchemas, withTenant } from './schema';

describe('tenant schema migration to per-embedder chunk sets', () => {
  let url: string;
  let pool: Pool;
  beforeAll(async () => {
    url = await freshDatabase();
    pool = createPool(url, { max: 3 });
    await migratePlatform(pool);
  });
  afterAll(async () => {
    await pool.end();
    await dropDatabase(url).catch(() => undefined);
  });

  it('adds embedder_sets (backfilled) and the embedder to the chunks key, once', async () => {
    const tenantId = randomUUID();
    const schema = tenantSchema(tenantId);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await createTenantSchema(client, tenantId);
      // Back to the old shape: plain catalog tables (before catalog versions), no embedder_sets.
      await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER}`);
      await client.query(`DROP VIEW ${schema}.documents; DROP VIEW ${schema}.document_index; DROP TABLE ${schema}.chunk_sets;
        ALTER TABLE ${schema}.documents_v1 RENAME TO documents; ALTER TABLE ${schema}.document_index_v1 RENAME TO document_index;`);
      await client.query(`ALTER TABLE ${schema}.document_index DROP COLUMN embedder_sets;
        ALTER TABLE ${schema}.chunks DROP CONSTRAINT chunks_pkey; ALTER TABLE ${schema}.chunks ADD PRIMARY KEY (document_id, version, chunk_index);`);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const doc = randomUUID();
    await withTenant(pool, tenantId, async (c) => {
      await c.query(`INSERT INTO document_index (document_id, version, ready_version, status, embedder_id, updated_at) VALUES ($1, 1, 1, 'ready', 'old-model', now())`, [doc]);
      await c.query(`INSERT INTO chunks (document_id, chunk_index, version, text, token_count, embedder_id, embedding) VALUES ($1, 0, 1, 'hello', 1, 'old-model', '\\x00')`, [doc]);
    });

    expect(await migrateTenantSchemas(pool)).toBeGreaterThanOrEqual(1);
    expect(await migrateTenantSchemas(pool)).toBe(0);

    await withTenant(pool, tenantId, async (c) => {
      expect((await c.query('SELECT embedder_sets FROM document_index')).rows[0].embedder_sets).toEqual(['old-model']);
      // The same chunk of another embedder now sits beside the first.
      await c.query(`INSERT INTO chunks (document_id, chunk_index, version, text, token_count, embedder_id, embedding) VALUES ($1, 0, 1, 'hello', 1, 'new-model', '\\x00')`, [doc]);
      expect((await c.query('SELECT count(*)::int AS n FROM chunks')).rows[0].n).toBe(2);
    });
  });
});
