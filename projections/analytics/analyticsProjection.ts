import type { PoolClient } from 'pg';
import type { AnyEvent } from '../../contracts/events';
import { upcast } from '../../contracts/upcast';
import type { RecordedEvent } from '../../services/core/eventStore';
import type { Projection } from '../runner';

/**
 * Usage per tenant and day, the example consumer for outside analytics teams: documents,
 * chunks and bytes stored, uploads, deletions, searches, questions and model tokens.
 * Exactly-once in effect: the counters and the checkpoint commit in one transaction.
 * Tables are per projection version (`usage_daily_v<N>`, `usage_docs_v<N>`), so a rebuild builds beside.
 */
export const ANALYTICS_VERSION = 1;

export async function ensureAnalyticsTables(client: PoolClient, version: number): Promise<void> {
  await client.query(`
CREATE SCHEMA IF NOT EXISTS analytics;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;
CREATE TABLE IF NOT EXISTS analytics.usage_daily_v${version} (
  tenant_id uuid NOT NULL,
  day date NOT NULL,
  documents_uploaded integer NOT NULL DEFAULT 0,
  documents_deleted integer NOT NULL DEFAULT 0,
  bytes_uploaded bigint NOT NULL DEFAULT 0,
  chunks_indexed integer NOT NULL DEFAULT 0,
  searches integer NOT NULL DEFAULT 0,
  questions integer NOT NULL DEFAULT 0,
  prompt_tokens bigint NOT NULL DEFAULT 0,
  completion_tokens bigint NOT NULL DEFAULT 0,
  documents_stored integer NOT NULL DEFAULT 0,
  bytes_stored bigint NOT NULL DEFAULT 0,
  chunks_stored integer NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, day)
);
CREATE TABLE IF NOT EXISTS analytics.usage_docs_v${version} (
  tenant_id uuid NOT NULL,
  document_id uuid NOT NULL,
  size_bytes bigint NOT NULL,
  chunks integer NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, document_id)
);
CREATE TABLE IF NOT EXISTS analytics.usage_totals_v${version} (
  tenant_id uuid PRIMARY KEY,
  documents integer NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  chunks integer NOT NULL DEFAULT 0
);`);
}

const TYPES = new Set(['DocumentUploaded', 'DocumentReplaced', 'DocumentDeleted', 'DocumentIndexed', 'SearchPerformed', 'QuestionAsked', 'TenantDeleted']);

