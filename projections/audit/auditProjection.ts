import { createHash } from 'node:crypto';
import type { PoolClient } from 'pg';
import type { AnyEvent } from '../../contracts/events';
import { tenantRole, tenantSchema } from '../../contracts/naming';
import { upcast } from '../../contracts/upcast';
import { SCHEMA_OWNER, enterTenant, tenantSchemaExists } from '../../infra/postgres/schema';
import { assertNever } from '../../services/core/errors';
import type { RecordedEvent } from '../../services/core/eventStore';
import type { Projection } from '../runner';

/**
 * The audit log: one row per event of the tenant, newest readable first, in the tenant's own
 * schema. Rows hold who, what, when, the subject ids and a whitelist of safe details, never a
 * password hash, a token, a query's text or a document's content. Each row's hash covers the
 * previous row's hash, so an altered, inserted or deleted row breaks the chain (GET /v1/audit/verify).
 * Tables are per projection version (`audit_log_v<N>`): a rebuild fills a new version beside the
 * live one and reads switch when it has caught up.
 */
export const AUDIT_VERSION = 1;

export class TenantNotReadyError extends Error {
  constructor(tenantId: string) {
    super(`tenant ${tenantId} is not provisioned yet`);
  }
}
export const auditTable = (version: number) => `audit_log_v${version}`;

export interface AuditEntry {
  subject: string | null;
  result: 'success' | 'failure';
  details: Record<string, unknown>;
}

export function describe(event: AnyEvent): AuditEntry {
  const ok = (subject: string | null, details: Record<string, unknown>): AuditEntry => ({ subject, result: 'success', details });
  switch (event.type) {
    case 'TenantProvisioned':
      return ok(event.data.tenantId, { name: event.data.name, slug: event.data.slug });
    case 'UserAdded':
      return ok(event.data.userId, { email: event.data.email, role: event.data.role });
    case 'UserRoleChanged':
      return ok(event.data.userId, { role: event.data.role, previousRole: event.data.previousRole });
    case 'UserRemoved':
      return ok(event.data.userId, {});
    case 'ApiTokenIssued':
      return ok(event.data.tokenId, { name: event.data.name, prefix: event.data.prefix, role: event.data.role });
    case 'ApiTokenRevoked':
      return ok(event.data.tokenId, {});
    case 'TenantSuspended':
      return ok(null, { reason: event.data.reason });
    case 'TenantReactivated':
    case 'TenantDeleted':
      return ok(null, {});
    case 'TenantLimitsChanged':
      return ok(null, { quotas: event.data.quotas, rateLimit: event.data.rateLimit });
    case 'LoginSucceeded':
      return ok(event.data.userId, {});
    case 'LoginFailed':
      return { subject: null, result: 'failure', details: { emailHash: event.data.emailHash, reason: event.data.reason } };
    case 'DocumentUploaded':
    case 'DocumentReplaced':
      return ok(event.data.documentId, { filename: event.data.filename, version: event.data.version, sizeBytes: event.data.sizeBytes, sha256: event.data.sha256 });
    case 'DocumentDeleted':
      return ok(event.data.documentId, { version: event.data.version });
    case 'DocumentIndexed':
      return ok(event.data.documentId, { version: event.data.version, chunkCount: event.data.chunkCount, embedderId: event.data.embedderId });
    case 'DocumentIndexingFailed':
      return { subject: event.data.documentId, result: 'failure', details: { version: event.data.version, reason: event.data.reason } };
    case 'SearchPerformed':
      return ok(null, { queryHash: event.data.queryHash, mode: event.data.mode, topK: event.data.topK, resultChunkIds: event.data.resultChunkIds });
    case 'QuestionAsked':
      return ok(null, { questionHash: event.data.questionHash, model: event.data.model, sourceChunkIds: event.data.sourceChunkIds });
    default:
      return assertNever(event);
  }
}

