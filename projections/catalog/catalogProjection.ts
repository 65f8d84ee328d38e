import type { PoolClient } from 'pg';
import type { DocumentContent, DocumentEvent } from '../../contracts/events';
import { upcast } from '../../contracts/upcast';
import { enterTenant } from '../../infra/postgres/schema';
import { assertNever } from '../../services/core/errors';
import type { RecordedEvent } from '../../services/core/eventStore';
import type { Projection } from '../runner';

const TYPES = new Set(['DocumentUploaded', 'DocumentReplaced', 'DocumentDeleted']);

/**
 * Document catalog in the tenant's schema (what exists, which version, who uploaded it) and the
 * indexing queue. Parsing, chunking and embedding are slow, so they run in the indexer's workers
 * (projections/index), fairly across tenants, never inside this ordered, fast projection.
 */
export function catalogProjection(hooks: { onEnqueued?(): void; onDeleted?(tenantId: string, documentId: string): void } = {}): Projection {
  return {
    name: 'catalog',
    version: 1,
    categories: ['document'],
    canHandle: (type) => TYPES.has(type),
    async apply(client: PoolClient, recorded: RecordedEvent) {
      const event = upcast(recorded) as DocumentEvent;
      const tenantId = recorded.metadata.tenantId;
      const at = recorded.metadata.occurredAt;
      switch (event.type) {
        case 'DocumentUploaded':
        case 'DocumentReplaced': {
          const d = event.data;
          await client.query(
            `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, document_id) DO UPDATE
               SET version = EXCLUDED.version, sha256 = EXCLUDED.sha256, filename = EXCLUDED.filename,
                   content_type = EXCLUDED.content_type, state = 'queued', attempts = 0, enqueued_at = now(), locked_until = NULL
             WHERE platform.index_jobs.version < EXCLUDED.version`,
            [tenantId, d.documentId, d.version, d.sha256, d.filename, d.contentType],
          );
          await enterTenant(client, tenantId);
          await client.query(
            `INSERT INTO documents (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
             ON CONFLICT (document_id) DO UPDATE SET filename = EXCLUDED.filename, external_id = EXCLUDED.external_id,
               content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
               version = EXCLUDED.version, uploaded_by = EXCLUDED.uploaded_by, updated_at = EXCLUDED.updated_at, position = EXCLUDED.position
             WHERE documents.version < EXCLUDED.version`,
            [d.documentId, d.filename, d.externalId, d.contentType, d.sizeBytes, d.sha256, d.version, d.uploadedBy, at, recorded.position],
          );
          await client.query(
            `INSERT INTO document_index (document_id, version, status, updated_at) VALUES ($1, $2, 'pending', $3)
             ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, status = 'pending', error = NULL,
               chunks_total = 0, chunks_done = 0, updated_at = EXCLUDED.updated_at
             WHERE document_index.version < EXCLUDED.version`,
            [d.documentId, d.version, at],
          );
          return;
        }
        case 'DocumentDeleted': {
          const { documentId } = event.data;
          await client.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1 AND document_id = $2', [tenantId, documentId]);
          await enterTenant(client, tenantId);
          await client.query('DELETE FROM chunks WHERE document_id = $1', [documentId]);
          await client.query('DELETE FROM document_index WHERE document_id = $1', [documentId]);
          await client.query('DELETE FROM documents WHERE document_id = $1', [documentId]);
          return;
        }
        case 'DocumentIndexed':
        case 'DocumentIndexingFailed':
          return; // written to document_index by the indexer itself; canHandle excludes them
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
      interface Fold { tenantId: string; documentId: string; deleted: boolean; firstAt: string | null; latest: { recorded: RecordedEvent; d: DocumentContent } | null }
      const folds = new Map<string, Fold>();
      for (const recorded of events) {
        const event = upcast(recorded) as DocumentEvent;
        if (event.type !== 'DocumentUploaded' && event.type !== 'DocumentReplaced' && event.type !== 'DocumentDeleted') continue;
        const tenantId = recorded.metadata.tenantId;
        const key = `${tenantId}/${event.data.documentId.toLowerCase()}`;
        let f = folds.get(key);
        if (!f) folds.set(key, (f = { tenantId, documentId: event.data.documentId, deleted: false, firstAt: null, latest: null }));
        if (event.type === 'DocumentDeleted') {
          f.deleted = true;
          f.firstAt = null;
          f.latest = null;
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
      if (deleted.length) {
        await client.query(
          `DELETE FROM platform.index_jobs j USING unnest($1::uuid[], $2::uuid[]) AS k(t, id) WHERE j.tenant_id = k.t AND j.document_id = k.id`,
          [deleted.map((x) => x.tenantId), deleted.map((x) => x.documentId)],
        );
      }
      if (upserts.length) {
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
        await enterTenant(client, tenantId);
        if (gone.length) {
          await client.query(
            `WITH c AS (DELETE FROM chunks WHERE document_id = ANY($1::uuid[])), i AS (DELETE FROM document_index WHERE document_id = ANY($1::uuid[]))
             DELETE FROM documents WHERE document_id = ANY($1::uuid[])`,
            [gone],
          );
        }
        if (!mine.length) continue;
        await client.query(
          `WITH x AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::text[], $7::integer[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::text[])
               AS x(document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
           ), d AS (
             INSERT INTO documents (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
             SELECT * FROM x
             ON CONFLICT (document_id) DO UPDATE SET filename = EXCLUDED.filename, external_id = EXCLUDED.external_id,
               content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
               version = EXCLUDED.version, uploaded_by = EXCLUDED.uploaded_by, updated_at = EXCLUDED.updated_at, position = EXCLUDED.position
             WHERE documents.version < EXCLUDED.version
           )
           INSERT INTO document_index (document_id, version, status, updated_at) SELECT document_id, version, 'pending', updated_at FROM x
           ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, status = 'pending', error = NULL,
             chunks_total = 0, chunks_done = 0, updated_at = EXCLUDED.updated_at
           WHERE document_index.version < EXCLUDED.version`,
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
    },
    afterCommit(events) {
      let enqueued = false;
      for (const e of events) {
        if (e.type === 'DocumentDeleted') hooks.onDeleted?.(e.metadata.tenantId, (e.data as { documentId: string }).documentId);
        if (e.type === 'DocumentUploaded' || e.type === 'DocumentReplaced') enqueued = true;
      }
      if (enqueued) hooks.onEnqueued?.();
    },
  };
}
