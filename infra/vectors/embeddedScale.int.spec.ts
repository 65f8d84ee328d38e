/**
 * The embedded knowledge index at scale, against a real PostgreSQL: a memory budget that evicts
 * the least recently searched tenants (and loads them again, identically, on their next search),
 * and HNSW graphs for large tenants (recall against the exact scan; removed documents never
 * surface). Budgets and thresholds are forced tiny so that a few small tenants exercise both.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import type { Candidate, IndexedChunk, KnowledgeIndex, SearchScope } from '../../services/search/knowledgeIndex';
import { rng } from '../../bench/data';
import { dropDatabase, freshDatabase } from '../../test/support/postgres';
import { createHashingEmbedder } from '../embeddings/hashing';
import { createPool } from '../postgres/pool';
import { migratePlatform, withTenant } from '../postgres/schema';
import { createEmbeddedIndex } from './embedded';
import { createTenantSchemas, uploadDocument } from './indexFixtures';

const embedder = createHashingEmbedder(384);
const WORDS = Array.from({ length: 400 }, (_, i) => `term${i.toString(36)}x`);

const text = (r: () => number, n = 12) => Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');

describe('embedded knowledge index at scale (integration)', () => {
  let dbUrl: string;
  let pool: Pool;
  const tenants = Array.from({ length: 6 }, () => randomUUID());
  /** Documents of each tenant (by tenant id). */
  const docsOf = new Map<string, Set<string>>();
  const big = randomUUID();

  beforeAll(async () => {
    dbUrl = await freshDatabase();
    pool = createPool(dbUrl, { max: 8 });
    await migratePlatform(pool);
    await createTenantSchemas(pool, [...tenants, big]);
    // Every tenant holds the same shape of content (so their sizes are alike) in the same words.
    const loader = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
    for (const [i, t] of tenants.entries()) {
      const r = rng(100 + i);
      for (let d = 0; d < 4; d++) await indexDocument(loader, t, randomUUID(), 1, Array.from({ length: 10 }, () => text(r)));
    }
    await loader.close();
  }, 120_000);

  afterAll(async () => {
    await pool?.end();
    if (dbUrl) await dropDatabase(dbUrl);
  });

  const upload = (tenantId: string, documentId: string, version: number) => uploadDocument(pool, tenantId, documentId, version);

  async function indexDocument(ix: KnowledgeIndex, tenantId: string, documentId: string, version: number, texts: string[]): Promise<void> {
    await upload(tenantId, documentId, version);
    const vectors = await embedder.embed(texts, 'passage');
    const chunks: IndexedChunk[] = texts.map((t, i) => ({ chunkIndex: i, text: t, headingPath: [], page: null, tokenCount: 12, vector: vectors[i]! }));
    await ix.stageChunks(tenantId, documentId, version, embedder.id, chunks);
    await expect(ix.activate(tenantId, documentId, version, { chunkCount: chunks.length, embedderId: embedder.id, format: 'text' })).resolves.toBe(true);
    if (!docsOf.has(tenantId)) docsOf.set(tenantId, new Set());
    docsOf.get(tenantId)!.add(documentId);
  }

  async function forget(ix: KnowledgeIndex, tenantId: string, documentId: string): Promise<void> {
    await withTenant(pool, tenantId, async (c) => {
      await c.query('DELETE FROM chunks WHERE document_id = $1', [documentId]);
      await c.query('DELETE FROM document_index WHERE document_id = $1', [documentId]);
    });
    await ix.forgetDocument(tenantId, documentId);
    docsOf.get(tenantId)!.delete(documentId);
  }

  const queryText = (i: number) => `${WORDS[i % WORDS.length]} ${WORDS[(i * 7 + 3) % WORDS.length]} ${WORDS[(i * 13 + 5) % WORDS.length]}`;
  async function both(ix: KnowledgeIndex, tenantId: string, i: number, scope: Partial<SearchScope> = {}): Promise<{ kw: Candidate[]; vec: Candidate[] }> {
    const [v] = await embedder.embed([queryText(i)], 'query');
    const [kw, vec] = await Promise.all([ix.keyword(tenantId, queryText(i), { topK: 20, ...scope }), ix.vector(tenantId, v!, { topK: 20, ...scope })]);
    return { kw, vec };
  }
  const own = (tenantId: string, cands: Candidate[]) => cands.every((c) => docsOf.get(tenantId)!.has(c.documentId));
  const stats = (ix: KnowledgeIndex) => ix.stats!()!;

  it('keeps the loaded tenants under the budget, evicting the least recently searched', async () => {
    // One tenant's estimated bytes, then a budget for about three of them.
    const probe = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
    await both(probe, tenants[0]!, 0);
    const one = stats(probe).bytes;
    expect(one).toBeGreaterThan(40 * 384 * 4); // at least its vectors
    await probe.close();
    const budget = 3.5 * one;
    const ix = createEmbeddedIndex(pool, { embedderId: () => embedder.id, memoryMb: budget / 2 ** 20 });
    try {
      const before = new Map<string, { kw: Candidate[]; vec: Candidate[] }>();
      for (const [i, t] of tenants.entries()) {
        before.set(t, await both(ix, t, i));
        const s = stats(ix);
        expect(s.bytes).toBeLessThanOrEqual(s.budgetBytes!);
        expect(s.tenantsLoaded).toBeLessThanOrEqual(3);
        expect(s.tenantsLoaded).toBeGreaterThanOrEqual(1);
      }
      expect(stats(ix).evictions).toBeGreaterThanOrEqual(3);
      // Loaded now: the last three. Search tenants[3] again: tenants[4] becomes the least recent.
      const [t3, t4, t5] = [tenants[3]!, tenants[4]!, tenants[5]!];
      let loads = stats(ix).loads!;
      await both(ix, t3, 3);
      await both(ix, t5, 5);
      expect(stats(ix).loads).toBe(loads); // both were loaded
      await both(ix, tenants[0]!, 0); // loads tenants[0], evicts tenants[4]
      expect(stats(ix).loads).toBe(++loads);
      await both(ix, t3, 3);
      await both(ix, t5, 5);
      expect(stats(ix).loads).toBe(loads); // still loaded
      const again = await both(ix, t4, 4); // evicted: loaded again from PostgreSQL
      expect(stats(ix).loads).toBe(++loads);
      // An evicted tenant's next search answers exactly as before its eviction; nobody sees another's chunks.
      expect(again).toEqual(before.get(t4));
      for (const [i, t] of tenants.entries()) {
        const r = await both(ix, t, i);
        expect(r).toEqual(before.get(t));
        expect(r.kw.length + r.vec.length).toBeGreaterThan(0);
        expect(own(t, r.kw) && own(t, r.vec)).toBe(true);
        expect(stats(ix).bytes).toBeLessThanOrEqual(budget);
      }
    } finally {
      await ix.close();
    }
  });

  it('an evicted tenant takes activations and deletes from PostgreSQL on its next load', async () => {
    const one = await (async () => {
      const probe = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
      await both(probe, tenants[1]!, 1);
      const b = stats(probe).bytes;
      await probe.close();
      return b;
    })();
    const ix = createEmbeddedIndex(pool, { embedderId: () => embedder.id, memoryMb: (1.5 * one) / 2 ** 20 });
    try {
      const t = tenants[1]!;
      await both(ix, t, 1);
      await both(ix, tenants[2]!, 2); // evicts t
      expect(stats(ix).tenantsLoaded).toBe(1);
      const fresh = randomUUID();
      await indexDocument(ix, t, fresh, 1, ['Unmistakable zeppelin hangar maintenance notes.']);
      const gone = [...docsOf.get(t)!][0]!;
      await forget(ix, t, gone);
      const hits = await ix.keyword(t, 'zeppelin hangar', { topK: 10 });
      expect(hits.map((h) => h.documentId)).toEqual([fresh]);
      const all = await both(ix, t, 1, { topK: 100 });
      expect([...all.kw, ...all.vec].some((c) => c.documentId === gone)).toBe(false);
      // Concurrent searches of several tenants under a one-tenant budget: each gets its own chunks.
      const results = await Promise.all(tenants.map(async (tt, i) => ({ tt, r: await both(ix, tt, i) })));
      for (const { tt, r } of results) {
        expect(r.vec.length).toBeGreaterThan(0);
        expect(own(tt, r.kw) && own(tt, r.vec)).toBe(true);
      }
      expect(stats(ix).bytes).toBeLessThanOrEqual(stats(ix).budgetBytes!);
    } finally {
      await ix.close();
    }
  });

  it('keeps the most recently searched tenant even when it alone exceeds the budget', async () => {
    const ix = createEmbeddedIndex(pool, { embedderId: () => embedder.id, memoryMb: 1 / 1024 }); // 1 KiB
    try {
      const first = await both(ix, tenants[2]!, 2);
      expect(await both(ix, tenants[2]!, 2)).toEqual(first);
      expect(stats(ix)).toMatchObject({ tenantsLoaded: 1, loads: 1, evictions: 0 });
      await both(ix, tenants[3]!, 3);
      expect(stats(ix)).toMatchObject({ tenantsLoaded: 1, loads: 2, evictions: 1 });
    } finally {
      await ix.close();
    }
  });

  describe('HNSW graph (forced low threshold)', () => {
    const DOCS = 30;
    const PER = 40;
    let exact: KnowledgeIndex;
    let ann: KnowledgeIndex;
    const queries: Float32Array[] = [];

    async function graphReady(ix: KnowledgeIndex, want = 1): Promise<void> {
      // The graph is built in the background after the load (or a rebuild): wait for it, bounded.
      for (let i = 0; i < 2000 && !(stats(ix).hnswTenants === want && stats(ix).hnswBuilding === 0); i++) await new Promise((r) => setTimeout(r, 10));
      expect(stats(ix).hnswTenants).toBe(want);
      expect(stats(ix).hnswBuilding).toBe(0);
    }

    beforeAll(async () => {
      const r = rng(7);
      const loader = createEmbeddedIndex(pool, { embedderId: () => embedder.id });
      for (let d = 0; d < DOCS; d++) await indexDocument(loader, big, randomUUID(), 1, Array.from({ length: PER }, () => text(r, 20)));
      await loader.close();
      for (let i = 0; i < 60; i++) queries.push((await embedder.embed([text(r, 4)], 'query'))[0]!);
      exact = createEmbeddedIndex(pool, { embedderId: () => embedder.id, hnswMinChunks: 0 });
      ann = createEmbeddedIndex(pool, { embedderId: () => embedder.id, hnswMinChunks: 500 });
    }, 120_000);

    afterAll(async () => {
      await exact?.close();
      await ann?.close();
    });

    const key = (c: Candidate) => `${c.documentId}/${c.version}/${c.chunkIndex}`;
    async function recallAt10(): Promise<number> {
      const viaGraph = stats(ann).hnswSearches!;
      let found = 0;
      for (const q of queries) {
        const want = new Set((await exact.vector(big, q, { topK: 10 })).map(key));
        const got = await ann.vector(big, q, { topK: 10 });
        expect(got).toHaveLength(10);
        found += got.filter((c) => want.has(key(c))).length;
      }
      expect(stats(ann).hnswSearches! - viaGraph).toBe(queries.length); // none fell back to the exact scan
      return found / (10 * queries.length);
    }

    it('recall@10 against the exact scan is at least 0.95, with exact scores', async () => {
      await ann.vector(big, queries[0]!, { topK: 10 }); // loads the tenant, starts the graph
      await graphReady(ann);
      expect(stats(ann).bytes).toBeGreaterThan(DOCS * PER * 384 * 8); // vectors and the graph's copy
      expect(await recallAt10()).toBeGreaterThanOrEqual(0.95);
      // A chunk found by both carries the same score (the graph's candidates are scored exactly).
      const e = await exact.vector(big, queries[1]!, { topK: 10 });
      const a = await ann.vector(big, queries[1]!, { topK: 10 });
      const byKey = new Map(e.map((c) => [key(c), c.score]));
      for (const c of a) if (byKey.has(key(c))) expect(c.score).toBe(byKey.get(key(c)));
      // A document scope is scanned exactly.
      const scoped = e[0]!.documentId;
      expect(await ann.vector(big, queries[1]!, { topK: 5, documentId: scoped })).toEqual(await exact.vector(big, queries[1]!, { topK: 5, documentId: scoped }));
    });

    it('never returns a deleted or replaced document, and rebuilds once removals pile up', async () => {
      const docs = [...docsOf.get(big)!];
      // A replaced version: the old chunks must not surface.
      const replaced = docs[0]!;
      const r = rng(99);
      await indexDocument(ann, big, replaced, 2, Array.from({ length: PER }, () => text(r, 20)));
      // Deleted documents.
      const deleted = docs.slice(1, 20);
      for (const d of deleted) await forget(ann, big, d);
      await exact.close();
      exact = createEmbeddedIndex(pool, { embedderId: () => embedder.id, hnswMinChunks: 0 });
      const gone = new Set(deleted);
      for (const q of queries) {
        const got = await ann.vector(big, q, { topK: 50 });
        expect(got.some((c) => gone.has(c.documentId))).toBe(false);
        expect(got.some((c) => c.documentId === replaced && c.version === 1)).toBe(false);
      }
      // 19 x 40 + 40 rows removed of 1,200: more than a quarter of those left, so the graph was rebuilt; still accurate.
      await graphReady(ann);
      expect(await recallAt10()).toBeGreaterThanOrEqual(0.95);
      // Below half the threshold the graph is dropped: exact scan again, same results as the reference.
      for (const d of [...docsOf.get(big)!].slice(0, 8)) await forget(ann, big, d);
      expect(stats(ann).hnswTenants).toBe(0);
      await exact.close();
      exact = createEmbeddedIndex(pool, { embedderId: () => embedder.id, hnswMinChunks: 0 });
      for (const q of queries.slice(0, 10)) expect(await ann.vector(big, q, { topK: 10 })).toEqual(await exact.vector(big, q, { topK: 10 }));
    });
  });
});
