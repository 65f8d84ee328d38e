import request from 'supertest';
import type { Product } from '../../services/product';
import { ADMIN, provisionTenant, startTestProduct, waitUntilIndexed } from '../support/product';

/**
 * The embedded index's memory figures as an operator sees them: `index` in GET
 * /v1/admin/projections and the tenant_rag_index_* series in /metrics, with INDEX_MEMORY_MB and
 * INDEX_HNSW_MIN_CHUNKS from the environment.
 */
describe('embedded index figures (admin API and /metrics)', () => {
  let product: Product;

  beforeAll(async () => {
    product = await startTestProduct({ INDEX_MEMORY_MB: '64', INDEX_HNSW_MIN_CHUNKS: '20000' });
  });
  afterAll(async () => {
    await product?.stop();
  });

  it('reports loaded tenants, estimated bytes and the budget once a tenant was searched', async () => {
    const tenant = await provisionTenant(product, 'idxstats');
    const up = await request(product.app).post('/v1/documents').set(tenant.auth).send({ filename: 'a.md', text: '# Glider\n\nThe glider wing spar is inspected every hundred hours.' });
    expect(up.status).toBe(202);
    expect((await waitUntilIndexed(product, tenant, up.body.id)).status).toBe('ready');
    const s = await request(product.app).post('/v1/search').set(tenant.auth).send({ query: 'glider spar', top_k: 5 });
    expect(s.status).toBe(200);
    expect(s.body.hits?.length ?? s.body.results?.length ?? 0).toBeGreaterThan(0);

    const r = await request(product.app).get('/v1/admin/projections').set('Authorization', `Bearer ${ADMIN}`);
    expect(r.status).toBe(200);
    expect(r.body.index).toMatchObject({ kind: 'embedded', budgetBytes: 64 * 2 ** 20, hnswMinChunks: 20_000, hnswTenants: 0 });
    expect(r.body.index.tenantsLoaded).toBeGreaterThanOrEqual(1);
    expect(r.body.index.bytes).toBeGreaterThan(0);
    expect(r.body.index.bytes).toBeLessThanOrEqual(r.body.index.budgetBytes);

    const m = await request(product.app).get('/metrics');
    expect(m.status).toBe(200);
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m.text)?.[1]);
    expect(value('tenant_rag_index_tenants_loaded')).toBeGreaterThanOrEqual(1);
    expect(value('tenant_rag_index_bytes')).toBeGreaterThan(0);
    expect(value('tenant_rag_index_budget_bytes')).toBe(64 * 2 ** 20);
    expect(m.text).toMatch(/^tenant_rag_index_evictions_total \d+$/m);
  });
});
