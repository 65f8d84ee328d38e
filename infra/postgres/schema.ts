import type { Pool, PoolClient } from 'pg';
import { tenantRole, tenantSchema } from '../../contracts/naming';
import { withTransaction } from './pool';

/**
 * Platform schema (tenants, users, token hashes, checkpoints, content) and per-tenant schemas.
 * Tenant schemas are owned by a NOLOGIN role nobody connects as; each tenant has a role that can
 * use its own schema only. Tenant-scoped work runs in a transaction that does SET LOCAL ROLE and
 * SET LOCAL search_path, so a query with a forgotten filter errors or finds nothing.
 */
export const SCHEMA_OWNER = 'tr_schema_owner';

const PLATFORM_DDL = `
-- Roles are cluster-wide while the advisory lock below is per database: two databases of one
-- server migrating at once may both try to create the role, so losing that race is fine.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${SCHEMA_OWNER}') THEN
    CREATE ROLE ${SCHEMA_OWNER} NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
-- Tenant roles must not create temporary tables: pg_temp would shadow their own tables on a
-- pooled connection for the next tenant's transaction.
DO $$ BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;
-- PostgreSQL 13/14 let every role create objects in schema public; 15 already does not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS platform;
REVOKE ALL ON SCHEMA platform FROM PUBLIC;
CREATE TABLE IF NOT EXISTS platform.tenants (
  tenant_id uuid PRIMARY KEY,
  slug text NOT NULL UNIQUE,
  name text NOT NULL,
  status text NOT NULL,
  quotas jsonb NOT NULL,
  rate_limit jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS platform.users (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  email text NOT NULL,
  role text NOT NULL,
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, user_id),
  UNIQUE (tenant_id, email)
);
CREATE TABLE IF NOT EXISTS platform.api_tokens (
  token_id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL,
  name text NOT NULL,
  prefix text NOT NULL,
  hash text NOT NULL UNIQUE,
  role text NOT NULL,
  created_by text NOT NULL,
  created_at timestamptz NOT NULL,
  revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_tokens_tenant ON platform.api_tokens (tenant_id, created_at);
CREATE TABLE IF NOT EXISTS platform.checkpoints (
  projection text PRIMARY KEY,
  position text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS platform.dead_letters (
  id bigserial PRIMARY KEY,
  projection text NOT NULL,
  event_id uuid NOT NULL,
  stream_id text NOT NULL,
  type text NOT NULL,
  reason text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (projection, event_id)
);
CREATE TABLE IF NOT EXISTS platform.index_jobs (
  tenant_id uuid NOT NULL,
  document_id uuid NOT NULL,
  version integer NOT NULL,
  sha256 text NOT NULL,
  filename text NOT NULL,
  content_type text NOT NULL,
  state text NOT NULL DEFAULT 'queued',
  attempts integer NOT NULL DEFAULT 0,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz,
  PRIMARY KEY (tenant_id, document_id)
);
-- Indexing outcomes are recorded as events for real tenants only, not for snapshots.
ALTER TABLE platform.index_jobs ADD COLUMN IF NOT EXISTS record_outcome boolean NOT NULL DEFAULT true;
-- Read-only point-in-time copies of a tenant's knowledge base (replay --until --into).
CREATE TABLE IF NOT EXISTS platform.snapshots (
  tenant_id uuid NOT NULL,
  name text NOT NULL,
  snapshot_id uuid NOT NULL UNIQUE,
  until text NOT NULL,
  documents integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, name)
);
CREATE TABLE IF NOT EXISTS platform.projection_versions (
  name text PRIMARY KEY,
  active_version integer NOT NULL,
  building_version integer,
  state text NOT NULL DEFAULT 'live',
  error text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Zero-downtime re-embedding: per tenant (or snapshot) the embedder whose chunk sets search
-- serves, the one being built beside it, and the sets left to drop after a switch.
CREATE TABLE IF NOT EXISTS platform.tenant_embedders (
  tenant_id uuid PRIMARY KEY,
  serving_embedder text NOT NULL,
  serving_loadable boolean NOT NULL DEFAULT true,
  building_embedder text,
  docs_done integer NOT NULL DEFAULT 0,
  docs_total integer NOT NULL DEFAULT 0,
  started_at timestamptz,
  switched_at timestamptz,
  drop_embedders text[] NOT NULL DEFAULT '{}',
  drop_after timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE SCHEMA IF NOT EXISTS content;
REVOKE ALL ON SCHEMA content FROM PUBLIC;
CREATE TABLE IF NOT EXISTS content.blobs (
  tenant_id uuid NOT NULL,
  sha256 text NOT NULL,
  size_bytes integer NOT NULL,
  bytes bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, sha256)
);
`;

