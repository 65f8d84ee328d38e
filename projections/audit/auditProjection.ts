import * as crypto from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { AnyEvent } from '../../contracts/events';
import { tenantRole, tenantSchema } from '../../contracts/naming';
import { upcast } from '../../contracts/upcast';
import { withTransaction } from '../../infra/postgres/pool';
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

/**
 * Canonical JSON (sorted keys, undefined members left out) so the hash of a row is the same
 * wherever it is computed. Written as loops (no intermediate arrays): it runs once per event.
 */
export function canonical(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) {
    let s = '[';
    for (let i = 0; i < v.length; i++) {
      if (i > 0) s += ',';
      const c = canonical(v[i]) as string | undefined; // undefined, a function: an empty element (as Array.join)
      if (c !== undefined) s += c;
    }
    return `${s}]`;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  let s = '{';
  let first = true;
  for (const k of keys) {
    const x = o[k];
    if (x === undefined) continue;
    s += `${first ? '' : ','}${JSON.stringify(k)}:${canonical(x)}`;
    first = false;
  }
  return `${s}}`;
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

/**
 * What a row's hash covers besides the previous hash; independent of the chain. It is
 * `canonical({ ...row, occurred_at: <ISO string> })`, written out for the row's fixed members
 * (in sorted order) so that only `details` is walked generically.
 */
export function hashedText(row: AuditRow): string {
  // Members in sorted key order; one left out when undefined, as canonical() does.
  let s = '{';
  s = member(s, '"actor":', row.actor);
  s = member(s, '"correlation_id":', row.correlation_id);
  s = member(s, '"details":', row.details);
  s = member(s, '"event_id":', row.event_id);
  s = member(s, '"occurred_at":', new Date(row.occurred_at).toISOString());
  s = member(s, '"position":', row.position);
  s = member(s, '"result":', row.result);
  s = member(s, '"subject":', row.subject);
  s = member(s, '"type":', row.type);
  return `${s}}`;
}

function member(s: string, key: string, v: unknown): string {
  if (v === undefined) return s;
  return `${s}${s.length > 1 ? ',' : ''}${key}${typeof v === 'string' ? JSON.stringify(v) : canonical(v)}`;
}

/** One-shot SHA-256 (node >= 20.12; about twice as fast as a Hash object for short inputs). */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

function chainHash(prevHash: string, text: string): string {
  // prevHash is hex (ASCII): hashing the concatenation is hashing the parts in sequence.
  if (oneShot) return oneShot('sha256', `${prevHash}\n${text}`, 'hex');
  return crypto.createHash('sha256').update(prevHash).update('\n').update(text).digest('hex');
}

export const GENESIS = '0'.repeat(64);

/**
 * The indexes of an audit table besides its primary key, each created only when missing. A live
 * table gets them with the table; a version being rebuilt gets them once, when it has caught up
 * (`finishRebuild`), since maintaining them row by row costs more than building them at the end.
 * The unique constraint has the name the inline `UNIQUE` of the live DDL gives it.
 */
function auditIndexesDDL(schema: string, version: number): string {
  const name = auditTable(version);
  const table = `${schema}.${name}`;
  return `
DO $$ BEGIN
  IF to_regclass('${schema}.${name}_event_id_key') IS NULL THEN
    ALTER TABLE ${table} ADD CONSTRAINT ${name}_event_id_key UNIQUE (event_id);
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS ${name}_actor ON ${table} (actor, seq);
CREATE INDEX IF NOT EXISTS ${name}_subject ON ${table} (subject, seq);`;
}

/**
 * Creates the tenant's audit table of `version` unless it exists; true when it created it.
 * `deferIndexes`: without the unique constraint and the secondary indexes (a version being
 * rebuilt, see `finishRebuild`).
 */
export async function ensureAuditTable(client: PoolClient, tenantId: string, version: number, deferIndexes = false): Promise<boolean> {
  const schema = tenantSchema(tenantId);
  const table = `${schema}.${auditTable(version)}`;
  const r = await client.query('SELECT to_regclass($1) AS t', [table]);
  if (r.rows[0]?.t) return false;
  await client.query(`
SET LOCAL ROLE ${SCHEMA_OWNER};
CREATE TABLE IF NOT EXISTS ${table} (
  seq bigserial PRIMARY KEY,
  event_id uuid NOT NULL${deferIndexes ? '' : ' UNIQUE'},
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
);${deferIndexes ? '' : auditIndexesDDL(schema, version)}
GRANT SELECT, INSERT ON ${table} TO ${tenantRole(tenantId)};
GRANT USAGE ON SEQUENCE ${table}_seq_seq TO ${tenantRole(tenantId)};
RESET ROLE;`);
  return true;
}

/** Creates the audit table's missing indexes (as the schema owner, in the caller's transaction). */
async function ensureAuditIndexes(client: PoolClient, schema: string, version: number): Promise<void> {
  await client.query(`SET LOCAL ROLE ${SCHEMA_OWNER};${auditIndexesDDL(schema, version)}
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
  /** Tenants whose table exists, as of the last committed batch. */
  const ready = new Set<string>();
  /**
   * While rebuilding (`beginRebuild`): tenants whose table this rebuild created, as of the last
   * committed batch. Such a table is written by this rebuild alone, which offers each event of the
   * log once, so it has no duplicates to look for (and has no unique index to look them up with).
   */
  const fresh = new Set<string>();
  /** What the batch in progress learnt about tenants' tables; kept by `afterCommit` only. */
  const pending = new Map<string, 'ready' | 'fresh'>();
  let rebuilding = false;
  const table = auditTable(version);
  /**
   * Whether the tenant's table can take rows: 'ready', or 'skip' when the tenant was erased
   * since (its events are dropped). Throws while the platform projection has not created the
   * tenant's schema yet, so the batch is retried.
   */
  const prepare = async (client: PoolClient, tenantId: string, types: string[]): Promise<'ready' | 'skip'> => {
    if (ready.has(tenantId) || pending.has(tenantId)) return 'ready';
    if (!(await tenantSchemaExists(client, tenantId))) {
      const t = await client.query<{ status: string }>('SELECT status FROM platform.tenants WHERE tenant_id = $1', [tenantId]);
      const erased = (type: string) => t.rows[0]?.status === 'deleted' || (t.rows[0] !== undefined && type !== 'TenantProvisioned');
      if (types.every(erased)) return 'skip';
      throw new TenantNotReadyError(tenantId);
    }
    if (await ensureAuditTable(client, tenantId, version, rebuilding)) {
      pending.set(tenantId, rebuilding ? 'fresh' : 'ready');
    } else {
      // Written before this rebuild began (e.g. by a failed earlier one): looked up for duplicates.
      if (rebuilding) await ensureAuditIndexes(client, tenantSchema(tenantId), version);
      pending.set(tenantId, 'ready');
    }
    return 'ready';
  };
  const projection: Projection = {
    name: 'audit',
    version,
    categories: ['tenant', 'security', 'document', 'activity'],
    beginRebuild() {
      rebuilding = true;
      ready.clear();
      fresh.clear();
      pending.clear();
    },
    async finishRebuild(pool: Pool) {
      rebuilding = false;
      fresh.clear();
      const r = await pool.query<{ schema: string }>(
        `SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1 AND c.relkind = 'r' ORDER BY 1`,
        [table],
      );
      // Two connections (index builds are CPU-bound), one transaction each: one commit, not one per tenant.
      const schemas = r.rows.map((row) => row.schema);
      const lanes = Math.min(2, schemas.length);
      await Promise.all(
        Array.from({ length: lanes }, (_, lane) =>
          withTransaction(pool, async (client) => {
            for (let i = lane; i < schemas.length; i += lanes) {
              await client.query('SAVEPOINT tenant');
              try {
                await ensureAuditIndexes(client, schemas[i]!, version);
                await client.query('RELEASE SAVEPOINT tenant');
              } catch (err) {
                // The tenant was erased meanwhile (its schema dropped): nothing left to index.
                if (!['42P01', '3F000'].includes((err as { code?: string }).code ?? '')) throw err;
                await client.query('ROLLBACK TO SAVEPOINT tenant');
              }
            }
          }),
        ),
      );
    },
    afterCommit() {
      for (const [tenantId, state] of pending) {
        ready.add(tenantId);
        if (state === 'fresh') fresh.add(tenantId);
      }
      pending.clear();
    },
    canHandle: (type) => type !== 'TenantDeleted',
    async apply(client: PoolClient, recorded: RecordedEvent) {
      const tenantId = recorded.metadata.tenantId;
      pending.clear(); // not knowing whether an earlier call's transaction committed: asked again
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
      pending.clear(); // a new transaction: what an uncommitted earlier one learnt does not hold
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
        const isFresh = fresh.has(tenantId) || pending.get(tenantId) === 'fresh';
        const head = expected(
          isFresh
            ? client.query<{ prev: string | null; dups: string[] }>(`SELECT (SELECT hash FROM ${table} ORDER BY seq DESC LIMIT 1) AS prev, '{}'::text[] AS dups`)
            : client.query<{ prev: string | null; dups: string[] }>(
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
        const rows: Record<string, unknown>[] = [];
        for (const { id, row, text } of prepared) {
          if (seen.has(id)) continue; // applied before, or earlier in this batch
          seen.add(id);
          const hash = chainHash(prevHash, text);
          rows.push({ e: row.event_id, p: row.position, o: row.occurred_at, a: row.actor, t: row.type, s: row.subject, c: row.correlation_id, r: row.result, d: row.details, ph: prevHash, h: hash });
          prevHash = hash;
        }
        if (rows.length === 0) {
          inserting = Promise.resolve();
          continue;
        }
        // The rows as one JSON document (serialised natively, parsed by PostgreSQL in one pass:
        // cheaper than eleven array parameters), ordered by ordinality so seq follows the chain.
        inserting = expected(
          client.query(
            `INSERT INTO ${table} (event_id, position, occurred_at, actor, type, subject, correlation_id, result, details, prev_hash, hash)
             SELECT e, p, o, a, t, s, c, r, d, ph, h
             FROM ROWS FROM (json_to_recordset($1::json) AS (e uuid, p text, o timestamptz, a text, t text, s text, c text, r text, d jsonb, ph text, h text))
               WITH ORDINALITY AS x(e, p, o, a, t, s, c, r, d, ph, h, n)
             ORDER BY n`,
            [JSON.stringify(rows)],
          ),
        );
      }
      await inserting;
    },
  };
  /**
   * A tenant erased since its table was cached (its schema and role dropped, e.g. a late activity
   * record after TenantDeleted): the batch fails, the cache forgets the batch's tenants, and the
   * retry finds the tenant gone and skips its events instead of failing for ever. (`fresh`
   * tables, during a rebuild, are re-learnt as ordinary ones: duplicates are then looked up.)
   */
  const forgetOnFailure = async (events: RecordedEvent[], fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      // Whatever failed (SET ROLE of a dropped role says 22023, a generic code), forgetting costs
      // the retry one lookup per tenant.
      for (const e of events) {
        ready.delete(e.metadata.tenantId);
        fresh.delete(e.metadata.tenantId);
      }
      throw err;
    }
  };
  return {
    ...projection,
    apply: (client, event) => forgetOnFailure([event], () => projection.apply(client, event)),
    applyMany: (client, events) => forgetOnFailure(events, () => projection.applyMany!(client, events)),
  };
}
