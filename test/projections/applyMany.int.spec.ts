import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { streamId, tenantSchema } from '../../contracts/naming';
import { createPostgresEventStore } from '../../infra/eventstore/postgres';
import { createPool } from '../../infra/postgres/pool';
import { migratePlatform } from '../../infra/postgres/schema';
import { analyticsProjection } from '../../projections/analytics/analyticsProjection';
import { auditProjection } from '../../projections/audit/auditProjection';
import { catalogProjection } from '../../projections/catalog/catalogProjection';
import { platformProjection } from '../../projections/platform/platformProjection';
import { applyBatch, type Projection } from '../../projections/runner';
import type { EventStore, NewEvent, RecordedEvent } from '../../services/core/eventStore';
import { START } from '../../services/core/eventStore';
import { dropDatabase, freshDatabase } from '../support/postgres';

/**
 * `applyMany` must leave exactly the rows that `apply`, event by event, leaves: the same event
 * log goes through the same batches (tenants interleaved, a document's and a tenant's events
 * split across batches, batches re-delivered, an event twice in one batch) into two databases,
 * one per path, and every table is compared row by row, audit hashes included.
 */
const perEvent = (p: Projection): Projection => ({ ...p, applyMany: undefined });
const quiet = () => undefined;
const DAY1 = '2026-11-20T09:00:00.000Z';
const DAY2 = '2026-11-21T09:00:00.000Z';

function builder() {
  const appends: { stream: string; events: NewEvent[] }[] = [];
  let clock = Date.parse(DAY1);
  const ev = (tenantId: string, type: string, data: unknown, at?: string): NewEvent => ({
    eventId: randomUUID(),
    type,
    data,
    metadata: {
      tenantId,
      actor: 'user:00000000-0000-4000-8000-000000000001',
      correlationId: randomUUID(),
      causationId: null,
      schemaVersion: 1,
      occurredAt: at ?? new Date((clock += 61_000)).toISOString(),
    },
  });
  const push = (stream: string, ...events: NewEvent[]) => appends.push({ stream, events });
  return { appends, ev, push };
}

const doc = (documentId: string, version: number, sizeBytes: number) => ({
  documentId,
  filename: `f-${version}.md`,
  externalId: version === 2 ? 'ext-1' : null,
  contentType: 'text/markdown',
  sizeBytes,
  sha256: `${version}`.repeat(64),
  version,
  uploadedBy: 'user:00000000-0000-4000-8000-000000000001',
});

/** A log with every case the folds handle, tenants interleaved. */
function eventLog(tenants: string[], deletedTenant: string) {
  const { appends, ev, push } = builder();
  for (const [i, t] of [...tenants, deletedTenant].entries()) {
    push(
      streamId('tenant', t),
      ev(t, 'TenantProvisioned', { tenantId: t, name: `T${i}`, slug: `apply-many-${i}-${t.slice(0, 8)}`, quotas: { maxDocuments: 100, maxBytes: 1e9 }, rateLimit: { perSecond: 100, burst: 200 } }),
      ev(t, 'UserAdded', { userId: randomUUID(), email: `o${i}@x.test`, role: 'owner', passwordHash: 'h' }),
    );
  }
  for (let round = 0; round < 6; round++) {
    for (const t of [...tenants, deletedTenant]) {
      const d = randomUUID();
      const s = streamId('document', t, d);
      const day = round < 3 ? undefined : DAY2;
      // Upload, index, replace, re-index; every third document is deleted and uploaded again.
      push(s, ev(t, 'DocumentUploaded', doc(d, 1, 100 + round), day), ev(t, 'DocumentIndexed', { documentId: d, version: 1, chunkCount: 3, embedderId: 'e', format: 'md' }, day));
      push(streamId('activity', t, '20261120'), ev(t, 'SearchPerformed', { queryHash: 'q', mode: 'hybrid', topK: 5, resultChunkIds: ['a', 'b'] }, day));
      push(s, ev(t, 'DocumentReplaced', { ...doc(d, 2, 200 + round), previousSha256: '1'.repeat(64) }, day), ev(t, 'DocumentIndexed', { documentId: d, version: 2, chunkCount: 5, embedderId: 'e', format: 'md' }, day));
      if (round % 3 === 0) {
        push(s, ev(t, 'DocumentDeleted', { documentId: d, version: 2 }, day));
        push(s, ev(t, 'DocumentIndexed', { documentId: d, version: 2, chunkCount: 9, embedderId: 'e', format: 'md' }, day)); // after deletion: ignored
        push(s, ev(t, 'DocumentUploaded', doc(d, 3, 300), day), ev(t, 'DocumentReplaced', { ...doc(d, 2, 50), previousSha256: '3'.repeat(64) }, day)); // a stale version after it
      }
      push(streamId('activity', t, '20261120'), ev(t, 'QuestionAsked', { questionHash: 'h', model: 'm', sourceChunkIds: ['a'], promptTokens: 10 + round, completionTokens: 3 }, day));
      push(streamId('security', t), ev(t, round % 2 ? 'LoginSucceeded' : 'LoginFailed', round % 2 ? { userId: randomUUID() } : { emailHash: 'e', reason: 'bad password' }, day));
    }
  }
  // A stream whose events claim another tenant: dead-lettered on both paths.
  push(streamId('activity', tenants[0]!, 'x'), ev(tenants[1]!, 'SearchPerformed', { queryHash: 'q', mode: 'hybrid', topK: 5, resultChunkIds: [] }));
  push(streamId('tenant', deletedTenant), ev(deletedTenant, 'TenantDeleted', {}));
  return appends;
}

