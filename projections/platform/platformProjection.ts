import type { PoolClient } from 'pg';
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

/**
 * Platform read model: tenants, users (with password hashes, for login), API token hashes,
 * and each tenant's schema + role, created at provisioning and dropped at deletion.
 */
export function platformProjection(hooks: PlatformHooks = {}): Projection {
  return {
    name: 'platform',
    version: 1,
    categories: ['tenant'],
    canHandle: (type) => TYPES.has(type),
    async apply(client: PoolClient, recorded: RecordedEvent) {
      const event = upcast(recorded) as TenantEvent;
      const tenantId = recorded.metadata.tenantId;
      const at = recorded.metadata.occurredAt;
      switch (event.type) {
        case 'TenantProvisioned': {
          const d = event.data;
          await client.query(
            `INSERT INTO platform.tenants (tenant_id, slug, name, status, quotas, rate_limit, created_at, updated_at)
             VALUES ($1, $2, $3, 'active', $4, $5, $6, $6) ON CONFLICT (tenant_id) DO NOTHING`,
            [d.tenantId, d.slug, d.name, JSON.stringify(d.quotas), JSON.stringify(d.rateLimit), at],
          );
          await createTenantSchema(client, d.tenantId);
          return;
        }
        case 'UserAdded': {
          const d = event.data;
          await client.query(
            `INSERT INTO platform.users (tenant_id, user_id, email, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, user_id) DO NOTHING`,
            [tenantId, d.userId, d.email, d.role, d.passwordHash, at],
          );
          return;
        }
        case 'UserRoleChanged':
          await client.query('UPDATE platform.users SET role = $3 WHERE tenant_id = $1 AND user_id = $2', [tenantId, event.data.userId, event.data.role]);
          return;
        case 'UserRemoved':
          await client.query('DELETE FROM platform.users WHERE tenant_id = $1 AND user_id = $2', [tenantId, event.data.userId]);
          return;
        case 'ApiTokenIssued': {
          const d = event.data;
          await client.query(
            `INSERT INTO platform.api_tokens (token_id, tenant_id, name, prefix, hash, role, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (token_id) DO NOTHING`,
            [d.tokenId, tenantId, d.name, d.prefix, d.hash, d.role, recorded.metadata.actor, at],
          );
          return;
        }
        case 'ApiTokenRevoked':
          await client.query('UPDATE platform.api_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant_id = $1 AND token_id = $2', [tenantId, event.data.tokenId, at]);
          return;
        case 'TenantSuspended':
          await client.query(`UPDATE platform.tenants SET status = 'suspended', updated_at = $2 WHERE tenant_id = $1`, [tenantId, at]);
          return;
        case 'TenantReactivated':
          await client.query(`UPDATE platform.tenants SET status = 'active', updated_at = $2 WHERE tenant_id = $1`, [tenantId, at]);
          return;
        case 'TenantLimitsChanged':
          await client.query('UPDATE platform.tenants SET quotas = $2, rate_limit = $3, updated_at = $4 WHERE tenant_id = $1', [
            tenantId, JSON.stringify(event.data.quotas), JSON.stringify(event.data.rateLimit), at,
          ]);
          return;
        case 'TenantDeleted':
          // Keep the slug taken (the stream is tombstoned) but drop every read model and secret.
          await client.query(`UPDATE platform.tenants SET status = 'deleted', updated_at = $2 WHERE tenant_id = $1`, [tenantId, at]);
          await client.query('DELETE FROM platform.users WHERE tenant_id = $1', [tenantId]);
          await client.query('DELETE FROM platform.api_tokens WHERE tenant_id = $1', [tenantId]);
          await client.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1', [tenantId]);
          await dropTenantSchema(client, tenantId);
          return;
        default:
          return assertNever(event);
      }
    },
    afterCommit(events) {
      for (const e of events) {
        if (!TYPES.has(e.type)) continue;
        hooks.onTenantChanged?.(e.metadata.tenantId);
        if (e.type === 'TenantProvisioned') hooks.onTenantProvisioned?.(e.metadata.tenantId);
        if (e.type === 'TenantDeleted') hooks.onTenantDeleted?.(e.metadata.tenantId);
      }
    },
  };
}
