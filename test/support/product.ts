import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import request from 'supertest';
import { loadEnv } from '../../services/config';
import { type Product, startProduct } from '../../services/product';
import { freshDatabase } from './postgres';

export const ADMIN = 'test-admin-token-0123456789abcdef0123456789';

/** The whole product in-process on a fresh database, as `npm start` wires it. */
export async function startTestProduct(extraEnv: Record<string, string> = {}): Promise<Product> {
  return startTestProductOn(await freshDatabase(), extraEnv);
}

/** The same on an existing database (e.g. one holding only an event store copied from another). */
export async function startTestProductOn(url: string, extraEnv: Record<string, string> = {}): Promise<Product> {
  const env = loadEnv({
    DATA_DIR: mkdtempSync(join(tmpdir(), 'tr-e2e-')),
    DATABASE_URL: url,
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET: 'test-jwt-secret-0123456789abcdef0123456789',
    // Commands wait (bounded) for the read models before answering. The xid fence is cluster
    // wide, so another suite's long transaction on the shared CI server can hold every
    // projection back for seconds: wait long enough that read-your-writes stays deterministic.
    CONSISTENCY_WAIT_MS: '20000',
    ...extraEnv,
  } as NodeJS.ProcessEnv);
  return startProduct(env, { logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
}

export interface TestTenant {
  id: string;
  slug: string;
  token: string;
  auth: { Authorization: string };
}

let counter = 0;
/**
 * Unique per test file and run. Tenant ids are derived from slugs, and the production-profile
 * suites share one Redis (rate-limit buckets, 24 h idempotency keys) with every suite and every
 * earlier run: a pid-and-counter slug repeats when two files run in one jest worker, or a pid is
 * reused by a later run.
 */
const RUN = randomBytes(4).toString('hex');
export async function provisionTenant(product: Product, slugBase: string): Promise<TestTenant> {
  const slug = `${slugBase}-${RUN}-${++counter}`;
  const password = 'correct horse battery staple';
  const email = `owner@${slugBase}.test`;
  const res = await request(product.app)
    .post('/v1/tenants')
    .set('Authorization', `Bearer ${ADMIN}`)
    .send({ name: slugBase, slug, owner: { email, password } });
  if (res.status !== 201) throw new Error(`provision failed: ${res.status} ${JSON.stringify(res.body)}`);
  const login = await request(product.app).post('/v1/auth/login').send({ tenant: slug, email, password });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${JSON.stringify(login.body)}`);
  const token = login.body.access_token as string;
  return { id: res.body.id, slug, token, auth: { Authorization: `Bearer ${token}` } };
}

/** Polls a document until it leaves `pending` (bounded). */
export async function waitUntilIndexed(product: Product, tenant: TestTenant, documentId: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await request(product.app).get(`/v1/documents/${documentId}`).set(tenant.auth);
    if (res.status === 200 && res.body.status !== 'pending') return res.body;
    if (Date.now() > deadline) throw new Error(`document ${documentId} still ${res.status} ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
