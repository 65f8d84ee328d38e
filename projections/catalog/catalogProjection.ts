import type { PoolClient } from 'pg';
import type { DocumentEvent } from '../../contracts/events';
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
