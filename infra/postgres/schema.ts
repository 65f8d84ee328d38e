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

/** The read-model tables of one tenant (same DDL for live schemas and replay snapshots). */
export function tenantTablesDDL(schema: string): string {
  return `
CREATE TABLE ${schema}.documents (
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
CREATE INDEX ON ${schema}.documents (created_at DESC, document_id DESC);
CREATE TABLE ${schema}.document_index (
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
);
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
`;
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
    return stale.rows.length;
  });
}

export async function createTenantSchema(client: PoolClient, tenantId: string): Promise<void> {
  const schema = tenantSchema(tenantId);
  const role = tenantRole(tenantId);
  const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  if (exists.rowCount) return; // redelivery: already provisioned
  await client.query(`
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} NOLOGIN; END IF;
END $$;
CREATE SCHEMA ${schema} AUTHORIZATION ${SCHEMA_OWNER};
SET LOCAL ROLE ${SCHEMA_OWNER};
${tenantTablesDDL(schema)}
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
