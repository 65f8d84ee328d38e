import request from 'supertest';
import jwt from 'jsonwebtoken';
import type { Product } from '../../services/product';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant } from '../support/product';

const SECRET = 'test-jwt-secret-0123456789abcdef0123456789';
describe('probe', () => {
  let product: Product;
  let acme: TestTenant;
  beforeAll(async () => {
    product = await startTestProduct({ PG_POOL_MAX: '2' });
    acme = await provisionTenant(product, 'acme');
  });
  afterAll(async () => product?.stop());
  const show = (label: string, r: request.Response) => console.log(label, r.status, r.headers['content-type'], (r.text ?? '').slice(0, 300));
  it('probes2', async () => {
    const a = () => request(product.app);
    const adm = { Authorization: `Bearer ${ADMIN}` };
    show('prov NUL name', await a().post('/v1/tenants').set(adm).send({ name: 'a\u0000b', slug: 'nulname', owner: { email: 'o@n.test', password: 'correct horse battery' } }));
    show('prov C1 name', await a().post('/v1/tenants').set(adm).send({ name: 'a\u009bb', slug: 'c1name', owner: { email: 'o@n.test', password: 'correct horse battery' } }));
    show('suspend NUL reason', await a().post(`/v1/tenants/${acme.id}/suspend`).set(adm).send({ reason: 'x\u0000' }));
    show('reactivate', await a().post(`/v1/tenants/${acme.id}/reactivate`).set(adm));
    show('op bad pct', await a().get('/v1/tenants/%E0%A4%A').set(adm));
    show('users bad pct', await a().patch('/v1/users/%E0%A4%A').set(acme.auth).send({ role: 'viewer' }));
    show('tenant jwt on operator', await a().get(`/v1/tenants/${acme.id}`).set(acme.auth));
    show('user email NUL', await a().post('/v1/users').set(acme.auth).send({ email: 'a\u0000@b.test', password: 'aaaaaaaaaaaaa', role: 'viewer' }));
    const up = await a().post('/v1/documents').set(acme.auth).send({ filename: 'up.md', text: 'zebra crossing alpha' });
    await new Promise((r) => setTimeout(r, 1500));
    for (const mode of ['keyword', 'semantic', 'hybrid']) {
      show(`upper docid ${mode}`, await a().post('/v1/search').set(acme.auth).send({ query: 'zebra crossing', mode, document_id: String(up.body.id).toUpperCase() }));
    }
    const g = await provisionTenant(product, 'globex');
    const i1 = await a().post('/v1/api-tokens').set(acme.auth).set('Idempotency-Key', 'same').send({ name: 'n' });
    const i2 = await a().post('/v1/api-tokens').set(g.auth).set('Idempotency-Key', 'same').send({ name: 'n' });
    console.log('idem cross', i1.status, i2.status, i1.body.id === i2.body.id, i2.headers['idempotent-replayed']);
    show('sse inj', await a().post('/v1/ask').set(acme.auth).set('Accept', 'text/event-stream').send({ question: "' OR 1=1 --" }));
    show('xtid double', await a().get('/v1/me').set(acme.auth).set('X-Tenant-Id', [acme.id, acme.id] as unknown as string));
    show('options', await a().options('/v1/documents').set(acme.auth));
    show('put', await a().put('/v1/documents').set(acme.auth).send({}));
    show('login big', await a().post('/v1/auth/login').send({ tenant: 'x', email: 'y', password: 'z'.repeat(70000) }));
    show('login nested', await a().post('/v1/auth/login').set('Content-Type', 'application/json').send('{"tenant":' + '['.repeat(30000) + ']'.repeat(30000) + '}'));
    show('login arr', await a().post('/v1/auth/login').send([1, 2] as unknown as object));
    show('login json str', await a().post('/v1/auth/login').set('Content-Type', 'application/json').send('"x"'));
    show('search 11MiB', await a().post('/v1/search').set(acme.auth).send({ query: 'x'.repeat(11 * 1024 * 1024) }));
    show('doc json 11MiB', await a().post('/v1/documents').set(acme.auth).send({ filename: 'big.md', text: 'x'.repeat(11 * 1024 * 1024) }));
    show('doc json 17MiB', await a().post('/v1/documents').set(acme.auth).send({ filename: 'big.md', text: 'x'.repeat(17 * 1024 * 1024) }));
    show('doc json 17MiB noauth', await a().post('/v1/documents').send({ filename: 'big.md', text: 'x'.repeat(17 * 1024 * 1024) }));
    show('doc multipart 11MiB noauth', await a().post('/v1/documents').attach('file', Buffer.alloc(11 * 1024 * 1024, 97), 'big.txt'));
  });
});
