import request from 'supertest';
import { tenantSchema } from '../../contracts/naming';
import { withTransaction } from '../../infra/postgres/pool';
import { catalogViewVersions, createTenantSchema } from '../../infra/postgres/schema';
import type { Product } from '../../services/product';
import { appendActivity } from '../support/activity';
import { eventually } from '../support/eventually';
import { runReplay } from '../support/replayCli';
import { ADMIN, provisionTenant, type TestTenant, waitUntilIndexed } from '../support/product';

/**
 * Online rebuild of the catalog (README "Audit, replay, usage, metrics"), shared by the embedded
 * and the production-profile suites: whole and per tenant, through `npm run replay`, while both
 * tenants search and read their documents in a loop; chunk sets are re-linked, never re-embedded.
 */
const op = { Authorization: `Bearer ${ADMIN}` };

export const DOCS_A: [string, string][] = [
  ['lighthouse.md', '# Lighthouse\n\nThe lighthouse keeper logs the tide at dawn and trims the lamp wick at dusk.'],
  ['bakery.md', '# Bakery\n\nSourdough bread rises overnight; the baker feeds the starter with rye flour.'],
  ['orbit.md', '# Orbits\n\nA satellite in geostationary orbit circles the planet once per sidereal day.'],
  ['garden.md', '# Garden\n\nTomatoes need staking, full sun and deep watering twice a week in July.'],
  ['violin.md', '# Violin\n\nRosin on the bow hair gives the grip that makes the strings sing.'],
  ['glacier.md', '# Glaciers\n\nGlaciers carve valleys into a U shape and leave moraines when they retreat.'],
  ['chess.md', '# Chess\n\nThe Sicilian defence answers the king pawn opening with the c-pawn.'],
  ['volcano.md', '# Volcanoes\n\nBasalt lava flows far before it cools; andesite builds steep cones.'],
];
export const DOCS_B: [string, string][] = [
  ['orchard.md', '# Orchard\n\nThe orchard grows twelve kinds of apples and pears on the south slope.'],
  ['ferry.md', '# Ferry\n\nThe ferry crosses the strait every forty minutes, tide permitting.'],
  ['loom.md', '# Weaving\n\nA floor loom lifts warp threads with treadles while the shuttle carries the weft.'],
];
export const QUERIES = ['tide at dawn', 'sourdough starter', 'satellite orbit', 'tomatoes watering', 'bow rosin strings', 'glacier valleys', 'apples orchard', 'ferry strait', 'loom shuttle'];

export interface ScenarioOptions {
  start(): Promise<Product>;
  /** Bounds every wait for a rebuild (the Kafka profile's switch waits for consumer groups). */
  waitMs: number;
}

