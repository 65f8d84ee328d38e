import { randomUUID } from 'node:crypto';
import request from 'supertest';
import type { Product } from '../../services/product';
import { MAX_QUERY_CHARS } from '../../services/queries/api';
import { eventually } from '../support/eventually';
import { ADMIN, provisionTenant, startTestProduct, waitUntilIndexed, type TestTenant } from '../support/product';
import { describeSkipped } from '../support/skip';

/**
 * Queries and questions up to MAX_QUERY_CHARS are answered; the embedder reads its token window
 * of them, keyword search reads all of it, so a term at the very end still finds its document.
 */

// Words that none of the documents below contains (nor their stems).
const FILLER_WORDS = 'lorem ipsum dolor amet consectetur adipiscing elit eiusmod tempor incididunt labore dolore magna aliqua'.split(' ');
const TERM = 'quokkaberry';

/** Filler of exactly `length` characters (words joined by spaces, cut at the end). */
function filler(length: number): string {
  let s = '';
  for (let i = 0; s.length < length; i++) s += `${FILLER_WORDS[i % FILLER_WORDS.length]} `;
  return s.slice(0, length);
}

/** `length` characters whose only word found in any document is TERM, at the very end. */
function queryEndingWith(term: string, length: number): string {
  return `${filler(length - term.length - 1).trimEnd().padEnd(length - term.length - 1, 'x')} ${term}`;
}

const DOCUMENTS = [
  { filename: 'target.md', text: `# Orchard notes\n\nThe ${TERM} harvest starts in late autumn, when the fruit turns purple.` },
  { filename: 'vacation.md', text: '# Vacation\n\nEmployees get 26 days of paid vacation each year.' },
  { filename: 'security.md', text: '# Security\n\nBadges must be worn visibly inside the building at all times.' },
  { filename: 'travel.md', text: '# Travel\n\nTrain tickets are reimbursed in second class; flights need approval.' },
  { filename: 'kitchen.md', text: '# Kitchen\n\nThe coffee machine is cleaned every Friday afternoon by the facilities team.' },
  { filename: 'parking.md', text: '# Parking\n\nVisitors park on level minus two and register at the front desk.' },
];

