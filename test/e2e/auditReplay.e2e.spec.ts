import request from 'supertest';
import { streamId, tenantSchema } from '../../contracts/naming';
import type { Product } from '../../services/product';
import { eventually } from '../support/eventually';
import { settle } from '../support/settle';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant, waitUntilIndexed } from '../support/product';

const SECRET_TEXT = 'The submarine base access phrase is ORCHID-LANTERN-42.';
const op = { Authorization: `Bearer ${ADMIN}` };

describe('audit log, usage analytics, replay and tenant deletion', () => {
  let product: Product;
  let acme: TestTenant;
  let docId: string;

  beforeAll(async () => {
    product = await startTestProduct();
    acme = await provisionTenant(product, 'audit');
    const up = await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: 'base.md', text: SECRET_TEXT });
    docId = up.body.id;
    await waitUntilIndexed(product, acme, docId);
    await request(product.app).post('/v1/search').set(acme.auth).send({ query: 'submarine access phrase' }).expect(200);
    await request(product.app).post('/v1/ask').set(acme.auth).send({ question: 'What is the access phrase?' }).expect(200);
    await request(product.app).post('/v1/auth/login').send({ tenant: acme.slug, email: 'owner@audit.test', password: 'wrong password!!' }).expect(401);
    const tok = await request(product.app).post('/v1/api-tokens').set(acme.auth).send({ name: 'robot' }).expect(201);
    await request(product.app).delete(`/v1/api-tokens/${tok.body.id}`).set(acme.auth).expect(204);
  });
  afterAll(async () => {
    await product?.stop();
  });

  const audit = (query = '') => request(product.app).get(`/v1/audit${query}`).set(acme.auth);

  it('lists every command and security event, newest first, without secrets or content', async () => {
    const res = await eventually(
      () => audit('?limit=200'),
      (r) => ['QuestionAsked', 'SearchPerformed', 'LoginFailed', 'ApiTokenRevoked', 'DocumentIndexed'].every((t) => r.body.items?.some((i: { type: string }) => i.type === t)),
    );
    const types = res.body.items.map((i: { type: string }) => i.type);
    for (const t of ['TenantProvisioned', 'UserAdded', 'LoginSucceeded', 'LoginFailed', 'DocumentUploaded', 'DocumentIndexed', 'SearchPerformed', 'QuestionAsked', 'ApiTokenIssued', 'ApiTokenRevoked']) {
      expect(types).toContain(t);
    }
    const seqs = res.body.items.map((i: { seq: number }) => i.seq);
    expect([...seqs].sort((a, b) => b - a)).toEqual(seqs);
    const body = JSON.stringify(res.body);
    expect(body).not.toContain('ORCHID');
    expect(body).not.toContain('argon2');
    expect(body).not.toMatch(/trk_[A-Za-z0-9_-]{20,}/);
    const failed = res.body.items.find((i: { type: string }) => i.type === 'LoginFailed');
    expect(failed.result).toBe('failure');
    expect(failed.correlation_id).toEqual(expect.any(String));
  });

  it('filters by type, subject, actor and time, and pages with a cursor', async () => {
    const byType = await audit('?type=DocumentUploaded');
    expect(byType.body.items.length).toBe(1);
    expect(byType.body.items[0].subject).toBe(docId);
    const bySubject = await audit(`?subject=${docId}`);
    expect(bySubject.body.items.map((i: { type: string }) => i.type).sort()).toEqual(['DocumentIndexed', 'DocumentUploaded']);
    const actor = byType.body.items[0].actor;
    const byActor = await audit(`?actor=${encodeURIComponent(actor)}`);
    expect(byActor.body.items.every((i: { actor: string }) => i.actor === actor)).toBe(true);
    const future = await audit(`?since=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`);
    expect(future.body.items).toEqual([]);
    const page1 = await audit('?limit=2');
    const page2 = await audit(`?limit=2&cursor=${page1.body.next_cursor}`);
    expect(page2.body.items[0].seq).toBeLessThan(page1.body.items[1].seq);
    expect((await audit('?cursor=-5')).status).toBe(400);
  });

  it('exports the same entries as NDJSON', async () => {
    const list = await audit('?limit=500');
    const res = await request(product.app).get('/v1/audit/export').set(acme.auth);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/x-ndjson/);
    const lines = res.text.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.event_id)).toEqual(list.body.items.map((i: { event_id: string }) => i.event_id));
  });

  it('is forbidden to members and viewers', async () => {
    await request(product.app).post('/v1/users').set(acme.auth).send({ email: 'v@audit.test', password: 'viewer password 1', role: 'viewer' }).expect(201);
    const login = await request(product.app).post('/v1/auth/login').send({ tenant: acme.slug, email: 'v@audit.test', password: 'viewer password 1' }).expect(200);
    const res = await request(product.app).get('/v1/audit').set('Authorization', `Bearer ${login.body.access_token}`);
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/problem\+json/);
  });

  it('counts usage per day: documents, chunks, bytes, searches, questions', async () => {
    // Every activity record flushed and projected: the counters are final, not on their way.
    await settle(product, ['analytics']);
    const res = await request(product.app).get('/v1/usage').set(acme.auth);
    expect(res.status).toBe(200);
    const days = res.body.days as Record<string, number>[];
    // Counters summed over the days (a run across midnight UTC splits them over two rows); the
    // stored totals are those the newest day ended with.
    const sum = (k: string) => days.reduce((n, d) => n + Number(d[k] ?? 0), 0);
    expect({ documents_uploaded: sum('documents_uploaded'), searches: sum('searches'), questions: sum('questions') }).toEqual({ documents_uploaded: 1, searches: 1, questions: 1 });
    const today = days[days.length - 1]!;
    expect(today).toMatchObject({ documents_stored: 1, bytes_stored: Buffer.byteLength(SECRET_TEXT) });
    expect(today.chunks_stored).toBeGreaterThanOrEqual(1);
    const all = await request(product.app).get('/v1/admin/usage').set(op);
    expect(all.body.days.some((d: { tenant_id: string }) => d.tenant_id === acme.id)).toBe(true);
    expect((await request(product.app).get('/v1/usage?from=notadate').set(acme.auth)).status).toBe(400);
  });

  it('rebuilds the audit log beside the live one, identical, while reads keep answering', async () => {
    const schema = tenantSchema(acme.id);
    /** The tenant's rows of one table version up to `upTo` (inclusive): checksum of the chain, count, newest position. */
    const checksum = async (table: string, upTo: string | null = null) =>
      (
        await product.deps.pool.query<{ c: string | null; n: number; last: string | null }>(
          `SELECT md5(string_agg(event_id::text || position || hash || prev_hash || type || actor || coalesce(subject, '') || details::text, ',' ORDER BY seq)) AS c,
                  count(*)::int AS n, max(position COLLATE "C") AS last
           FROM ${schema}.${table} WHERE $1::text IS NULL OR position COLLATE "C" <= $1::text`,
          [upTo],
        )
      ).rows[0]!;
    // Compare what is comparable: the live table once it holds every event committed so far
    // (activity records are buffered, ACTIVITY_FLUSH_MS, and the projection is asynchronous).
    const settledAt = await settle(product, ['audit']);
    const before = await checksum('audit_log_v1', settledAt);
    expect(before.n).toBeGreaterThan(5);
    const start = await request(product.app).post('/v1/admin/projections/audit/rebuild').set(op);
    expect(start.status).toBe(202);
    expect(start.body).toMatchObject({ name: 'audit', version: 2, state: 'rebuilding' });
    let reads = 0;
    const done = await eventually(
      async () => {
        const r = await audit('?limit=5');
        expect(r.status).toBe(200);
        expect(r.body.items.length).toBeGreaterThan(0);
        reads++;
        return request(product.app).get('/v1/admin/projections').set(op);
      },
      // Until the rebuild is over: reads move to the new version a moment before it reports 'switched'.
      (r) => ['switched', 'failed'].includes(r.body.items.find((p: { name: string }) => p.name === 'audit')?.rebuild?.state),
      60_000,
    );
    expect(reads).toBeGreaterThan(0);
    const info = done.body.items.find((p: { name: string }) => p.name === 'audit');
    expect(info).toMatchObject({ version: 2, rebuild: { state: 'switched', error: null } });
    // The rebuilt table, at the position the live one was checksummed at, is the live one row for row.
    await settle(product, ['audit']);
    expect(await checksum('audit_log_v2', settledAt)).toEqual(before);
    // And over everything the old version applied before it was stopped at the switch.
    const old = await checksum('audit_log_v1');
    expect(await checksum('audit_log_v2', old.last)).toEqual(old);
    // The rebuild built its indexes only when it had caught up: the same as the live-created table's.
    const indexes = async (table: string) =>
      (await product.deps.pool.query<{ indexdef: string }>('SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname', [schema, table])).rows.map((r) =>
        r.indexdef.replaceAll(table, 'audit_log_vN'),
      );
    expect(await indexes('audit_log_v2')).toEqual(await indexes('audit_log_v1'));
    expect((await indexes('audit_log_v1')).length).toBe(4);
    const constraints = async (table: string) =>
      (await product.deps.pool.query<{ c: string }>(`SELECT conname || ' ' || pg_get_constraintdef(oid) AS c FROM pg_constraint WHERE conrelid = $1::regclass ORDER BY conname`, [`${schema}.${table}`])).rows.map((r) =>
        r.c.replaceAll(table, 'audit_log_vN'),
      );
    expect(await constraints('audit_log_v2')).toEqual(await constraints('audit_log_v1'));
    expect((await request(product.app).post('/v1/admin/projections/nope/rebuild').set(op)).status).toBe(404);
  });

  it('reports a row altered behind the product\'s back', async () => {
    const ok = await request(product.app).get('/v1/audit/verify').set(acme.auth);
    expect(ok.body).toMatchObject({ intact: true, broken_at: null });
    expect(ok.body.entries).toBeGreaterThan(5);
    const schema = tenantSchema(acme.id);
    const v = (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === 'audit').version;
    const victim = (await product.deps.pool.query<{ seq: string }>(`SELECT seq FROM ${schema}.audit_log_v${v} ORDER BY seq LIMIT 1 OFFSET 3`)).rows[0]!.seq;
    await product.deps.pool.query(`UPDATE ${schema}.audit_log_v${v} SET actor = 'user:someone-else' WHERE seq = $1`, [victim]);
    const bad = await request(product.app).get('/v1/audit/verify').set(acme.auth);
    expect(bad.body).toMatchObject({ intact: false, broken_at: Number(victim) });
  });

  it('deletes a tenant: read models, content and streams gone, a content-free tombstone kept, slug not reusable', async () => {
    const t = await provisionTenant(product, 'doomed');
    const up = await request(product.app).post('/v1/documents').set(t.auth).send({ filename: 'x.md', text: 'DOOMED-MARKER text' });
    await waitUntilIndexed(product, t, up.body.id);
    expect((await request(product.app).delete(`/v1/tenants/${t.id}`).set(op)).status).toBe(204);
    expect((await request(product.app).get('/v1/documents').set(t.auth)).status).toBe(401);
    await eventually(
      async () => (await product.deps.store.readStream(streamId('document', t.id, up.body.id))).revision,
      (rev) => rev === null,
    );
    expect((await product.deps.store.readStream(streamId('tenant', t.id))).events).toEqual([]);
    const schemas = await product.deps.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(t.id)]);
    expect(schemas.rowCount).toBe(0);
    const blobs = await product.deps.pool.query('SELECT 1 FROM content.blobs WHERE tenant_id = $1', [t.id]);
    expect(blobs.rowCount).toBe(0);
    const again = await request(product.app).post('/v1/tenants').set(op).send({ name: 'again', slug: t.slug, owner: { email: 'o@x.test', password: 'long enough password' } });
    expect(again.status).toBe(409);
    expect((await request(product.app).get(`/v1/tenants/${t.id}`).set(op)).status).toBe(404);
  });
});