export async function migratePlatform(pool: Pool): Promise<void> {
  await withTransaction(pool, async (client) => {
    // Several processes may start at once: one migrates, the others wait.
    await client.query('SELECT pg_advisory_xact_lock(7157001)');
    await client.query(PLATFORM_DDL);
  });
}

/**
 * The catalog's tables of one version in a tenant's schema: what the catalog projection derives
 * from events (`documents`) and the indexer's state of each document (`document_index`). Readers
 * never name a version: the views `documents` and `document_index` point at the catalog's active
 * version, and an online rebuild (projections/catalog/catalogRebuild.ts) re-points them.
 */
export const catalogTable = (base: 'documents' | 'document_index', version: number) => `${base}_v${version}`;

function catalogTablesDDL(schema: string, version: number): string {
  return `
CREATE TABLE IF NOT EXISTS ${schema}.${catalogTable('documents', version)} (
  document_id uuid PRIMARY KEY,
  filename text NOT NULL,
  external_id text,
  content_type text NOT NULL,
  size_bytes integer NOT NULL,
  sha256 text NOT NULL,
  version integer NOT NULL,
  uploaded_by text NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  position text NOT NULL
);
CREATE INDEX IF NOT EXISTS ${catalogTable('documents', version)}_created ON ${schema}.${catalogTable('documents', version)} (created_at DESC, document_id DESC);
CREATE TABLE IF NOT EXISTS ${schema}.${catalogTable('document_index', version)} (
  document_id uuid PRIMARY KEY,
  version integer NOT NULL,
  ready_version integer,
  status text NOT NULL,
  error text,
  chunks_total integer NOT NULL DEFAULT 0,
  chunks_done integer NOT NULL DEFAULT 0,
  embedder_id text,
  -- Embedders with a complete chunk set of ready_version (two during a re-embedding).
  embedder_sets text[] NOT NULL DEFAULT '{}',
  format text,
  updated_at timestamptz NOT NULL
);`;
}

/** The views readers use, on the catalog tables of `version` (same columns in every version). */
function catalogViewsDDL(schema: string, version: number): string {
  return `
CREATE OR REPLACE VIEW ${schema}.documents AS SELECT * FROM ${schema}.${catalogTable('documents', version)};
CREATE OR REPLACE VIEW ${schema}.document_index AS SELECT * FROM ${schema}.${catalogTable('document_index', version)};`;
}

/**
 * Where each complete chunk set is, by content: (sha256 of the document bytes, chunker, embedder)
 * -> the chunk rows (document, version) holding it. The indexer writes a row before it activates
 * a set; a rebuild of the catalog re-links documents to the sets they have (and the indexer copies
 * a set to another document with the same content) instead of embedding again. Per tenant, inside
 * its schema: a cache shared between tenants would let one tenant time another's uploads.
 */
function chunkSetsDDL(schema: string): string {
  return `
CREATE TABLE IF NOT EXISTS ${schema}.chunk_sets (
  document_id uuid NOT NULL,
  version integer NOT NULL,
  embedder_id text NOT NULL,
  sha256 text NOT NULL,
  chunker text NOT NULL,
  chunk_count integer NOT NULL,
  format text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (document_id, version, embedder_id)
);
CREATE INDEX IF NOT EXISTS chunk_sets_content ON ${schema}.chunk_sets (sha256, chunker, embedder_id);`;
}

/** The read-model tables of one tenant (same DDL for live schemas and replay snapshots). */
export function tenantTablesDDL(schema: string, catalogVersion = 1): string {
  return `${catalogTablesDDL(schema, catalogVersion)}${catalogViewsDDL(schema, catalogVersion)}
CREATE TABLE ${schema}.chunks (
  document_id uuid NOT NULL,
  chunk_index integer NOT NULL,
  version integer NOT NULL,
  text text NOT NULL,
  heading_path text[] NOT NULL DEFAULT '{}',
  page integer,
  token_count integer NOT NULL,
  tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
  embedder_id text NOT NULL,
  embedding bytea NOT NULL,
  -- The embedder is part of a chunk set's identity: its tokenizer decides the boundaries, and a
  -- re-embedding stages the new set beside the served one.
  PRIMARY KEY (document_id, version, embedder_id, chunk_index)
);
-- No GIN index on tsv: keyword search ranks with BM25 over the lexemes loaded in memory
-- (infra/vectors/bm25.ts), and the index cost most of each chunk insert.
${chunkSetsDDL(schema)}
`;
}

