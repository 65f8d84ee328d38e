import type { Pool, PoolClient } from 'pg';
import { catalogTable, withTenant } from '../../infra/postgres/schema';

/**
 * The chunk-set cache of a tenant (its schema's `chunk_sets`, see infra/postgres/schema.ts):
 * chunk sets are derived from a document's content, not from events, so they are kept across
 * rebuilds of the catalog and found by content: (sha256, chunker, embedder). A set is valid while
 * the chunk rows it names are all there (a deleted or replaced version's rows are gone).
 */

/** Identifies how chunk boundaries were drawn: a set of another chunker is never copied. */
export const chunkerId = (opts: { maxTokens: number; overlapTokens: number }) => `chunker-1:${opts.maxTokens}/${opts.overlapTokens}`;

export interface ChunkSetLocation {
  documentId: string;
  version: number;
  chunkCount: number;
  format: string | null;
}

/** A complete set of this content for this chunker and embedder, if the tenant holds one. */
export async function findChunkSet(pool: Pool, tenantId: string, key: { sha256: string; chunker: string; embedderId: string }): Promise<ChunkSetLocation | null> {
  return withTenant(
    pool,
    tenantId,
    async (c) => {
      const r = await c.query<{ document_id: string; version: number; chunk_count: number; format: string | null }>(
        `SELECT cs.document_id, cs.version, cs.chunk_count, cs.format FROM chunk_sets cs
         WHERE cs.sha256 = $1 AND cs.chunker = $2 AND cs.embedder_id = $3
           AND cs.chunk_count = (SELECT count(*) FROM chunks c WHERE c.document_id = cs.document_id AND c.version = cs.version AND c.embedder_id = cs.embedder_id)
         ORDER BY cs.created_at DESC LIMIT 1`,
        [key.sha256, key.chunker, key.embedderId],
      );
      const row = r.rows[0];
      return row ? { documentId: row.document_id, version: row.version, chunkCount: row.chunk_count, format: row.format } : null;
    },
    { readOnly: true },
  );
}

/** Records a complete set (written before the set is activated, so a catalog switch that sees the activation sees it too). */
export async function recordChunkSet(
  pool: Pool,
  tenantId: string,
  set: { documentId: string; version: number; embedderId: string; sha256: string; chunker: string; chunkCount: number; format: string | null },
): Promise<void> {
  await withTenant(pool, tenantId, (c) =>
    c.query(
      `INSERT INTO chunk_sets (document_id, version, embedder_id, sha256, chunker, chunk_count, format) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (document_id, version, embedder_id) DO UPDATE SET sha256 = EXCLUDED.sha256, chunker = EXCLUDED.chunker,
         chunk_count = EXCLUDED.chunk_count, format = EXCLUDED.format, created_at = now()`,
      [set.documentId, set.version, set.embedderId, set.sha256, set.chunker, set.chunkCount, set.format],
    ),
  );
}

/** Lists a set the document already serves when the cache lacks it (counted from its rows). */
export async function recordServedSet(pool: Pool, tenantId: string, documentId: string, version: number, embedderId: string, sha256: string): Promise<void> {
  await withTenant(pool, tenantId, (c) =>
    c.query(
      `INSERT INTO chunk_sets (document_id, version, embedder_id, sha256, chunker, chunk_count, format)
       SELECT $1, $2, $3, $4, 'unknown', count(*), (SELECT format FROM document_index WHERE document_id = $1)
       FROM chunks WHERE document_id = $1 AND version = $2 AND embedder_id = $3 HAVING count(*) > 0
       ON CONFLICT DO NOTHING`,
      [documentId, version, embedderId, sha256],
    ),
  );
}

/** Forgets cache entries whose rows were dropped: a document's other versions, or one embedder's sets. */
export async function forgetChunkSets(pool: Pool, tenantId: string, which: { documentId: string; exceptVersion: number } | { embedderId: string }): Promise<void> {
  await withTenant(pool, tenantId, (c) =>
    'embedderId' in which
      ? c.query('DELETE FROM chunk_sets WHERE embedder_id = $1', [which.embedderId])
      : c.query('DELETE FROM chunk_sets WHERE document_id = $1 AND version <> $2', [which.documentId, which.exceptVersion]),
  );
}

/** The rows of a cached set, in chunk order, for copying to another document version. */
export async function readChunkSet(pool: Pool, tenantId: string, at: { documentId: string; version: number; embedderId: string }) {
  return withTenant(
    pool,
    tenantId,
    async (c) =>
      (
        await c.query<{ chunk_index: number; text: string; heading_path: string[]; page: number | null; token_count: number; embedding: Buffer }>(
          'SELECT chunk_index, text, heading_path, page, token_count, embedding FROM chunks WHERE document_id = $1 AND version = $2 AND embedder_id = $3 ORDER BY chunk_index',
          [at.documentId, at.version, at.embedderId],
        )
      ).rows,
    { readOnly: true },
  );
}

/**
 * Re-links the catalog rows of `version` (inside the caller's tenant-scoped transaction) to the
 * chunk sets the tenant holds: per document, the highest version up to its current one with
 * complete sets becomes `ready_version` with those sets (the serving embedder's first). A row at
 * that version becomes `ready`; a row whose newer version is not indexed yet keeps its status and
 * serves the older set, as the live read model does while a replacement is indexed. Returns the
 * number of rows changed.
 */
export async function linkChunkSets(client: PoolClient, version: number, servingEmbedder: string | null): Promise<number> {
  const di = catalogTable('document_index', version);
  const docs = catalogTable('documents', version);
  const order = `(cs.embedder_id = $1::text) DESC NULLS LAST, cs.created_at, cs.embedder_id`;
  const r = await client.query(
    `WITH valid AS (
       SELECT cs.* FROM ${di} i JOIN ${docs} d ON d.document_id = i.document_id
       JOIN chunk_sets cs ON cs.document_id = i.document_id AND cs.version <= i.version AND (cs.version < i.version OR cs.sha256 = d.sha256)
       WHERE cs.chunk_count > 0
         AND cs.chunk_count = (SELECT count(*) FROM chunks c WHERE c.document_id = cs.document_id AND c.version = cs.version AND c.embedder_id = cs.embedder_id)
     ), best AS (
       SELECT document_id, max(version) AS version FROM valid GROUP BY document_id
     ), agg AS (
       SELECT cs.document_id, cs.version, array_agg(cs.embedder_id ORDER BY ${order}) AS sets,
              (array_agg(cs.chunk_count ORDER BY ${order}))[1] AS n, (array_agg(cs.format ORDER BY ${order}))[1] AS format
       FROM valid cs JOIN best b ON b.document_id = cs.document_id AND b.version = cs.version
       GROUP BY cs.document_id, cs.version
     )
     UPDATE ${di} i SET ready_version = agg.version, embedder_id = agg.sets[1], embedder_sets = agg.sets, format = agg.format,
       status = CASE WHEN agg.version = i.version THEN 'ready' ELSE i.status END,
       error = CASE WHEN agg.version = i.version THEN NULL ELSE i.error END,
       chunks_total = CASE WHEN agg.version = i.version THEN agg.n ELSE i.chunks_total END,
       chunks_done = CASE WHEN agg.version = i.version THEN agg.n ELSE i.chunks_done END,
       updated_at = now()
     FROM agg
     WHERE i.document_id = agg.document_id
       AND (i.ready_version IS DISTINCT FROM agg.version OR i.embedder_sets IS DISTINCT FROM agg.sets OR (agg.version = i.version AND i.status <> 'ready'))`,
    [servingEmbedder],
  );
  return r.rowCount ?? 0;
}
