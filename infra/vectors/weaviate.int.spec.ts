/**
 * The Weaviate knowledge index against a real Weaviate and a real PostgreSQL.
 *
 * Weaviate: WEAVIATE_URL + WEAVIATE_GRPC_PORT when set (CI: infra/scripts/up.sh), else a
 * container when a Docker engine answers, else the suite is reported skipped with the reason.
 * PostgreSQL: a fresh database from test/support/postgres.ts.
 *
 * Each run uses its own collection and random tenant ids, so reruns and parallel runs never meet.
 */
import { randomUUID } from 'node:crypto';
import { dockerAnswers, startWeaviateContainer } from '../../test/support/servers';
import type { Pool } from 'pg';
import weaviate, { type WeaviateClient } from 'weaviate-client';
import { weaviateTenant } from '../../contracts/naming';
import type { Candidate, IndexedChunk } from '../../services/search/knowledgeIndex';
import { eventually } from '../../test/support/eventually';
import { dropDatabase, freshDatabase } from '../../test/support/postgres';
import { describeSkipped } from '../../test/support/skip';
import { createHashingEmbedder } from '../embeddings/hashing';
import { createPool } from '../postgres/pool';
import { createTenantSchema, migratePlatform, withTenant } from '../postgres/schema';
import { createWeaviateIndex, type WeaviateKnowledgeIndex } from './weaviate';

const SUITE = 'Weaviate knowledge index (integration)';

const fromEnv = process.env.WEAVIATE_URL && process.env.WEAVIATE_GRPC_PORT ? { url: process.env.WEAVIATE_URL, grpcPort: Number(process.env.WEAVIATE_GRPC_PORT) } : null;

