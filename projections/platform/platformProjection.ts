import type { Pool, PoolClient } from 'pg';
import { tenantSchema } from '../../contracts/naming';
import { withTransaction } from '../../infra/postgres/pool';
import type { TenantEvent } from '../../contracts/events';
import { upcast } from '../../contracts/upcast';
import { createTenantSchema, dropTenantSchema } from '../../infra/postgres/schema';
import { assertNever } from '../../services/core/errors';
import type { RecordedEvent } from '../../services/core/eventStore';
import type { Projection } from '../runner';

const TYPES = new Set<string>([
  'TenantProvisioned', 'UserAdded', 'UserRoleChanged', 'UserRemoved', 'ApiTokenIssued', 'ApiTokenRevoked',
  'TenantSuspended', 'TenantReactivated', 'TenantLimitsChanged', 'TenantDeleted',
]);

export interface PlatformHooks {
  /** Called after commit for tenants whose state changed, so caches (auth, rate limits) refresh. */
  onTenantChanged?(tenantId: string): void;
  /** Called after commit when a tenant was provisioned: create its vector shard. */
  onTenantProvisioned?(tenantId: string): void;
  /** Called after commit when a tenant was deleted: drop its vectors, Redis keys, content. */
  onTenantDeleted?(tenantId: string): void;
}

/** The platform tables a tenant's rows live in (one row set per tenant, told apart by `tenant_id`). */
export const PLATFORM_TABLES = ['tenants', 'users', 'api_tokens'] as const;
/** Version 1 is the live tables; version 0 the scratch copy of a tenant's rebuild (projections/tenantRebuild.ts). */
export const platformTable = (table: (typeof PLATFORM_TABLES)[number], version: number) => (version === 0 ? `${table}_v0` : table);

/**
 * Platform read model: tenants, users (with password hashes, for login), API token hashes,
 * and each tenant's schema + role, created at provisioning and dropped at deletion.
 *
 * `version` 0 writes a scratch copy of the three tables and nothing else: no schema or role is
 * created or dropped, no hook runs, so rebuilding one tenant's rows can never lock anyone out
 * or drop a live schema; its rows replace the live ones in one transaction.
 */
export function platformProjection(hooks: PlatformHooks = {}, version = 1): Projection {
  const scratch = version === 0;
  const [tenants, users, tokens] = PLATFORM_TABLES.map((t) => `platform.${platformTable(t, version)}`) as [string, string, string];
  return {
    name: 'platform',
    version,
    categories: ['tenant'],
    canHandle: (type) => TYPES.has(type),
    async apply(client: PoolClient, recorded: RecordedEvent) {
      if (scratch) {
        for (const t of PLATFORM_TABLES) await client.query(`CREATE TABLE IF NOT EXISTS platform.${platformTable(t, 0)} (LIKE platform.${t} INCLUDING ALL)`);
      }
      const event = upcast(recorded) as TenantEvent;
      const tenantId = recorded.metadata.tenantId;
      const at = recorded.metadata.occurredAt;
      switch (event.type) {
        case 'TenantProvisioned': {
          const d = event.data;
          await client.query(
            `INSERT INTO ${tenants} (tenant_id, slug, name, status, quotas, rate_limit, created_at, updated_at)
             VALUES ($1, $2, $3, 'active', $4, $5, $6, $6) ON CONFLICT (tenant_id) DO NOTHING`,
            [d.tenantId, d.slug, d.name, JSON.stringify(d.quotas), JSON.stringify(d.rateLimit), at],
          );
          if (!scratch) await createTenantSchema(client, d.tenantId);
          return;
        }
        case 'UserAdded': {
          const d = event.data;
          await client.query(
            `INSERT INTO ${users} (tenant_id, user_id, email, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, user_id) DO NOTHING`,
            [tenantId, d.userId, d.email, d.role, d.passwordHash, at],
          );
          return;
        }
        case 'UserRoleChanged':
          await client.query(`UPDATE ${users} SET role = $3 WHERE tenant_id = $1 AND user_id = $2`, [tenantId, event.data.userId, event.data.role]);
          return;
        case 'UserRemoved':
          await client.query(`DELETE FROM ${users} WHERE tenant_id = $1 AND user_id = $2`, [tenantId, event.data.userId]);
          return;
        case 'ApiTokenIssued': {
          const d = event.data;
          await client.query(
            `INSERT INTO ${tokens} (token_id, tenant_id, name, prefix, hash, role, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (token_id) DO NOTHING`,
            [d.tokenId, tenantId, d.name, d.prefix, d.hash, d.role, recorded.metadata.actor, at],
          );
          return;
        }
        case 'ApiTokenRevoked':
          await client.query(`UPDATE ${tokens} SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant_id = $1 AND token_id = $2`, [tenantId, event.data.tokenId, at]);
          return;
        case 'TenantSuspended':
          await client.query(`UPDATE ${tenants} SET status = 'suspended', updated_at = $2 WHERE tenant_id = $1`, [tenantId, at]);
          return;
        case 'TenantReactivated':
          await client.query(`UPDATE ${tenants} SET status = 'active', updated_at = $2 WHERE tenant_id = $1`, [tenantId, at]);
          return;
        case 'TenantLimitsChanged':
          await client.query(`UPDATE ${tenants} SET quotas = $2, rate_limit = $3, updated_at = $4 WHERE tenant_id = $1`, [
            tenantId, JSON.stringify(event.data.quotas), JSON.stringify(event.data.rateLimit), at,
          ]);
          return;
        case 'TenantDeleted':
          // Keep the slug taken (the stream is tombstoned) but drop every read model and secret.
          await client.query(`UPDATE ${tenants} SET status = 'deleted', updated_at = $2 WHERE tenant_id = $1`, [tenantId, at]);
          await client.query(`DELETE FROM ${users} WHERE tenant_id = $1`, [tenantId]);
          await client.query(`DELETE FROM ${tokens} WHERE tenant_id = $1`, [tenantId]);
          if (scratch) return;
          await client.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1', [tenantId]);
          await dropTenantSchema(client, tenantId);
          return;
        default:
          return assertNever(event);
      }
    },
    afterCommit(events) {
      if (scratch) return;
      for (const e of events) {
        if (!TYPES.has(e.type)) continue;
        hooks.onTenantChanged?.(e.metadata.tenantId);
        if (e.type === 'TenantProvisioned') hooks.onTenantProvisioned?.(e.metadata.tenantId);
        if (e.type === 'TenantDeleted') hooks.onTenantDeleted?.(e.metadata.tenantId);
      }
    },
  };
}

