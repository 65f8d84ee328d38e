import type { Pool, PoolClient } from 'pg';
import { tenantSchema } from '../../contracts/naming';
import { withTransaction } from '../../infra/postgres/pool';
import {
  catalogTable,
  catalogViewVersions,
  dropCatalogTables,
  ensureCatalogTables,
  enterTenant,
  leaveTenant,
  pointCatalogViews,
  SCHEMA_OWNER,
  tenantSchemaExists,
  withTenant,
} from '../../infra/postgres/schema';
import { linkChunkSets } from '../index/chunkSets';

/**
 * Online rebuild of the catalog (blue/green per tenant schema). The catalog's rows derive from
 * events; the chunk sets (text and vectors) derive from the documents' content and are kept in
 * the tenant's chunk-set cache, shared by every catalog version. So a rebuild:
 *
 * 1. replays the event store from position 0 into `documents_v<N+1>` / `document_index_v<N+1>`
 *    beside the live tables, with no side effect (no indexing job, no chunk touched);
 * 2. once caught up, re-links each tenant's rebuilt rows to the chunk sets it holds (a document
 *    whose set is complete is `ready` again at once, without parsing or embedding), queues the
 *    documents left unlinked for the indexing workers (which copy a set of the same content or
 *    derive a new one), and waits until no document that is ready in the live version is less
 *    ready in the new one (`ready` never flips back during a rebuild);
 * 3. switches each tenant in one short transaction: the views `documents` and `document_index`
 *    are locked (readers wait milliseconds, never see an error or an empty table), the rows are
 *    re-linked once more (the indexer's activations are blocked meanwhile), and the views are
 *    re-pointed at the new version;
 * 4. after the manager made the version active, tenants provisioned meanwhile are switched too,
 *    and the old version's tables are dropped (snapshots keep theirs: they are not replayed).
 */