export function catalogRebuildScenario(opts: ScenarioOptions): void {
  let product: Product;
  let a: TestTenant;
  let b: TestTenant;
  /** Provisioned, given a document, then deleted (erased) before any rebuild. */
  let erased: TestTenant;
  let readyA = '';
  /** Texts embedded as passages (indexing), recorded from the product's embedder. */
  const embedded: string[] = [];

  const search = async (t: TestTenant, query: string, mode = 'hybrid') => request(product.app).post('/v1/search').set(t.auth).send({ query, top_k: 10, mode });
  const topTen = async (t: TestTenant) => {
    const out: Record<string, string[]> = {};
    for (const q of QUERIES) for (const mode of ['hybrid', 'keyword']) out[`${mode}:${q}`] = (await search(t, q, mode)).body.results.map((r: { document_id: string; chunk_index: number }) => `${r.document_id}:${r.chunk_index}`);
    return out;
  };
  const documents = async (t: TestTenant) =>
    ((await request(product.app).get('/v1/documents?limit=100').set(t.auth)).body.items as { id: string; filename: string; version: number; status: string; chunk_count: number }[])
      .map((d) => ({ id: d.id, filename: d.filename, version: d.version, status: d.status, chunk_count: d.chunk_count }))
      .sort((x, y) => x.id.localeCompare(y.id));
  /** Every column of the tenant's catalog rows, as readers see them. */
  const catalogRows = async (t: TestTenant) => {
    const s = tenantSchema(t.id);
    const r = await product.deps.pool.query<{ d: string | null; i: string | null }>(
      `SELECT (SELECT md5(string_agg(row_to_json(x)::text, ',' ORDER BY document_id)) FROM ${s}.documents x) AS d,
              (SELECT md5(string_agg(row_to_json(x)::text, ',' ORDER BY document_id)) FROM ${s}.document_index x) AS i`,
    );
    return r.rows[0]!;
  };
  const upload = async (t: TestTenant, filename: string, text: string) => {
    const r = await request(product.app).post('/v1/documents').set(t.auth).send({ filename, text });
    expect(r.status).toBe(202);
    return r.body.id as string;
  };
  /**
   * Searches both tenants and reads a ready document of A in a loop while `work` runs; every
   * answer must be 200, every search non-empty, the document ready throughout.
   */
  async function readWhile<T>(work: Promise<T>, during?: () => Promise<void>): Promise<{ result: T; loops: number }> {
    let finished = false;
    const tracked = work.finally(() => void (finished = true));
    let loops = 0;
    let extra: Promise<void> | undefined;
    while (!finished) {
      const q = QUERIES[loops % QUERIES.length]!;
      for (const t of [a, b]) {
        const r = await search(t, q);
        expect(r.status).toBe(200);
        expect(r.body.results.length).toBeGreaterThan(0);
      }
      const d = await request(product.app).get(`/v1/documents/${readyA}`).set(a.auth);
      expect(d.status).toBe(200);
      expect(d.body.status).toBe('ready');
      loops++;
      if (loops === 2) extra = during?.();
    }
    await extra;
    return { result: await tracked, loops };
  }

  beforeAll(async () => {
    product = await opts.start();
    const embedder = product.deps.embedder;
    const embed = embedder.embed.bind(embedder);
    embedder.embed = async (texts, kind) => {
      if (kind === 'passage') embedded.push(...texts);
      return embed(texts, kind);
    };
    a = await provisionTenant(product, 'catalog-a');
    b = await provisionTenant(product, 'catalog-b');
    const ids: string[] = [];
    for (const [f, text] of DOCS_A) ids.push(await upload(a, f, text));
    for (const [f, text] of DOCS_B) ids.push(await upload(b, f, text));
    // History the rebuild replays: a replacement, a deletion, a document that fails to index.
    const replaced = await upload(a, 'violin.md', '# Violin\n\nRosin on the bow hair gives grip; the strings sing when the bow is drawn slowly.');
    const deleted = await upload(a, 'scratch.md', '# Scratch\n\nTemporary notes about the weekly stand-up.');
    const failed = await upload(a, 'blank.md', ' \n\n \n');
    for (const id of [...ids, replaced, deleted, failed]) await waitUntilIndexed(product, ids.slice(DOCS_A.length).includes(id) ? b : a, id, opts.waitMs);
    expect((await request(product.app).get(`/v1/documents/${failed}`).set(a.auth)).body.status).toBe('failed');
    await request(product.app).delete(`/v1/documents/${deleted}`).set(a.auth).expect(204);
    readyA = ids[0]!;
    erased = await provisionTenant(product, 'catalog-erased');
    await waitUntilIndexed(product, erased, await upload(erased, 'secret.md', '# Secret\n\nThe lighthouse tide cake recipe.'), opts.waitMs);
    await request(product.app).delete(`/v1/tenants/${erased.id}`).set(op).expect((r) => expect(r.status).toBeLessThan(300));
    await eventually(() => product.deps.store.streamsOfTenant(erased.id), (s) => s.length === 0, opts.waitMs);
    // Volume the catalog skips but a rebuild reads, so that it takes a while.
    for (let round = 0; round < 4; round++) for (const t of [a, b]) await appendActivity(product.deps.store, t.id, `bulk-${round}`, 250);
  });
  afterAll(async () => {
    await product?.stop();
  });

  it('rebuilds the whole catalog into a new version beside the live one while both tenants search, re-linking chunk sets without embedding', async () => {
    const beforeDocs = { a: await documents(a), b: await documents(b) };
    const beforeTop = { a: await topTen(a), b: await topTen(b) };
    expect(beforeDocs.a.map((d) => d.status).sort()).toEqual([...Array(DOCS_A.length).fill('ready'), 'failed'].sort());
    const from = product.deps.manager.version('catalog')!;
    embedded.length = 0;
    let during = '';
    const { result: cli, loops } = await readWhile(runReplay(product, ['catalog'], opts.waitMs * 2), async () => {
      // An upload while the rebuild runs (indexed by the live version, switched with the rest).
      during = await upload(b, 'marmalade.md', '# Marmalade\n\nSeville oranges make the bitterest marmalade.');
    });
    expect({ code: cli.code, tail: cli.stdout.slice(-300) + cli.stderr.slice(-300) }).toMatchObject({ code: 0 });
    expect(cli.stdout).toContain(`catalog: rebuilt as version ${from + 1}; reads switched.`);
    expect(loops).toBeGreaterThan(0);
    expect(product.deps.manager.version('catalog')).toBe(from + 1);
    await waitUntilIndexed(product, b, during, opts.waitMs);

    expect(await documents(a)).toEqual(beforeDocs.a);
    expect((await documents(b)).filter((d) => d.id !== during)).toEqual(beforeDocs.b);
    expect(await topTen(a)).toEqual(beforeTop.a);
    // B's new document may join B's results; the rest keep their order.
    const afterB = await topTen(b);
    for (const [k, v] of Object.entries(beforeTop.b)) expect(afterB[k]!.filter((x) => !x.startsWith(during))).toEqual(v.slice(0, afterB[k]!.filter((x) => !x.startsWith(during)).length));
    // Only the document uploaded during the rebuild was embedded.
    expect(embedded.length).toBeGreaterThan(0);
    expect(embedded.every((t) => t.includes('marmalade') || t.includes('Marmalade'))).toBe(true);
    // Readers now read the new version; the old one's tables are gone.
    const views = await catalogViewVersions(product.deps.pool);
    expect([views.get(a.id), views.get(b.id)]).toEqual([from + 1, from + 1]);
    const old = await product.deps.pool.query('SELECT to_regclass($1) AS t', [`${tenantSchema(a.id)}.documents_v${from}`]);
    expect(old.rows[0].t).toBeNull();
    // The erased tenant did not come back.
    expect((await product.deps.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(erased.id)])).rowCount).toBe(0);
    const info = (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === 'catalog');
    expect(info).toMatchObject({ version: from + 1, rebuildable: true, rebuild: { state: 'switched' } });
  });

  it('indexes a document whose content the tenant already holds by copying its chunk set (no embedding)', async () => {
    embedded.length = 0;
    const copy = await upload(a, 'lighthouse-copy.md', DOCS_A[0]![1]);
    const doc = await waitUntilIndexed(product, a, copy, opts.waitMs);
    expect(doc.status).toBe('ready');
    expect(embedded).toEqual([]);
    const hits = (await search(a, 'lighthouse keeper tide', 'keyword')).body.results.map((r: { document_id: string }) => r.document_id);
    expect(hits).toEqual(expect.arrayContaining([readyA, copy]));
  });

  it('rebuilds one tenant\'s catalog rows (replay --tenant) and leaves the other tenant\'s rows untouched', async () => {
    const beforeDocs = await documents(a);
    const beforeTop = await topTen(a);
    const beforeB = await catalogRows(b);
    const version = product.deps.manager.version('catalog')!;
    // Behind the product's back: a filename altered, a document's index row removed.
    const s = tenantSchema(a.id);
    const [x, y] = beforeDocs.filter((d) => d.status === 'ready' && d.id !== readyA);
    await product.deps.pool.query(`UPDATE ${s}.documents SET filename = 'tampered.md' WHERE document_id = $1`, [x!.id]);
    await product.deps.pool.query(`DELETE FROM ${s}.document_index WHERE document_id = $1`, [y!.id]);
    expect(await documents(a)).not.toEqual(beforeDocs);
    embedded.length = 0;
    const { result: cli, loops } = await readWhile(runReplay(product, ['catalog', '--tenant', a.slug], opts.waitMs * 2));
    expect({ code: cli.code, tail: cli.stdout.slice(-300) + cli.stderr.slice(-300) }).toMatchObject({ code: 0 });
    expect(cli.stdout).toContain(`catalog (tenant ${a.slug}): rebuilt from the event store`);
    expect(loops).toBeGreaterThan(0);
    expect(await documents(a)).toEqual(beforeDocs);
    expect(await topTen(a)).toEqual(beforeTop);
    expect(await catalogRows(b)).toEqual(beforeB);
    expect(embedded).toEqual([]);
    expect(product.deps.manager.version('catalog')).toBe(version);
    // No scratch copy is left behind.
    expect((await product.deps.pool.query('SELECT to_regclass($1) AS t', [`${s}.documents_v0`])).rows[0].t).toBeNull();
  });

  it('rebuilds one tenant\'s platform rows (replay platform --tenant): a demoted owner, a lost token and an un-revoked one repaired, the other tenant untouched', async () => {
    const platformRows = async (t: TestTenant) =>
      (
        await product.deps.pool.query<{ c: string }>(
          `SELECT (SELECT md5(string_agg(row_to_json(x)::text, ',')) FROM platform.tenants x WHERE tenant_id = $1) || '/' ||
                  (SELECT md5(string_agg(row_to_json(x)::text, ',' ORDER BY user_id)) FROM platform.users x WHERE tenant_id = $1) || '/' ||
                  coalesce((SELECT md5(string_agg(row_to_json(x)::text, ',' ORDER BY token_id)) FROM platform.api_tokens x WHERE tenant_id = $1), '-') AS c`,
          [t.id],
        )
      ).rows[0]!.c;
    const issued = await request(product.app).post('/v1/api-tokens').set(a.auth).send({ name: 'ci', role: 'viewer' });
    expect(issued.status).toBe(201);
    const revoked = await request(product.app).post('/v1/api-tokens').set(a.auth).send({ name: 'old', role: 'viewer' });
    await request(product.app).delete(`/v1/api-tokens/${revoked.body.id}`).set(a.auth).expect(204);
    const asToken = (token: string) => request(product.app).get('/v1/documents').set({ Authorization: `Bearer ${token}` });
    await eventually(() => asToken(revoked.body.token), (r) => r.status === 401, opts.waitMs);
    await eventually(async () => (await request(product.app).get('/v1/api-tokens').set(a.auth)).body.items?.length, (n) => n === 2, opts.waitMs);
    const beforeA = await platformRows(a);
    const beforeB = await platformRows(b);
    // Behind the product's back.
    await product.deps.pool.query(`UPDATE platform.users SET role = 'viewer' WHERE tenant_id = $1`, [a.id]);
    await product.deps.pool.query('DELETE FROM platform.api_tokens WHERE token_id = $1', [issued.body.id]);
    await product.deps.pool.query('UPDATE platform.api_tokens SET revoked_at = NULL WHERE token_id = $1', [revoked.body.id]);
    expect(await platformRows(a)).not.toEqual(beforeA);
    const { result: cli, loops } = await readWhile(runReplay(product, ['platform', '--tenant', a.slug], opts.waitMs * 2));
    expect({ code: cli.code, tail: cli.stdout.slice(-300) + cli.stderr.slice(-300) }).toMatchObject({ code: 0 });
    expect(loops).toBeGreaterThan(0);
    expect(await platformRows(a)).toEqual(beforeA);
    expect(await platformRows(b)).toEqual(beforeB);
    expect((await request(product.app).get('/v1/me').set(a.auth)).body.role).toBe('owner');
    expect((await asToken(issued.body.token)).status).toBe(200);
    expect((await asToken(revoked.body.token)).status).toBe(401);
    // The tenant's schema and role were never touched: its documents still answer.
    expect((await documents(a)).length).toBeGreaterThan(0);
    expect((await product.deps.pool.query('SELECT to_regclass($1) AS t', ['platform.users_v0'])).rows[0].t).toBeNull();
  });

  it('rebuilds the whole platform in place (replay platform) while both tenants search and sign in: drift in every tenant repaired, the erased tenant stays erased', async () => {
    const rows = async (t: TestTenant) =>
      (
        await product.deps.pool.query<{ c: string }>(
          `SELECT coalesce((SELECT md5(string_agg(row_to_json(x)::text, ',')) FROM platform.tenants x WHERE tenant_id = $1), '-') || '/' ||
                  coalesce((SELECT md5(string_agg(row_to_json(x)::text, ',' ORDER BY user_id)) FROM platform.users x WHERE tenant_id = $1), '-') || '/' ||
                  coalesce((SELECT md5(string_agg(row_to_json(x)::text, ',' ORDER BY token_id)) FROM platform.api_tokens x WHERE tenant_id = $1), '-') AS c`,
          [t.id],
        )
      ).rows[0]!.c;
    const token = await request(product.app).post('/v1/api-tokens').set(b.auth).send({ name: 'whole', role: 'viewer' });
    expect(token.status).toBe(201);
    const asToken = () => request(product.app).get('/v1/documents').set({ Authorization: `Bearer ${token.body.token}` });
    await eventually(asToken, (r) => r.status === 200, opts.waitMs);
    const before = { a: await rows(a), b: await rows(b), erased: await rows(erased) };
    expect((await product.deps.pool.query('SELECT status FROM platform.tenants WHERE tenant_id = $1', [erased.id])).rows[0]?.status).toBe('deleted');
    // Behind the product's back, in both tenants: a demoted owner, a user who was never added, a lost token.
    await product.deps.pool.query(`UPDATE platform.users SET role = 'viewer' WHERE tenant_id = $1`, [a.id]);
    await product.deps.pool.query(
      `INSERT INTO platform.users (tenant_id, user_id, email, role, password_hash, created_at) SELECT tenant_id, gen_random_uuid(), 'intruder@example.test', 'owner', password_hash, now() FROM platform.users WHERE tenant_id = $1 LIMIT 1`,
      [b.id],
    );
    await product.deps.pool.query('DELETE FROM platform.api_tokens WHERE token_id = $1', [token.body.id]);
    // And a schema of the erased tenant made again (as if its erasure had stopped half way).
    await withTransaction(product.deps.pool, (c) => createTenantSchema(c, erased.id));
    expect([await rows(a), await rows(b)]).not.toEqual([before.a, before.b]);
    const version = product.deps.manager.version('platform');

    // Sign-ins of both tenants beside the searches (paced: logins are throttled to 10 a burst): every one answers 200.
    let finished = false;
    let logins = 0;
    const signIns = (async () => {
      for (let round = 0; round < 5 && !finished; round++) {
        if (round > 0) await new Promise((r) => setTimeout(r, 400));
        for (const [t, base] of [[a, 'catalog-a'], [b, 'catalog-b']] as const) {
          const r = await request(product.app).post('/v1/auth/login').send({ tenant: t.slug, email: `owner@${base}.test`, password: 'correct horse battery staple' });
          expect(r.status).toBe(200);
          logins++;
        }
      }
    })();
    const { result: cli, loops } = await readWhile(runReplay(product, ['platform'], opts.waitMs * 2)).finally(() => void (finished = true));
    await signIns;
    expect({ code: cli.code, tail: cli.stdout.slice(-300) + cli.stderr.slice(-300) }).toMatchObject({ code: 0 });
    expect(cli.stdout).toContain('platform: rebuilt in place from the event store');
    expect(loops).toBeGreaterThan(0);
    expect(logins).toBeGreaterThan(0);

    expect({ a: await rows(a), b: await rows(b), erased: await rows(erased) }).toEqual(before);
    expect((await request(product.app).get('/v1/me').set(a.auth)).body.role).toBe('owner');
    expect((await asToken()).status).toBe(200);
    expect((await request(product.app).post('/v1/auth/login').send({ tenant: b.slug, email: 'intruder@example.test', password: 'correct horse battery staple' })).status).toBe(401);
    // Erasure is final: the record stays 'deleted', no schema, no sign-in, the slug still taken.
    expect((await product.deps.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(erased.id)])).rowCount).toBe(0);
    expect((await request(product.app).post('/v1/auth/login').send({ tenant: erased.slug, email: 'owner@catalog-erased.test', password: 'correct horse battery staple' })).status).toBe(401);
    const again = await request(product.app).post('/v1/tenants').set(op).send({ name: 'again', slug: erased.slug, owner: { email: 'owner@catalog-erased.test', password: 'correct horse battery staple' } });
    expect(again.status).toBe(409);
    // In place: the same version, no scratch table left, reported as rebuilt.
    expect(product.deps.manager.version('platform')).toBe(version);
    for (const t of ['platform.tenants_v0', 'platform.users_v0', 'platform.api_tokens_v0']) expect((await product.deps.pool.query('SELECT to_regclass($1) AS t', [t])).rows[0].t).toBeNull();
    const info = (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === 'platform');
    expect(info).toMatchObject({ version, rebuildable: true, tenant_rebuildable: true, rebuild: { state: 'switched', error: null } });
    expect(info.rebuild.tenant).toBeUndefined();
  });

  it('answers 409 to a second rebuild of a projection while one runs (whole or one tenant)', async () => {
    const first = await request(product.app).post('/v1/admin/projections/catalog/rebuild').set(op).send({ tenant: b.slug });
    expect(first.status).toBe(202);
    const second = await request(product.app).post('/v1/admin/projections/catalog/rebuild').set(op).send({});
    expect(second.status).toBe(409);
    expect(second.headers['content-type']).toMatch(/problem\+json/);
    expect((await request(product.app).post('/v1/admin/projections/platform/rebuild').set(op).send({})).status).toBe(202);
    expect((await request(product.app).post('/v1/admin/projections/platform/rebuild').set(op).send({ tenant: a.slug })).status).toBe(409);
    // An erased tenant cannot be rebuilt back.
    for (const name of ['platform', 'catalog']) expect((await request(product.app).post(`/v1/admin/projections/${name}/rebuild`).set(op).send({ tenant: erased.slug })).status).toBe(404);
    for (const name of ['catalog', 'platform']) {
      await eventually(
        async () => (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === name).rebuild,
        (r) => r?.state === 'switched' || r?.state === 'failed',
        opts.waitMs,
      ).then((r) => expect(r).toMatchObject({ state: 'switched', error: null }));
    }
  });
}