/** Overlapping slices: each re-delivers the previous one's last events; sizes vary from 1 up. */
function schedule(events: RecordedEvent[]): { mode: 'rebuild' | 'global'; events: RecordedEvent[] }[] {
  const out: { mode: 'rebuild' | 'global'; events: RecordedEvent[] }[] = [];
  const sizes = [1, 7, 40, 3, 25, 90, 2, 60];
  let at = 0;
  for (let i = 0; at < events.length; i++) {
    const size = sizes[i % sizes.length]!;
    out.push({ mode: 'rebuild', events: events.slice(Math.max(0, at - 2), at + size) });
    at += size;
  }
  return out;
}

async function tableRows(pool: Pool, sql: string): Promise<unknown[]> {
  return (await pool.query(sql)).rows;
}

async function snapshot(pool: Pool, tenants: string[]) {
  const out: Record<string, unknown[]> = {};
  for (const t of tenants) {
    const s = tenantSchema(t);
    const exists = (await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [s])).rowCount;
    if (!exists) {
      out[s] = ['no schema'];
      continue;
    }
    out[`${s}.audit`] = await tableRows(pool, `SELECT seq, event_id, position, occurred_at::text, actor, type, subject, correlation_id, result, details::text, prev_hash, hash FROM ${s}.audit_log_v1 ORDER BY seq`);
    out[`${s}.documents`] = await tableRows(pool, `SELECT *, created_at::text AS c, updated_at::text AS u FROM ${s}.documents ORDER BY document_id`);
    out[`${s}.document_index`] = await tableRows(pool, `SELECT *, updated_at::text AS u FROM ${s}.document_index ORDER BY document_id`);
  }
  out.index_jobs = await tableRows(pool, 'SELECT tenant_id, document_id, version, sha256, filename, content_type, state, attempts, locked_until, record_outcome FROM platform.index_jobs ORDER BY 1, 2');
  out.usage_daily = await tableRows(pool, 'SELECT *, day::text AS d FROM analytics.usage_daily_v1 ORDER BY tenant_id, day');
  out.usage_docs = await tableRows(pool, 'SELECT * FROM analytics.usage_docs_v1 ORDER BY tenant_id, document_id');
  out.usage_totals = await tableRows(pool, 'SELECT * FROM analytics.usage_totals_v1 ORDER BY tenant_id');
  out.dead_letters = await tableRows(pool, 'SELECT projection, event_id, stream_id, type, reason FROM platform.dead_letters ORDER BY projection, event_id');
  out.checkpoints = await tableRows(pool, 'SELECT projection, position FROM platform.checkpoints ORDER BY projection');
  return out;
}