/** Canonical JSON (sorted keys) so the hash of a row is the same wherever it is computed. */
export function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(',')}}`;
}

export interface AuditRow {
  event_id: string;
  position: string;
  occurred_at: string;
  actor: string;
  type: string;
  subject: string | null;
  correlation_id: string;
  result: string;
  details: Record<string, unknown>;
}

export function rowHash(prevHash: string, row: AuditRow): string {
  return createHash('sha256')
    .update(prevHash)
    .update('\n')
    .update(canonical({ ...row, occurred_at: new Date(row.occurred_at).toISOString() }))
    .digest('hex');
}

export const GENESIS = '0'.repeat(64);

export async function ensureAuditTable(client: PoolClient, tenantId: string, version: number): Promise<void> {
  const schema = tenantSchema(tenantId);
  const table = `${schema}.${auditTable(version)}`;
  const r = await client.query('SELECT to_regclass($1) AS t', [table]);
  if (r.rows[0]?.t) return;
  await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER}`);
  await client.query(`
CREATE TABLE IF NOT EXISTS ${table} (
  seq bigserial PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  position text NOT NULL,
  occurred_at timestamptz NOT NULL,
  actor text NOT NULL,
  type text NOT NULL,
  subject text,
  correlation_id text NOT NULL,
  result text NOT NULL,
  details jsonb NOT NULL,
  prev_hash text NOT NULL,
  hash text NOT NULL
);
CREATE INDEX IF NOT EXISTS ${auditTable(version)}_actor ON ${table} (actor, seq);
CREATE INDEX IF NOT EXISTS ${auditTable(version)}_subject ON ${table} (subject, seq);
GRANT SELECT, INSERT ON ${table} TO ${tenantRole(tenantId)};
GRANT USAGE ON SEQUENCE ${table}_seq_seq TO ${tenantRole(tenantId)};`);
  await client.query('RESET ROLE');
}

export function auditProjection(version = AUDIT_VERSION): Projection {
  const ready = new Set<string>();
  return {
    name: 'audit',
    version,
    categories: ['tenant', 'security', 'document', 'activity'],
    canHandle: (type) => type !== 'TenantDeleted',
    async apply(client: PoolClient, recorded: RecordedEvent) {
      const tenantId = recorded.metadata.tenantId;
      if (!ready.has(tenantId)) {
        if (!(await tenantSchemaExists(client, tenantId))) {
          const t = await client.query<{ status: string }>('SELECT status FROM platform.tenants WHERE tenant_id = $1', [tenantId]);
          if (t.rows[0]?.status === 'deleted' || (t.rows[0] && recorded.type !== 'TenantProvisioned')) return; // erased since
          // The platform projection has not created the tenant's schema yet: retry the batch.
          throw new TenantNotReadyError(tenantId);
        }
        await ensureAuditTable(client, tenantId, version);
        ready.add(tenantId);
      }
      const event = upcast(recorded) as AnyEvent;
      const entry = describe(event);
      await enterTenant(client, tenantId);
      const table = auditTable(version);
      const dup = await client.query(`SELECT 1 FROM ${table} WHERE event_id = $1`, [recorded.eventId]);
      if (dup.rowCount) return;
      const prev = await client.query<{ hash: string }>(`SELECT hash FROM ${table} ORDER BY seq DESC LIMIT 1`);
      const row: AuditRow = {
        event_id: recorded.eventId,
        position: recorded.position,
        occurred_at: recorded.metadata.occurredAt,
        actor: recorded.metadata.actor,
        type: recorded.type,
        subject: entry.subject,
        correlation_id: recorded.metadata.correlationId,
        result: entry.result,
        details: entry.details,
      };
      const prevHash = prev.rows[0]?.hash ?? GENESIS;
      await client.query(
        `INSERT INTO ${table} (event_id, position, occurred_at, actor, type, subject, correlation_id, result, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [row.event_id, row.position, row.occurred_at, row.actor, row.type, row.subject, row.correlation_id, row.result, JSON.stringify(row.details), prevHash, rowHash(prevHash, row)],
      );
    },
  };
}
