/** Test fixtures for the knowledge-index suites: tenant schemas and document rows as the catalog projection writes them. */
import type { Pool } from 'pg';
import { createTenantSchema, withTenant } from '../postgres/schema';

export async function createTenantSchemas(pool: Pool, tenantIds: string[]): Promise<void> {
  for (const t of tenantIds) {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await createTenantSchema(c, t);
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  }
}

/** The documents and document_index rows of an upload (version `version`, being indexed). */
export async function uploadDocument(pool: Pool, tenantId: string, documentId: string, version: number): Promise<void> {
  await withTenant(pool, tenantId, async (c) => {
    await c.query(
      `INSERT INTO documents (document_id, filename, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
       VALUES ($1, $2, 'text/plain', 100, 'x', $3, 'test', now(), now(), '0')
       ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, updated_at = now()`,
      [documentId, `${documentId.slice(0, 8)}.txt`, version],
    );
    await c.query(
      `INSERT INTO document_index (document_id, version, status, updated_at) VALUES ($1, $2, 'indexing', now())
       ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, status = 'indexing', updated_at = now()`,
      [documentId, version],
    );
  });
}
