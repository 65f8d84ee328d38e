import request from 'supertest';
import type { Product } from '../../services/product';
import { ADMIN, provisionTenant, type TestTenant, waitUntilIndexed } from '../support/product';

const ACME_DOC = `# Acme handbook

## Vacation policy

Employees at Acme receive twenty-six days of paid vacation per year. Unused vacation days carry over until March.

## Security

Badges must be worn at all times inside the Acme warehouse in Rotterdam.
`;

const GLOBEX_DOC = `# Globex handbook

## Vacation policy

Globex staff receive eighteen days of paid vacation. The Globex reactor room in Springfield is off limits.
`;

const problem = (res: request.Response, status: number) => {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
  expect(res.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) });
};

/**
 * The scenario a new user follows from the README, over HTTP, including a second tenant that
 * tries to reach the first one's data. Run on the embedded profile here and on the real engines
 * by production.e2e.spec.ts.
 */
export function documentsScenario(title: string, start: () => Promise<{ product: Product; stop(): Promise<void> }>, expectAdapters: Record<string, string> = {}) {
describe(title, () => {
  let product: Product;
  let stop: () => Promise<void>;
  let acme: TestTenant;
  let globex: TestTenant;
  let acmeDocId: string;

  beforeAll(async () => {
    ({ product, stop } = await start());
    acme = await provisionTenant(product, 'acme');
    globex = await provisionTenant(product, 'globex');
  }, 180_000);
  afterAll(async () => {
    await stop?.();
  });

  it('serves health, readiness, the OpenAPI document and the docs UI', async () => {
    expect((await request(product.app).get('/health')).status).toBe(200);
    const ready = await request(product.app).get('/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.checks.postgres.ok).toBe(true);
    expect(ready.body.checks.event_store.adapter).toBe('postgres');
    for (const [check, adapter] of Object.entries(expectAdapters)) expect(ready.body.checks[check].adapter).toBe(adapter);
    const spec = await request(product.app).get('/openapi.json');
    expect(spec.body.paths['/v1/ask']).toBeDefined();
    const docs = await request(product.app).get('/docs/');
    expect(docs.status).toBe(200);
    expect(docs.text).toMatch(/swagger/i);
  });

  it('refuses the admin API without the operator token, as problem+json', async () => {
    problem(await request(product.app).post('/v1/tenants').send({ name: 'x', slug: 'x', owner: { email: 'a@b.c', password: 'xxxxxxxxxxxx' } }), 401);
    problem(await request(product.app).post('/v1/tenants').set('Authorization', `Bearer ${acme.token}`).send({}), 401);
  });

  it('refuses a taken slug with 409 and a bad body with 400', async () => {
    const dup = await request(product.app)
      .post('/v1/tenants')
      .set('Authorization', `Bearer ${ADMIN}`)
      .send({ name: 'again', slug: acme.slug, owner: { email: 'z@z.test', password: 'another long password' } });
    problem(dup, 409);
    problem(await request(product.app).post('/v1/tenants').set('Authorization', `Bearer ${ADMIN}`).send({ name: 'x', slug: 'Bad Slug!' }), 400);
  });

  it('logs in with the same answer for a wrong password and an unknown user', async () => {
    const wrong = await request(product.app).post('/v1/auth/login').send({ tenant: acme.slug, email: 'owner@acme.test', password: 'nope nope nope' });
    const unknown = await request(product.app).post('/v1/auth/login').send({ tenant: acme.slug, email: 'ghost@acme.test', password: 'nope nope nope' });
    problem(wrong, 401);
    problem(unknown, 401);
    expect(wrong.body.detail).toBe(unknown.body.detail);
  });

  it('uploads a document, shows it pending then ready, and lists it', async () => {
    const res = await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: 'handbook.md', text: ACME_DOC });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ id: expect.any(String), position: expect.any(String) });
    acmeDocId = res.body.id;
    const doc = await waitUntilIndexed(product, acme, acmeDocId);
    expect(doc.status).toBe('ready');
    expect(doc.chunk_count).toBeGreaterThan(0);
    const list = await request(product.app).get('/v1/documents').set(acme.auth);
    expect(list.status).toBe(200);
    expect(list.body.items.map((d: { id: string }) => d.id)).toContain(acmeDocId);

    const g = await request(product.app).post('/v1/documents').set(globex.auth).send({ filename: 'handbook.md', text: GLOBEX_DOC });
    expect(g.status).toBe(202);
    await waitUntilIndexed(product, globex, g.body.id);
  });

  it('accepts a multipart upload', async () => {
    const res = await request(product.app).post('/v1/documents').set(acme.auth).attach('file', Buffer.from('Plain text notes about the Rotterdam office parking.'), 'notes.txt');
    expect(res.status).toBe(202);
    expect((await waitUntilIndexed(product, acme, res.body.id)).status).toBe('ready');
  });

  it('re-uploading the same content is a no-op; new content under the same name replaces', async () => {
    const same = await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: 'handbook.md', text: ACME_DOC });
    expect(same.status).toBe(200);
    expect(same.body.id).toBe(acmeDocId);
    const changed = await request(product.app)
      .post('/v1/documents')
      .set(acme.auth)
      .send({ filename: 'handbook.md', text: `${ACME_DOC}\n## Parking\n\nThe Acme car park opens at seven.` });
    expect(changed.status).toBe(202);
    expect(changed.body.id).toBe(acmeDocId);
    const doc = await waitUntilIndexed(product, acme, acmeDocId);
    expect(doc.version).toBe(2);
    const list = await request(product.app).get('/v1/documents').set(acme.auth);
    expect(list.body.items.filter((d: { filename: string }) => d.filename === 'handbook.md')).toHaveLength(1);
  });

  it('paginates with a cursor and rejects a forged cursor', async () => {
    const first = await request(product.app).get('/v1/documents?limit=1').set(acme.auth);
    expect(first.body.items).toHaveLength(1);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await request(product.app).get(`/v1/documents?limit=1&cursor=${first.body.next_cursor}`).set(acme.auth);
    expect(second.body.items).toHaveLength(1);
    expect(second.body.items[0].id).not.toBe(first.body.items[0].id);
    problem(await request(product.app).get('/v1/documents?cursor=-1').set(acme.auth), 400);
    problem(await request(product.app).get('/v1/documents?limit=abc').set(acme.auth), 400);
  });

  it('searches with hybrid retrieval and answers with citations, only from the tenant\'s own documents', async () => {
    const s = await request(product.app).post('/v1/search').set(acme.auth).send({ query: 'how many vacation days', top_k: 3 });
    expect(s.status).toBe(200);
    expect(s.body.results.length).toBeGreaterThan(0);
    expect(s.body.results[0]).toMatchObject({ document_id: acmeDocId, chunk_index: expect.any(Number), text: expect.stringMatching(/twenty-six/), score: expect.any(Number) });
    expect(JSON.stringify(s.body)).not.toMatch(/Globex|eighteen/);

    const a = await request(product.app).post('/v1/ask').set(acme.auth).send({ question: 'How many days of paid vacation do employees get?', top_k: 3 });
    expect(a.status).toBe(200);
    expect(a.body.mode).toBe('extractive');
    expect(a.body.answer).toMatch(/twenty-six/);
    expect(a.body.answer).toMatch(/\[1\]/);
    expect(a.body.sources[0]).toMatchObject({ n: 1, document_id: acmeDocId });
    expect(JSON.stringify(a.body)).not.toMatch(/Globex|eighteen/);
  });

  it('streams an answer as server-sent events', async () => {
    const res = await request(product.app).post('/v1/ask').set(acme.auth).set('Accept', 'text/event-stream').send({ question: 'Where must badges be worn?' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/event-stream/);
    expect(res.text).toMatch(/event: sources/);
    expect(res.text).toMatch(/event: token/);
    expect(res.text).toMatch(/event: done/);
  });

  it('a second tenant can neither read, search, ask about nor delete the first tenant\'s document (404, not 403)', async () => {
    const get = await request(product.app).get(`/v1/documents/${acmeDocId}`).set(globex.auth);
    problem(get, 404);
    const missing = await request(product.app).get('/v1/documents/00000000-0000-4000-8000-000000000000').set(globex.auth);
    expect(missing.body.detail).toBe(get.body.detail);
    problem(await request(product.app).delete(`/v1/documents/${acmeDocId}`).set(globex.auth), 404);
    const s = await request(product.app).post('/v1/search').set(globex.auth).send({ query: 'Acme vacation Rotterdam badges', document_id: acmeDocId });
    expect(s.status).toBe(200);
    expect(s.body.results).toEqual([]);
    const a = await request(product.app).post('/v1/ask').set(globex.auth).send({ question: 'Where is the Acme warehouse?' });
    expect(JSON.stringify(a.body)).not.toMatch(/Rotterdam|twenty-six/);
    // And the document is still there for its owner.
    expect((await request(product.app).get(`/v1/documents/${acmeDocId}`).set(acme.auth)).status).toBe(200);
  });

  it('issues an API token shown once, usable as a bearer, and revocable', async () => {
    const issued = await request(product.app).post('/v1/api-tokens').set(acme.auth).send({ name: 'ci', role: 'viewer' });
    expect(issued.status).toBe(201);
    const token = issued.body.token as string;
    expect(token).toMatch(/^trk_/);
    const list = await request(product.app).get('/v1/api-tokens').set(acme.auth);
    expect(JSON.stringify(list.body)).not.toContain(token);
    expect(list.body.items[0].prefix).toBe(token.slice(0, 12));
    const viaToken = await request(product.app).get('/v1/documents').set('Authorization', `Bearer ${token}`);
    expect(viaToken.status).toBe(200);
    problem(await request(product.app).post('/v1/documents').set('Authorization', `Bearer ${token}`).send({ filename: 'x.md', text: 'x' }), 403);
    expect((await request(product.app).delete(`/v1/api-tokens/${issued.body.id}`).set(acme.auth)).status).toBe(204);
    problem(await request(product.app).get('/v1/documents').set('Authorization', `Bearer ${token}`), 401);
    problem(await request(product.app).delete(`/v1/api-tokens/${issued.body.id}`).set(globex.auth), 404);
  });

  it('rejects bad uploads with the right problem', async () => {
    problem(await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: '../../etc/passwd', text: 'x' }), 400);
    problem(await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: 'a\u0001b.md', text: 'x' }), 400);
    problem(await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: 'a.exe', text: 'MZ binary' }), 415);
    problem(await request(product.app).post('/v1/documents').set(acme.auth).set('Content-Type', 'application/json').send('{"filename": '), 400);
    problem(await request(product.app).post('/v1/documents').set(acme.auth).set('Content-Type', 'text/plain').send('hello'), 415);
    problem(await request(product.app).post('/v1/documents').set(acme.auth).attach('file', Buffer.alloc(11 * 1024 * 1024, 97), 'big.txt'), 413);
  });

  it('deletes a document from every read model', async () => {
    const res = await request(product.app).post('/v1/documents').set(acme.auth).send({ filename: 'temp.md', text: 'The zeppelin hangar code is 4711.' });
    await waitUntilIndexed(product, acme, res.body.id);
    const before = await request(product.app).post('/v1/search').set(acme.auth).send({ query: 'zeppelin hangar code' });
    expect(before.body.results[0]?.document_id).toBe(res.body.id);
    expect((await request(product.app).delete(`/v1/documents/${res.body.id}`).set(acme.auth)).status).toBe(204);
    problem(await request(product.app).get(`/v1/documents/${res.body.id}`).set(acme.auth), 404);
    const after = await request(product.app).post('/v1/search').set(acme.auth).send({ query: 'zeppelin hangar code' });
    expect(after.body.results.map((r: { document_id: string }) => r.document_id)).not.toContain(res.body.id);
  });

  it('answers 401 for missing, malformed and foreign-signed credentials', async () => {
    problem(await request(product.app).get('/v1/documents'), 401);
    problem(await request(product.app).get('/v1/documents').set('Authorization', 'Bearer not.a.jwt'), 401);
    const jwt = await import('jsonwebtoken');
    const forged = jwt.sign({ tid: acme.id, role: 'owner' }, 'another-secret-another-secret-another', { subject: 'x', issuer: 'tenant-rag', audience: 'tenant-rag-api' });
    problem(await request(product.app).get('/v1/documents').set('Authorization', `Bearer ${forged}`), 401);
  });

  it('suspends a tenant (403 for its requests, others untouched) and reactivates it', async () => {
    const s = await request(product.app).post(`/v1/tenants/${globex.id}/suspend`).set('Authorization', `Bearer ${ADMIN}`).send({ reason: 'test' });
    expect(s.status).toBe(200);
    problem(await request(product.app).get('/v1/documents').set(globex.auth), 403);
    expect((await request(product.app).get('/v1/documents').set(acme.auth)).status).toBe(200);
    expect((await request(product.app).post(`/v1/tenants/${globex.id}/reactivate`).set('Authorization', `Bearer ${ADMIN}`)).status).toBe(200);
    expect((await request(product.app).get('/v1/documents').set(globex.auth)).status).toBe(200);
  });
});
}
