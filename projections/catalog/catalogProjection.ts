import type { PoolClient } from 'pg';
import type { DocumentContent, DocumentEvent } from '../../contracts/events';
import { upcast } from '../../contracts/upcast';
import { catalogTable, ensureCatalogTables, enterTenant, leaveTenant, tenantSchemaExists } from '../../infra/postgres/schema';
import { assertNever } from '../../services/core/errors';
import type { RecordedEvent } from '../../services/core/eventStore';
import { TenantNotReadyError } from '../audit/auditProjection';
import type { Projection } from '../runner';

const TYPES = new Set(['DocumentUploaded', 'DocumentReplaced', 'DocumentDeleted', 'DocumentIndexingFailed']);

/** Version whose tables hold a per-tenant rebuild's scratch copy (projections/tenantRebuild.ts). */
const SCRATCH = 0;

export interface CatalogHooks {
  onEnqueued?(): void;
  onDeleted?(tenantId: string, documentId: string): void;
}

/**
 * Document catalog in the tenant's schema (what exists, which version, who uploaded it) and the
 * indexing queue. Parsing, chunking and embedding are slow, so they run in the indexer's workers
 * (projections/index), fairly across tenants, never inside this ordered, fast projection.
 *
 * Each version writes its own tables (`documents_v<N>`, `document_index_v<N>`); readers use the
 * views that point at the active version. A version being rebuilt (`beginRebuild`, or the scratch
 * version 0 of a tenant's rebuild) writes only its tables: the indexing queue, the chunk sets and
 * the hooks belong to the live version, and a rebuild re-links its rows to the chunk sets the
 * tenant holds (projections/catalog/catalogRebuild.ts) instead of queueing every document again.
 */