if (!fromEnv && !dockerAnswers()) {
  describeSkipped(SUITE, 'WEAVIATE_URL/WEAVIATE_GRPC_PORT are not set and no Docker engine answers');
} else {
  describe(SUITE, () => {
    const embedder = createHashingEmbedder(384);
    const collection = `TestChunk${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    let stopContainer: (() => Promise<unknown>) | undefined;
    let server: { url: string; grpcPort: number };
    let dbUrl: string;
    let pool: Pool;
    let index: WeaviateKnowledgeIndex;
    let raw: WeaviateClient; // the test's own client, to look at shards behind the adapter's back

    beforeAll(async () => {
      if (fromEnv) {
        server = fromEnv;
      } else {
        const c = await startWeaviateContainer();
        stopContainer = c.stop;
        server = c;
      }
      dbUrl = await freshDatabase();
      pool = createPool(dbUrl, { max: 8 });
      await migratePlatform(pool);
      index = await createWeaviateIndex({ url: server.url, grpcPort: server.grpcPort, pool, embedderId: () => embedder.id, dimensions: embedder.dimensions, collection });
      const u = new URL(server.url);
      raw = await weaviate.connectToCustom({ httpHost: u.hostname, httpPort: Number(u.port), grpcHost: u.hostname, grpcPort: server.grpcPort });
    }, 180_000);

    afterAll(async () => {
      await raw?.collections.delete(collection).catch(() => undefined);
      await raw?.collections.delete(`${collection}_256d`).catch(() => undefined);
      await raw?.close();
      await index?.close();
      await pool?.end();
      if (dbUrl) await dropDatabase(dbUrl);
      await stopContainer?.();
    });

    // ---- helpers ------------------------------------------------------------------------------

    async function provision(tenantId: string): Promise<void> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await createTenantSchema(client, tenantId);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      } finally {
        client.release();
      }
      await index.ensureTenant(tenantId);
    }

    /** What the catalog projection records when a version is uploaded. */
    async function upload(tenantId: string, documentId: string, version: number, filename = `${documentId.slice(0, 8)}.md`): Promise<void> {
      await withTenant(pool, tenantId, async (c) => {
        await c.query(
          `INSERT INTO documents (document_id, filename, content_type, size_bytes, sha256, version, uploaded_by, created_at, updated_at, position)
           VALUES ($1, $2, 'text/markdown', 100, 'x', $3, 'test', now(), now(), '0')
           ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, updated_at = now()`,
          [documentId, filename, version],
        );
        await c.query(
          `INSERT INTO document_index (document_id, version, status, updated_at) VALUES ($1, $2, 'indexing', now())
           ON CONFLICT (document_id) DO UPDATE SET version = EXCLUDED.version, status = 'indexing', updated_at = now()`,
          [documentId, version],
        );
      });
    }

    async function chunksOf(texts: string[]): Promise<IndexedChunk[]> {
      const vectors = await embedder.embed(texts, 'passage');
      return texts.map((text, i) => ({ chunkIndex: i, text, headingPath: ['Policy'], page: null, tokenCount: embedder.countTokens(text), vector: vectors[i]! }));
    }

    /** Upload, stage and activate one version of a document. */
    async function indexDocument(tenantId: string, documentId: string, version: number, texts: string[]): Promise<IndexedChunk[]> {
      await upload(tenantId, documentId, version);
      const chunks = await chunksOf(texts);
      await index.stageChunks(tenantId, documentId, version, embedder.id, chunks);
      await expect(index.activate(tenantId, documentId, version, { chunkCount: chunks.length, embedderId: embedder.id, format: 'markdown' })).resolves.toBe(true);
      return chunks;
    }

    async function objectCount(tenantId: string): Promise<number> {
      const r = await raw.collections.get(collection).withTenant(weaviateTenant(tenantId)).aggregate.overAll();
      return r.totalCount;
    }

    async function embedQuery(text: string): Promise<Float32Array> {
      return (await embedder.embed([text], 'query'))[0]!;
    }

    const keys = (cands: Candidate[]) => cands.map((c) => `${c.documentId}/${c.version}/${c.chunkIndex}`);

    // ---- behaviours ---------------------------------------------------------------------------

    describe('two tenants with similar data', () => {
      const tenantA = randomUUID();
      const tenantB = randomUUID();
      // The SAME document id and version in both tenants, so a leaked candidate could not be
      // told apart (or filtered out) by id: only the shard boundary keeps them apart.
      const sharedDoc = randomUUID();
      const textsFor = (animal: string) => [
        `Travel expenses are reimbursed within thirty days. The ${animal} committee approves exceptions.`,
        `Remote work requires a signed agreement. Ask the ${animal} office for the template.`,
        `Security incidents must be reported to the ${animal} desk within one hour.`,
      ];

      beforeAll(async () => {
        await provision(tenantA);
        await provision(tenantB);
        await indexDocument(tenantA, sharedDoc, 1, textsFor('aardvark'));
        await indexDocument(tenantB, sharedDoc, 1, textsFor('zebra'));
      });

      it('keeps each tenant in its own shard', async () => {
        expect(await objectCount(tenantA)).toBe(3);
        expect(await objectCount(tenantB)).toBe(3);
      });

      it('keyword search never returns the other tenant chunks', async () => {
        expect(await index.keyword(tenantA, 'zebra', { topK: 10 })).toEqual([]);
        expect(await index.keyword(tenantB, 'aardvark', { topK: 10 })).toEqual([]);

        const own = await index.keyword(tenantA, 'aardvark travel', { topK: 10 });
        expect(own.length).toBeGreaterThan(0);
        const hits = await index.hydrate(tenantA, own);
        expect(hits.every((h) => h.text.includes('aardvark') && !h.text.includes('zebra'))).toBe(true);
      });

      it('vector search never returns the other tenant chunks', async () => {
        const query = await embedQuery(textsFor('zebra')[0]!);
        const inB = await index.vector(tenantB, query, { topK: 10 });
        const inA = await index.vector(tenantA, query, { topK: 10 });

        // B holds this exact text (cosine ~1); A only a near-copy that differs in one word.
        expect(inB[0]!.score).toBeGreaterThan(0.99);
        expect(inA[0]!.score).toBeLessThan(inB[0]!.score - 0.01);
        // Same ids in both tenants: a leaked object would appear as a duplicate key.
        expect(inA).toHaveLength(3);
        expect(new Set(keys(inA)).size).toBe(3);
        const hits = await index.hydrate(tenantA, inA);
        expect(hits.length).toBe(3);
        expect(hits.some((h) => h.text.includes('zebra'))).toBe(false);
      });

      it('hybrid search never returns the other tenant chunks', async () => {
        const text = 'zebra desk security incidents';
        const vector = await embedQuery(text);
        const inA = await index.hybrid(tenantA, text, vector, { topK: 10 });
        const inB = await index.hybrid(tenantB, text, vector, { topK: 10 });

        expect(inB[0]).toMatchObject({ documentId: sharedDoc, version: 1, chunkIndex: 2 });
        // Ids are identical across the tenants, so a leaked object would show up as a duplicate
        // key (and slip through the ready-version check): each tenant must see its 3 chunks once.
        expect(new Set(keys(inA)).size).toBe(3);
        expect(inA).toHaveLength(3);
        expect(inB).toHaveLength(3);
        const hitsA = await index.hydrate(tenantA, inA);
        expect(hitsA.some((h) => h.text.includes('zebra'))).toBe(false);
      });

      it('restricts every search to one document when asked', async () => {
        const other = randomUUID();
        await indexDocument(tenantA, other, 1, ['Travel expenses for conferences need aardvark approval too.']);
        const vector = await embedQuery('aardvark travel');
        for (const cands of [
          await index.keyword(tenantA, 'aardvark travel', { topK: 10, documentId: other }),
          await index.vector(tenantA, vector, { topK: 10, documentId: other }),
          await index.hybrid(tenantA, 'aardvark travel', vector, { topK: 10, documentId: other }),
        ]) {
          expect(cands.length).toBe(1);
          expect(cands[0]!.documentId).toBe(other);
        }
        await index.forgetDocument(tenantA, other);
      });
    });

    describe('tenants that do not exist in Weaviate', () => {
      it('refuses queries for a tenant that was never created, and creates none', async () => {
        const ghost = randomUUID();
        const v = await embedQuery('anything');
        await expect(index.keyword(ghost, 'anything', { topK: 5 })).rejects.toThrow(/tenant not found/);
        await expect(index.vector(ghost, v, { topK: 5 })).rejects.toThrow(/tenant not found/);
        await expect(index.hybrid(ghost, 'anything', v, { topK: 5 })).rejects.toThrow(/tenant not found/);
        expect(await raw.collections.get(collection).tenants.getByName(weaviateTenant(ghost))).toBeNull();
      });

      it('refuses to write chunks for a tenant whose shard was never created', async () => {
        const tenant = randomUUID();
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await createTenantSchema(client, tenant); // Postgres knows it, Weaviate does not
          await client.query('COMMIT');
        } finally {
          client.release();
        }
        const doc = randomUUID();
        await upload(tenant, doc, 1);
        await expect(index.stageChunks(tenant, doc, 1, embedder.id, await chunksOf(['orphan text']))).rejects.toThrow(/tenant not found/);
        expect(await raw.collections.get(collection).tenants.getByName(weaviateTenant(tenant))).toBeNull();
      });
    });

    describe('document lifecycle', () => {
      const tenant = randomUUID();
      beforeAll(() => provision(tenant));

      it('ensureTenant is idempotent', async () => {
        await index.ensureTenant(tenant);
        await index.ensureTenant(tenant);
        expect(await raw.collections.get(collection).tenants.getByName(weaviateTenant(tenant))).toMatchObject({ activityStatus: 'ACTIVE' });
      });

      it('treats a redelivered stage as an upsert: the object count does not change', async () => {
        const doc = randomUUID();
        await upload(tenant, doc, 1);
        const chunks = await chunksOf(['Alpha paragraph about invoices.', 'Beta paragraph about receipts.', 'Gamma paragraph about audits.']);
        const before = await objectCount(tenant);
        await index.stageChunks(tenant, doc, 1, embedder.id, chunks);
        await index.stageChunks(tenant, doc, 1, embedder.id, chunks);
        await index.stageChunks(tenant, doc, 1, embedder.id, chunks.slice(1));
        expect(await objectCount(tenant)).toBe(before + 3);
        await index.activate(tenant, doc, 1, { chunkCount: 3, embedderId: embedder.id, format: 'markdown' });
        expect(keys(await index.keyword(tenant, 'receipts', { topK: 10 }))).toEqual([`${doc}/1/1`]);
        await index.forgetDocument(tenant, doc);
        expect(await objectCount(tenant)).toBe(before);
      });

      it('serves only the ready version while a newer one is staged, and drops the older one on activation', async () => {
        const doc = randomUUID();
        const base = await objectCount(tenant);
        await indexDocument(tenant, doc, 1, ['Version one says the kiwi budget is small.', 'Version one appendix on kiwi.']);
        expect(await objectCount(tenant)).toBe(base + 2);

        await upload(tenant, doc, 2);
        const v2 = await chunksOf(['Version two says the kiwi budget is large.', 'Version two appendix on kiwi.', 'Version two glossary of kiwi terms.']);
        await index.stageChunks(tenant, doc, 2, embedder.id, v2);
        expect(await objectCount(tenant)).toBe(base + 5);

        // Both versions are in Weaviate now; only the ready one (1) is served.
        const vector = await embedQuery('kiwi budget');
        for (const cands of [
          await index.keyword(tenant, 'kiwi', { topK: 10 }),
          await index.vector(tenant, vector, { topK: 10 }),
          await index.hybrid(tenant, 'kiwi budget', vector, { topK: 10 }),
        ]) {
          expect(cands.map((c) => c.version)).toEqual([1, 1]);
        }

        await expect(index.activate(tenant, doc, 2, { chunkCount: 3, embedderId: embedder.id, format: 'markdown' })).resolves.toBe(true);
        expect(await objectCount(tenant)).toBe(base + 3);
        const after = await index.keyword(tenant, 'kiwi', { topK: 10 });
        expect(after.map((c) => c.version)).toEqual([2, 2, 2]);
        expect((await index.hydrate(tenant, after)).map((h) => h.text).join(' ')).toContain('large');

        // A late activation of a superseded version loses and takes its objects with it.
        await index.stageChunks(tenant, doc, 1, embedder.id, await chunksOf(['Version one redelivered late about kiwi.']));
        await expect(index.activate(tenant, doc, 1, { chunkCount: 1, embedderId: embedder.id, format: 'markdown' })).resolves.toBe(false);
        expect(await objectCount(tenant)).toBe(base + 3);

        await index.forgetDocument(tenant, doc);
        expect(await objectCount(tenant)).toBe(base);
      });

      it('finds topK ready candidates even when many staged objects outrank them', async () => {
        const ready = randomUUID();
        const busy = randomUUID();
        await indexDocument(tenant, ready, 1, ['Lemur policy: meals are covered.', 'Lemur policy: taxis are covered.']);
        await indexDocument(tenant, busy, 1, ['Unrelated text.']);
        await upload(tenant, busy, 2);
        // 60 staged chunks that match 'lemur' better than the ready ones do.
        await index.stageChunks(tenant, busy, 2, embedder.id, await chunksOf(Array.from({ length: 60 }, (_, i) => `Lemur lemur lemur draft ${i}`)));

        const got = await index.keyword(tenant, 'lemur', { topK: 2 });
        expect(got.map((c) => c.documentId)).toEqual([ready, ready]);
        await index.forgetDocument(tenant, busy);
        await index.forgetDocument(tenant, ready);
      });

      it('dropTenant removes the shard, and a second drop is harmless', async () => {
        const doomed = randomUUID();
        await provision(doomed);
        await indexDocument(doomed, randomUUID(), 1, ['Doomed text about quokkas.']);
        expect(await objectCount(doomed)).toBe(1);

        await index.dropTenant(doomed);
        expect(await raw.collections.get(collection).tenants.getByName(weaviateTenant(doomed))).toBeNull();
        await expect(index.keyword(doomed, 'quokkas', { topK: 5 })).rejects.toThrow(/tenant not found/);
        await expect(index.dropTenant(doomed)).resolves.toBeUndefined();
        // A DocumentDeleted redelivered after the tenant is gone has nothing left to do.
        await expect(index.forgetDocument(doomed, randomUUID())).resolves.toBeUndefined();
      });
    });

    it('builds another embedder\'s set (another width) beside the served one, searches one set at a time, then drops the old', async () => {
      const other = createHashingEmbedder(256);
      const tenant = randomUUID();
      await provision(tenant);
      const doc = randomUUID();
      const texts = ['Re-embedding keeps answering about the walrus.', 'Walrus colonies and their habits.'];
      await indexDocument(tenant, doc, 1, texts);
      const otherVectors = await other.embed(texts, 'passage');
      await index.stageChunks(tenant, doc, 1, other.id, texts.map((text, i) => ({ chunkIndex: i, text, headingPath: [], page: null, tokenCount: 5, vector: otherVectors[i]! })));
      // Activating a set of the served version adds it beside the served one; nothing is dropped.
      await expect(index.activate(tenant, doc, 1, { chunkCount: 2, embedderId: other.id, format: 'markdown' })).resolves.toBe(true);
      expect(await objectCount(tenant)).toBe(2); // the 256-wide vectors live in a collection of their own
      expect((await raw.collections.get(`${collection}_256d`).withTenant(weaviateTenant(tenant)).aggregate.overAll()).totalCount).toBe(2);

      const served = { topK: 5, embedderId: embedder.id };
      for (const got of [
        await index.keyword(tenant, 'walrus', served),
        await index.vector(tenant, await embedQuery('walrus habits'), served),
        await index.hybrid(tenant, 'walrus habits', await embedQuery('walrus habits'), served),
      ]) {
        expect(got).toHaveLength(2);
        expect(got.every((c) => c.embedderId === embedder.id)).toBe(true);
      }
      // After the tenant's switch: the other set only, hydrated from its own rows.
      const next = { topK: 5, embedderId: other.id };
      const [q] = await other.embed(['walrus habits'], 'query');
      for (const got of [await index.keyword(tenant, 'walrus', next), await index.vector(tenant, q!, next), await index.hybrid(tenant, 'walrus habits', q!, next)]) {
        expect(got).toHaveLength(2);
        expect(got.every((c) => c.embedderId === other.id)).toBe(true);
      }
      const hits = await index.hydrate(tenant, await index.vector(tenant, q!, next));
      expect(hits.map((h) => h.embedderId)).toEqual([other.id, other.id]);

      await index.dropEmbedderSets(tenant, embedder.id);
      expect(await objectCount(tenant)).toBe(0);
      expect(await index.keyword(tenant, 'walrus', served)).toEqual([]);
      expect(await index.keyword(tenant, 'walrus', next)).toHaveLength(2);
      expect(await index.embedderIds(tenant)).toEqual([other.id]);
      await index.dropTenant(tenant);
      expect(await raw.collections.get(`${collection}_256d`).tenants.getByName(weaviateTenant(tenant))).toBeNull();
    });

    it('answers ping, and rejects vectors of the wrong dimensions', async () => {
      await expect(index.ping()).resolves.toBeUndefined();
      await expect(index.vector(randomUUID(), new Float32Array(8), { topK: 1 })).rejects.toThrow(/dimensions/);
    });

    it('hybrid over a few hundred chunks: latency', async () => {
      const tenant = randomUUID();
      await provision(tenant);
      const topics = ['invoices', 'travel', 'security', 'onboarding', 'benefits', 'laptops', 'privacy', 'payroll'];
      const docs = 20;
      const perDoc = 20;
      for (let d = 0; d < docs; d++) {
        const texts = Array.from({ length: perDoc }, (_, i) => {
          const t = topics[(d + i) % topics.length]!;
          return `Section ${i} of policy ${d}: rules about ${t}, approvals for ${t}, and exceptions to the ${t} process handled by team ${d % 5}.`;
        });
        await indexDocument(tenant, randomUUID(), 1, texts);
      }
      expect(await objectCount(tenant)).toBe(docs * perDoc);

      const queries = topics.map((t) => `who approves ${t} exceptions`);
      const vectors = await embedder.embed(queries, 'query');
      const shard = raw.collections.get(collection).withTenant(weaviateTenant(tenant));
      const adapter: number[] = [];
      const bare: number[] = []; // the same query straight to Weaviate: what the Postgres check adds
      for (let round = 0; round < 8; round++) {
        for (let q = 0; q < queries.length; q++) {
          let started = performance.now();
          const got = await index.hybrid(tenant, queries[q]!, vectors[q]!, { topK: 10 });
          adapter.push(performance.now() - started);
          expect(got).toHaveLength(10);
          started = performance.now();
          await shard.query.hybrid(queries[q]!, { vector: Array.from(vectors[q]!), alpha: 0.5, limit: 20, returnMetadata: ['score'], returnProperties: ['documentId'] });
          bare.push(performance.now() - started);
        }
      }
      const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
      const line = (xs: number[]) => `p50 ${pct(xs, 0.5).toFixed(1)} ms, p95 ${pct(xs, 0.95).toFixed(1)} ms, max ${pct(xs, 1).toFixed(1)} ms`;
      process.stdout.write(
        `weaviate hybrid top-10 over ${docs * perDoc} chunks, ${adapter.length} queries: adapter (incl. ready-version check in Postgres) ${line(adapter)}; ` +
          `bare Weaviate query ${line(bare)}\n`,
      );
      // Latency is reported here and measured by npm run bench; it is never asserted in a test.
      await index.dropTenant(tenant);
    }, 120_000);

    describe('idle tenants hibernate (INACTIVE) and wake on their next request', () => {
      // Long enough that no stall of a loaded machine makes a tenant in use look idle.
      const IDLE_SECONDS = 3;
      // A second process on the same collection and database, with hibernation on; `index` (off)
      // plays the other process, which does not know when a shard was put to sleep.
      let sleepy: WeaviateKnowledgeIndex;
      const sleeper = randomUUID();
      const neighbour = randomUUID();
      const doc = randomUUID();
      const status = async (tenantId: string) => (await raw.collections.get(collection).tenants.getByName(weaviateTenant(tenantId)))?.activityStatus;

      beforeAll(async () => {
        sleepy = await createWeaviateIndex({ url: server.url, grpcPort: server.grpcPort, pool, embedderId: () => embedder.id, dimensions: embedder.dimensions, collection, idleTenantSeconds: IDLE_SECONDS });
        await provision(sleeper);
        await provision(neighbour);
        await indexDocument(sleeper, doc, 1, ['The ocelot budget covers travel.', 'Ocelot approvals take two days.']);
        await indexDocument(neighbour, randomUUID(), 1, ['Neighbour notes about ocelots and taxis.']);
      });
      afterAll(async () => {
        await sleepy?.close();
      });

      /** Until the sleeper's shard is INACTIVE (by sleepy's timer), keeping the neighbour in use meanwhile. */
      async function untilAsleep(): Promise<void> {
        await eventually(
          async () => {
            expect(await sleepy.keyword(neighbour, 'ocelots', { topK: 5 })).toHaveLength(1);
            return status(sleeper);
          },
          (s) => s === 'INACTIVE',
          30_000,
        );
        // Let a sweep in flight finish: sleepy then knows the shard sleeps.
        await sleepy.hibernateIdleTenants();
      }

      it('an idle tenant goes INACTIVE, a tenant in use stays ACTIVE, and the next search answers the same results', async () => {
        const vector = await embedQuery('ocelot approvals');
        const keyword = keys(await sleepy.keyword(sleeper, 'ocelot', { topK: 5 }));
        const hybrid = keys(await sleepy.hybrid(sleeper, 'ocelot approvals', vector, { topK: 5 }));
        expect(keyword).toHaveLength(2);

        await untilAsleep();
        expect(await status(neighbour)).toBe('ACTIVE');
        const loads = sleepy.stats().loads;

        let started = performance.now();
        expect(keys(await sleepy.keyword(sleeper, 'ocelot', { topK: 5 }))).toEqual(keyword);
        const wake = performance.now() - started;
        started = performance.now();
        expect(keys(await sleepy.hybrid(sleeper, 'ocelot approvals', vector, { topK: 5 }))).toEqual(hybrid);
        const warm = performance.now() - started;
        expect(await status(sleeper)).toBe('ACTIVE');
        expect(sleepy.stats().loads).toBe(loads + 1);
        // Reported, never asserted: the first search after wake-up includes the activation.
        process.stdout.write(`weaviate: first search of a sleeping tenant (2 chunks) ${wake.toFixed(1)} ms, the next ${warm.toFixed(1)} ms\n`);
      });

      it('concurrent requests to a sleeping tenant share one reactivation', async () => {
        await untilAsleep();
        const loads = sleepy.stats().loads;
        const vector = await embedQuery('ocelot approvals');
        const all = await Promise.all([
          ...Array.from({ length: 4 }, () => sleepy.keyword(sleeper, 'ocelot', { topK: 5 })),
          ...Array.from({ length: 4 }, () => sleepy.vector(sleeper, vector, { topK: 5 })),
        ]);
        expect(all.map((r) => r.length)).toEqual(Array(8).fill(2));
        expect(sleepy.stats().loads).toBe(loads + 1);
      });

      it('a write from another process to a deactivated tenant wakes it and succeeds', async () => {
        // Deactivated behind `index`'s back (another process's sweep, or an operator).
        await raw.collections.get(collection).tenants.update({ name: weaviateTenant(sleeper), activityStatus: 'INACTIVE' });
        expect(await status(sleeper)).toBe('INACTIVE');
        const late = randomUUID();
        await indexDocument(sleeper, late, 1, ['A late ocelot addendum about the kinkajou fund.']);
        expect(await status(sleeper)).toBe('ACTIVE');
        expect(await objectCount(sleeper)).toBe(3);
        expect(keys(await index.keyword(sleeper, 'kinkajou', { topK: 5 }))).toEqual([`${late}/1/0`]);
      });

      it('a search from another process on a deactivated tenant wakes it and answers', async () => {
        await untilAsleep();
        // `index` has not been told (its own sweep runs every minute): Weaviate refuses, it activates and retries.
        expect(keys(await index.keyword(sleeper, 'ocelot', { topK: 5 }))).toHaveLength(3);
        expect(await status(sleeper)).toBe('ACTIVE');
      });

      it('reports active and inactive tenants in stats()', async () => {
        await untilAsleep();
        const s = sleepy.stats();
        const all = Object.values(await raw.collections.get(collection).tenants.get());
        expect(s).toMatchObject({ kind: 'weaviate', idleTenantSeconds: IDLE_SECONDS, budgetBytes: null });
        expect(s.tenantsInactive).toBeGreaterThanOrEqual(1);
        expect(s.tenantsActive).toBeGreaterThanOrEqual(1); // the neighbour, in use
        expect(s.tenantsActive + s.tenantsInactive).toBe(all.length);
        expect(s.evictions).toBeGreaterThanOrEqual(1);
        expect(s.countedAt).not.toBeNull();
      });
    });
  });
}
