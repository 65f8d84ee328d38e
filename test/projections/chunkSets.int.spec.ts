import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { tenantSchema } from '../../contracts/naming';
import { createPool, withTransaction } from '../../infra/postgres/pool';
import { catalogViewVersions, createTenantSchema, ensureCatalogTables, enterTenant, migratePlatform, migrateTenantSchemas } from '../../infra/postgres/schema';
import { linkChunkSets } from '../../projections/index/chunkSets';
import { dropDatabase, freshDatabase } from '../support/postgres';

/**
 * The catalog's tables behind views and the chunk-set cache (infra/postgres/schema.ts,
 * projections/index/chunkSets.ts): a schema made before them is migrated in place (its tables
 * become version 1, the cache lists the sets its ready documents hold), and a rebuilt version's
 * rows are re-linked to the sets whose rows are all there.
 */
describe('catalog versions behind views, and the chunk-set cache', () => {
  let url: string;
  let pool: Pool;
  const tenantId = randomUUID();
  const s = tenantSchema(tenantId);
  const doc = randomUUID();
  const replaced = randomUUID();

  const insertChunks = async (documentId: string, version: number, embedder: string, n: number) => {
    for (let i = 0; i < n; i++) {
      await pool.query(`INSERT INTO ${s}.chunks (document_id, chunk_index, version, text, token_count, embedder_id, embedding) VALUES ($1, $2, $3, $4, 3, $5, '\\x00')`, [
        documentId, i, version, `chunk ${i}`, embedder,
      ]);
    }
  };

  beforeAll(async () => {
    url = await freshDatabase();
    pool = createPool(url, { max: 4 });
    await migratePlatform(pool);
    await withTransaction(pool, (c) => createTenantSchema(c, tenantId));
    // Back to the layout of schemas made before catalog versions: plain tables, no cache.
    await pool.query(`SET ROLE tr_schema_owner;
      DROP VIEW ${s}.documents; DROP VIEW ${s}.document_index; DROP TABLE ${s}.chunk_sets;
      ALTER TABLE ${s}.documents_v1 RENAME TO documents; ALTER TABLE ${s}.document_index_v1 RENAME TO document_index; RESET ROLE`);
    for (const [id, version, sha] of [[doc, 1, 'sha-doc'], [replaced, 2, 'sha-new']] as const) {
      await pool.query(
        `INSERT INTO ${s}.documents (document_id, filename, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position) VALUES ($1, 'f.md', 'text/markdown', 1, $2, $3, 'u', now(), now(), '')`,
        [id, sha, version],
      );
    }
    // `doc` served by two embedders; `replaced` serves version 1 while version 2 is indexed.
    await pool.query(`INSERT INTO ${s}.document_index (document_id, version, ready_version, status, chunks_total, chunks_done, embedder_id, embedder_sets, format, updated_at) VALUES
      ($1, 1, 1, 'ready', 3, 3, 'e1', '{e1,e2}', 'markdown', now()), ($2, 2, 1, 'pending', 0, 0, 'e1', '{e1}', 'markdown', now())`, [doc, replaced]);
    await insertChunks(doc, 1, 'e1', 3);
    await insertChunks(doc, 1, 'e2', 2);
    await insertChunks(replaced, 1, 'e1', 4);
  });
  afterAll(async () => {
    await pool?.end();
    if (url) await dropDatabase(url);
  });

  it('migrates an old schema in place: tables become version 1 behind views, the cache lists every served set', async () => {
    expect(await migrateTenantSchemas(pool)).toBeGreaterThanOrEqual(1);
    expect((await catalogViewVersions(pool)).get(tenantId)).toBe(1);
    const kinds = await pool.query<{ relname: string; relkind: string }>(
      `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname IN ('documents', 'document_index', 'documents_v1', 'document_index_v1', 'chunk_sets') ORDER BY 1`,
      [s],
    );
    expect(kinds.rows).toEqual([
      { relname: 'chunk_sets', relkind: 'r' },
      { relname: 'document_index', relkind: 'v' },
      { relname: 'document_index_v1', relkind: 'r' },
      { relname: 'documents', relkind: 'v' },
      { relname: 'documents_v1', relkind: 'r' },
    ]);
    const sets = await pool.query(`SELECT document_id, version, embedder_id, sha256, chunker, chunk_count FROM ${s}.chunk_sets ORDER BY document_id = $1 DESC, embedder_id`, [doc]);
    // `replaced` serves version 1 while its current version is 2: the content of version 1 is not
    // known (''). Legacy sets are never copied to other documents (chunker 'unknown'), only re-linked.
    expect(sets.rows).toEqual([
      { document_id: doc, version: 1, embedder_id: 'e1', sha256: 'sha-doc', chunker: 'unknown', chunk_count: 3 },
      { document_id: doc, version: 1, embedder_id: 'e2', sha256: 'sha-doc', chunker: 'unknown', chunk_count: 2 },
      { document_id: replaced, version: 1, embedder_id: 'e1', sha256: '', chunker: 'unknown', chunk_count: 4 },
    ]);
    // The tenant's role reads through the views as before.
    const viaView = await withTransaction(pool, async (c) => {
      await enterTenant(c, tenantId);
      return (await c.query('SELECT count(*)::int AS n FROM documents d JOIN document_index i USING (document_id)')).rows[0].n;
    });
    expect(viaView).toBe(2);
    // Idempotent.
    expect(await migrateTenantSchemas(pool)).toBe(0);
  });

  it('re-links a rebuilt version to complete sets only, the serving embedder first, an older version while a newer one is indexed', async () => {
    // A set whose rows are not all there any more (one chunk deleted) is not linked.
    await pool.query(`DELETE FROM ${s}.chunks WHERE document_id = $1 AND embedder_id = 'e2' AND chunk_index = 1`, [doc]);
    await withTransaction(pool, async (c) => {
      await ensureCatalogTables(c, tenantId, 2);
      await c.query(`INSERT INTO ${s}.documents_v2 SELECT * FROM ${s}.documents_v1`);
      await c.query(`INSERT INTO ${s}.document_index_v2 (document_id, version, status, updated_at) SELECT document_id, version, 'pending', now() FROM ${s}.documents_v1`);
    });
    const changed = await withTransaction(pool, async (c) => {
      await enterTenant(c, tenantId);
      return linkChunkSets(c, 2, 'e1');
    });
    expect(changed).toBe(2);
    const rows = await pool.query(`SELECT document_id, version, ready_version, status, embedder_id, embedder_sets, chunks_total FROM ${s}.document_index_v2 ORDER BY document_id = $1 DESC`, [doc]);
    expect(rows.rows).toEqual([
      { document_id: doc, version: 1, ready_version: 1, status: 'ready', embedder_id: 'e1', embedder_sets: ['e1'], chunks_total: 3 },
      { document_id: replaced, version: 2, ready_version: 1, status: 'pending', embedder_id: 'e1', embedder_sets: ['e1'], chunks_total: 0 },
    ]);
    // Linking again changes nothing.
    expect(await withTransaction(pool, async (c) => (await enterTenant(c, tenantId), linkChunkSets(c, 2, 'e1')))).toBe(0);
  });
});