/**
 * After the platform's rows were rebuilt in place (one tenant's, or every tenant's: null), what
 * the rows imply beyond themselves, which the scratch copy never touched: a tenant they hold as
 * active or suspended has its schema and role (created when missing, e.g. dropped behind the
 * product's back; its other read models then need `replay <name> --tenant`), an erased one has
 * none (dropped when left over, and the erasure finished). Every such tenant's caches are dropped.
 */
export async function reconcilePlatform(
  pool: Pool,
  hooks: PlatformHooks,
  tenantId: string | null,
  log: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void = () => undefined,
): Promise<{ tenants: number; created: string[]; dropped: string[] }> {
  const rows = (
    await pool.query<{ tenant_id: string; status: string }>('SELECT tenant_id::text AS tenant_id, status FROM platform.tenants WHERE $1::text IS NULL OR tenant_id::text = $1', [tenantId])
  ).rows;
  const schemas = new Set(
    (await pool.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)', [rows.map((r) => tenantSchema(r.tenant_id))])).rows.map((r) => r.nspname),
  );
  const created: string[] = [];
  const dropped: string[] = [];
  for (const row of rows) {
    const has = schemas.has(tenantSchema(row.tenant_id));
    if (row.status !== 'deleted' && !has) {
      await withTransaction(pool, (c) => createTenantSchema(c, row.tenant_id));
      created.push(row.tenant_id);
      hooks.onTenantProvisioned?.(row.tenant_id);
    } else if (row.status === 'deleted' && has) {
      await withTransaction(pool, async (c) => {
        await c.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1', [row.tenant_id]);
        await dropTenantSchema(c, row.tenant_id);
      });
      dropped.push(row.tenant_id);
      hooks.onTenantDeleted?.(row.tenant_id);
    }
    hooks.onTenantChanged?.(row.tenant_id);
  }
  if (created.length) log('warn', 'platform rebuild re-created missing tenant schemas: rebuild their catalog and audit (replay <name> --tenant <slug>)', { tenants: created });
  if (dropped.length) log('warn', 'platform rebuild dropped the schemas of erased tenants', { tenants: dropped });
  return { tenants: rows.length, created, dropped };
}