/** The tenant id a tenant (or snapshot) schema name was made from (tenantSchema's inverse). */
function tenantIdOfSchema(schema: string): string | null {
  const m = /^t_([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$/.exec(schema);
  return m ? m.slice(1).join('-') : null;
}

/**
 * Creates the catalog tables of `version` in a tenant's schema unless they exist (as the schema
 * owner, in the caller's transaction); true when it created any. The tenant's role may write them.
 */
export async function ensureCatalogTables(client: PoolClient, tenantId: string, version: number): Promise<boolean> {
  const schema = tenantSchema(tenantId);
  const r = await client.query<{ d: string | null; i: string | null }>('SELECT to_regclass($1) AS d, to_regclass($2) AS i', [
    `${schema}.${catalogTable('documents', version)}`,
    `${schema}.${catalogTable('document_index', version)}`,
  ]);
  if (r.rows[0]?.d && r.rows[0]?.i) return false;
  await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER};${catalogTablesDDL(schema, version)}
GRANT SELECT, INSERT, UPDATE, DELETE ON ${schema}.${catalogTable('documents', version)}, ${schema}.${catalogTable('document_index', version)} TO ${tenantRole(tenantId)};
RESET ROLE;`);
  return true;
}

/** Points the tenant's `documents` and `document_index` views at the catalog tables of `version` (created if missing). */
export async function pointCatalogViews(client: PoolClient, tenantId: string, version: number): Promise<void> {
  await ensureCatalogTables(client, tenantId, version);
  await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER};${catalogViewsDDL(tenantSchema(tenantId), version)}
RESET ROLE;`);
}

/** Drops the catalog tables of `version` in a tenant's schema (their views point elsewhere). */
export async function dropCatalogTables(client: PoolClient, tenantId: string, version: number): Promise<void> {
  const schema = tenantSchema(tenantId);
  await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER};
DROP TABLE IF EXISTS ${schema}.${catalogTable('documents', version)}, ${schema}.${catalogTable('document_index', version)};
RESET ROLE;`);
}

/** The catalog version each tenant (or snapshot) schema's `document_index` view reads, by tenant id. */
export async function catalogViewVersions(q: Pool | PoolClient): Promise<Map<string, number>> {
  const r = await q.query<{ schema: string; target: string }>(
    `SELECT DISTINCT n.nspname AS schema, t.relname AS target
     FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
     JOIN pg_rewrite rw ON rw.ev_class = v.oid
     JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = rw.oid AND dep.refclassid = 'pg_class'::regclass
     JOIN pg_class t ON t.oid = dep.refobjid AND t.oid <> v.oid AND t.relkind = 'r'
     WHERE v.relname = 'document_index' AND v.relkind = 'v' AND pg_get_userbyid(n.nspowner) = $1`,
    [SCHEMA_OWNER],
  );
  const out = new Map<string, number>();
  for (const row of r.rows) {
    const id = tenantIdOfSchema(row.schema);
    const m = /^document_index_v(\d+)$/.exec(row.target);
    if (id && m) out.set(id, Number(m[1]));
  }
  return out;
}

/**
 * Brings tenant and snapshot schemas created before chunk sets were per embedder up to date:
 * document_index.embedder_sets (backfilled with the ready version's embedder) and the chunks key
 * with embedder_id. Idempotent; runs at start under the platform migration lock.
 */
export async function migrateTenantSchemas(pool: Pool): Promise<number> {
  return withTransaction(pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock(7157001)');
    const stale = await client.query<{ schema: string }>(
      `SELECT n.nspname AS schema FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE t.relname = 'chunks' AND t.relkind = 'r' AND pg_get_userbyid(n.nspowner) = $1
         AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = (quote_ident(n.nspname) || '.document_index')::regclass
                         AND a.attname = 'embedder_sets' AND NOT a.attisdropped)`,
      [SCHEMA_OWNER],
    );
    await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER}`);
    for (const { schema } of stale.rows) {
      const s = `"${schema.replace(/"/g, '""')}"`;
      await client.query(`
ALTER TABLE ${s}.document_index ADD COLUMN IF NOT EXISTS embedder_sets text[] NOT NULL DEFAULT '{}';
UPDATE ${s}.document_index SET embedder_sets = ARRAY[embedder_id] WHERE ready_version IS NOT NULL AND embedder_id IS NOT NULL;
ALTER TABLE ${s}.chunks DROP CONSTRAINT IF EXISTS chunks_pkey;
ALTER TABLE ${s}.chunks ADD PRIMARY KEY (document_id, version, embedder_id, chunk_index);`);
    }
    // Catalog tables per version behind views (online rebuilds of the catalog) and the chunk-set
    // cache, for schemas made before: their tables become version 1, the cache lists the sets
    // each ready document holds (every set named in embedder_sets is complete).
    await client.query('RESET ROLE');
    const unversioned = await client.query<{ schema: string }>(
      `SELECT n.nspname AS schema FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
       WHERE t.relname = 'document_index' AND t.relkind = 'r' AND pg_get_userbyid(n.nspowner) = $1`,
      [SCHEMA_OWNER],
    );
    for (const { schema } of unversioned.rows) {
      const tenantId = tenantIdOfSchema(schema);
      if (!tenantId) continue;
      await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER};
