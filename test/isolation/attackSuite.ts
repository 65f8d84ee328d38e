/**
 * Tenant isolation under attack, over HTTP, on ONE product instance whose PostgreSQL pool has two
 * connections (PG_POOL_MAX=2), with two tenants holding similar data (same file names, same
 * headings) and unique marker strings. Every answer must be application/problem+json with the
 * right status (or the expected success), nothing may crash or be half written, and no answer may
 * hold the other tenant's markers. The per-route attack/leak table is printed at the end.
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import jwt from 'jsonwebtoken';
import request, { type Response } from 'supertest';
import { parseStreamId, tenantSchema } from '../../contracts/naming';
import type { Product } from '../../services/product';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant } from '../support/product';
import { type AttackSpec, bodyText, LeakCounter } from './leakCounter';

const JWT_SECRET = 'test-jwt-secret-0123456789abcdef0123456789';
const MISSING = '00000000-0000-4000-8000-000000000000';
const PASSWORD = 'correct horse battery staple';
const SSE = /^text\/event-stream\b/;

type Role = 'owner' | 'admin' | 'member' | 'viewer';
type Headers = Record<string, string>;

interface Person {
  id: string;
  email: string;
  token: string;
  auth: Headers;
}

/** One tenant and everything the attacks aim at. */
interface World {
  name: string;
  t: TestTenant;
  owner: Person;
  viewer: Person;
  member: Person;
  handbookId: string;
  payrollId: string;
  payrollFilename: string;
  externalId: string;
  /** An active viewer API token and a revoked one. */
  apiToken: { id: string; token: string };
  revoked: { id: string; token: string };
  /** A real next_cursor of this tenant's listing, and its first document's (created_at, id). */
  nextCursor: string;
  firstDoc: { at: string; id: string };
  /** sha256 and version of the setup documents, to prove they were never touched. */
  setupDocs: Record<string, { sha256: string; version: number }>;
}

const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const bearer = (token: string): Headers => ({ Authorization: `Bearer ${token}` });
const operator: Headers = bearer(ADMIN);

