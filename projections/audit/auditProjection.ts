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
  return chainHash(prevHash, hashedText(row));
}

/** What a row's hash covers besides the previous hash; independent of the chain. */
function hashedText(row: AuditRow): string {
  return canonical({ ...row, occurred_at: new Date(row.occurred_at).toISOString() });
}

function chainHash(prevHash: string, text: string): string {
  return createHash('sha256').update(prevHash).update('\n').update(text).digest('hex');
}

export const GENESIS = '0'.repeat(64);

export async function ensureAuditTable(client: PoolClient, tenantId: string, version: number): Promise<void> {
  const schema = tenantSchema(tenantId);
  const table = `${schema}.${auditTable(version)}`;
  const r = await client.query('SELECT to_regclass($1) AS t', [table]);
  if (r.rows[0]?.t) return;
  await client.query(`
SET LOCAL ROLE ${SCHEMA_OWNER};
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
GRANT USAGE ON SEQUENCE ${table}_seq_seq TO ${tenantRole(tenantId)};
RESET ROLE;`);
}

/** The row an event becomes (before hashing); one definition for `apply` and `applyMany`. */
export function auditRow(recorded: RecordedEvent): AuditRow {
  const entry = describe(upcast(recorded) as AnyEvent);
  return {
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
}

export function auditProjection(version = AUDIT_VERSION): Projection {
  const ready = new Set<string>();
  const table = auditTable(version);
  /**
   * Whether the tenant's table can take rows: 'ready', or 'skip' when the tenant was erased
   * since (its events are dropped). Throws while the platform projection has not created the
   * tenant's schema yet, so the batch is retried.
   */
  const prepare = async (client: PoolClient, tenantId: string, types: string[]): Promise<'ready' | 'skip'> => {
    if (ready.has(tenantId)) return 'ready';
    if (!(await tenantSchemaExists(client, tenantId))) {
      const t = await client.query<{ status: string }>('SELECT status FROM platform.tenants WHERE tenant_id = $1', [tenantId]);
      const erased = (type: string) => t.rows[0]?.status === 'deleted' || (t.rows[0] !== undefined && type !== 'TenantProvisioned');
      if (types.every(erased)) return 'skip';
      throw new TenantNotReadyError(tenantId);
    }
    await ensureAuditTable(client, tenantId, version);
    ready.add(tenantId);
    return 'ready';
  };
  return {
    name: 'audit',
    version,
    categories: ['tenant', 'security', 'document', 'activity'],
    canHandle: (type) => type !== 'TenantDeleted',
    async apply(client: PoolClient, recorded: RecordedEvent) {
      const tenantId = recorded.metadata.tenantId;
      if ((await prepare(client, tenantId, [recorded.type])) === 'skip') return;
      await enterTenant(client, tenantId);
      const dup = await client.query(`SELECT 1 FROM ${table} WHERE event_id = $1`, [recorded.eventId]);
      if (dup.rowCount) return;
      const prev = await client.query<{ hash: string }>(`SELECT hash FROM ${table} ORDER BY seq DESC LIMIT 1`);
      const row = auditRow(recorded);
      const prevHash = prev.rows[0]?.hash ?? GENESIS;
      await client.query(
        `INSERT INTO ${table} (event_id, position, occurred_at, actor, type, subject, correlation_id, result, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [row.event_id, row.position, row.occurred_at, row.actor, row.type, row.subject, row.correlation_id, row.result, JSON.stringify(row.details), prevHash, rowHash(prevHash, row)],
      );
    },
    /**
     * Per tenant, in the batch's order: one scope entry, one query for the duplicates and the
     * chain's last hash, the chain continued in memory, one multi-row INSERT. Rows and hashes
     * are those `apply` writes event by event.
     */
    async applyMany(client: PoolClient, events: RecordedEvent[]) {
      const byTenant = new Map<string, RecordedEvent[]>();
      for (const e of events) {
        const list = byTenant.get(e.metadata.tenantId);
        if (list) list.push(e);
        else byTenant.set(e.metadata.tenantId, [e]);
      }
      // Readiness first, as the platform role (it reads platform.tenants).
      const tenants: [string, RecordedEvent[]][] = [];
      for (const [tenantId, list] of byTenant) {
        if ((await prepare(client, tenantId, list.map((e) => e.type))) === 'ready') tenants.push([tenantId, list]);
      }
      // Pipelined on the connection: a tenant's scope entry and chain head are queued behind the
      // previous tenant's INSERT, and its rows are described and canonicalised (the costly part
      // of hashing, independent of the chain) while PostgreSQL works. A failure aborts the
      // transaction, so the queries queued behind it fail too: those rejections are expected.
      const expected = <T>(p: Promise<T>): Promise<T> => {
        p.catch(() => undefined);
        return p;
      };
      let inserting: Promise<unknown> = Promise.resolve();
      for (const [tenantId, list] of tenants) {
        const entered = expected(enterTenant(client, tenantId));
        const head = expected(
          client.query<{ prev: string | null; dups: string[] }>(
            `SELECT (SELECT hash FROM ${table} ORDER BY seq DESC LIMIT 1) AS prev,
                    ARRAY(SELECT event_id::text FROM ${table} WHERE event_id = ANY($1::uuid[])) AS dups`,
            [list.map((e) => e.eventId)],
          ),
        );
        const prepared = list.map((e) => {
          const row = auditRow(e);
          return { id: e.eventId.toLowerCase(), row, text: hashedText(row) };
        });
        await inserting;
        await entered;
        const r = await head;
        const seen = new Set(r.rows[0]!.dups);
        let prevHash = r.rows[0]!.prev ?? GENESIS;
        const cols: unknown[][] = Array.from({ length: 11 }, () => []);
        for (const { id, row, text } of prepared) {
          if (seen.has(id)) continue; // applied before, or earlier in this batch
          seen.add(id);
          const hash = chainHash(prevHash, text);
          const values = [row.event_id, row.position, row.occurred_at, row.actor, row.type, row.subject, row.correlation_id, row.result, JSON.stringify(row.details), prevHash, hash];
          values.forEach((v, i) => cols[i]!.push(v));
          prevHash = hash;
        }
        if (cols[0]!.length === 0) {
          inserting = Promise.resolve();
          continue;
        }
        // Ordered by ordinality so seq follows the chain.
        inserting = expected(
          client.query(
            `INSERT INTO ${table} (event_id, position, occurred_at, actor, type, subject, correlation_id, result, details, prev_hash, hash)
             SELECT e, p, o, a, t, s, c, r, d, ph, h
             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::text[])
               WITH ORDINALITY AS x(e, p, o, a, t, s, c, r, d, ph, h, n)
             ORDER BY n`,
            cols,
          ),
        );
      }
      await inserting;
    },
  };
}
