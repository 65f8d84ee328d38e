/**
 * Stopping the product while a document is being indexed hands its job back at once: queued again,
 * the interrupted attempt not counted (else three restarts mid-indexing would fail a healthy
 * document), and the next start indexes it.
 */
import { Client } from 'pg';
import request from 'supertest';
import type { Product } from '../../services/product';
import { dropDatabase, freshDatabase } from '../support/postgres';
import { eventually } from '../support/eventually';
import { provisionTenant, startTestProductOn, waitUntilIndexed } from '../support/product';

describe('indexer stop mid-job', () => {
  let url: string;
  let product: Product | null = null;
  const env = { EMBEDDER: 'hashing', INDEX_CONCURRENCY: '1' };

  beforeAll(async () => {
    url = await freshDatabase();
  });
  afterAll(async () => {
    await product?.stop();
    await dropDatabase(url).catch(() => undefined);
  });

  const jobOf = async (documentId: string) => {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ state: string; attempts: number; locked_until: Date | null }>('SELECT state, attempts, locked_until FROM platform.index_jobs WHERE document_id = $1', [documentId])).rows[0] ?? null;
    } finally {
      await c.end();
    }
  };

  it('requeues the interrupted job without counting the attempt; the next start indexes it', async () => {
    product = await startTestProductOn(url, env);
    const tenant = await provisionTenant(product, 'stopper');
    // Large enough that indexing takes a while (tens of thousands of chunks with the hashing embedder).
    const paragraph = 'Travel expenses are reimbursed within thirty days when the original receipts are attached. ';
    const text = Array.from({ length: 4000 }, (_, i) => `## Section ${i}\n\n${paragraph.repeat(20)}`).join('\n\n');
    const res = await request(product.app).post('/v1/documents').set(tenant.auth).send({ filename: 'big.md', text });
    expect(res.status).toBe(202);
    const documentId = res.body.id as string;

    await eventually(() => jobOf(documentId), (j) => j?.state === 'running', 60_000);
    await product.stop();
    product = null;

    const job = await jobOf(documentId);
    expect(job).toMatchObject({ state: 'queued', attempts: 0, locked_until: null });

    product = await startTestProductOn(url, env);
    const doc = await waitUntilIndexed(product, tenant, documentId, 180_000);
    expect(doc.status).toBe('ready');
    // The job row goes after the document reads ready (the read model first, then the queue).
    await eventually(() => jobOf(documentId), (j) => j === null, 30_000);
  }, 300_000);
});
