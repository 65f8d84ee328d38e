import type { Pool } from 'pg';
import type { EmbedderRegistry } from '../../infra/embeddings';
import { withTenant } from '../../infra/postgres/schema';
import type { Embedder } from '../../services/core/ports';

/**
 * Which embedder serves each tenant's searches (platform.tenant_embedders). During a re-embedding
 * the tenant keeps its serving embedder while the indexer builds the new embedder's chunk sets
 * beside the old ones; when every ready document has its new set the indexer switches the row in
 * one UPDATE, and drops the old sets after a grace period (searches that read the old serving id
 * just before the switch still find their chunks). A tenant without a row is served by the
 * configured embedder.
 */
export interface ServedBy {
  /** Every ranking reads this embedder's chunk sets only. */
  embedderId: string;
  /** The embedder to embed the query with; null when it can no longer be loaded (keyword only). */
  embedder: Embedder | null;
  /** The set being built: keyword-only fallback for documents that have no serving set yet. */
  fallbackEmbedderId: string | null;
}

export interface ServingStatus {
  tenant_id: string;
  serving_embedder: string;
  /** False when the serving embedder cannot be loaded: the tenant answers by keyword until the switch. */
  serving_loadable: boolean;
  building_embedder: string | null;
  documents_done: number;
  documents_total: number;
  started_at: string | null;
  switched_at: string | null;
}

export interface ServingEmbedders {
  forSearch(tenantId: string): Promise<ServedBy>;
  /** This process changed the tenant's row (the indexer's switch): read it again at the next search. */
  invalidate(tenantId: string): void;
}

/**
 * Rows are cached for at most CACHE_MS per process, so a search costs no lookup of its own. A
 * process that did not make a switch sees it within CACHE_MS, well inside the grace period before
 * the old sets are dropped (GRACE in the indexer, 10 s).
 */
const CACHE_MS = 1000;

export function servingEmbedders(pool: Pool, registry: EmbedderRegistry): ServingEmbedders {
  const cache = new Map<string, { row: { serving_embedder: string; building_embedder: string | null } | null; at: number }>();
  return {
    async forSearch(tenantId) {
      let hit = cache.get(tenantId);
      if (!hit || Date.now() - hit.at >= CACHE_MS) {
        const r = await pool.query<{ serving_embedder: string; building_embedder: string | null }>(
          'SELECT serving_embedder, building_embedder FROM platform.tenant_embedders WHERE tenant_id = $1',
          [tenantId],
        );
        hit = { row: r.rows[0] ?? null, at: Date.now() };
        cache.set(tenantId, hit);
      }
      const row = hit.row;
      if (!row) return { embedderId: registry.current.id, embedder: registry.current, fallbackEmbedderId: null };
      return { embedderId: row.serving_embedder, embedder: await registry.get(row.serving_embedder), fallbackEmbedderId: row.building_embedder };
    },
    invalidate(tenantId) {
      cache.delete(tenantId);
    },
  };
}

/**
 * The embedder a tenant's documents are served by, judged from its data: the configured one when
 * every ready document has a set of it, else the one most documents have. Null without a schema.
 */
export async function servingFromData(pool: Pool, tenantId: string, currentId: string): Promise<string | null> {
  const sets = await withTenant(
    pool,
    tenantId,
    async (c) => {
      const total = Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM document_index WHERE ready_version IS NOT NULL')).rows[0]?.n ?? 0);
      const bySet = (
        await c.query<{ embedder_id: string; n: string }>(
          `SELECT e AS embedder_id, count(*) AS n FROM document_index di, unnest(di.embedder_sets) e WHERE di.ready_version IS NOT NULL GROUP BY e ORDER BY count(*) DESC, e`,
        )
      ).rows;
      return { total, bySet };
    },
    { readOnly: true },
  ).catch(() => null);
  if (!sets) return null;
  const current = Number(sets.bySet.find((s) => s.embedder_id === currentId)?.n ?? 0);
  return current >= sets.total ? currentId : (sets.bySet.find((s) => s.embedder_id !== currentId)?.embedder_id ?? currentId);
}

/**
 * Gives every tenant and snapshot without one a serving row, judged from its data, before this
 * process answers searches: after an upgrade, or a restart on another embedder before the indexer
 * began the re-embedding, search must keep reading the sets the tenant has (never go dark).
 */
export async function ensureServingRows(pool: Pool, currentId: string): Promise<number> {
  const missing = await pool.query<{ id: string }>(
    `SELECT s.id FROM (SELECT tenant_id AS id FROM platform.tenants WHERE status <> 'deleted' UNION ALL SELECT snapshot_id FROM platform.snapshots) s
     WHERE NOT EXISTS (SELECT 1 FROM platform.tenant_embedders e WHERE e.tenant_id = s.id)`,
  );
  let added = 0;
  for (const { id } of missing.rows) {
    const serving = await servingFromData(pool, id, currentId);
    if (!serving) continue;
    const r = await pool.query('INSERT INTO platform.tenant_embedders (tenant_id, serving_embedder) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING', [id, serving]);
    added += r.rowCount ?? 0;
  }
  return added;
}

/** For GET /v1/admin/projections: every tenant whose serving embedder is not plainly the configured one. */
export async function servingStatus(pool: Pool, currentEmbedderId: string): Promise<{ configured: string; tenants: ServingStatus[] }> {
  const r = await pool.query<ServingStatus>(
    `SELECT tenant_id, serving_embedder, serving_loadable, building_embedder, docs_done AS documents_done, docs_total AS documents_total,
            started_at, switched_at
     FROM platform.tenant_embedders
     WHERE building_embedder IS NOT NULL OR serving_embedder <> $1 OR switched_at > now() - interval '1 hour'
     ORDER BY tenant_id`,
    [currentEmbedderId],
  );
  return { configured: currentEmbedderId, tenants: r.rows };
}