function longQuerySuite(title: string, extraEnv: () => Record<string, string>, onWeaviate = false): void {
  describe(title, () => {
    let product: Product;
    let tenant: TestTenant;
    let targetId: string;

    beforeAll(async () => {
      product = await startTestProduct(extraEnv());
      tenant = await provisionTenant(product, 'longq');
      for (const doc of DOCUMENTS) {
        const up = await request(product.app).post('/v1/documents').set(tenant.auth).send(doc);
        expect(up.status).toBe(202);
        expect((await waitUntilIndexed(product, tenant, up.body.id)).status).toBe('ready');
        if (doc.filename === 'target.md') targetId = up.body.id;
      }
    });
    afterAll(async () => {
      await product?.stop();
    });

    let searchesAnswered = 0;
    const search = async (body: Record<string, unknown>) => {
      const res = await request(product.app).post('/v1/search').set(tenant.auth).send(body);
      if (res.status === 200) searchesAnswered++;
      return res;
    };
    const ask = (body: Record<string, unknown>) => request(product.app).post('/v1/ask').set(tenant.auth).send(body);

    it(`answers ${MAX_QUERY_CHARS}-character searches and questions in every mode`, async () => {
      const text = queryEndingWith(TERM, MAX_QUERY_CHARS);
      expect(text).toHaveLength(8000);
      for (const mode of ['hybrid', 'keyword', 'semantic']) {
        const res = await search({ query: text, mode, top_k: 3 });
        expect({ mode, status: res.status }).toEqual({ mode, status: 200 });
        expect(res.body.results.length).toBeGreaterThan(0);
      }
      const answered = await ask({ question: text, top_k: 3 });
      expect(answered.status).toBe(200);
      expect(answered.body.sources.length).toBeGreaterThan(0);
      expect(typeof answered.body.answer).toBe('string');
    });

    it(`refuses ${MAX_QUERY_CHARS + 1} characters with a problem naming the limit`, async () => {
      const text = queryEndingWith(TERM, MAX_QUERY_CHARS + 1);
      for (const res of [await search({ query: text }), await ask({ question: text })]) {
        expect(res.status).toBe(400);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(res.body).toMatchObject({ status: 400, title: 'Invalid request' });
        expect(res.body.detail).toContain('8000');
      }
    });

    it('finds a document by a term only at the end of a long query, past the embedding window', async () => {
      const text = queryEndingWith(TERM, MAX_QUERY_CHARS);
      // The premise: the term lies far beyond what the embedder reads (256 tokens for MiniLM).
      expect(product.deps.embedder.countTokens(text.slice(0, text.length - TERM.length))).toBeGreaterThan(1000);
      // Without the term nothing in the tenant matches by keyword: the end of the query is what finds it.
      expect((await search({ query: filler(MAX_QUERY_CHARS), mode: 'keyword', top_k: 5 })).body.results).toEqual([]);

      const keyword = await search({ query: text, mode: 'keyword', top_k: 5 });
      expect(keyword.body.results.map((r: { document_id: string }) => r.document_id)).toEqual([targetId]);
      // Hybrid: first in the keyword ranking guarantees at least half the top fused score, which
      // only the semantic ranking's best (if not the target itself) can equal.
      const hybrid = await search({ query: text, mode: 'hybrid', top_k: 2 });
      expect(hybrid.body.results.map((r: { document_id: string }) => r.document_id)).toContain(targetId);
      const asked = await ask({ question: text, top_k: 2 });
      expect(asked.body.sources.map((s: { document_id: string }) => s.document_id)).toContain(targetId);
    });

    if (onWeaviate) {
      it('reports the Weaviate index, with its tenants by activity, to the operator', async () => {
        const res = await request(product.app).get('/v1/admin/projections').set('Authorization', `Bearer ${ADMIN}`);
        expect(res.status).toBe(200);
        expect(res.body.index).toMatchObject({ kind: 'weaviate', idleTenantSeconds: 900, budgetBytes: null });
        expect(typeof res.body.index.tenantsActive).toBe('number');
        expect(typeof res.body.index.tenantsInactive).toBe('number');
      });
    }

    it('records the long query in the audit log as a hash, not its text', async () => {
      await product.deps.activity.flush();
      // Every search answered above reached the audit log.
      const audit = await eventually(
        async () => (await request(product.app).get('/v1/audit?type=SearchPerformed&limit=100').set(tenant.auth)).body as { items?: unknown[] },
        (b) => (b.items?.length ?? 0) >= searchesAnswered,
      );
      expect(searchesAnswered).toBeGreaterThanOrEqual(6);
      const serialised = JSON.stringify(audit);
      expect(serialised).not.toContain(TERM);
      expect(serialised.length).toBeLessThan(100_000);
    });
  });
}

longQuerySuite('long queries (embedded profile)', () => ({}));

const WEAVIATE_TITLE = 'long queries (Weaviate index)';
if (process.env.WEAVIATE_URL && process.env.WEAVIATE_GRPC_PORT) {
  longQuerySuite(WEAVIATE_TITLE, () => ({
    WEAVIATE_URL: process.env.WEAVIATE_URL!,
    WEAVIATE_GRPC_PORT: process.env.WEAVIATE_GRPC_PORT!,
    WEAVIATE_COLLECTION: `LongQ${randomUUID().replace(/-/g, '').slice(0, 10)}`,
  }), true);
} else {
  describeSkipped(WEAVIATE_TITLE, 'WEAVIATE_URL / WEAVIATE_GRPC_PORT not set (run npm run infra:up and source .env.infra)');
}
