import { createHash, randomUUID } from 'node:crypto';
import request from 'supertest';
import { streamId, tenantSchema } from '../../contracts/naming';
import { metadataFor } from '../../services/core/commandHandler';
import type { Product } from '../../services/product';
import { eventually } from '../support/eventually';
import { settle } from '../support/settle';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant } from '../support/product';

const op = { Authorization: `Bearer ${ADMIN}` };

/**
 * Activity records are buffered (ACTIVITY_FLUSH_MS) and can be appended after their tenant was
 * deleted (a search answered just before the DELETE). Those late events must not stop any
 * projection: they are dropped, and every other tenant's read models keep moving.
 */
describe('events of a tenant that was deleted meanwhile', () => {
  let product: Product;
  let doomed: TestTenant;
  let keeper: TestTenant;

  beforeAll(async () => {
    product = await startTestProduct({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
    doomed = await provisionTenant(product, 'gone');
    keeper = await provisionTenant(product, 'keeper');
  });
  afterAll(async () => {
    await product?.stop();
  });

  it('are skipped by every projection, which stay live for the other tenants', async () => {
    // The doomed tenant is known to the audit and analytics projections (its rows exist).
    expect((await request(product.app).post('/v1/search').set(doomed.auth).send({ query: 'anything' })).status).toBe(200);
    await eventually(async () => (await request(product.app).get('/v1/audit?type=SearchPerformed').set(doomed.auth)).body.items?.length ?? 0, (n) => n >= 1);

    expect((await request(product.app).delete(`/v1/tenants/${doomed.id}`).set(op)).status).toBe(204);
    await eventually(async () => (await product.deps.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [tenantSchema(doomed.id)])).rowCount, (n) => n === 0);

    // Erased down to tombstones (streams included), so nothing removes the late event below.
    await eventually(async () => (await product.deps.store.streamsOfTenant(doomed.id)).length, (n) => n === 0);
    // A late flush of the recorder, after the erasure.
    await product.deps.store.appendToStream(
      streamId('activity', doomed.id, 'late'),
      [
        {
          eventId: randomUUID(),
          type: 'SearchPerformed',
          data: { queryHash: createHash('sha256').update('late').digest('hex'), mode: 'hybrid', topK: 5, resultChunkIds: [] },
          metadata: metadataFor({ tenantId: doomed.id, actor: 'system', correlationId: randomUUID(), now: new Date() }, 'SearchPerformed'),
        },
      ],
      { expectedRevision: 'any' },
    );

    // The keeper's searches still reach its audit log and its usage.
    for (let i = 0; i < 3; i++) expect((await request(product.app).post('/v1/search').set(keeper.auth).send({ query: `after ${i}` })).status).toBe(200);
    // Every projection gets past the late event (a stalled one does not reach the store's last
    // position, and this throws), and then holds exactly the keeper's three searches.
    await settle(product, ['platform', 'catalog', 'audit', 'analytics']);
    expect((await request(product.app).get('/v1/audit?type=SearchPerformed').set(keeper.auth)).body.items).toHaveLength(3);
    // Summed over the days shown (the searches may straddle midnight UTC).
    const days = (await request(product.app).get('/v1/usage').set(keeper.auth)).body.days as { searches: number }[];
    expect(days.reduce((n, d) => n + d.searches, 0)).toBe(3);
    const list = (await request(product.app).get('/v1/admin/projections').set(op)).body.items as { name: string; state: string; error: string | null }[];
    for (const p of list) expect({ name: p.name, state: p.state, error: p.error }).toEqual({ name: p.name, state: 'live', error: null });
  });
});
