import type { PoolClient } from 'pg';
import type { AnyEvent } from '../../contracts/events';
import { upcast } from '../../contracts/upcast';
import type { RecordedEvent } from '../../services/core/eventStore';
import { assertNever } from '../../services/core/errors';
import type { Projection } from '../runner';

/**
 * Usage per tenant and day, the example consumer for outside analytics teams: documents,
 * chunks and bytes stored, uploads, deletions, searches, questions and model tokens.
 * Exactly-once in effect: the counters and the checkpoint commit in one transaction.
 * Tables are per projection version (`usage_daily_v<N>`, `usage_docs_v<N>`), so a rebuild builds beside.
 */
export const ANALYTICS_VERSION = 1;
/** Its tables, each suffixed `_v<version>` in schema `analytics`, keyed by tenant_id (per-tenant rebuilds replace a tenant's rows in each). */
export const ANALYTICS_TABLES = ['usage_daily', 'usage_docs', 'usage_totals'] as const;

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

/** The counters a day's row adds up (the `*_stored` columns are set, not added). */
const COUNTERS = ['documents_uploaded', 'documents_deleted', 'bytes_uploaded', 'chunks_indexed', 'searches', 'questions', 'prompt_tokens', 'completion_tokens'] as const;
type Counter = (typeof COUNTERS)[number];
type Stored = [documents: number, bytes: number, chunks: number];

/** What one event does to the usage tables: the counters it bumps and how stored totals move. */
type Effect =
  | { kind: 'upload'; documentId: string; sizeBytes: number }
  | { kind: 'delete'; documentId: string }
  | { kind: 'indexed'; documentId: string; chunkCount: number }
  | { kind: 'bump'; cols: Partial<Record<Counter, number>> }
  | { kind: 'tenantDeleted' }
  | { kind: 'none' };