export function catalogProjection(hooks: CatalogHooks = {}, version = 1): Projection {
  const documents = catalogTable('documents', version);
  const documentIndex = catalogTable('document_index', version);
  let rebuilding = version === SCRATCH;
  /** Tenants whose tables of this version exist, as of the last committed batch. */
  const ready = new Set<string>();
  const pending = new Set<string>();
  /**
   * Enters the tenant's scope with this version's tables in place: 'skip' when the tenant was
   * erased (its events are dropped); throws while its schema is not created yet (the batch is retried).
   */
  const enter = async (client: PoolClient, tenantId: string): Promise<'ok' | 'skip'> => {
    if (!ready.has(tenantId) && !pending.has(tenantId)) {
      await leaveTenant(client); // a batch may still be in another tenant's scope
      if (!(await tenantSchemaExists(client, tenantId))) {
        const t = await client.query<{ status: string }>('SELECT status FROM platform.tenants WHERE tenant_id = $1', [tenantId]);
        if (t.rows[0]?.status === 'deleted') return 'skip';
        throw new TenantNotReadyError(tenantId);
      }
      await ensureCatalogTables(client, tenantId, version);
      pending.add(tenantId);
    }
    await enterTenant(client, tenantId);
    return 'ok';
  };
  return {
    name: 'catalog',
    version,
    categories: ['document'],
    canHandle: (type) => TYPES.has(type),
    beginRebuild() {
      rebuilding = true;
    },
    async finishRebuild() {
      // The live instance of this version (made anew by the manager) queues and calls hooks.
      rebuilding = version === SCRATCH;
    },
    async apply(client: PoolClient, recorded: RecordedEvent) {
      pending.clear(); // what an earlier, failed batch learnt is checked again
      const event = upcast(recorded) as DocumentEvent;
      const tenantId = recorded.metadata.tenantId;
      const at = recorded.metadata.occurredAt;
      switch (event.type) {
        case 'DocumentUploaded':
        case 'DocumentReplaced': {
          const d = event.data;
          if (!rebuilding) {
            await client.query(
              `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (tenant_id, document_id) DO UPDATE
                 SET version = EXCLUDED.version, sha256 = EXCLUDED.sha256, filename = EXCLUDED.filename,
                     content_type = EXCLUDED.content_type, state = 'queued', attempts = 0, enqueued_at = now(), locked_until = NULL
               WHERE platform.index_jobs.version < EXCLUDED.version`,
              [tenantId, d.documentId, d.version, d.sha256, d.filename, d.contentType],
            );
          }
          if ((await enter(client, tenantId)) === 'skip') return;
          await client.query(
            `INSERT INTO ${documents} (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
             ON CONFLICT (document_id) DO UPDATE SET filename = EXCLUDED.filename, external_id = EXCLUDED.external_id,
               content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
               version = EXCLUDED.version, uploaded_by = EXCLUDED.uploaded_by, updated_at = EXCLUDED.updated_at, position = EXCLUDED.position
             WHERE ${documents}.version < EXCLUDED.version`,
            [d.documentId, d.filename, d.externalId, d.contentType, d.sizeBytes, d.sha256, d.version, d.uploadedBy, at, recorded.position],
          );
          await client.query(
            `INSERT INTO ${documentIndex} (document_id, version, status, updated_at) VALUES ($1, $2, 'pending', $3)
             ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, status = 'pending', error = NULL,
               chunks_total = 0, chunks_done = 0, updated_at = EXCLUDED.updated_at
             WHERE ${documentIndex}.version < EXCLUDED.version`,
            [d.documentId, d.version, at],
          );
          return;
        }
        case 'DocumentDeleted': {
          const { documentId } = event.data;
          if (!rebuilding) await client.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1 AND document_id = $2', [tenantId, documentId]);
          if ((await enter(client, tenantId)) === 'skip') return;
          // Deletion is final: the chunk sets (text and vectors of the content) go with the document.
          if (!rebuilding) await client.query('WITH c AS (DELETE FROM chunks WHERE document_id = $1) DELETE FROM chunk_sets WHERE document_id = $1', [documentId]);
          await client.query(`DELETE FROM ${documentIndex} WHERE document_id = $1`, [documentId]);
          await client.query(`DELETE FROM ${documents} WHERE document_id = $1`, [documentId]);
          return;
        }
        case 'DocumentIndexingFailed': {
          // Written by the indexer itself when live; a rebuild learns it from the event.
          const d = event.data;
          if ((await enter(client, tenantId)) === 'skip') return;
          await client.query(
            `UPDATE ${documentIndex} SET status = 'failed', error = $3, updated_at = $4 WHERE document_id = $1 AND version = $2 AND ready_version IS DISTINCT FROM $2`,
            [d.documentId, d.version, d.reason, at],
          );
          return;
        }
        case 'DocumentIndexed':
          return; // readiness is the chunk sets' (the indexer's, or a rebuild's re-link); canHandle excludes it
        default:
          return assertNever(event);
      }
    },
    /**
     * The batch folded per document, in order: a deletion wipes what came before it; of the
     * uploads after the last deletion, the first with the highest version is the one the
     * per-event upserts (`WHERE version < EXCLUDED.version`) would leave, and the first of them
     * gives `created_at` (it inserted the row when none existed). Then, for all tenants, one
     * DELETE and one upsert of platform.index_jobs; per tenant, one scope entry, one DELETE of
     * the deleted documents and one upsert of documents and document_index.
     */
    async applyMany(client: PoolClient, events: RecordedEvent[]) {
      pending.clear(); // what an earlier, failed batch learnt is checked again
      interface Fold {
        tenantId: string;
        documentId: string;
        deleted: boolean;
        firstAt: string | null;
        latest: { recorded: RecordedEvent; d: DocumentContent } | null;
        /** The last indexing failure after the last deletion (applied after the upserts, as its own UPDATE would be). */
        failed: { version: number; reason: string; at: string } | null;
      }
      const folds = new Map<string, Fold>();
      for (const recorded of events) {
        const event = upcast(recorded) as DocumentEvent;
        if (event.type === 'DocumentIndexed') continue;
        const tenantId = recorded.metadata.tenantId;
        const key = `${tenantId}/${event.data.documentId.toLowerCase()}`;
        let f = folds.get(key);
        if (!f) folds.set(key, (f = { tenantId, documentId: event.data.documentId, deleted: false, firstAt: null, latest: null, failed: null }));
        if (event.type === 'DocumentDeleted') {
          f.deleted = true;
          f.firstAt = null;
          f.latest = null;
          f.failed = null;
        } else if (event.type === 'DocumentIndexingFailed') {
          f.failed = { version: event.data.version, reason: event.data.reason, at: recorded.metadata.occurredAt };
        } else if (!f.latest) {
          f.firstAt = recorded.metadata.occurredAt;
          f.latest = { recorded, d: event.data };
        } else if (event.data.version > f.latest.d.version) {
          f.latest = { recorded, d: event.data };
        }
      }
      const all = [...folds.values()];
      const deleted = all.filter((f) => f.deleted);
      const upserts = all.flatMap((f) => (f.latest ? [{ f, d: f.latest.d, recorded: f.latest.recorded }] : []));
      if (deleted.length && !rebuilding) {
        await client.query(
          `DELETE FROM platform.index_jobs j USING unnest($1::uuid[], $2::uuid[]) AS k(t, id) WHERE j.tenant_id = k.t AND j.document_id = k.id`,
          [deleted.map((x) => x.tenantId), deleted.map((x) => x.documentId)],
        );
      }
      if (upserts.length && !rebuilding) {
        await client.query(
          `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::integer[], $4::text[], $5::text[], $6::text[])
           ON CONFLICT (tenant_id, document_id) DO UPDATE
             SET version = EXCLUDED.version, sha256 = EXCLUDED.sha256, filename = EXCLUDED.filename,
                 content_type = EXCLUDED.content_type, state = 'queued', attempts = 0, enqueued_at = now(), locked_until = NULL
           WHERE platform.index_jobs.version < EXCLUDED.version`,
          [upserts.map((u) => u.f.tenantId), upserts.map((u) => u.d.documentId), upserts.map((u) => u.d.version), upserts.map((u) => u.d.sha256), upserts.map((u) => u.d.filename), upserts.map((u) => u.d.contentType)],
        );
      }
      const tenantIds = [...new Set(all.map((f) => f.tenantId))];
      for (const tenantId of tenantIds) {
        const gone = deleted.filter((f) => f.tenantId === tenantId).map((f) => f.documentId);
        const mine = upserts.filter((u) => u.f.tenantId === tenantId);
        const failures = all.filter((f) => f.tenantId === tenantId && f.failed);
        if ((await enter(client, tenantId)) === 'skip') continue;
        if (gone.length) {
          // Deletion is final: the chunk sets (text and vectors of the content) go with the document.
          if (!rebuilding) await client.query('WITH c AS (DELETE FROM chunks WHERE document_id = ANY($1::uuid[])) DELETE FROM chunk_sets WHERE document_id = ANY($1::uuid[])', [gone]);
          await client.query(`WITH i AS (DELETE FROM ${documentIndex} WHERE document_id = ANY($1::uuid[])) DELETE FROM ${documents} WHERE document_id = ANY($1::uuid[])`, [gone]);
        }
        if (mine.length) await upsert(client, mine);
        if (failures.length) {
          await client.query(
            `UPDATE ${documentIndex} i SET status = 'failed', error = k.reason, updated_at = k.at
             FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::timestamptz[]) AS k(document_id, version, reason, at)
             WHERE i.document_id = k.document_id AND i.version = k.version AND i.ready_version IS DISTINCT FROM k.version`,
            [failures.map((f) => f.documentId), failures.map((f) => f.failed!.version), failures.map((f) => f.failed!.reason), failures.map((f) => f.failed!.at)],
          );
        }
      }
      await leaveTenant(client);
    },
    afterCommit(events) {
      for (const t of pending) ready.add(t);
      pending.clear();
      if (rebuilding) return;
      let enqueued = false;
      for (const e of events) {
        if (e.type === 'DocumentDeleted') hooks.onDeleted?.(e.metadata.tenantId, (e.data as { documentId: string }).documentId);
        if (e.type === 'DocumentUploaded' || e.type === 'DocumentReplaced') enqueued = true;
      }
      if (enqueued) hooks.onEnqueued?.();
    },
  };

  /** One upsert of the batch's last uploads of a tenant into documents and document_index. */
  async function upsert(client: PoolClient, mine: { f: { firstAt: string | null }; d: DocumentContent; recorded: RecordedEvent }[]): Promise<void> {
    await client.query(
      `WITH x AS (
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::text[], $7::integer[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[])
           AS x(document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
       ), d AS (
         INSERT INTO ${documents} (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
         SELECT * FROM x
         ON CONFLICT (document_id) DO UPDATE SET filename = EXCLUDED.filename, external_id = EXCLUDED.external_id,
           content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
           version = EXCLUDED.version, uploaded_by = EXCLUDED.uploaded_by, updated_at = EXCLUDED.updated_at, position = EXCLUDED.position
         WHERE ${documents}.version < EXCLUDED.version
       )
       INSERT INTO ${documentIndex} (document_id, version, status, updated_at) SELECT document_id, version, 'pending', updated_at FROM x
       ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, status = 'pending', error = NULL,
         chunks_total = 0, chunks_done = 0, updated_at = EXCLUDED.updated_at
       WHERE ${documentIndex}.version < EXCLUDED.version`,
      [
        mine.map((u) => u.d.documentId),
        mine.map((u) => u.d.filename),
        mine.map((u) => u.d.externalId ?? null),
        mine.map((u) => u.d.contentType),
        mine.map((u) => u.d.sizeBytes),
        mine.map((u) => u.d.sha256),
        mine.map((u) => u.d.version),
        mine.map((u) => u.d.uploadedBy),
        mine.map((u) => u.f.firstAt),
        mine.map((u) => u.recorded.metadata.occurredAt),
        mine.map((u) => u.recorded.position),
      ],
    );
  }
}