describe('point-in-time snapshots (replay --until --into)', () => {
  let product: Product;

  beforeAll(async () => {
    product = await startTestProduct();
  });
  afterAll(async () => {
    await product?.stop();
  });

  it('answers from the documents as they were, read-only, for the owning tenant only', async () => {
    const t = await provisionTenant(product, 'timeline');
    const other = await provisionTenant(product, 'outsider');
    const v1 = await request(product.app).post('/v1/documents').set(t.auth).send({ filename: 'codes.md', text: 'The launch code word is ALPHA-ZULU.' });
    await waitUntilIndexed(product, t, v1.body.id);
    await new Promise((r) => setTimeout(r, 20));
    const then = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await request(product.app).post('/v1/documents').set(t.auth).send({ filename: 'codes.md', text: 'The launch code word is BRAVO-YANKEE.' }).expect(202);
    await request(product.app).post('/v1/documents').set(t.auth).send({ filename: 'later.md', text: 'Added after the snapshot instant: the launch site moved.' }).expect(202);
    const snap = await request(product.app).post('/v1/admin/snapshots').set(op).send({ tenant: t.slug, until: then, name: 'before-change' });
    expect(snap.status).toBe(202);
    expect(snap.body.documents).toBe(1);
    await eventually(
      () => request(product.app).get(`/v1/admin/snapshots?tenant=${t.slug}`).set(op),
      (r) => r.body.items?.[0]?.state === 'ready',
    );
    const past = await request(product.app).post('/v1/search').set(t.auth).send({ query: 'launch code word', as_of: 'before-change' });
    expect(past.status).toBe(200);
    expect(JSON.stringify(past.body.results)).toContain('ALPHA-ZULU');
    expect(JSON.stringify(past.body.results)).not.toMatch(/BRAVO|moved/);
    const asked = await request(product.app).post('/v1/ask').set(t.auth).send({ question: 'What is the launch code word?', as_of: 'before-change' });
    expect(asked.body.answer).toContain('ALPHA-ZULU');
    await waitUntilIndexed(product, t, v1.body.id);
    const now = await request(product.app).post('/v1/search').set(t.auth).send({ query: 'launch code word' });
    expect(JSON.stringify(now.body.results)).toContain('BRAVO-YANKEE');
    const foreign = await request(product.app).post('/v1/search').set(other.auth).send({ query: 'launch code word', as_of: 'before-change' });
    expect(foreign.status).toBe(404);
    expect((await request(product.app).post('/v1/admin/snapshots').set(op).send({ tenant: t.slug, until: then, name: 'before-change' })).status).toBe(409);
    expect((await request(product.app).post('/v1/admin/snapshots').set(op).send({ tenant: t.slug, until: 'yesterday', name: 'x' })).status).toBe(400);
  });
});