function signJwt(claims: { sub: string; tid: string; role: string }, o: { secret?: string; alg?: jwt.Algorithm; iss?: string; aud?: string; exp?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  return jwt.sign(
    { sub: claims.sub, tid: claims.tid, role: claims.role, iss: o.iss ?? 'tenant-rag', aud: o.aud ?? 'tenant-rag-api', iat: now - 30, exp: o.exp ?? now + 600 },
    o.secret ?? JWT_SECRET,
    { algorithm: o.alg ?? 'HS256' },
  );
}

/** A token with `alg: none` (no signature), built by hand: jsonwebtoken refuses to sign it. */
function unsignedJwt(claims: { sub: string; tid: string; role: string }, alg = 'none'): string {
  const now = Math.floor(Date.now() / 1000);
  return `${b64url({ alg, typ: 'JWT' })}.${b64url({ ...claims, iss: 'tenant-rag', aud: 'tenant-rag-api', iat: now - 30, exp: now + 600 })}.`;
}

/** SQL and Weaviate/GraphQL filter injection strings (no '/' so they are legal file names). */
function injections(otherTenantId: string): string[] {
  return [
    "' OR '1'='1",
    "'; DROP TABLE documents; --",
    '" OR 1=1 --',
    '1; SELECT * FROM platform.users; --',
    `'; RESET ROLE; SELECT * FROM ${tenantSchema(otherTenantId)}.documents; --`,
    "') UNION SELECT text, NULL, NULL FROM chunks --",
    "\\'; SET LOCAL search_path TO platform; --",
    "$1 $2 %s %n {{7*7}} ${7*7}",
    "!(acme & globex) | *:* <-> '' & !!",
    '{"path":["tenant"],"operator":"NotEqual","valueText":"x"}',
    '") { Get { Chunk(tenant: "*", where: {operator: Like, path: ["text"], valueText: "*"}) { text } } } #',
    'tenant:* OR _additional { id vector }',
    '*',
    'x\' AND pg_sleep(5) IS NULL --',
  ];
}

/** The attack suite, run on the embedded profile (attacks.e2e.spec.ts) and on the real engines (attacks.production.e2e.spec.ts). */
export function attackSuite(title: string, servers: () => Promise<{ env: Record<string, string>; stop(): Promise<void> }>): void {
describe(title, () => {
  const counter = new LeakCounter(`isolation attacks (${title})`);
  let stopServers: (() => Promise<void>) | undefined;
  let product: Product;
  let server: Server;
  let acme: World;
  let globex: World;
  let spare: TestTenant;
  const http = () => request(server);

  async function ok(res: Response | request.Test, status: number | number[], what: string): Promise<Response> {
    const r = await res;
    const want = typeof status === 'number' ? [status] : status;
    if (!want.includes(r.status)) throw new Error(`${what}: ${r.status} ${r.text}`);
    return r;
  }

  async function login(slug: string, email: string): Promise<Person & { id: string }> {
    const r = await ok(http().post('/v1/auth/login').send({ tenant: slug, email, password: PASSWORD }), 200, `login ${email}`);
    const token = r.body.access_token as string;
    return { id: (jwt.decode(token) as { sub: string }).sub, email, token, auth: bearer(token) };
  }

  async function waitReady(auth: Headers, ids: string[]): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (const id of ids) {
      for (;;) {
        const r = await http().get(`/v1/documents/${id}`).set(auth);
        if (r.status === 200 && r.body.status === 'ready') break;
        if (r.status === 200 && r.body.status === 'failed') throw new Error(`document ${id} failed: ${r.body.error}`);
        if (Date.now() > deadline) throw new Error(`document ${id} not ready: ${r.status} ${r.text}`);
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  }

  async function buildWorld(name: string, M: string, suffix: string): Promise<World> {
    const t = await provisionTenant(product, name);
    const owner = { ...(await login(t.slug, `owner@${name}.test`)) };
    const addUser = async (role: Role, email: string): Promise<Person> => {
      await ok(http().post('/v1/users').set(owner.auth).send({ email, password: PASSWORD, role }), 201, `add ${role}`);
      return login(t.slug, email);
    };
    const viewer = await addUser('viewer', `viewer.${name}-mail-${suffix}@${name}.test`);
    const member = await addUser('member', `member.${name}-mail-${suffix}@${name}.test`);
    const handbook = `# ${name} handbook\n\n## Vacation policy\n\nEmployees receive twenty vacation days. The vault code is ${M}-SECRET-${suffix}.\n\n## Security\n\nBadges are required inside the ${M}-WAREHOUSE-${suffix} building at all times.\n`;
    const payrollFilename = `${name}-payroll-${suffix}.md`;
    const externalId = `${M}-EXTID-${suffix}`;
    const payroll = `# Payroll\n\nSalary bands are confidential. The payroll code is ${M}-PAYROLL-${suffix}. Vacation days are paid at the base salary.\n`;
    const h = await ok(http().post('/v1/documents').set(owner.auth).send({ filename: 'handbook.md', text: handbook }), 202, 'upload handbook');
    const p = await ok(http().post('/v1/documents').set(member.auth).send({ filename: payrollFilename, text: payroll, external_id: externalId }), 202, 'upload payroll');
    const tok = await ok(http().post('/v1/api-tokens').set(owner.auth).send({ name: `${M}-TOKNAME-${suffix}`, role: 'viewer' }), 201, 'issue token');
    const rev = await ok(http().post('/v1/api-tokens').set(owner.auth).send({ name: `${M}-REVOKED-${suffix}`, role: 'owner' }), 201, 'issue token');
    await ok(http().delete(`/v1/api-tokens/${rev.body.id}`).set(owner.auth), 204, 'revoke token');
    await waitReady(owner.auth, [h.body.id, p.body.id]);
    const list = await ok(http().get('/v1/documents?limit=1').set(owner.auth), 200, 'list');
    const all = await ok(http().get('/v1/documents').set(owner.auth), 200, 'list');
    const setupDocs: World['setupDocs'] = {};
    for (const d of all.body.items as { id: string; sha256: string; version: number }[]) setupDocs[d.id] = { sha256: d.sha256, version: d.version };
    counter.addMarkers(
      name,
      `${M}-SECRET-${suffix}`,
      `${M}-WAREHOUSE-${suffix}`,
      `${M}-PAYROLL-${suffix}`,
      payrollFilename,
      externalId,
      viewer.email,
      member.email,
      `${M}-TOKNAME-${suffix}`,
      `${M}-REVOKED-${suffix}`,
      tok.body.token,
      rev.body.token,
      viewer.token,
      member.token,
      owner.token,
    );
    return {
      name,
      t,
      owner,
      viewer,
      member,
      handbookId: h.body.id,
      payrollId: p.body.id,
      payrollFilename,
      externalId,
      apiToken: { id: tok.body.id, token: tok.body.token },
      revoked: { id: rev.body.id, token: rev.body.token },
      nextCursor: list.body.next_cursor,
      firstDoc: { at: list.body.items[0].created_at, id: list.body.items[0].id },
      setupDocs,
    };
  }

  beforeAll(async () => {
    const real = await servers();
    stopServers = real.stop;
    product = await startTestProduct({
      ...real.env,
      PG_POOL_MAX: '2',
      // The attacks must meet the isolation checks, not the rate limiter.
      RATE_LIMIT_PER_SECOND: '100000',
      RATE_LIMIT_BURST: '1000000',
      TOKEN_RATE_LIMIT_PER_SECOND: '100000',
      TOKEN_RATE_LIMIT_BURST: '1000000',
    });
    server = await product.listen(0, '127.0.0.1');
    [acme, globex, spare] = await Promise.all([buildWorld('acme', 'ACME', '7f3a'), buildWorld('globex', 'GLOBEX', '2c9e'), provisionTenant(product, 'initech')]);
  }, 60_000);

  afterAll(async () => {
    counter.print();
    await product?.stop();
    await stopServers?.();
  });

  const pairs = () =>
    [
      [acme, globex],
      [globex, acme],
    ] as const;

  // ------------------------------------------------------------------------------------------
  it('uses a pool of two PostgreSQL connections', () => {
    expect((product.deps.pool as unknown as { options: { max: number } }).options.max).toBe(2);
  });

  // ------------------------------------------------------------------------------------------
  it("another tenant's ids in paths, bodies and filters answer 404 (never 403) with the body of a missing id, or nothing", async () => {
    const problems: string[] = [];
    const norm = (body: Record<string, unknown>, id: string) => ({ ...body, instance: String(body.instance).replace(new RegExp(id, 'i'), '{id}') });
    const sameAsMissing = async (route: string, as: World, send: (id: string) => request.Test, foreignId: string) => {
      const foreign = await counter.attack({ route, attack: `foreign id ${foreignId}`, as: as.name, expect: 404, send: () => send(foreignId) });
      const missing = await counter.attack({ route, attack: 'missing id', as: as.name, expect: 404, send: () => send(MISSING) });
      if (JSON.stringify(norm(foreign.body, foreignId)) !== JSON.stringify(norm(missing.body, MISSING))) {
        problems.push(`${route} [${as.name}]: foreign-id body ${foreign.text} differs from missing-id body ${missing.text}`);
      }
      if (foreign.headers['content-type'] !== missing.headers['content-type']) problems.push(`${route}: content-type differs between foreign and missing id`);
    };

    for (const [x, y] of pairs()) {
      const X = x.owner.auth;
      await sameAsMissing('GET /v1/documents/{id}', x, (id) => http().get(`/v1/documents/${id}`).set(X), y.payrollId);
      await sameAsMissing('GET /v1/documents/{id}', x, (id) => http().get(`/v1/documents/${id}`).set(X), y.handbookId);
      await sameAsMissing('GET /v1/documents/{id}', x, (id) => http().get(`/v1/documents/${id}`).set(bearer(x.apiToken.token)), y.handbookId);
      await sameAsMissing('GET /v1/documents/{id}', x, (id) => http().get(`/v1/documents/${id.toUpperCase()}`).set(X), y.payrollId);
      await sameAsMissing('DELETE /v1/documents/{id}', x, (id) => http().delete(`/v1/documents/${id}`).set(X), y.payrollId);
      await sameAsMissing('DELETE /v1/documents/{id}', x, (id) => http().delete(`/v1/documents/${id}`).set(x.member.auth), y.handbookId);
      await sameAsMissing('PATCH /v1/users/{id}', x, (id) => http().patch(`/v1/users/${id}`).set(X).send({ role: 'viewer' }), y.member.id);
      await sameAsMissing('PATCH /v1/users/{id}', x, (id) => http().patch(`/v1/users/${id}`).set(X).send({ role: 'owner' }), y.owner.id);
      await sameAsMissing('DELETE /v1/users/{id}', x, (id) => http().delete(`/v1/users/${id}`).set(X), y.viewer.id);
      await sameAsMissing('DELETE /v1/users/{id}', x, (id) => http().delete(`/v1/users/${id}`).set(X), y.owner.id);
      await sameAsMissing('DELETE /v1/api-tokens/{id}', x, (id) => http().delete(`/v1/api-tokens/${id}`).set(X), y.apiToken.id);
      await sameAsMissing('DELETE /v1/api-tokens/{id}', x, (id) => http().delete(`/v1/api-tokens/${id}`).set(X), y.revoked.id);

      // Filters naming the other tenant's document find nothing, in every mode.
      for (const mode of ['hybrid', 'keyword', 'semantic']) {
        const s = await counter.attack({
          route: 'POST /v1/search',
          attack: `document_id of the other tenant (${mode})`,
          as: x.name,
          expect: 200,
          send: () => http().post('/v1/search').set(X).send({ query: 'salary bands payroll code confidential vacation', mode, top_k: 50, document_id: y.payrollId }),
        });
        if (s.body.results?.length !== 0) problems.push(`search ${mode} with the other tenant's document_id returned ${s.text}`);
        const a = await counter.attack({
          route: 'POST /v1/ask',
          attack: `document_id of the other tenant (${mode})`,
          as: x.name,
          expect: 200,
          send: () => http().post('/v1/ask').set(X).send({ question: 'What is the payroll code?', mode, top_k: 50, document_id: y.payrollId }),
        });
        if (a.body.sources?.length !== 0) problems.push(`ask ${mode} with the other tenant's document_id cited ${JSON.stringify(a.body.sources)}`);
      }
      await counter.attack({
        route: 'POST /v1/ask',
        attack: 'streamed, document_id of the other tenant',
        as: x.name,
        expect: 200,
        successType: SSE,
        send: () => http().post('/v1/ask').set(X).set('Accept', 'text/event-stream').send({ question: 'What is the vault code?', document_id: y.handbookId }),
      });
      // Similar data: the same words find only the own tenant's documents.
      const mine = new Set(Object.keys(x.setupDocs));
      for (const mode of ['hybrid', 'keyword', 'semantic']) {
        const s = await counter.attack({
          route: 'POST /v1/search',
          attack: `similar data, no filter (${mode})`,
          as: x.name,
          expect: 200,
          send: () => http().post('/v1/search').set(X).send({ query: 'vault code vacation badges warehouse payroll salary', mode, top_k: 50 }),
        });
        const foreign = (s.body.results ?? []).filter((r: { document_id: string }) => !mine.has(r.document_id));
        if (foreign.length) problems.push(`search ${mode} returned documents that are not ${x.name}'s: ${JSON.stringify(foreign)}`);
      }
      await counter.attack({
        route: 'POST /v1/ask',
        attack: 'asks for the other tenant by name',
        as: x.name,
        expect: 200,
        send: () => http().post('/v1/ask').set(X).send({ question: `What is the ${y.name} vault code and payroll code?`, top_k: 50 }),
      });
      await counter.attack({
        route: 'POST /v1/ask',
        attack: 'streamed, asks for the other tenant by name',
        as: x.name,
        expect: 200,
        successType: SSE,
        send: () => http().post('/v1/ask').set(X).set('Accept', 'text/event-stream').send({ question: `${y.name} vault code payroll code`, top_k: 50 }),
      });

      // Cursors: one forged from the other tenant's first document, and the other tenant's real one.
      const forged = b64url([y.firstDoc.at, y.firstDoc.id]);
      for (const [attack, cursor] of [
        ['forged from the other tenant\'s document', forged],
        ["the other tenant's own next_cursor", y.nextCursor],
      ] as const) {
        const l = await counter.attack({ route: 'GET /v1/documents', attack: `cursor: ${attack}`, as: x.name, expect: 200, send: () => http().get(`/v1/documents?limit=100&cursor=${cursor}`).set(X) });
        const foreign = (l.body.items ?? []).filter((d: { id: string }) => d.id in y.setupDocs);
        if (foreign.length) problems.push(`listing with ${attack} returned ${JSON.stringify(foreign)}`);
      }

      // Bodies naming the other tenant's keys create the attacker's own resources, nothing else.
      const up = await counter.attack({
        route: 'POST /v1/documents',
        attack: "external_id of the other tenant's document",
        as: x.name,
        expect: 202,
        allow: [y.externalId],
        send: () => http().post('/v1/documents').set(X).send({ filename: y.payrollFilename.replace(y.name, 'copy'), text: 'A different text.', external_id: y.externalId }),
      });
      if (up.body.id && up.body.id in y.setupDocs) problems.push(`upload with ${y.name}'s external_id landed on ${y.name}'s document ${up.body.id}`);
      if (up.body.id) await ok(http().delete(`/v1/documents/${up.body.id}`).set(X), 204, 'clean up');
      const same = await counter.attack({
        route: 'POST /v1/documents',
        attack: "filename of the other tenant's document",
        as: x.name,
        expect: [200, 202],
        send: () => http().post('/v1/documents').set(X).send({ filename: 'handbook.md', text: `# ${x.name} handbook\n\nReplaced by an attack test.` }),
      });
      if (same.body.id && same.body.id in y.setupDocs) problems.push(`upload of handbook.md by ${x.name} landed on ${y.name}'s document`);
      if (same.body.id === x.handbookId) {
        // The attacker replaced its OWN handbook: that is its right; remember the new version.
        const now = await ok(http().get(`/v1/documents/${x.handbookId}`).set(X), 200, 'get handbook');
        x.setupDocs[x.handbookId] = { sha256: now.body.sha256, version: now.body.version };
      }
      await counter.attack({
        route: 'POST /v1/users',
        attack: "the other tenant's owner e-mail (no cross-tenant oracle)",
        as: x.name,
        expect: 201,
        send: () => http().post('/v1/users').set(X).send({ email: `owner@${y.name}.test`, password: `${PASSWORD} but different`, role: 'viewer' }),
      });
      // Operator routes do not take tenant credentials, whatever tenant they name.
      for (const [route, send] of [
        ['GET /v1/tenants/{id}', () => http().get(`/v1/tenants/${y.t.id}`).set(X)],
        ['POST /v1/tenants/{id}/suspend', () => http().post(`/v1/tenants/${y.t.id}/suspend`).set(X).send({ reason: 'attack' })],
        ['DELETE /v1/tenants/{id}', () => http().delete(`/v1/tenants/${y.t.id}`).set(X)],
      ] as const) {
        await counter.attack({ route, attack: "tenant owner's JWT on the other tenant", as: x.name, expect: 401, send });
      }
      // Logging in to the other tenant with the own credentials.
      await counter.attack({
        route: 'POST /v1/auth/login',
        attack: "own credentials, other tenant's slug",
        as: x.name,
        expect: 401,
        send: () => http().post('/v1/auth/login').send({ tenant: y.t.slug, email: `owner@${x.name}.test`, password: PASSWORD }),
      });
    }

    // Idempotency keys are per tenant (and actor): the same key never replays another tenant's answer.
    const first = await ok(http().post('/v1/api-tokens').set(acme.owner.auth).set('Idempotency-Key', 'shared-key-1').send({ name: 'idem-shared' }), 201, 'idem');
    counter.addMarkers('acme', first.body.token);
    const second = await counter.attack({
      route: 'POST /v1/api-tokens',
      attack: "Idempotency-Key used by the other tenant",
      as: 'globex',
      expect: 201,
      send: () => http().post('/v1/api-tokens').set(globex.owner.auth).set('Idempotency-Key', 'shared-key-1').send({ name: 'idem-shared' }),
    });
    if (second.headers['idempotent-replayed'] || second.body.id === first.body.id) problems.push("globex got acme's idempotent replay");

    // Nothing of the victims changed, and no stream was started by the 404s.
    for (const [x, y] of pairs()) {
      for (const [id, d] of Object.entries(y.setupDocs)) {
        const r = await http().get(`/v1/documents/${id}`).set(y.owner.auth);
        if (r.status !== 200 || r.body.sha256 !== d.sha256 || r.body.version !== d.version) problems.push(`${y.name}'s document ${id} changed: ${r.status} ${r.text}`);
      }
      const users = await http().get('/v1/users').set(y.owner.auth);
      const roles = Object.fromEntries((users.body.items as { id: string; role: string }[]).map((u) => [u.id, u.role]));
      if (roles[y.member.id] !== 'member' || roles[y.viewer.id] !== 'viewer' || roles[y.owner.id] !== 'owner') problems.push(`${y.name}'s users changed: ${users.text}`);
      if ((await http().get('/v1/me').set(bearer(y.apiToken.token))).status !== 200) problems.push(`${y.name}'s API token stopped working`);
      const streams = await product.deps.pool.query(`SELECT stream_id FROM es.streams WHERE stream_id LIKE $1`, [`%-${x.t.id}.%`]);
      const strays = streams.rows.filter((r: { stream_id: string }) => Object.keys(y.setupDocs).some((id) => r.stream_id.endsWith(id)) || [y.member.id, y.owner.id, y.viewer.id].some((id) => r.stream_id.endsWith(id)));
      if (strays.length) problems.push(`${x.name} has streams named after ${y.name}'s ids: ${JSON.stringify(strays)}`);
    }
    counter.assertClean();
    expect(problems).toEqual([]);
  });

  // ------------------------------------------------------------------------------------------
  it('expired, unsigned, foreign-signed, cross-tenant and role-inflated credentials, revoked tokens and a disagreeing X-Tenant-Id are refused on every route', async () => {
    const a = acme;
    const owner = { sub: a.owner.id, tid: a.t.id, role: 'owner' };
    const now = Math.floor(Date.now() / 1000);
    const routes: { route: string; min: Role | 'operator'; send: (h: Headers) => request.Test }[] = [
      { route: 'GET /v1/me', min: 'viewer', send: (h) => http().get('/v1/me').set(h) },
      { route: 'GET /v1/documents', min: 'viewer', send: (h) => http().get('/v1/documents').set(h) },
      { route: 'GET /v1/documents/{id}', min: 'viewer', send: (h) => http().get(`/v1/documents/${a.payrollId}`).set(h) },
      { route: 'POST /v1/documents', min: 'member', send: (h) => http().post('/v1/documents').set(h).send({ filename: 'cred-attack.md', text: 'written by a forged credential' }) },
      { route: 'DELETE /v1/documents/{id}', min: 'member', send: (h) => http().delete(`/v1/documents/${a.payrollId}`).set(h) },
      { route: 'POST /v1/search', min: 'viewer', send: (h) => http().post('/v1/search').set(h).send({ query: 'vault code payroll' }) },
      { route: 'POST /v1/ask', min: 'viewer', send: (h) => http().post('/v1/ask').set(h).send({ question: 'What is the vault code?' }) },
      { route: 'GET /v1/users', min: 'admin', send: (h) => http().get('/v1/users').set(h) },
      { route: 'POST /v1/users', min: 'admin', send: (h) => http().post('/v1/users').set(h).send({ email: 'cred-attack@acme.test', password: PASSWORD, role: 'owner' }) },
      { route: 'PATCH /v1/users/{id}', min: 'admin', send: (h) => http().patch(`/v1/users/${a.member.id}`).set(h).send({ role: 'owner' }) },
      { route: 'DELETE /v1/users/{id}', min: 'admin', send: (h) => http().delete(`/v1/users/${a.member.id}`).set(h) },
      { route: 'GET /v1/api-tokens', min: 'admin', send: (h) => http().get('/v1/api-tokens').set(h) },
      { route: 'POST /v1/api-tokens', min: 'admin', send: (h) => http().post('/v1/api-tokens').set(h).send({ name: 'cred-attack', role: 'owner' }) },
      { route: 'DELETE /v1/api-tokens/{id}', min: 'admin', send: (h) => http().delete(`/v1/api-tokens/${a.apiToken.id}`).set(h) },
      { route: 'GET /v1/tenants', min: 'operator', send: (h) => http().get('/v1/tenants').set(h) },
      { route: 'GET /v1/tenants/{id}', min: 'operator', send: (h) => http().get(`/v1/tenants/${a.t.id}`).set(h) },
      { route: 'POST /v1/tenants', min: 'operator', send: (h) => http().post('/v1/tenants').set(h).send({ name: 'cred', slug: 'cred-attack', owner: { email: 'o@cred.test', password: PASSWORD } }) },
      { route: 'POST /v1/tenants/{id}/suspend', min: 'operator', send: (h) => http().post(`/v1/tenants/${a.t.id}/suspend`).set(h).send({}) },
      { route: 'PATCH /v1/tenants/{id}/limits', min: 'operator', send: (h) => http().patch(`/v1/tenants/${a.t.id}/limits`).set(h).send({ rate_limit: { per_second: 0.1, burst: 1 } }) },
      { route: 'DELETE /v1/tenants/{id}', min: 'operator', send: (h) => http().delete(`/v1/tenants/${a.t.id}`).set(h) },
    ];
    // Credentials that must never authenticate anyone (answer 401 on every route).
    const refused: [string, Headers][] = [
      ['no credentials', {}],
      ['garbage bearer', bearer('not.a.jwt')],
      ['empty bearer', { Authorization: 'Bearer ' }],
      ['basic auth', { Authorization: `Basic ${Buffer.from(`owner@acme.test:${PASSWORD}`).toString('base64')}` }],
      ['expired JWT', bearer(signJwt(owner, { exp: now - 60 }))],
      ['alg none JWT', bearer(unsignedJwt(owner))],
      ['alg NONE JWT', bearer(unsignedJwt(owner, 'NONE'))],
      ['HS256 header without signature', bearer(unsignedJwt(owner, 'HS256'))],
      ['JWT signed with another key', bearer(signJwt(owner, { secret: 'another-secret-another-secret-another-secret' }))],
      ['JWT signed HS512 with the right key', bearer(signJwt(owner, { alg: 'HS512' }))],
      ['JWT with another issuer', bearer(signJwt(owner, { iss: 'someone-else' }))],
      ['JWT with another audience', bearer(signJwt(owner, { aud: 'another-api' }))],
      ["acme owner's sub with globex's tenant id", bearer(signJwt({ ...owner, tid: globex.t.id }))],
      ["globex owner's sub with acme's tenant id", bearer(signJwt({ sub: globex.owner.id, tid: a.t.id, role: 'owner' }))],
      ["acme user's sub with a deleted/unknown tenant id", bearer(signJwt({ ...owner, tid: MISSING }))],
      ['revoked API token', bearer(a.revoked.token)],
      ['unknown API token', bearer(`trk_${'A'.repeat(43)}`)],
      ["globex's JWT copied with acme's tenant id in the payload", bearer(globex.owner.token.replace(/^([^.]+)\.([^.]+)\./, (_m, h: string, p: string) => `${h}.${b64url({ ...(JSON.parse(Buffer.from(p, 'base64url').toString()) as object), tid: a.t.id })}.`))],
    ];
    // Valid acme credentials with a tenant header that disagrees (403 on tenant routes).
    const disagreeing: [string, Headers][] = [
      ["owner JWT, X-Tenant-Id of globex", { ...a.owner.auth, 'X-Tenant-Id': globex.t.id }],
      ["API token, X-Tenant-Id of globex", { ...bearer(a.apiToken.token), 'X-Tenant-Id': globex.t.id }],
      ['owner JWT, X-Tenant-Id injection', { ...a.owner.auth, 'X-Tenant-Id': "' OR 1=1 --" }],
      ['owner JWT, X-Tenant-Id of an unknown tenant', { ...a.owner.auth, 'X-Tenant-Id': MISSING }],
    ];
    // A viewer claiming more: the role in the token is never trusted over the user's role.
    // (A role that is no role at all may also be refused outright: 401.)
    const inflated: [string, Headers, number[]][] = [
      ['viewer JWT re-signed with role owner', bearer(signJwt({ sub: a.viewer.id, tid: a.t.id, role: 'owner' })), []],
      ['viewer JWT re-signed with role superuser', bearer(signJwt({ sub: a.viewer.id, tid: a.t.id, role: 'superuser' })), [401]],
      ['viewer API token', bearer(a.apiToken.token), []],
    ];
    const specs: AttackSpec[] = [];
    for (const r of routes) {
      for (const [attack, h] of refused) specs.push({ route: r.route, attack, as: null, expect: 401, send: () => r.send(h) });
      for (const [attack, h] of disagreeing) specs.push({ route: r.route, attack, as: null, expect: r.min === 'operator' ? 401 : 403, send: () => r.send(h) });
      for (const [attack, h, alsoOk] of inflated) {
        const expect = r.min === 'operator' ? 401 : r.min === 'viewer' ? 200 : 403;
        specs.push({ route: r.route, attack, as: expect === 200 ? 'acme' : null, expect: [expect, ...alsoOk], send: () => r.send(h) });
      }
      if (r.min !== 'operator') specs.push({ route: r.route, attack: 'operator token on a tenant route', as: null, expect: 401, send: () => r.send(operator) });
      else specs.push({ route: r.route, attack: "acme owner's valid JWT on an operator route", as: null, expect: 401, send: () => r.send(a.owner.auth) });
    }
    await counter.all(specs);

    // Nothing was written by any of them.
    const problems: string[] = [];
    const docs = await http().get('/v1/documents?limit=100').set(a.owner.auth);
    if (docs.text.includes('cred-attack')) problems.push('a refused credential uploaded a document');
    if ((await http().get(`/v1/documents/${a.payrollId}`).set(a.owner.auth)).status !== 200) problems.push('a refused credential deleted a document');
    const users = await http().get('/v1/users').set(a.owner.auth);
    if (users.text.includes('cred-attack')) problems.push('a refused credential added a user');
    if (users.body.items.find((u: { id: string }) => u.id === a.member.id)?.role !== 'member') problems.push("a refused credential changed or removed the member");
    const tokens = await http().get('/v1/api-tokens').set(a.owner.auth);
    if (tokens.text.includes('cred-attack')) problems.push('a refused credential issued a token');
    if (tokens.body.items.find((t: { id: string }) => t.id === a.apiToken.id)?.revoked_at !== null) problems.push('a refused credential revoked a token');
    const tenant = await http().get(`/v1/tenants/${a.t.id}`).set(operator);
    if (tenant.body.status !== 'active' || tenant.body.rate_limit.burst === 1) problems.push(`a refused credential changed the tenant: ${tenant.text}`);
    if ((await http().get('/v1/tenants').set(operator)).text.includes('cred-attack')) problems.push('a refused credential provisioned a tenant');
    counter.assertClean();
    expect(problems).toEqual([]);
  });

  // ------------------------------------------------------------------------------------------
  it('a validly signed JWT whose tenant or subject is not an id is refused with 401, not a crash', async () => {
    // Needs the signing key, so only a server bug (or a leaked key) produces one; still no 500.
    const sub = acme.owner.id;
    const tid = acme.t.id;
    const cases: [string, { sub: string; tid: string; role: string }][] = [
      ['tid is not a uuid', { sub, tid: "x' OR 1=1 --", role: 'owner' }],
      ['sub is not a uuid', { sub: "x' OR 1=1 --", tid, role: 'owner' }],
      ['tid is empty', { sub, tid: '', role: 'owner' }],
    ];
    await counter.all(cases.map(([attack, claims]) => ({ route: 'GET /v1/me', attack: `signed JWT, ${attack}`, as: null, expect: 401, send: () => http().get('/v1/me').set(bearer(signJwt(claims))) })));
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('SQL and Weaviate filter injection strings in every text field are inert', async () => {
    const specs: AttackSpec[] = [];
    for (const [x, y] of pairs()) {
      const X = x.owner.auth;
      const add = (route: string, attack: string, expect: number | number[], send: () => request.Test, successType?: RegExp) =>
        specs.push({ route, attack, as: x.name, expect, send, successType });
      injections(y.t.id).forEach((inj, i) => {
        const enc = encodeURIComponent(inj);
        const tag = `#${i}`;
        // Both tenants: fields that are refused or looked up (cheap).
        add('PATCH /v1/users/{id}', `id ${tag}`, 404, () => http().patch(`/v1/users/${enc}`).set(X).send({ role: 'viewer' }));
        add('DELETE /v1/users/{id}', `id ${tag}`, 404, () => http().delete(`/v1/users/${enc}`).set(X));
        add('DELETE /v1/api-tokens/{id}', `id ${tag}`, 404, () => http().delete(`/v1/api-tokens/${enc}`).set(X));
        add('DELETE /v1/api-tokens/{id}', `Idempotency-Key ${tag}`, [400, 404], () => http().delete(`/v1/api-tokens/${MISSING}`).set(X).set('Idempotency-Key', inj));
        add('GET /v1/documents', `limit ${tag}`, 400, () => http().get(`/v1/documents?limit=${enc}`).set(X));
        add('GET /v1/documents', `cursor ${tag}`, 400, () => http().get(`/v1/documents?cursor=${enc}`).set(X));
        add('GET /v1/documents', `base64 cursor ${tag}`, 400, () => http().get(`/v1/documents?cursor=${b64url([inj, inj])}`).set(X));
        add('GET /v1/documents/{id}', `id ${tag}`, 404, () => http().get(`/v1/documents/${enc}`).set(X));
        add('DELETE /v1/documents/{id}', `id ${tag}`, 404, () => http().delete(`/v1/documents/${enc}`).set(X));
        add('POST /v1/search', `mode ${tag}`, 400, () => http().post('/v1/search').set(X).send({ query: 'vault', mode: inj }));
        add('POST /v1/search', `document_id ${tag}`, 400, () => http().post('/v1/search').set(X).send({ query: 'vault', document_id: inj }));
        add('POST /v1/ask', `document_id ${tag}`, 400, () => http().post('/v1/ask').set(X).send({ question: 'vault', document_id: inj }));
        add('GET /v1/me', `X-Tenant-Id ${tag}`, 403, () => http().get('/v1/me').set(X).set('X-Tenant-Id', inj));
        add('GET /v1/tenants/{id}', `id ${tag} (operator)`, 404, () => http().get(`/v1/tenants/${enc}`).set(operator));
        // One tenant only, to keep the suite fast: argon2 logins, commands, indexed uploads, searches.
        if (x !== acme) return;
        add('POST /v1/auth/login', `tenant ${tag}`, [400, 401], () => http().post('/v1/auth/login').send({ tenant: inj, email: `owner@${x.name}.test`, password: PASSWORD }));
        add('POST /v1/auth/login', `email ${tag}`, [400, 401], () => http().post('/v1/auth/login').send({ tenant: x.t.slug, email: inj, password: PASSWORD }));
        add('POST /v1/auth/login', `password ${tag}`, 401, () => http().post('/v1/auth/login').send({ tenant: x.t.slug, email: `inj${i}@${x.name}.test`, password: inj }));
        add('POST /v1/users', `email ${tag}`, 400, () => http().post('/v1/users').set(X).send({ email: inj, password: PASSWORD, role: 'viewer' }));
        add('POST /v1/users', `role ${tag}`, 400, () => http().post('/v1/users').set(X).send({ email: `inj-role-${i}@${x.name}.test`, password: PASSWORD, role: inj }));
        add('PATCH /v1/users/{id}', `role ${tag}`, 400, () => http().patch(`/v1/users/${x.member.id}`).set(X).send({ role: inj }));
        add('POST /v1/api-tokens', `name ${tag}`, inj.trim().length > 100 ? 400 : 201, () => http().post('/v1/api-tokens').set(X).send({ name: inj, role: 'viewer' }));
        add('POST /v1/api-tokens', `role ${tag}`, 400, () => http().post('/v1/api-tokens').set(X).send({ name: 'inj-role', role: inj }));
        // The document key is external_id, else filename: the two injected keys get different suffixes.
        add('POST /v1/documents', `filename ${tag}`, /[/\\]/.test(inj) ? 400 : 202, () => http().post('/v1/documents').set(X).send({ filename: inj, text: `Injection file ${i} of ${x.name}.` }));
        add('POST /v1/documents', `text ${tag}`, 202, () => http().post('/v1/documents').set(X).send({ filename: `inj-text-${i}.txt`, text: `${inj}\n\nvault code` }));
        add('POST /v1/documents', `external_id ${tag}`, 202, () => http().post('/v1/documents').set(X).send({ filename: `inj-ext-${i}.md`, text: `External id ${i}.`, external_id: `${inj} (ext)` }));
        if (i < 4) add('POST /v1/documents', `content_type ${tag}`, 202, () => http().post('/v1/documents').set(X).send({ filename: `inj-ct-${i}.md`, text: `Content type ${i}.`, content_type: inj.slice(0, 100) }));
        const blank = inj.trim() === '';
        add('POST /v1/search', `query ${tag} (hybrid)`, blank ? 400 : 200, () => http().post('/v1/search').set(X).send({ query: inj, top_k: 50 }));
        add('POST /v1/search', `query ${tag} (keyword)`, blank ? 400 : 200, () => http().post('/v1/search').set(X).send({ query: inj, top_k: 50, mode: 'keyword' }));
        add('POST /v1/ask', `question ${tag}`, 200, () => http().post('/v1/ask').set(X).send({ question: inj, top_k: 50 }));
        add('POST /v1/ask', `question ${tag} (streamed)`, 200, () => http().post('/v1/ask').set(X).set('Accept', 'text/event-stream').send({ question: inj, top_k: 50 }), SSE);
        add('POST /v1/tenants', `slug ${tag} (operator)`, 400, () => http().post('/v1/tenants').set(operator).send({ name: 'inj', slug: inj, owner: { email: 'o@inj.test', password: PASSWORD } }));
      });
    }
    const responses = await counter.all(specs, 12);
    // Correlation ids are never echoed when they are not plain tokens.
    const problems: string[] = [];
    for (const inj of injections(globex.t.id)) {
      const r = await http().get('/v1/me').set(acme.owner.auth).set('X-Correlation-Id', inj);
      if (r.headers['x-correlation-id'] === inj) problems.push(`X-Correlation-Id echoed: ${inj}`);
    }
    // The uploads with injected names and texts are ordinary documents of their own tenant.
    const byTenant = new Map<string, string[]>();
    specs.forEach((s, i) => {
      const r = responses[i]!;
      if (s.route === 'POST /v1/documents' && r.status === 202) byTenant.set(s.as!, [...(byTenant.get(s.as!) ?? []), r.body.id]);
    });
    for (const w of [acme, globex]) {
      const ids = byTenant.get(w.name) ?? [];
      for (const id of ids) if (id in (w === acme ? globex : acme).setupDocs) problems.push(`${w.name}'s injected upload landed on the other tenant's document`);
    }
    counter.assertClean();
    expect(problems).toEqual([]);
  });

  // ------------------------------------------------------------------------------------------
  it('malformed JSON, wrong content types, non-object bodies and 11 MiB bodies answer 400/413/415', async () => {
    const X = acme.owner.auth;
    const specs: AttackSpec[] = [];
    const add = (route: string, attack: string, expect: number | number[], send: () => request.Test, as: string | null = 'acme') => specs.push({ route, attack, as, expect, send });
    const jsonRoutes: [string, (h: Headers) => request.Test][] = [
      ['POST /v1/auth/login', (h) => http().post('/v1/auth/login').set(h)],
      ['POST /v1/users', (h) => http().post('/v1/users').set(h)],
      ['PATCH /v1/users/{id}', (h) => http().patch(`/v1/users/${acme.member.id}`).set(h)],
      ['POST /v1/api-tokens', (h) => http().post('/v1/api-tokens').set(h)],
      ['POST /v1/search', (h) => http().post('/v1/search').set(h)],
      ['POST /v1/ask', (h) => http().post('/v1/ask').set(h)],
      ['POST /v1/documents', (h) => http().post('/v1/documents').set(h)],
      ['POST /v1/tenants', (h) => http().post('/v1/tenants').set(operator).set(h)],
      ['PATCH /v1/tenants/{id}/limits', (h) => http().patch(`/v1/tenants/${spare.id}/limits`).set(operator).set(h)],
    ];
    const bigBody = JSON.stringify({ filename: 'big.txt', text: 'x'.repeat(11 * 1024 * 1024) });
    for (const [route, req] of jsonRoutes) {
      const h = route.includes('/v1/tenants') ? {} : X;
      const isDoc = route === 'POST /v1/documents';
      add(route, 'malformed JSON', 400, () => req(h).set('Content-Type', 'application/json').send('{"query": "x", '));
      add(route, 'JSON with a trailing garbage', 400, () => req(h).set('Content-Type', 'application/json').send('{"a":1}}'));
      add(route, 'JSON array body', 400, () => req(h).set('Content-Type', 'application/json').send('[1,2,3]'));
      add(route, 'JSON string body', 400, () => req(h).set('Content-Type', 'application/json').send('"text"'));
      add(route, 'JSON null body', 400, () => req(h).set('Content-Type', 'application/json').send('null'));
      add(route, 'empty JSON body', route === 'PATCH /v1/tenants/{id}/limits' ? [200, 400] : 400, () => req(h).set('Content-Type', 'application/json').send(''));
      add(route, 'text/plain body', isDoc ? 415 : [400, 415], () => req(h).set('Content-Type', 'text/plain').send('{"query":"x"}'));
      add(route, 'application/xml body', isDoc ? 415 : [400, 415], () => req(h).set('Content-Type', 'application/xml').send('<query>x</query>'));
      add(route, 'form-urlencoded body', isDoc ? 415 : [400, 415], () => req(h).set('Content-Type', 'application/x-www-form-urlencoded').send('query=x&top_k=5'));
      add(route, 'no content type', isDoc ? 415 : [400, 415], () => req(h).send(Buffer.from('{"query":"x"}')));
      add(route, 'unknown charset', 415, () => req(h).set('Content-Type', 'application/json; charset=klingon-8').send('{"query":"x"}'));
      add(route, 'unknown content encoding', 415, () => req(h).set('Content-Type', 'application/json').set('Content-Encoding', 'zstd').send('{"query":"x"}'));
      add(route, 'lying gzip encoding', 400, () => req(h).set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('{"query":"x"}'));
      if (['POST /v1/auth/login', 'POST /v1/search', 'POST /v1/ask', 'POST /v1/documents'].includes(route)) add(route, '11 MiB JSON', 413, () => req(h).set('Content-Type', 'application/json').send(bigBody));
      add(route, 'JSON nested 30000 deep', 400, () => req(h).set('Content-Type', 'application/json').send(`{"query":${'['.repeat(30_000)}${']'.repeat(30_000)}}`));
      add(route, 'JSON nested 30000 deep, with Idempotency-Key', 400, () =>
        req(h).set('Content-Type', 'application/json').set('Idempotency-Key', `nest-${route}`).send(`{"x":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`),
      );
    }
    add('POST /v1/documents', 'JSON nested 1 000 000 deep', 400, () => http().post('/v1/documents').set(X).set('Content-Type', 'application/json').send(`{"filename":"a.md","text":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`));
    add('POST /v1/documents', 'JSON nested 200 000 deep, with Idempotency-Key', 400, () =>
      http().post('/v1/documents').set(X).set('Idempotency-Key', 'deep-doc').set('Content-Type', 'application/json').send(`{"filename":"a.md","x":${'{"a":'.repeat(200_000)}1${'}'.repeat(200_000)}}`),
    );
    add('POST /v1/documents', '11 MiB multipart file', 413, () => http().post('/v1/documents').set(X).attach('file', Buffer.alloc(11 * 1024 * 1024, 97), 'big.txt'));
    add('POST /v1/documents', '11 MiB multipart file, no credentials', 401, () => http().post('/v1/documents').attach('file', Buffer.alloc(11 * 1024 * 1024, 97), 'big.txt'), null);
    add('POST /v1/documents', 'multipart without boundary', 400, () => http().post('/v1/documents').set(X).set('Content-Type', 'multipart/form-data').send('hello'));
    add('POST /v1/documents', 'multipart file in the wrong field', 400, () => http().post('/v1/documents').set(X).attach('upload', Buffer.from('hello'), 'a.txt'));
    add('POST /v1/documents', 'multipart with two files (the second is ignored or refused)', [202, 400, 413], () => http().post('/v1/documents').set(X).attach('file', Buffer.from('one'), 'a.txt').attach('file', Buffer.from('two'), 'b.txt'));
    add('POST /v1/documents', 'multipart with no file', 400, () => http().post('/v1/documents').set(X).field('external_id', 'x'));
    add('POST /v1/documents', 'empty file', [400, 422], () => http().post('/v1/documents').set(X).attach('file', Buffer.alloc(0), 'empty.txt'));
    add('POST /v1/documents', 'JSON upload with unknown fields', 400, () => http().post('/v1/documents').set(X).send({ filename: 'a.md', text: 'x', tenant_id: globex.t.id }));
    add('POST /v1/search', 'unknown field tenant_id', 400, () => http().post('/v1/search').set(X).send({ query: 'vault', tenant_id: globex.t.id }));
    add('POST /v1/ask', 'unknown field tenant', 400, () => http().post('/v1/ask').set(X).send({ question: 'vault', tenant: globex.t.slug }));
    add('PUT /v1/documents', 'unsupported method', [404, 405], () => http().put('/v1/documents').set(X).send({}));
    add('DELETE /v1/documents', 'DELETE without id', [404, 405], () => http().delete('/v1/documents').set(X));
    add('GET /v1/unknown', 'unknown route', 404, () => http().get('/v1/unknown').set(X));
    add('GET /v1/unknown', 'unknown route, no credentials', [401, 404], () => http().get('/v1/unknown'), null);
    await counter.all(specs, 6);
    // Nothing of the refused uploads was stored.
    const list = await http().get('/v1/documents?limit=100').set(X);
    expect(list.body.items.map((d: { filename: string }) => d.filename)).not.toEqual(expect.arrayContaining(['big.txt', 'a.md', 'empty.txt']));
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('a truncated multipart upload is refused with 400 and does not crash the process', async () => {
    // busboy destroys the open file stream with "Unexpected end of form": an 'error' event with no
    // listener is an uncaught exception, which ends a Node process (jest reports it on this test).
    await counter.attack({
      route: 'POST /v1/documents',
      attack: 'truncated multipart (no closing boundary)',
      as: 'acme',
      expect: 400,
      send: () =>
        http()
          .post('/v1/documents')
          .set(acme.member.auth)
          .set('Content-Type', 'multipart/form-data; boundary=xyz')
          .send('--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello, and then the connection ends'),
    });
    await new Promise((r) => setTimeout(r, 300));
    await counter.attack({ route: 'GET /health', attack: 'alive after a truncated multipart', as: null, expect: 200, send: () => http().get('/health') });
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('NUL bytes in every text field are refused (or harmless), never a crash', async () => {
    const X = acme.owner.auth;
    const specs: AttackSpec[] = [];
    const add = (route: string, attack: string, expect: number[], send: () => request.Test, successType?: RegExp) => specs.push({ route, attack, as: 'acme', expect, send, successType });
    add('POST /v1/auth/login', 'NUL in tenant', [400, 401], () => http().post('/v1/auth/login').send({ tenant: `${acme.t.slug}\u0000`, email: 'owner@acme.test', password: PASSWORD }));
    add('POST /v1/auth/login', 'NUL in email', [400, 401], () => http().post('/v1/auth/login').send({ tenant: acme.t.slug, email: 'owner@acme.test\u0000', password: PASSWORD }));
    add('POST /v1/auth/login', 'NUL in password', [400, 401], () => http().post('/v1/auth/login').send({ tenant: acme.t.slug, email: 'owner@acme.test', password: `${PASSWORD}\u0000` }));
    add('POST /v1/users', 'NUL in email', [400], () => http().post('/v1/users').set(X).send({ email: 'nul\u0000@acme.test', password: PASSWORD, role: 'viewer' }));
    add('POST /v1/users', 'NUL in password', [201, 400], () => http().post('/v1/users').set(X).send({ email: 'nul-password@acme.test', password: `${PASSWORD}\u0000`, role: 'viewer' }));
    add('PATCH /v1/users/{id}', 'NUL in role', [400], () => http().patch(`/v1/users/${acme.member.id}`).set(X).send({ role: 'member\u0000' }));
    add('POST /v1/api-tokens', 'NUL in name', [201, 400], () => http().post('/v1/api-tokens').set(X).send({ name: 'ci\u0000token', role: 'viewer' }));
    add('POST /v1/documents', 'NUL in filename', [400], () => http().post('/v1/documents').set(X).send({ filename: 'nul\u0000.md', text: 'x' }));
    add('POST /v1/documents', 'NUL in external_id', [400], () => http().post('/v1/documents').set(X).send({ filename: 'nul-ext.md', text: 'x', external_id: 'e\u0000' }));
    add('POST /v1/documents', 'NUL in text', [400, 415, 422], () => http().post('/v1/documents').set(X).send({ filename: 'nul-text.md', text: 'before\u0000after' }));
    add('POST /v1/documents', 'NUL in content_type', [202, 400], () => http().post('/v1/documents').set(X).send({ filename: 'nul-ct.md', text: 'x', content_type: 'text/\u0000' }));
    add('POST /v1/documents', 'NUL bytes in a multipart file', [400, 415, 422], () => http().post('/v1/documents').set(X).attach('file', Buffer.from('text\u0000with NUL'), 'nul.txt'));
    add('POST /v1/documents', 'NUL in a multipart filename (RFC 2231)', [400], () =>
      http()
        .post('/v1/documents')
        .set(X)
        .set('Content-Type', 'multipart/form-data; boundary=xyz')
        .send("--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename*=utf-8''a%00b.txt\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz--\r\n"),
    );
    add('POST /v1/search', 'NUL in query (hybrid)', [200, 400], () => http().post('/v1/search').set(X).send({ query: 'vault\u0000code' }));
    add('POST /v1/search', 'NUL in query (keyword)', [200, 400], () => http().post('/v1/search').set(X).send({ query: 'vault\u0000code', mode: 'keyword' }));
    add('POST /v1/search', 'NUL in mode', [400], () => http().post('/v1/search').set(X).send({ query: 'vault', mode: 'hybrid\u0000' }));
    add('POST /v1/ask', 'NUL in question', [200, 400], () => http().post('/v1/ask').set(X).send({ question: 'vault\u0000code?' }));
    add('POST /v1/ask', 'NUL in question (streamed)', [200, 400], () => http().post('/v1/ask').set(X).set('Accept', 'text/event-stream').send({ question: 'vault\u0000code?' }), SSE);
    add('GET /v1/documents/{id}', 'NUL in the path', [400, 404], () => http().get('/v1/documents/%00').set(X));
    add('GET /v1/documents', 'NUL in the cursor', [400], () => http().get('/v1/documents?cursor=%00').set(X));
    add('POST /v1/tenants', 'NUL in tenant name (operator)', [201, 400], () => http().post('/v1/tenants').set(operator).send({ name: 'nul\u0000name', slug: `nul-${randomBytes(4).toString('hex')}`, owner: { email: 'o@nul.test', password: PASSWORD } }));
    add('POST /v1/tenants/{id}/suspend', 'NUL in reason (operator)', [200, 400], () => http().post(`/v1/tenants/${spare.id}/suspend`).set(operator).send({ reason: 'nul\u0000reason' }));
    await counter.all(specs, 6);
    await http().post(`/v1/tenants/${spare.id}/reactivate`).set(operator);
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('path traversal and control characters in file names are refused', async () => {
    const X = acme.owner.auth;
    const refusedNames = [
      '../../etc/passwd',
      '..\\..\\windows\\win.ini',
      '/etc/passwd',
      'a/../../b.md',
      'C:\\boot.ini',
      '..',
      '.',
      '',
      '   ',
      'x'.repeat(256) + '.md',
      'bell\u0007.md',
      'esc\u001b[31mred.md',
      'del\u007f.md',
      'line\nbreak.md',
      'carriage\rreturn.md',
      'crlf\r\nSet-Cookie: a=b.md',
      'tab\there.md',
      'c1-csi\u009b31m.md',
      'c1-nel\u0085.md',
    ];
    const specs: AttackSpec[] = refusedNames.map((name) => ({
      route: 'POST /v1/documents',
      attack: `JSON filename ${JSON.stringify(name).slice(0, 40)}`,
      as: 'acme',
      expect: 400,
      send: () => http().post('/v1/documents').set(X).send({ filename: name, text: 'Traversal test.' }),
    }));
    for (const name of ['bell\u0007.txt', 'line\nbreak.txt', 'c1-csi\u009b31m.txt']) {
      specs.push({ route: 'POST /v1/documents', attack: `external_id ${JSON.stringify(name)}`, as: 'acme', expect: 400, send: () => http().post('/v1/documents').set(X).send({ filename: 'ext-ctl.md', text: 'x', external_id: name }) });
    }
    await counter.all(specs, 6);
    // Multipart: the part's filename is reduced to a base name or refused; it never keeps a path.
    const problems: string[] = [];
    for (const name of ['../../etc/passwd.txt', '..\\..\\evil.txt', '/abs/path.txt', '..']) {
      const r = await counter.attack({ route: 'POST /v1/documents', attack: `multipart filename ${name}`, as: 'acme', expect: [202, 400], send: () => http().post('/v1/documents').set(X).attach('file', Buffer.from(`Multipart traversal ${name}`), name) });
      if (r.status === 202 && (/[/\\]/.test(r.body.filename) || r.body.filename === '..')) problems.push(`multipart upload kept the path in ${JSON.stringify(r.body.filename)}`);
    }
    counter.assertClean();
    expect(problems).toEqual([]);
  });

  // ------------------------------------------------------------------------------------------
  it('huge or malformed top_k, pagination limits and cursors answer 400', async () => {
    const X = acme.owner.auth;
    const specs: AttackSpec[] = [];
    const add = (route: string, attack: string, expect: number, send: () => request.Test) => specs.push({ route, attack, as: 'acme', expect, send });
    for (const topK of [51, 1000, 1_000_000_000, 1e308, -1, 0, 2.5, '5', null, true, [5], { n: 5 }]) {
      add('POST /v1/search', `top_k ${JSON.stringify(topK)}`, 400, () => http().post('/v1/search').set(X).send({ query: 'vault', top_k: topK }));
      add('POST /v1/ask', `top_k ${JSON.stringify(topK)}`, 400, () => http().post('/v1/ask').set(X).send({ question: 'vault', top_k: topK }));
    }
    add('POST /v1/search', 'top_k as a huge number literal', 400, () => http().post('/v1/search').set(X).set('Content-Type', 'application/json').send('{"query":"vault","top_k":1e400}'));
    add('POST /v1/search', 'top_k 50 (the maximum) is fine', 200, () => http().post('/v1/search').set(X).send({ query: 'vault', top_k: 50 }));
    for (const limit of ['-1', '0', '101', 'abc', '1.5', '1e3', '', '%201', '0x10', '99999999999', 'NaN', 'Infinity']) {
      add('GET /v1/documents', `limit=${limit}`, 400, () => http().get(`/v1/documents?limit=${limit}`).set(X));
    }
    add('GET /v1/documents', 'limit twice', 400, () => http().get('/v1/documents?limit=1&limit=2').set(X));
    add('GET /v1/documents', 'cursor twice', 400, () => http().get(`/v1/documents?cursor=${acme.nextCursor}&cursor=${acme.nextCursor}`).set(X));
    const forged = (at: unknown, id: unknown) => b64url([at, id]);
    const cursors: [string, string][] = [
      ['-1', '-1'],
      ['abc', 'abc'],
      ['null', 'null'],
      ['201 characters', 'A'.repeat(201)],
      ['base64 of []', b64url([])],
      ['base64 of an object', b64url({ at: '2020-01-01T00:00:00Z', id: MISSING })],
      ['base64 of a number pair', b64url([1, 2])],
      ['base64 of a bad id', forged('2020-01-01T00:00:00.000Z', 'not-a-uuid')],
      ['base64 of a bad date', forged('yesterday', MISSING)],
      // Dates that Date.parse accepts but PostgreSQL's timestamptz does not.
      ['date "2020"', forged('2020', MISSING)],
      ['date "1"', forged('1', MISSING)],
      ['date "-1"', forged('-1', MISSING)],
      ['date "2020-02-30"', forged('2020-02-30', MISSING)],
      ['date "+275760-09-13T00:00:00.000Z"', forged('+275760-09-13T00:00:00.000Z', MISSING)],
      ['date "Tue Mar 01 2022 10:00:00 GMT+0100 (CET)"', forged('Tue Mar 01 2022 10:00:00 GMT+0100 (CET)', MISSING)],
    ];
    for (const [attack, c] of cursors) add('GET /v1/documents', `cursor ${attack}`, 400, () => http().get(`/v1/documents?cursor=${encodeURIComponent(c)}`).set(X));
    await counter.all(specs, 8);
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('a malformed min_position is refused at once instead of stalling the request', async () => {
    const X = acme.owner.auth;
    const started = Date.now();
    await counter.all(
      [
        { route: 'POST /v1/search', attack: 'min_position "zzz"', as: 'acme', expect: 400, send: () => http().post('/v1/search').set(X).send({ query: 'vault', min_position: 'zzz' }) },
        { route: 'POST /v1/ask', attack: "min_position \"' OR 1=1\"", as: 'acme', expect: 400, send: () => http().post('/v1/ask').set(X).send({ question: 'vault', min_position: "' OR 1=1 --" }) },
        { route: 'POST /v1/search', attack: 'min_position "99999999999999999999-x"', as: 'acme', expect: 400, send: () => http().post('/v1/search').set(X).send({ query: 'vault', min_position: '99999999999999999999-x' }) },
      ],
      3,
    );
    const took = Date.now() - started;
    counter.assertClean();
    // Not a speed claim: a stalled request would wait out the read-your-writes wait first.
    expect(took).toBeLessThan(product.deps.config.consistencyWaitMs);
  });

  // ------------------------------------------------------------------------------------------
  it('ids with malformed percent-encoding answer 404 (or 400), not 500', async () => {
    const X = acme.owner.auth;
    const specs: AttackSpec[] = [];
    for (const bad of ['%E0%A4%A', '%', '%zz', '%C0%AF']) {
      specs.push(
        { route: 'GET /v1/documents/{id}', attack: `id ${bad}`, as: 'acme', expect: [400, 404], send: () => http().get(`/v1/documents/${bad}`).set(X) },
        { route: 'DELETE /v1/documents/{id}', attack: `id ${bad}`, as: 'acme', expect: [400, 404], send: () => http().delete(`/v1/documents/${bad}`).set(X) },
        { route: 'PATCH /v1/users/{id}', attack: `id ${bad}`, as: 'acme', expect: [400, 404], send: () => http().patch(`/v1/users/${bad}`).set(X).send({ role: 'viewer' }) },
        { route: 'DELETE /v1/users/{id}', attack: `id ${bad}`, as: 'acme', expect: [400, 404], send: () => http().delete(`/v1/users/${bad}`).set(X) },
        { route: 'DELETE /v1/api-tokens/{id}', attack: `id ${bad}`, as: 'acme', expect: [400, 404], send: () => http().delete(`/v1/api-tokens/${bad}`).set(X) },
        { route: 'GET /v1/tenants/{id}', attack: `id ${bad} (operator)`, as: null, expect: [400, 404], send: () => http().get(`/v1/tenants/${bad}`).set(operator) },
      );
    }
    await counter.all(specs, 8);
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('a replayed (Idempotency-Key) error answer is still application/problem+json', async () => {
    const X = acme.owner.auth;
    const send = () => http().delete(`/v1/api-tokens/${MISSING}`).set(X).set('Idempotency-Key', 'replayed-404');
    await counter.attack({ route: 'DELETE /v1/api-tokens/{id}', attack: 'Idempotency-Key, first 404', as: 'acme', expect: 404, send });
    const replay = await counter.attack({ route: 'DELETE /v1/api-tokens/{id}', attack: 'Idempotency-Key, replayed 404', as: 'acme', expect: 404, send });
    expect(replay.headers['idempotent-replayed']).toBe('true');
    const body = { query: '' };
    await counter.attack({ route: 'POST /v1/search', attack: 'Idempotency-Key, first 400', as: 'acme', expect: 400, send: () => http().post('/v1/search').set(X).set('Idempotency-Key', 'replayed-400').send(body) });
    await counter.attack({ route: 'POST /v1/search', attack: 'Idempotency-Key, replayed 400', as: 'acme', expect: 400, send: () => http().post('/v1/search').set(X).set('Idempotency-Key', 'replayed-400').send(body) });
    counter.assertClean();
  });

  // ------------------------------------------------------------------------------------------
  it('a document_id filter matches its document in every mode, whatever the case of the id', async () => {
    // Not a leak, but a filter that behaves differently per mode is one a future change can get wrong.
    const X = acme.owner.auth;
    const counts: Record<string, number> = {};
    for (const mode of ['keyword', 'semantic', 'hybrid']) {
      for (const id of [acme.payrollId, acme.payrollId.toUpperCase()]) {
        const r = await counter.attack({ route: 'POST /v1/search', attack: `own document_id ${id === acme.payrollId ? 'lower' : 'upper'} case (${mode})`, as: 'acme', expect: 200, send: () => http().post('/v1/search').set(X).send({ query: 'payroll code salary bands', mode, document_id: id }) });
        counts[`${mode}/${id === acme.payrollId ? 'lower' : 'upper'}`] = r.body.results?.length ?? -1;
      }
    }
    counter.assertClean();
    for (const mode of ['keyword', 'semantic', 'hybrid']) expect([mode, counts[`${mode}/upper`]]).toEqual([mode, counts[`${mode}/lower`]]);
  });

  // ------------------------------------------------------------------------------------------
  it('200 concurrent interleaved requests of both tenants on two connections each see only their own data', async () => {
    const specs: AttackSpec[] = [];
    const uploads: { tenant: string; filename: string }[] = [];
    for (let i = 0; i < 200; i++) {
      const w = i % 2 === 0 ? acme : globex;
      const X = i % 4 < 2 ? w.owner.auth : bearer(w.apiToken.token);
      const kind = Math.floor(i / 2) % 8;
      const base = { as: w.name };
      switch (kind) {
        case 0:
          specs.push({ ...base, route: 'GET /v1/documents', attack: 'concurrent list', expect: 200, send: () => http().get('/v1/documents?limit=100').set(X) });
          break;
        case 1:
          specs.push({ ...base, route: 'GET /v1/documents/{id}', attack: 'concurrent get', expect: 200, send: () => http().get(`/v1/documents/${w.payrollId}`).set(X) });
          break;
        case 2:
        case 3:
          specs.push({ ...base, route: 'POST /v1/search', attack: 'concurrent search', expect: 200, send: () => http().post('/v1/search').set(X).send({ query: 'vault code vacation payroll', top_k: 10, mode: kind === 2 ? 'hybrid' : 'keyword' }) });
          break;
        case 4:
          specs.push({ ...base, route: 'POST /v1/ask', attack: 'concurrent ask', expect: 200, send: () => http().post('/v1/ask').set(X).send({ question: 'What is the vault code?' }) });
          break;
        case 5:
          specs.push({ ...base, route: 'GET /v1/me', attack: 'concurrent me', expect: 200, send: () => http().get('/v1/me').set(X) });
          break;
        case 6: {
          const filename = `concurrent-${w.name}-${i}.md`;
          uploads.push({ tenant: w.name, filename });
          specs.push({ ...base, route: 'POST /v1/documents', attack: 'concurrent upload', expect: 202, send: () => http().post('/v1/documents').set(w.member.auth).send({ filename, text: `Concurrent note ${i} of ${w.name}.` }) });
          break;
        }
        default:
          specs.push({ ...base, route: 'GET /v1/documents/{id}', attack: "concurrent get of the other tenant's document", expect: 404, send: () => http().get(`/v1/documents/${(w === acme ? globex : acme).payrollId}`).set(X) });
      }
    }
    const responses = await counter.all(specs, 200);
    const problems: string[] = [];
    specs.forEach((s, i) => {
      const r = responses[i]!;
      const w = s.as === 'acme' ? acme : globex;
      const text = bodyText(r);
      if (s.attack === 'concurrent get' && !text.includes(w.payrollFilename)) problems.push(`${w.name} get did not show its own document: ${text.slice(0, 200)}`);
      if (s.attack === 'concurrent search' && !text.toLowerCase().includes(`${w.name}-secret`) && !text.toLowerCase().includes(`${w.name}-payroll`)) problems.push(`${w.name} search did not find its own text: ${text.slice(0, 200)}`);
      if (s.attack === 'concurrent me' && r.body.tenant?.id !== w.t.id) problems.push(`${w.name} /me answered for tenant ${r.body.tenant?.id}`);
    });
    expect(product.deps.pool.totalCount).toBeLessThanOrEqual(2);
    // Every upload landed in its own tenant only.
    for (const w of [acme, globex]) {
      const list = await http().get('/v1/documents?limit=100').set(w.owner.auth);
      const names = (list.body.items as { filename: string }[]).map((d) => d.filename);
      for (const u of uploads) {
        const present = names.includes(u.filename);
        if (u.tenant === w.name && !present) problems.push(`${w.name}'s concurrent upload ${u.filename} is missing`);
        if (u.tenant !== w.name && present) problems.push(`${u.tenant}'s concurrent upload ${u.filename} shows in ${w.name}'s list`);
      }
    }
    counter.assertClean();
    expect(problems).toEqual([]);
  });

  // ------------------------------------------------------------------------------------------
  it('after all attacks: nothing crashed, nothing is half written, every listing is clean', async () => {
    const problems: string[] = [];
    const ready = await http().get('/ready');
    if (ready.status !== 200) problems.push(`/ready: ${ready.status} ${ready.text}`);
    if (counter.leaksIn(null, ready.text).length) problems.push(`/ready shows tenant data: ${ready.text}`);
    for (const path of ['/health', '/metrics', '/openapi.json']) {
      await counter.attack({ route: `GET ${path}`, attack: 'public endpoint after the attacks', as: null, expect: 200, successType: /./, send: () => http().get(path) });
    }
    const dead = await product.deps.pool.query('SELECT stream_id, type, reason FROM platform.dead_letters');
    if (dead.rowCount) problems.push(`dead letters: ${JSON.stringify(dead.rows)}`);
    const events = await product.deps.pool.query<{ stream_id: string; tenant: string | null; type: string }>(`SELECT stream_id, metadata->>'tenantId' AS tenant, type FROM es.events`);
    for (const e of events.rows) {
      const { tenantId } = parseStreamId(e.stream_id);
      if (tenantId !== null && tenantId !== e.tenant) problems.push(`event ${e.type} on ${e.stream_id} carries tenant ${e.tenant}`);
    }
    for (const w of [acme, globex]) {
      // Every document reaches a final state; none failed; the setup documents are untouched.
      // (Hundreds of uploads indexed through a pool of two connections: minutes on a loaded CI machine.)
      const deadline = Date.now() + 150_000;
      let items: { id: string; filename: string; status: string; error: string | null; sha256: string; version: number }[] = [];
      for (;;) {
        items = [];
        let cursor: string | null = null;
        do {
          const q: string = cursor ? `&cursor=${cursor}` : '';
          const page = await counter.attack({ route: 'GET /v1/documents', attack: 'full listing after the attacks', as: w.name, expect: 200, send: () => http().get(`/v1/documents?limit=100${q}`).set(w.owner.auth) });
          items.push(...page.body.items);
          cursor = page.body.next_cursor;
        } while (cursor);
        if (!items.some((d) => d.status === 'pending') || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const d of items) {
        if (d.status !== 'ready') problems.push(`${w.name}'s ${JSON.stringify(d.filename)} is ${d.status} ${d.error ?? ''}`);
      }
      for (const [id, d] of Object.entries(w.setupDocs)) {
        const now = items.find((x) => x.id === id);
        if (!now || now.sha256 !== d.sha256 || now.version !== d.version) problems.push(`${w.name}'s setup document ${id} changed`);
      }
      await counter.attack({ route: 'GET /v1/users', attack: 'full listing after the attacks', as: w.name, expect: 200, send: () => http().get('/v1/users').set(w.owner.auth) });
      await counter.attack({ route: 'GET /v1/api-tokens', attack: 'full listing after the attacks', as: w.name, expect: 200, send: () => http().get('/v1/api-tokens').set(w.owner.auth) });
      await counter.attack({ route: 'POST /v1/search', attack: 'broad search after the attacks', as: w.name, expect: 200, send: () => http().post('/v1/search').set(w.owner.auth).send({ query: 'vault code payroll salary warehouse badges drop table select tenant', top_k: 50 }) });
      if ((await http().get('/v1/me').set(bearer(w.apiToken.token))).status !== 200) problems.push(`${w.name}'s API token no longer works`);
    }
    counter.assertClean();
    expect(problems).toEqual([]);
  }, 360_000); // two listings, each waited for up to 150 s

  it('leaked nothing', () => {
    expect(counter.outcomes.length).toBeGreaterThan(1000);
    expect(counter.outcomes.filter((o) => o.leaked.length > 0).map((o) => `${o.route} ${o.attack}: ${o.leaked.join(', ')}`)).toEqual([]);
  });
});
}