export function analyticsProjection(version = ANALYTICS_VERSION): Projection {
  let ensured = false;
  const v = version;
  return {
    name: 'analytics',
    version,
    categories: ['tenant', 'document', 'activity'],
    canHandle: (type) => TYPES.has(type),
    async apply(client: PoolClient, recorded: RecordedEvent) {
      if (!ensured) {
        await ensureAnalyticsTables(client, v);
        ensured = true;
      }
      const t = recorded.metadata.tenantId;
      const day = recorded.metadata.occurredAt.slice(0, 10);
      const event = upcast(recorded) as AnyEvent;
      const bump = async (cols: Record<string, number>) => {
        const names = Object.keys(cols);
        // A day's first row starts from the tenant's stored totals, so days with only searches
        // or questions still show what was stored.
        await client.query(
          `INSERT INTO analytics.usage_daily_v${v} (tenant_id, day, ${names.join(', ')}, documents_stored, bytes_stored, chunks_stored)
           SELECT $1, $2, ${names.map((_, i) => `$${i + 3}`).join(', ')}, coalesce(t.documents, 0), coalesce(t.bytes, 0), coalesce(t.chunks, 0)
           FROM (SELECT 1) one LEFT JOIN analytics.usage_totals_v${v} t ON t.tenant_id = $1
           ON CONFLICT (tenant_id, day) DO UPDATE SET ${names.map((n) => `${n} = usage_daily_v${v}.${n} + EXCLUDED.${n}`).join(', ')}`,
          [t, day, ...names.map((n) => cols[n])],
        );
      };
      // Stored totals move with uploads/deletes; each day's row carries the totals at its end.
      const totals = async (dDocs: number, dBytes: number, dChunks: number) => {
        const r = await client.query<{ documents: number; bytes: string; chunks: number }>(
          `INSERT INTO analytics.usage_totals_v${v} (tenant_id, documents, bytes, chunks) VALUES ($1, $2, $3, $4)
           ON CONFLICT (tenant_id) DO UPDATE SET documents = usage_totals_v${v}.documents + EXCLUDED.documents,
             bytes = usage_totals_v${v}.bytes + EXCLUDED.bytes, chunks = usage_totals_v${v}.chunks + EXCLUDED.chunks
           RETURNING documents, bytes, chunks`,
          [t, dDocs, dBytes, dChunks],
        );
        const row = r.rows[0]!;
        await client.query(
          `INSERT INTO analytics.usage_daily_v${v} (tenant_id, day, documents_stored, bytes_stored, chunks_stored) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (tenant_id, day) DO UPDATE SET documents_stored = EXCLUDED.documents_stored, bytes_stored = EXCLUDED.bytes_stored, chunks_stored = EXCLUDED.chunks_stored`,
          [t, day, row.documents, row.bytes, row.chunks],
        );
      };
      switch (event.type) {
        case 'DocumentUploaded':
        case 'DocumentReplaced': {
          const prev = await client.query<{ size_bytes: string; chunks: number }>(
            `SELECT size_bytes, chunks FROM analytics.usage_docs_v${v} WHERE tenant_id = $1 AND document_id = $2`,
            [t, event.data.documentId],
          );
          const old = prev.rows[0];
          await client.query(
            `INSERT INTO analytics.usage_docs_v${v} (tenant_id, document_id, size_bytes, chunks) VALUES ($1, $2, $3, 0)
             ON CONFLICT (tenant_id, document_id) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, chunks = 0`,
            [t, event.data.documentId, event.data.sizeBytes],
          );
          await bump({ documents_uploaded: 1, bytes_uploaded: event.data.sizeBytes });
          await totals(old ? 0 : 1, event.data.sizeBytes - Number(old?.size_bytes ?? 0), -(old?.chunks ?? 0));
          return;
        }
        case 'DocumentDeleted': {
          const prev = await client.query<{ size_bytes: string; chunks: number }>(
            `DELETE FROM analytics.usage_docs_v${v} WHERE tenant_id = $1 AND document_id = $2 RETURNING size_bytes, chunks`,
            [t, event.data.documentId],
          );
          const old = prev.rows[0];
          await bump({ documents_deleted: 1 });
          if (old) await totals(-1, -Number(old.size_bytes), -old.chunks);
          return;
        }
        case 'DocumentIndexed': {
          const prev = await client.query<{ chunks: number }>(
            `UPDATE analytics.usage_docs_v${v} d SET chunks = $3 FROM (SELECT chunks FROM analytics.usage_docs_v${v} WHERE tenant_id = $1 AND document_id = $2 FOR UPDATE) old
             WHERE d.tenant_id = $1 AND d.document_id = $2 RETURNING old.chunks`,
            [t, event.data.documentId, event.data.chunkCount],
          );
          const old = prev.rows[0];
          if (!old) return; // deleted meanwhile
          await bump({ chunks_indexed: event.data.chunkCount });
          await totals(0, 0, event.data.chunkCount - old.chunks);
          return;
        }
        case 'SearchPerformed':
          await bump({ searches: 1 });
          return;
        case 'QuestionAsked':
          await bump({ questions: 1, prompt_tokens: event.data.promptTokens, completion_tokens: event.data.completionTokens });
          return;
        case 'TenantDeleted':
          await client.query(`DELETE FROM analytics.usage_docs_v${v} WHERE tenant_id = $1`, [t]);
          await client.query(`DELETE FROM analytics.usage_totals_v${v} WHERE tenant_id = $1`, [t]);
          return;
        default:
          return;
      }
    },
  };
}