function effectOf(recorded: RecordedEvent): Effect {
  const event = upcast(recorded) as AnyEvent;
  switch (event.type) {
    case 'DocumentUploaded':
    case 'DocumentReplaced':
      return { kind: 'upload', documentId: event.data.documentId, sizeBytes: event.data.sizeBytes };
    case 'DocumentDeleted':
      return { kind: 'delete', documentId: event.data.documentId };
    case 'DocumentIndexed':
      return { kind: 'indexed', documentId: event.data.documentId, chunkCount: event.data.chunkCount };
    case 'SearchPerformed':
      return { kind: 'bump', cols: { searches: 1 } };
    case 'QuestionAsked':
      return { kind: 'bump', cols: { questions: 1, prompt_tokens: event.data.promptTokens, completion_tokens: event.data.completionTokens } };
    case 'TenantDeleted':
      return { kind: 'tenantDeleted' };
    default:
      return { kind: 'none' };
  }
}

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
      const bump = async (cols: Partial<Record<Counter, number>>) => {
        const names = Object.keys(cols) as Counter[];
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
      const effect = effectOf(recorded);
      switch (effect.kind) {
        case 'upload': {
          const prev = await client.query<{ size_bytes: string; chunks: number }>(
            `SELECT size_bytes, chunks FROM analytics.usage_docs_v${v} WHERE tenant_id = $1 AND document_id = $2`,
            [t, effect.documentId],
          );
          const old = prev.rows[0];
          await client.query(
            `INSERT INTO analytics.usage_docs_v${v} (tenant_id, document_id, size_bytes, chunks) VALUES ($1, $2, $3, 0)
             ON CONFLICT (tenant_id, document_id) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, chunks = 0`,
            [t, effect.documentId, effect.sizeBytes],
          );
          await bump({ documents_uploaded: 1, bytes_uploaded: effect.sizeBytes });
          await totals(old ? 0 : 1, effect.sizeBytes - Number(old?.size_bytes ?? 0), -(old?.chunks ?? 0));
          return;
        }
        case 'delete': {
          const prev = await client.query<{ size_bytes: string; chunks: number }>(
            `DELETE FROM analytics.usage_docs_v${v} WHERE tenant_id = $1 AND document_id = $2 RETURNING size_bytes, chunks`,
            [t, effect.documentId],
          );
          const old = prev.rows[0];
          await bump({ documents_deleted: 1 });
          if (old) await totals(-1, -Number(old.size_bytes), -old.chunks);
          return;
        }
        case 'indexed': {
          const prev = await client.query<{ chunks: number }>(
            `UPDATE analytics.usage_docs_v${v} d SET chunks = $3 FROM (SELECT chunks FROM analytics.usage_docs_v${v} WHERE tenant_id = $1 AND document_id = $2 FOR UPDATE) old
             WHERE d.tenant_id = $1 AND d.document_id = $2 RETURNING old.chunks`,
            [t, effect.documentId, effect.chunkCount],
          );
          const old = prev.rows[0];
          if (!old) return; // deleted meanwhile
          await bump({ chunks_indexed: effect.chunkCount });
          await totals(0, 0, effect.chunkCount - old.chunks);
          return;
        }
        case 'bump':
          await bump(effect.cols);
          return;
        case 'tenantDeleted':
          await client.query(`DELETE FROM analytics.usage_docs_v${v} WHERE tenant_id = $1`, [t]);
          await client.query(`DELETE FROM analytics.usage_totals_v${v} WHERE tenant_id = $1`, [t]);
          return;
        case 'none':
          return;
        default:
          return assertNever(effect);
      }
    },
    /**
     * The batch folded in memory, event by event in order, over the rows it touches (totals and
     * documents read and locked first), then written once: counters added per (tenant, day),
     * stored totals set to what the last event of that day left, documents and totals written
     * as they end. Counters and totals are written as increments, as `apply` does, so another
     * consumer of the same tenant (another topic's partition) cannot lose an update.
     */
    async applyMany(client: PoolClient, events: RecordedEvent[]) {
      if (!ensured) {
        await ensureAnalyticsTables(client, v);
        ensured = true;
      }
      const tenantIds = [...new Set(events.map((e) => e.metadata.tenantId))];
      const effects = events.map((e) => ({ tenantId: e.metadata.tenantId, day: e.metadata.occurredAt.slice(0, 10), effect: effectOf(e) }));
      const docKey = (t: string, d: string) => `${t}/${d.toLowerCase()}`;

      // Tenant totals as stored (absent = zeros), locked in a fixed order.
      const tot = await client.query<{ tenant_id: string; documents: number; bytes: string; chunks: number }>(
        `SELECT tenant_id, documents, bytes, chunks FROM analytics.usage_totals_v${v} WHERE tenant_id = ANY($1::uuid[]) ORDER BY tenant_id FOR UPDATE`,
        [tenantIds],
      );
      interface TenantState { totals: Stored; wiped: boolean; delta: Stored | null; docs: Set<string> }
      const tenants = new Map<string, TenantState>(tenantIds.map((t) => [t, { totals: [0, 0, 0], wiped: false, delta: null, docs: new Set<string>() }]));
      for (const r of tot.rows) tenants.get(r.tenant_id)!.totals = [r.documents, Number(r.bytes), r.chunks];

      // The documents the batch refers to, as stored, locked in a fixed order.
      const refs = new Map<string, [tenantId: string, documentId: string]>();
      for (const { tenantId, effect } of effects) {
        if ('documentId' in effect) refs.set(docKey(tenantId, effect.documentId), [tenantId, effect.documentId]);
      }
      const docs = new Map<string, { size: number; chunks: number } | null>();
      const dirtyDocs = new Set<string>();
      if (refs.size) {
        const pairs = [...refs.values()];
        const r = await client.query<{ tenant_id: string; document_id: string; size_bytes: string; chunks: number }>(
          `SELECT d.tenant_id, d.document_id, d.size_bytes, d.chunks FROM analytics.usage_docs_v${v} d
           JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, id) ON d.tenant_id = k.t AND d.document_id = k.id
           ORDER BY d.tenant_id, d.document_id FOR UPDATE OF d`,
          [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
        );
        for (const [key, [t]] of refs) {
          docs.set(key, null);
          tenants.get(t)!.docs.add(key);
        }
        for (const row of r.rows) docs.set(docKey(row.tenant_id, row.document_id), { size: Number(row.size_bytes), chunks: row.chunks });
      }

      // Day rows: counters to add, the totals a new row starts from, the totals the last change set.
      interface Day { tenantId: string; day: string; add: Record<Counter, number>; startStored: Stored; setStored: Stored | null }
      const days = new Map<string, Day>();
      for (const { tenantId, day, effect } of effects) {
        const ts = tenants.get(tenantId)!;
        const dayRow = () => {
          const key = `${tenantId}/${day}`;
          let d = days.get(key);
          if (!d) {
            d = { tenantId, day, add: Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<Counter, number>, startStored: [...ts.totals], setStored: null };
            days.set(key, d);
          }
          return d;
        };
        const bump = (cols: Partial<Record<Counter, number>>) => {
          const d = dayRow();
          for (const [c, n] of Object.entries(cols) as [Counter, number][]) d.add[c] += n;
        };
        const totals = (dDocs: number, dBytes: number, dChunks: number) => {
          ts.totals = [ts.totals[0] + dDocs, ts.totals[1] + dBytes, ts.totals[2] + dChunks];
          const delta = ts.delta ?? [0, 0, 0];
          ts.delta = [delta[0] + dDocs, delta[1] + dBytes, delta[2] + dChunks];
          dayRow().setStored = [...ts.totals];
        };
        switch (effect.kind) {
          case 'upload': {
            const key = docKey(tenantId, effect.documentId);
            const old = docs.get(key) ?? null;
            docs.set(key, { size: effect.sizeBytes, chunks: 0 });
            dirtyDocs.add(key);
            bump({ documents_uploaded: 1, bytes_uploaded: effect.sizeBytes });
            totals(old ? 0 : 1, effect.sizeBytes - (old?.size ?? 0), -(old?.chunks ?? 0));
            break;
          }
          case 'delete': {
            const key = docKey(tenantId, effect.documentId);
            const old = docs.get(key) ?? null;
            docs.set(key, null);
            dirtyDocs.add(key);
            bump({ documents_deleted: 1 });
            if (old) totals(-1, -old.size, -old.chunks);
            break;
          }
          case 'indexed': {
            const key = docKey(tenantId, effect.documentId);
            const old = docs.get(key) ?? null;
            if (!old) break; // deleted meanwhile
            docs.set(key, { size: old.size, chunks: effect.chunkCount });
            dirtyDocs.add(key);
            bump({ chunks_indexed: effect.chunkCount });
            totals(0, 0, effect.chunkCount - old.chunks);
            break;
          }
          case 'bump':
            bump(effect.cols);
            break;
          case 'tenantDeleted':
            for (const key of ts.docs) {
              docs.set(key, null);
              dirtyDocs.delete(key);
            }
            ts.wiped = true;
            ts.totals = [0, 0, 0];
            ts.delta = null;
            break;
          case 'none':
            break;
          default:
            assertNever(effect);
        }
      }

      // Erased tenants first, then what the batch left.
      const wiped = [...tenants].filter(([, s]) => s.wiped).map(([t]) => t);
      if (wiped.length) {
        await client.query(`DELETE FROM analytics.usage_docs_v${v} WHERE tenant_id = ANY($1::uuid[])`, [wiped]);
        await client.query(`DELETE FROM analytics.usage_totals_v${v} WHERE tenant_id = ANY($1::uuid[])`, [wiped]);
      }
      const gone = [...dirtyDocs].filter((k) => docs.get(k) === null).map((k) => refs.get(k)!);
      if (gone.length) {
        await client.query(
          `DELETE FROM analytics.usage_docs_v${v} d USING unnest($1::uuid[], $2::uuid[]) AS k(t, id) WHERE d.tenant_id = k.t AND d.document_id = k.id`,
          [gone.map((p) => p[0]), gone.map((p) => p[1])],
        );
      }
      const kept = [...dirtyDocs].filter((k) => docs.get(k) !== null);
      if (kept.length) {
        await client.query(
          `INSERT INTO analytics.usage_docs_v${v} (tenant_id, document_id, size_bytes, chunks)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::integer[])
           ON CONFLICT (tenant_id, document_id) DO UPDATE SET size_bytes = EXCLUDED.size_bytes, chunks = EXCLUDED.chunks`,
          [kept.map((k) => refs.get(k)![0]), kept.map((k) => refs.get(k)![1]), kept.map((k) => docs.get(k)!.size), kept.map((k) => docs.get(k)!.chunks)],
        );
      }
      const moved = [...tenants].filter(([, s]) => s.delta !== null);
      if (moved.length) {
        await client.query(
          `INSERT INTO analytics.usage_totals_v${v} (tenant_id, documents, bytes, chunks)
           SELECT * FROM unnest($1::uuid[], $2::integer[], $3::bigint[], $4::integer[])
           ON CONFLICT (tenant_id) DO UPDATE SET documents = usage_totals_v${v}.documents + EXCLUDED.documents,
             bytes = usage_totals_v${v}.bytes + EXCLUDED.bytes, chunks = usage_totals_v${v}.chunks + EXCLUDED.chunks`,
          [moved.map(([t]) => t), moved.map(([, s]) => s.delta![0]), moved.map(([, s]) => s.delta![1]), moved.map(([, s]) => s.delta![2])],
        );
      }
      // Two statements: rows whose stored totals changed set them; the others keep theirs.
      for (const setting of [false, true]) {
        const rows = [...days.values()].filter((d) => (d.setStored !== null) === setting);
        if (!rows.length) continue;
        const stored = (d: Day) => d.setStored ?? d.startStored;
        await client.query(
          `INSERT INTO analytics.usage_daily_v${v} (tenant_id, day, ${COUNTERS.join(', ')}, documents_stored, bytes_stored, chunks_stored)
           SELECT * FROM unnest($1::uuid[], $2::date[], ${COUNTERS.map((_, i) => `$${i + 3}::bigint[]`).join(', ')}, $11::integer[], $12::bigint[], $13::integer[])
           ON CONFLICT (tenant_id, day) DO UPDATE SET ${COUNTERS.map((n) => `${n} = usage_daily_v${v}.${n} + EXCLUDED.${n}`).join(', ')}${
             setting ? ', documents_stored = EXCLUDED.documents_stored, bytes_stored = EXCLUDED.bytes_stored, chunks_stored = EXCLUDED.chunks_stored' : ''
           }`,
          [rows.map((d) => d.tenantId), rows.map((d) => d.day), ...COUNTERS.map((c) => rows.map((d) => d.add[c])), rows.map((d) => stored(d)[0]), rows.map((d) => stored(d)[1]), rows.map((d) => stored(d)[2])],
        );
      }
    },
  };
}