export interface CatalogSwitchOptions {
  /** How long to wait for the indexing workers to re-link what the cache could not (default 120 s; 0: no wait). */
  waitMs?: number;
  log?: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

/** Tenants whose schema is live (not erased, not snapshots): the ones the catalog projects. */
async function projectedTenants(pool: Pool): Promise<string[]> {
  const r = await pool.query<{ tenant_id: string }>(
    `SELECT t.tenant_id FROM platform.tenants t WHERE t.status <> 'deleted' ORDER BY t.created_at, t.tenant_id`,
  );
  const views = await catalogViewVersions(pool);
  return r.rows.map((row) => row.tenant_id).filter((id) => views.has(id));
}

async function servingEmbedderOf(q: Pool | PoolClient, tenantId: string): Promise<string | null> {
  const r = await q.query<{ serving_embedder: string }>('SELECT serving_embedder FROM platform.tenant_embedders WHERE tenant_id = $1', [tenantId]);
  return r.rows[0]?.serving_embedder ?? null;
}

/** Re-links a tenant's rows of `version` (scratch or new) to its chunk sets, in the caller's transaction (platform scope in and out). */
export async function linkTenantInTransaction(client: PoolClient, tenantId: string, version: number): Promise<number> {
  const serving = await servingEmbedderOf(client, tenantId);
  await enterTenant(client, tenantId);
  const n = await linkChunkSets(client, version, serving);
  await leaveTenant(client);
  return n;
}

/**
 * Links what the cache holds, queues the documents still pending for the indexing workers (they
 * copy a cached set of the same content, or derive one), and waits (bounded) until no document
 * ready in `liveVersion` is less ready in `version`. Throws when that does not happen in time.
 */
export async function prepareTenantSwitch(pool: Pool, tenantId: string, version: number, liveVersion: number, opts: CatalogSwitchOptions = {}): Promise<void> {
  const waitMs = opts.waitMs ?? 120_000;
  const deadline = Date.now() + waitMs;
  await withTransaction(pool, (c) => ensureCatalogTables(c, tenantId, version));
  const di = catalogTable('document_index', version);
  const docs = catalogTable('documents', version);
  const live = catalogTable('document_index', liveVersion);
  let queued = false;
  for (;;) {
    await withTransaction(pool, (c) => linkTenantInTransaction(c, tenantId, version));
    if (!queued) {
      const unlinked = await withTenant(
        pool,
        tenantId,
        async (c) =>
          (
            await c.query<{ document_id: string; version: number; sha256: string; filename: string; content_type: string }>(
              `SELECT d.document_id, d.version, d.sha256, d.filename, d.content_type FROM ${docs} d JOIN ${di} i ON i.document_id = d.document_id AND i.version = d.version
               WHERE i.status = 'pending'`,
            )
          ).rows,
        { readOnly: true },
      );
      // No outcome event: the document was indexed before; only its read model is new.
      for (const d of unlinked) {
        await pool.query(
          `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type, record_outcome)
           VALUES ($1, $2, $3, $4, $5, $6, false) ON CONFLICT (tenant_id, document_id) DO NOTHING`,
          [tenantId, d.document_id, d.version, d.sha256, d.filename, d.content_type],
        );
      }
      if (unlinked.length) opts.log?.('info', 'catalog rebuild: documents queued for the indexing workers (no cached chunk set)', { tenantId, documents: unlinked.length });
      queued = true;
    }
    if (liveVersion === version || waitMs <= 0) return;
    const behind = await withTenant(
      pool,
      tenantId,
      async (c) =>
        Number(
          (
            await c.query<{ n: string }>(
              `SELECT count(*) AS n FROM ${live} l LEFT JOIN ${di} i ON i.document_id = l.document_id
               WHERE l.ready_version IS NOT NULL AND i.document_id IS NOT NULL AND (i.ready_version IS NULL OR i.ready_version < l.ready_version)`,
            )
          ).rows[0]?.n ?? 0,
        ),
      { readOnly: true },
    ).catch((err) => {
      // The live tables of a tenant provisioned at this version do not exist: nothing to compare.
      if ((err as { code?: string }).code === '42P01') return 0;
      throw err;
    });
    if (behind === 0) return;
    if (Date.now() >= deadline) throw new Error(`catalog version ${version}: ${behind} document(s) of tenant ${tenantId} ready in version ${liveVersion} were not re-linked within ${Math.round(waitMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const LOCK_BUSY = new Set(['55P03', '40P01']);

/** The switch of one tenant: views locked, rows re-linked, views re-pointed, in one transaction. */
async function switchTenant(pool: Pool, tenantId: string, version: number, log: CatalogSwitchOptions['log']): Promise<void> {
  const schema = tenantSchema(tenantId);
  for (let attempt = 1; ; attempt++) {
    try {
      await withTransaction(pool, async (c) => {
        await c.query(`SET LOCAL lock_timeout = '2s'`);
        // Locking a view locks the tables it reads: the indexer's writes and the live projection's
        // wait; readers queue behind the lock for the few statements below.
        await c.query(`SET LOCAL ROLE ${SCHEMA_OWNER}; LOCK TABLE ${schema}.documents, ${schema}.document_index IN ACCESS EXCLUSIVE MODE; RESET ROLE`);
        await linkTenantInTransaction(c, tenantId, version);
        await pointCatalogViews(c, tenantId, version);
      });
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !LOCK_BUSY.has(code) || attempt >= 20) throw err;
      log?.('info', 'catalog switch postponed: the tenant\'s tables are busy', { tenantId, attempt });
      await new Promise((r) => setTimeout(r, Math.min(2000, 50 * attempt)));
    }
  }
}

/** Switches every projected tenant whose views do not read `version` yet. Returns how many it switched. */
export async function switchCatalog(pool: Pool, version: number, opts: CatalogSwitchOptions = {}): Promise<number> {
  let switched = 0;
  const views = await catalogViewVersions(pool);
  for (const tenantId of await projectedTenants(pool)) {
    const current = views.get(tenantId);
    if (current === undefined || current === version) continue;
    try {
      await prepareTenantSwitch(pool, tenantId, version, current, opts);
      await switchTenant(pool, tenantId, version, opts.log);
      switched++;
    } catch (err) {
      // Erased meanwhile (its schema dropped): nothing left to switch.
      if (!(await tenantSchemaExists(pool, tenantId))) continue;
      throw err;
    }
  }
  return switched;
}

/** Drops the catalog tables of `version` wherever a projected tenant's views read another one (snapshots keep theirs). */
export async function retireCatalogVersion(pool: Pool, version: number, log?: CatalogSwitchOptions['log']): Promise<void> {
  const views = await catalogViewVersions(pool);
  for (const tenantId of await projectedTenants(pool)) {
    if (views.get(tenantId) === version) continue;
    await withTransaction(pool, async (c) => {
      await c.query(`SET LOCAL lock_timeout = '5s'`);
      await dropCatalogTables(c, tenantId, version);
    }).catch((err) => log?.('warn', 'could not drop an old catalog version (dropped at the next rebuild)', { tenantId, version, error: (err as Error).message }));
  }
}

/** Before a rebuild into `version`: leftovers of an earlier attempt at that version go (no view reads them). */
export async function clearCatalogVersion(pool: Pool, version: number): Promise<void> {
  const views = await catalogViewVersions(pool);
  for (const tenantId of await projectedTenants(pool)) {
    if (views.get(tenantId) === version) throw new Error(`catalog version ${version} is read by tenant ${tenantId}`);
    await withTransaction(pool, (c) => dropCatalogTables(c, tenantId, version));
  }
}
