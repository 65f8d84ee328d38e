/**
 * The embedded knowledge index against a real PostgreSQL: BM25 keyword search over the stored
 * English tsvector (stemming and stop words as PostgreSQL's), kept current by activate and
 * forgetDocument, rebuilt identically by a fresh process (lazy load), and per tenant.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import type { IndexedChunk, KnowledgeIndex } from '../../services/search/knowledgeIndex';
import { dropDatabase, freshDatabase } from '../../test/support/postgres';
import { createHashingEmbedder } from '../embeddings/hashing';
import { createPool } from '../postgres/pool';
import { migratePlatform, withTenant } from '../postgres/schema';
import { createEmbeddedIndex } from './embedded';
import { createTenantSchemas, uploadDocument } from './indexFixtures';

describe('embedded knowledge index (integration)', () => {
  const embedder = createHashingEmbedder(384);
  let dbUrl: string;
  let pool: Pool;
  let index: KnowledgeIndex;
  const acme = randomUUID();
  const globex = randomUUID();

  beforeAll(async () => {
    dbUrl = await freshDatabase();
    pool = createPool(dbUrl, { max: 8 });
    await migratePlatform(pool);
    await createTenantSchemas(pool, [acme, globex]);
    index = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
  }, 120_000);

  afterAll(async () => {
    await index?.close();
    await pool?.end();
    if (dbUrl) await dropDatabase(dbUrl);
  });

  const upload = (tenantId: string, documentId: string, version: number) => uploadDocument(pool, tenantId, documentId, version);

  async function chunksOf(texts: string[]): Promise<IndexedChunk[]> {
    const vectors = await embedder.embed(texts, 'passage');
    return texts.map((text, i) => ({ chunkIndex: i, text, headingPath: [], page: null, tokenCount: embedder.countTokens(text), vector: vectors[i]! }));
  }

  async function indexDocument(ix: KnowledgeIndex, tenantId: string, documentId: string, version: number, texts: string[]): Promise<void> {
    await upload(tenantId, documentId, version);
    const chunks = await chunksOf(texts);
    await ix.stageChunks(tenantId, documentId, version, embedder.id, chunks);
    await expect(ix.activate(tenantId, documentId, version, { chunkCount: chunks.length, embedderId: embedder.id, format: 'text' })).resolves.toBe(true);
  }

  const ids = (cands: { documentId: string; chunkIndex: number }[]) => cands.map((c) => `${c.documentId}/${c.chunkIndex}`);

  const wing = randomUUID();
  const shock = randomUUID();
  const heat = randomUUID();
  const secret = randomUUID();

  it('ranks by BM25 over stemmed English lexemes', async () => {
    // Load the (empty) tenant first, so the documents arrive through activate.
    await expect(index.keyword(acme, 'wing', { topK: 10 })).resolves.toEqual([]);
    await indexDocument(index, acme, wing, 1, ['Pressure distributions on swept wings at supersonic speeds.', 'The wing tip vortex and the wing root.']);
    await indexDocument(index, acme, shock, 1, ['Shock waves on a cone: the shock angle at supersonic speeds, with a long discussion of many other unrelated things.']);
    await indexDocument(index, acme, heat, 1, ['Heat transfer in the laminar boundary layer of a flat plate.']);

    const hits = await index.keyword(acme, 'The winged shocks', { topK: 10 });
    // "winged" -> wing, "shocks" -> shock; "the" is a stop word.
    expect(new Set(hits.map((h) => h.documentId))).toEqual(new Set([wing, shock]));
    expect(hits.every((h) => h.version === 1 && h.score > 0)).toBe(true);
    // The chunk with two occurrences of "wing" (tf 2) outranks the one with one.
    expect(ids((await index.keyword(acme, 'wings', { topK: 10 })).slice(0, 2))).toEqual([`${wing}/1`, `${wing}/0`]);
    expect(await index.keyword(acme, 'the of and', { topK: 10 })).toEqual([]);
    expect(ids(await index.keyword(acme, 'supersonic', { topK: 10, documentId: shock }))).toEqual([`${shock}/0`]);
  });

  it('a fresh process loads the same index from PostgreSQL', async () => {
    const fresh = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
    for (const q of ['winged shocks', 'supersonic speeds', 'boundary layer heat', 'wing']) {
      expect(await fresh.keyword(acme, q, { topK: 10 })).toEqual(await index.keyword(acme, q, { topK: 10 }));
    }
    const [v] = await embedder.embed(['shock waves cone'], 'query');
    expect(await fresh.vector(acme, v!, { topK: 5 })).toEqual(await index.vector(acme, v!, { topK: 5 }));
    await fresh.close();
  });

  it('a new version replaces the old one; a forgotten document is gone', async () => {
    await indexDocument(index, acme, heat, 2, ['Convective heat flux measured in a hypersonic wind tunnel.']);
    expect(ids(await index.keyword(acme, 'laminar plate', { topK: 10 }))).toEqual([]);
    const hits = await index.keyword(acme, 'hypersonic heat', { topK: 10 });
    expect(hits.map((h) => [h.documentId, h.version])).toEqual([[heat, 2]]);
    await withTenant(pool, acme, (c) => c.query('DELETE FROM chunks WHERE document_id = $1', [shock]));
    await index.forgetDocument(acme, shock);
    expect(await index.keyword(acme, 'shock cone', { topK: 10 })).toEqual([]);
  });

  it('tenants never share postings or statistics', async () => {
    const before = await index.keyword(acme, 'wing supersonic payroll', { topK: 10 });
    // Many globex chunks with the same words: they would change acme's idf and lengths if shared.
    for (let i = 0; i < 5; i++) await indexDocument(index, globex, i === 0 ? secret : randomUUID(), 1, ['Wing payroll supersonic vault code, wing wing.']);
    expect(await index.keyword(acme, 'wing supersonic payroll', { topK: 10 })).toEqual(before);
    expect((await index.keyword(acme, 'payroll vault code', { topK: 50 })).filter((h) => h.documentId !== wing && h.documentId !== heat)).toEqual([]);
    const theirs = await index.keyword(globex, 'wing', { topK: 50 });
    expect(theirs).toHaveLength(5);
    expect(theirs.some((h) => h.documentId === wing)).toBe(false);
    // Another tenant's document id as a scope finds nothing.
    expect(await index.keyword(acme, 'payroll', { topK: 10, documentId: secret })).toEqual([]);
    // Dropping one tenant leaves the other intact.
    await index.dropTenant(globex);
    expect(await index.keyword(acme, 'wing supersonic payroll', { topK: 10 })).toEqual(before);
  });

  it.each([
    ['a statement of its own for each tenant', undefined],
    ['one statement shared by both tenants', 1],
  ])("hydration through one pooled connection (%s, prepared once) reads each tenant's own rows", async (_label, hydrateSlots) => {
    const one = createPool(dbUrl, { max: 1 });
    const ix = createEmbeddedIndex(one, { embedderId: () => embedder.id, hydrateSlots });
    try {
      const ours = { documentId: wing, version: 1, chunkIndex: 1, score: 1 };
      const theirs = { documentId: secret, version: 1, chunkIndex: 0, score: 1 };
      for (let i = 0; i < 3; i++) {
        expect((await ix.hydrate(acme, [ours])).map((h) => h.text)).toEqual(['The wing tip vortex and the wing root.']);
        expect((await ix.hydrate(globex, [theirs])).map((h) => h.text)).toEqual(['Wing payroll supersonic vault code, wing wing.']);
        // Another tenant's chunk named in a hydration is not found.
        expect(await ix.hydrate(acme, [theirs])).toEqual([]);
        expect(await ix.hydrate(globex, [ours])).toEqual([]);
      }
    } finally {
      await ix.close();
      await one.end();
    }
  });

  it('an activation during the first load is not lost', async () => {
    const fresh = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
    const late = randomUUID();
    const loading = fresh.keyword(acme, 'wing', { topK: 10 });
    await indexDocument(fresh, acme, late, 1, ['Flutter of a cantilever wing.']);
    await loading;
    expect((await fresh.keyword(acme, 'flutter', { topK: 10 })).map((h) => h.documentId)).toEqual([late]);
    await fresh.close();
  });
});