ALTER TABLE ${schema}.documents RENAME TO ${catalogTable('documents', 1)};
ALTER TABLE ${schema}.document_index RENAME TO ${catalogTable('document_index', 1)};
${catalogViewsDDL(schema, 1)}
${chunkSetsDDL(schema)}
GRANT SELECT, INSERT, UPDATE, DELETE ON ${schema}.documents, ${schema}.document_index, ${schema}.chunk_sets TO ${tenantRole(tenantId)};
INSERT INTO ${schema}.chunk_sets (document_id, version, embedder_id, sha256, chunker, chunk_count, format)
SELECT di.document_id, di.ready_version, e.embedder_id, CASE WHEN d.version = di.ready_version THEN d.sha256 ELSE '' END, '${LEGACY_CHUNKER}', count(c.chunk_index), di.format
FROM ${schema}.document_index di JOIN ${schema}.documents d ON d.document_id = di.document_id
CROSS JOIN LATERAL unnest(di.embedder_sets) AS e(embedder_id)
JOIN ${schema}.chunks c ON c.document_id = di.document_id AND c.version = di.ready_version AND c.embedder_id = e.embedder_id
GROUP BY di.document_id, di.ready_version, e.embedder_id, d.version, d.sha256, di.format
ON CONFLICT DO NOTHING;
RESET ROLE;`);
    }
    return stale.rows.length + unversioned.rows.length;
  });
}

/**
 * Chunker recorded for chunk sets that existed before the cache did. Their boundaries came from
 * some earlier chunker, so the indexer never copies them to another document (it looks sets up
 * by its own chunker); a rebuild still re-links the document that holds them.
 */
const LEGACY_CHUNKER = 'unknown';

export async function createTenantSchema(client: PoolClient, tenantId: string): Promise<void> {
  const schema = tenantSchema(tenantId);
  const role = tenantRole(tenantId);
  const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (exists.rowCount) return; // redelivery: already provisioned
  // The catalog's active version; FOR SHARE holds back a catalog switch (projections/catalog/
  // catalogRebuild.ts) until this schema is committed, so the switch's last pass sees it.
  const active = await client.query<{ active_version: number }>(`SELECT active_version FROM platform.projection_versions WHERE name = 'catalog' FOR SHARE`);
  const catalogVersion = active.rows[0]?.active_version ?? 1;
  await client.query(`
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} NOLOGIN; END IF;
END $$;
CREATE SCHEMA ${schema} AUTHORIZATION ${SCHEMA_OWNER};
SET LOCAL ROLE ${SCHEMA_OWNER};
${tenantTablesDDL(schema, catalogVersion)}
GRANT USAGE ON SCHEMA ${schema} TO ${role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role};
RESET ROLE;`);
}

export async function tenantSchemaExists(client: PoolClient | Pool, tenantId: string): Promise<boolean> {
  const r = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(tenantId)]);
  return (r.rowCount ?? 0) > 0;
}

export async function dropTenantSchema(client: PoolClient, tenantId: string): Promise<void> {
  const schema = tenantSchema(tenantId);
  const role = tenantRole(tenantId);
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await client.query(`DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN DROP ROLE ${role}; END IF;
END $$;`);
}

/** Enter a tenant's scope inside an open transaction. Identifiers come from the naming helper only. */
export async function enterTenant(client: PoolClient, tenantId: string): Promise<void> {
  await client.query(`SET LOCAL ROLE ${tenantRole(tenantId)}; SET LOCAL search_path TO ${tenantSchema(tenantId)}, pg_catalog, pg_temp`);
}

/** Leave the tenant's scope (back to the platform role) inside the same transaction. */
export async function leaveTenant(client: PoolClient): Promise<void> {
  await client.query('RESET ROLE; SET LOCAL search_path TO platform');
}

/**
 * Runs fn in a transaction scoped to one tenant: role and search_path are set locally, so a
 * pooled connection carries nothing into the next request.
 */
export async function withTenant<T>(pool: Pool, tenantId: string, fn: (client: PoolClient) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
  return withTransaction(pool, fn, {
    readOnly: opts.readOnly,
    then: `SET LOCAL ROLE ${tenantRole(tenantId)}; SET LOCAL search_path TO ${tenantSchema(tenantId)}, pg_catalog, pg_temp`,
  });
}
