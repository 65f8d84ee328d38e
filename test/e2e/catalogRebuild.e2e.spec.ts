import request from 'supertest';
import { tenantSchema } from '../../contracts/naming';
import { createPostgresEventStore } from '../../infra/eventstore/postgres';
import { createPool } from '../../infra/postgres/pool';
import { migratePlatform } from '../../infra/postgres/schema';
import type { Product } from '../../services/product';
import { eventually } from '../support/eventually';
import { dropDatabase, freshDatabase } from '../support/postgres';
import { ADMIN, provisionTenant, startTestProduct, startTestProductOn, type TestTenant, waitUntilIndexed } from '../support/product';
import { catalogRebuildScenario, DOCS_A, DOCS_B, QUERIES } from './catalogRebuildScenario';

// The hashing embedder is deterministic: a set derived again gives the very same vectors (the
// int8 ONNX model's vectors shift slightly with batch composition).
const EMBEDDER = { EMBEDDER: 'hashing' };

describe('rebuilding the catalog online (embedded profile)', () => {
  catalogRebuildScenario({ start: () => startTestProduct(EMBEDDER), waitMs: 30_000 });
});

describe('every read model derived again from the event store and the content alone (a fresh database)', () => {
  const op = { Authorization: `Bearer ${ADMIN}` };
  const products: Product[] = [];
  const databases: string[] = [];
  afterAll(async () => {
    for (const p of products) await p.stop();
    for (const d of databases) await dropDatabase(d).catch(() => undefined);
  });

  const startOn = async (url: string) => {
    const p = await startTestProductOn(url, EMBEDDER);
    products.push(p);
    return p;
  };
  const topTen = async (p: Product, t: TestTenant) => {
    const out: Record<string, string[]> = {};
    for (const q of QUERIES) {
      for (const mode of ['hybrid', 'keyword', 'semantic']) {
        const r = await request(p.app).post('/v1/search').set(t.auth).send({ query: q, top_k: 10, mode });
        expect(r.status).toBe(200);
        out[`${mode}:${q}`] = r.body.results.map((x: { document_id: string; chunk_index: number; text: string }) => `${x.document_id}:${x.chunk_index}:${x.text}`);
      }
    }
    return out;
  };
  const documents = async (p: Product, t: TestTenant) =>
    ((await request(p.app).get('/v1/documents?limit=100').set(t.auth)).body.items as { id: string; filename: string; version: number; status: string; chunk_count: number }[] | undefined)
      ?.map((d) => ({ id: d.id, filename: d.filename, version: d.version, status: d.status, chunk_count: d.chunk_count }))
      .sort((x, y) => x.id.localeCompare(y.id));

  it('drops every read model (only the event store and the content are kept), replays, and answers the same top-10', async () => {
    const source = await startTestProduct(EMBEDDER);
    products.push(source);
    const a = await provisionTenant(source, 'fresh-a');
    const b = await provisionTenant(source, 'fresh-b');
    const erased = await provisionTenant(source, 'fresh-erased');
    const upload = async (t: TestTenant, filename: string, text: string) => {
      const r = await request(source.app).post('/v1/documents').set(t.auth).send({ filename, text });
      expect(r.status).toBe(202);
      await waitUntilIndexed(source, t, r.body.id);
      return r.body.id as string;
    };
    for (const [f, text] of DOCS_A) await upload(a, f, text);
    for (const [f, text] of DOCS_B) await upload(b, f, text);
    await upload(a, 'violin.md', '# Violin\n\nRosin on the bow hair gives grip; the strings sing when the bow is drawn slowly.');
    const gone = await upload(a, 'scratch.md', '# Scratch\n\nTemporary notes about the weekly stand-up.');
    await request(source.app).delete(`/v1/documents/${gone}`).set(a.auth).expect(204);
    await upload(erased, 'secret.md', '# Secret\n\nThe erased tenant keeps its recipe for lighthouse tide cakes.');
    await request(source.app).delete(`/v1/tenants/${erased.id}`).set(op).expect((r) => expect([200, 202, 204]).toContain(r.status));
    // Erasure is final: the tenant's streams are gone from the store.
    await eventually(() => source.deps.store.streamsOfTenant(erased.id), (s) => s.length === 0, 20_000);
    const before = { a: await topTen(source, a), b: await topTen(source, b), docsA: await documents(source, a), docsB: await documents(source, b) };
    expect(before.a['hybrid:tide at dawn']!.length).toBeGreaterThan(0);

    // A new, empty database with the event store and the content table copied: no read model.
    const url = await freshDatabase();
    databases.push(url);
    const pool = createPool(url, { max: 2 });
    try {
      await migratePlatform(pool);
      await (await createPostgresEventStore(pool)).close();
      const es = (source.deps.store as { schema?: string }).schema ?? 'es';
      for (const table of [`${es}.streams`, `${es}.events`, 'content.blobs']) {
        const rows = (await source.deps.pool.query<{ j: unknown }>(`SELECT coalesce(json_agg(t), '[]'::json) AS j FROM ${table} t`)).rows[0]!.j;
        await pool.query(`INSERT INTO ${table} SELECT * FROM json_populate_recordset(NULL::${table}, $1::json)`, [JSON.stringify(rows)]);
      }
      await pool.query(`SELECT setval(pg_get_serial_sequence('${es}.events', 'global_position'), (SELECT max(global_position) FROM ${es}.events))`);
      const readModels = await pool.query(`SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'`);
      expect(readModels.rowCount).toBe(0);
    } finally {
      await pool.end();
    }

    const target = await startOn(url);
    // The same tokens work: tenants and users are projected again from their events.
    const settled = await eventually(
      async () => ({ a: await documents(target, a), b: await documents(target, b) }),
      (d) => JSON.stringify(d.a) === JSON.stringify(before.docsA) && JSON.stringify(d.b) === JSON.stringify(before.docsB),
      60_000,
    );
    expect(settled.a).toEqual(before.docsA);
    expect(await topTen(target, a)).toEqual(before.a);
    expect(await topTen(target, b)).toEqual(before.b);
    // The erased tenant did not come back.
    const tenants = (await request(target.app).get('/v1/tenants').set(op)).body.items.map((t: { id: string }) => t.id);
    expect(tenants).toEqual(expect.arrayContaining([a.id, b.id]));
    expect(tenants).not.toContain(erased.id);
    expect((await target.deps.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(erased.id)])).rowCount).toBe(0);
  }, 180_000);
});
