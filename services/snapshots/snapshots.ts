import { v5 as uuidv5 } from 'uuid';
import type { Pool } from 'pg';
import type { DocumentEvent } from '../../contracts/events';
import { parseStreamId } from '../../contracts/naming';
import { upcast } from '../../contracts/upcast';
import type { ContentStore } from '../../infra/postgres/contentStore';
import { withTransaction } from '../../infra/postgres/pool';
import { createTenantSchema, dropTenantSchema, withTenant } from '../../infra/postgres/schema';
import { ConflictError, NotFoundError, ValidationError } from '../core/errors';
import type { EventStore, RecordedEvent } from '../core/eventStore';
import type { KnowledgeIndex } from '../search/knowledgeIndex';
import { evolve, initialState, type DocumentState } from '../documents/document';

/**
 * Point-in-time, read-only copies of one tenant's knowledge base ("what would the product have
 * answered then"). A snapshot is built from the tenant's document events up to an instant or a
 * position, into a schema of its own (a pseudo-tenant that no credential can reach), indexed by
 * the same workers as live documents, and searched with `as_of: <name>` by the tenant only.
 */
const SNAPSHOT_NAMESPACE = '0c7f9a8e-2f0b-4a55-9b1e-5d3c2a1f6e40';
export const snapshotIdFor = (tenantId: string, name: string) => uuidv5(`${tenantId}:${name}`, SNAPSHOT_NAMESPACE);

export type Until = { kind: 'time'; at: Date } | { kind: 'position'; position: string };

export function parseUntil(raw: string): Until {
  if (/^\d{1,24}-\d{1,24}$/.test(raw)) return { kind: 'position', position: raw };
  const t = Date.parse(raw);
  if (!/^\d{4}-\d{2}-\d{2}/.test(raw) || Number.isNaN(t)) throw new ValidationError('until must be an ISO-8601 instant or an event position');
  return { kind: 'time', at: new Date(t) };
}

const within = (e: RecordedEvent, until: Until) => (until.kind === 'time' ? Date.parse(e.metadata.occurredAt) <= until.at.getTime() : e.position <= until.position);

export async function createSnapshot(
  deps: { pool: Pool; store: EventStore; content: ContentStore; index: KnowledgeIndex; wakeIndexer: () => void },
  tenantId: string,
  name: string,
  untilRaw: string,
): Promise<{ snapshotId: string; documents: number }> {
  if (!/^[a-z0-9_-]{1,40}$/.test(name)) throw new ValidationError('snapshot name must be 1-40 of [a-z0-9_-]');
  const until = parseUntil(untilRaw);
  const exists = await deps.pool.query('SELECT 1 FROM platform.snapshots WHERE tenant_id = $1 AND name = $2', [tenantId, name]);
  if (exists.rowCount) throw new ConflictError(`snapshot "${name}" exists`);
  const snapshotId = snapshotIdFor(tenantId, name);

  // The tenant's documents as they were: fold each document stream up to `until`.
  const streams = (await deps.store.streamsOfTenant(tenantId)).filter((s) => parseStreamId(s).category === 'document');
  const asOf: { state: Extract<DocumentState, { status: 'active' }>; contentType: string; externalId: string | null; sizeBytes: number; at: string }[] = [];
  for (const stream of streams) {
    const { events } = await deps.store.readStream(stream);
    let state = initialState();
    let last: { contentType: string; externalId: string | null; sizeBytes: number; at: string } | null = null;
    for (const e of events) {
      if (!within(e, until)) break;
      const ev = upcast(e) as DocumentEvent;
      state = evolve(state, ev);
      if (ev.type === 'DocumentUploaded' || ev.type === 'DocumentReplaced') {
        last = { contentType: ev.data.contentType, externalId: ev.data.externalId, sizeBytes: ev.data.sizeBytes, at: e.metadata.occurredAt };
      }
    }
    if (state.status === 'active' && last) asOf.push({ state, ...last });
  }

  await withTransaction(deps.pool, async (client) => {
    await createTenantSchema(client, snapshotId);
    await client.query('INSERT INTO platform.snapshots (tenant_id, name, snapshot_id, until, documents) VALUES ($1, $2, $3, $4, $5)', [
      tenantId, name, snapshotId, untilRaw, asOf.length,
    ]);
  });
  await deps.index.ensureTenant(snapshotId);
  for (const d of asOf) {
    const bytes = await deps.content.get(tenantId, d.state.sha256);
    if (bytes) await deps.content.put(snapshotId, bytes);
    await withTenant(deps.pool, snapshotId, async (c) => {
      await c.query(
        `INSERT INTO documents (document_id, filename, external_id, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, '')`,
        [d.state.documentId, d.state.filename, d.externalId, d.contentType, d.sizeBytes, d.state.sha256, d.state.version, d.state.uploadedBy, d.at],
      );
      await c.query(`INSERT INTO document_index (document_id, version, status, updated_at) VALUES ($1, $2, 'pending', now())`, [d.state.documentId, d.state.version]);
    });
    await deps.pool.query(
      `INSERT INTO platform.index_jobs (tenant_id, document_id, version, sha256, filename, content_type, record_outcome) VALUES ($1, $2, $3, $4, $5, $6, false)`,
      [snapshotId, d.state.documentId, d.state.version, d.state.sha256, d.state.filename, d.contentType],
    );
  }
  deps.wakeIndexer();
  return { snapshotId, documents: asOf.length };
}

/** The snapshot a tenant may read (404 for a name it does not own, exactly like a missing one). */
export async function resolveSnapshot(pool: Pool, tenantId: string, name: string): Promise<string> {
  const r = await pool.query<{ snapshot_id: string }>('SELECT snapshot_id FROM platform.snapshots WHERE tenant_id = $1 AND name = $2', [tenantId, name]);
  if (!r.rows[0]) throw new NotFoundError('Snapshot');
  return r.rows[0].snapshot_id;
}

export async function snapshotStatus(pool: Pool, tenantId: string) {
  const rows = (await pool.query<{ name: string; snapshot_id: string; until: string; documents: number; created_at: Date }>('SELECT * FROM platform.snapshots WHERE tenant_id = $1 ORDER BY created_at', [tenantId])).rows;
  const out = [];
  for (const r of rows) {
    const ready = await withTenant(pool, r.snapshot_id, async (c) => (await c.query<{ n: string }>(`SELECT count(*) AS n FROM document_index WHERE status <> 'pending'`)).rows[0]!.n, { readOnly: true });
    out.push({ name: r.name, until: r.until, documents: r.documents, indexed: Number(ready), state: Number(ready) >= r.documents ? 'ready' : 'building', created_at: r.created_at });
  }
  return out;
}

export async function dropSnapshots(deps: { pool: Pool; content: ContentStore; index: KnowledgeIndex }, tenantId: string): Promise<void> {
  const rows = (await deps.pool.query<{ snapshot_id: string }>('SELECT snapshot_id FROM platform.snapshots WHERE tenant_id = $1', [tenantId])).rows;
  for (const { snapshot_id } of rows) {
    const client = await deps.pool.connect();
    try {
      await dropTenantSchema(client, snapshot_id);
    } finally {
      client.release();
    }
    await deps.pool.query('DELETE FROM platform.index_jobs WHERE tenant_id = $1', [snapshot_id]);
    await deps.content.deleteTenant(snapshot_id);
    await deps.index.dropTenant(snapshot_id);
  }
  await deps.pool.query('DELETE FROM platform.snapshots WHERE tenant_id = $1', [tenantId]);
}