describe('batched projection apply (applyMany)', () => {
  let srcUrl: string;
  let srcPool: Pool;
  let store: EventStore;
  const targets: { url: string; pool: Pool }[] = [];

  beforeAll(async () => {
    srcUrl = await freshDatabase();
    srcPool = createPool(srcUrl, { max: 4 });
    await migratePlatform(srcPool);
    store = await createPostgresEventStore(srcPool);
    for (let i = 0; i < 2; i++) {
      const url = await freshDatabase();
      const pool = createPool(url, { max: 4 });
      await migratePlatform(pool);
      targets.push({ url, pool });
    }
  });
  afterAll(async () => {
    await store?.close();
    await srcPool?.end();
    for (const t of targets) await t.pool.end();
    for (const t of targets) await dropDatabase(t.url);
    if (srcUrl) await dropDatabase(srcUrl);
  });

  it('leaves the same rows as apply, event by event: audit (hash chains), analytics, catalog', async () => {
    const tenants = [randomUUID(), randomUUID(), randomUUID()];
    const deletedTenant = randomUUID();
    const log = eventLog(tenants, deletedTenant);
    for (const a of log) await store.appendToStream(a.stream, a.events, { expectedRevision: 'any' });
    const appended = log.reduce((n, a) => n + a.events.length, 0);
    expect(appended).toBeGreaterThan(200);
    // readAll stops before any transaction still open on the server (the xid fence is cluster
    // wide, and suites run in parallel on one server): read until every appended event is seen.
    let events = await store.readAll({ after: START, limit: 100_000 });
    for (const deadline = Date.now() + 30_000; events.length < appended && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 50));
      events = await store.readAll({ after: START, limit: 100_000 });
    }
    expect(events).toHaveLength(appended);

    const a = targets[0]!;
    const b = targets[1]!;
    const run = async (pool: Pool, batched: boolean) => {
      const platform = platformProjection();
      const others = [catalogProjection(), auditProjection(1), analyticsProjection(1)].map((p) => (batched ? p : perEvent(p)));
      // TenantDeleted (the log's last event) comes alone, as in production: nothing of the tenant follows it.
      for (const batch of [...schedule(events.slice(0, -1)), { mode: 'rebuild' as const, events: events.slice(-1) }]) {
        await applyBatch(pool, platform, batch.events, batch.mode, quiet);
        for (const p of others) await applyBatch(pool, p, batch.events, batch.mode, quiet);
      }
      // Re-delivered without keyed checkpoints, one event twice: audit recognises its rows by event id.
      const again = events.slice(40, 120).filter((e) => e.metadata.tenantId !== deletedTenant);
      await applyBatch(pool, others[1]!, [...again, again[5]!], 'global', quiet);
    };
    await run(a.pool, false);
    await run(b.pool, true);

    const expected = await snapshot(a.pool, [...tenants, deletedTenant]);
    const actual = await snapshot(b.pool, [...tenants, deletedTenant]);
    // The comparison means something: every table has rows, the deleted tenant none.
    for (const t of tenants) {
      const s = tenantSchema(t);
      expect((expected[`${s}.audit`] as unknown[]).length).toBeGreaterThan(40);
      expect((expected[`${s}.documents`] as unknown[]).length).toBe(6);
    }
    expect(expected[tenantSchema(deletedTenant)]).toEqual(['no schema']);
    expect(expected.usage_daily!.length).toBe((tenants.length + 1) * 2);
    expect(expected.dead_letters!.length).toBeGreaterThan(0);
    for (const key of Object.keys(expected)) expect({ key, rows: actual[key] }).toEqual({ key, rows: expected[key] });
  });

  it('analytics: a tenant erased mid-batch and written again folds as event by event', async () => {
    const t = randomUUID();
    const { ev } = builder();
    const d1 = randomUUID();
    const d2 = randomUUID();
    const log: NewEvent[] = [
      ev(t, 'DocumentUploaded', doc(d1, 1, 10)),
      ev(t, 'DocumentIndexed', { documentId: d1, version: 1, chunkCount: 4, embedderId: 'e', format: 'md' }),
      ev(t, 'DocumentUploaded', doc(d2, 1, 20)),
      ev(t, 'TenantDeleted', {}),
      ev(t, 'SearchPerformed', { queryHash: 'q', mode: 'hybrid', topK: 5, resultChunkIds: [] }),
      ev(t, 'DocumentIndexed', { documentId: d2, version: 1, chunkCount: 4, embedderId: 'e', format: 'md' }),
      ev(t, 'DocumentUploaded', doc(d1, 2, 30)),
      ev(t, 'DocumentDeleted', { documentId: d1, version: 2 }),
      ev(t, 'DocumentUploaded', doc(d2, 2, 40), DAY2),
      ev(t, 'TenantDeleted', {}, DAY2),
      ev(t, 'QuestionAsked', { questionHash: 'h', model: 'm', sourceChunkIds: [], promptTokens: 7, completionTokens: 2 }, DAY2),
      ev(t, 'DocumentUploaded', doc(d1, 3, 50), DAY2),
    ];
    const recorded: RecordedEvent[] = log.map((e, i) => ({ ...e, streamId: streamId('document', t, 'x'), streamPosition: BigInt(i), position: `p-${String(i).padStart(4, '0')}`, recordedAt: new Date() }));
    const a = targets[0]!;
    const b = targets[1]!;
    for (const cut of [1, 4, 7]) {
      const slices = [recorded.slice(0, cut), recorded.slice(cut)];
      await applyBatch(a.pool, perEvent(analyticsProjection(100 + cut)), slices[0]!, 'global', quiet);
      await applyBatch(a.pool, perEvent(analyticsProjection(100 + cut)), slices[1]!, 'global', quiet);
      await applyBatch(b.pool, analyticsProjection(100 + cut), slices[0]!, 'global', quiet);
      await applyBatch(b.pool, analyticsProjection(100 + cut), slices[1]!, 'global', quiet);
      for (const table of ['usage_daily', 'usage_docs', 'usage_totals']) {
        const sql = `SELECT * FROM analytics.${table}_v${100 + cut} ORDER BY 1, 2`;
        expect({ cut, table, rows: await tableRows(b.pool, sql) }).toEqual({ cut, table, rows: await tableRows(a.pool, sql) });
      }
      if (cut === 4) expect((await tableRows(a.pool, `SELECT * FROM analytics.usage_totals_v${100 + cut}`)).length).toBe(1);
    }
  });
});
