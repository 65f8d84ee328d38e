/**
 * Roles within one tenant: viewers read, search and ask; members also upload and delete their
 * own documents; admins also manage users and API tokens and delete any document; owners manage
 * the tenant (owners included). Every refusal is 403 problem+json; tenant roles never act as the
 * operator. The role of a user is read from the platform read model, not from the token, so a
 * demotion or a removal bites within a second.
 */
import type { Server } from 'node:http';
import request, { type Response } from 'supertest';
import type { Product } from '../../services/product';
import { provisionTenant, startTestProduct, type TestTenant } from '../support/product';
import { type AttackSpec, LeakCounter } from './leakCounter';

type Role = 'owner' | 'admin' | 'member' | 'viewer';
const ROLES: Role[] = ['viewer', 'member', 'admin', 'owner'];
const PASSWORD = 'correct horse battery staple';
type Headers = Record<string, string>;

interface Actor {
  role: Role;
  id: string;
  auth: Headers;
}

/** What each role must get, per action (one fresh target per role where the action mutates). */
interface Targets {
  ownDoc: string | null;
  othersDoc: string;
  viewerUser: string;
  ownerUser: string;
  token: string;
}

describe('roles: what viewers, members, admins and owners may do', () => {
  const counter = new LeakCounter('roles');
  let product: Product;
  let server: Server;
  let t: TestTenant;
  let other: TestTenant;
  const actors = {} as Record<Role, Actor>;
  const targets = {} as Record<Role, Targets>;
  let member2: Actor;
  let sharedDoc: string;
  let otherDoc: string;
  const http = () => request(server);

  async function must(res: PromiseLike<Response>, status: number, what: string): Promise<Response> {
    const r = await res;
    if (r.status !== status) throw new Error(`${what}: ${r.status} ${r.text}`);
    return r;
  }

  async function addUser(role: Role, email: string, by: Headers = t.auth): Promise<string> {
    return (await must(http().post('/v1/users').set(by).send({ email, password: PASSWORD, role }), 201, `add ${role} ${email}`)).body.id;
  }

  async function loginAs(role: Role, email: string, id: string): Promise<Actor> {
    const r = await must(http().post('/v1/auth/login').send({ tenant: t.slug, email, password: PASSWORD }), 200, `login ${email}`);
    return { role, id, auth: { Authorization: `Bearer ${r.body.access_token}` } };
  }

  async function upload(by: Headers, filename: string): Promise<string> {
    return (await must(http().post('/v1/documents').set(by).send({ filename, text: `The ${filename} note says the ROLES-MARKER-4c1d is kept here.` }), 202, `upload ${filename}`)).body.id;
  }

  beforeAll(async () => {
    product = await startTestProduct({ RATE_LIMIT_PER_SECOND: '100000', RATE_LIMIT_BURST: '1000000' });
    server = await product.listen(0, '127.0.0.1');
    t = await provisionTenant(product, 'roles');
    other = await provisionTenant(product, 'rolesother');
    // The other tenant's secrets must never show in any answer of this suite.
    otherDoc = (await must(http().post('/v1/documents').set(other.auth).send({ filename: 'other.md', text: 'OTHER-TENANT-SECRET-0b7e lives here.' }), 202, 'other upload')).body.id;
    await must(http().post('/v1/users').set(other.auth).send({ email: 'other-admin-9d3f@other.test', password: PASSWORD, role: 'admin' }), 201, 'other user');
    counter.addMarkers('other', 'OTHER-TENANT-SECRET-0b7e', 'other-admin-9d3f@other.test');

    const ownerId = (await must(http().get('/v1/me').set(t.auth), 200, 'me')).body.actor.replace('user:', '');
    actors.owner = { role: 'owner', id: ownerId, auth: t.auth };
    // Commands on the tenant's stream, one after the other (concurrent ones would be re-decided by the handler).
    for (const role of ['viewer', 'member', 'admin'] as Role[]) {
      const email = `${role}@roles.test`;
      actors[role] = await loginAs(role, email, await addUser(role, email));
    }
    member2 = await loginAs('member', 'member2@roles.test', await addUser('member', 'member2@roles.test'));
    sharedDoc = await upload(t.auth, 'shared.md');
    for (const role of ROLES) {
      const [ownDoc, othersDoc] = await Promise.all([
        role === 'viewer' ? Promise.resolve(null) : upload(actors[role].auth, `own-${role}.md`),
        upload(member2.auth, `others-${role}.md`),
      ]);
      const viewerUser = await addUser('viewer', `target-viewer-${role}@roles.test`);
      const ownerUser = await addUser('owner', `target-owner-${role}@roles.test`);
      const token = (await must(http().post('/v1/api-tokens').set(t.auth).send({ name: `target-${role}`, role: 'viewer' }), 201, 'token')).body.id as string;
      targets[role] = { ownDoc, othersDoc, viewerUser, ownerUser, token };
    }
  }, 60_000);

  afterAll(async () => {
    counter.print();
    await product?.stop();
  });

  it('the role matrix holds for every role and action', async () => {
    type Action = { route: string; name: string; expect: Record<Role, number>; send: (a: Actor, tg: Targets) => request.Test | null };
    const all = (s: number): Record<Role, number> => ({ viewer: s, member: s, admin: s, owner: s });
    const from = (min: Role, ok: number, no = 403): Record<Role, number> => {
      const rank = ROLES.indexOf(min);
      return Object.fromEntries(ROLES.map((r, i) => [r, i >= rank ? ok : no])) as Record<Role, number>;
    };
    const actions: Action[] = [
      { route: 'GET /v1/me', name: 'who am I', expect: all(200), send: (a) => http().get('/v1/me').set(a.auth) },
      { route: 'GET /v1/documents', name: 'list documents', expect: all(200), send: (a) => http().get('/v1/documents').set(a.auth) },
      { route: 'GET /v1/documents/{id}', name: 'read a document', expect: all(200), send: (a) => http().get(`/v1/documents/${sharedDoc}`).set(a.auth) },
      { route: 'POST /v1/search', name: 'search', expect: all(200), send: (a) => http().post('/v1/search').set(a.auth).send({ query: 'note kept here' }) },
      { route: 'POST /v1/ask', name: 'ask', expect: all(200), send: (a) => http().post('/v1/ask').set(a.auth).send({ question: 'What does the note say?' }) },
      { route: 'POST /v1/documents', name: 'upload', expect: from('member', 202), send: (a) => http().post('/v1/documents').set(a.auth).send({ filename: `matrix-${a.role}.md`, text: `Uploaded by the ${a.role}.` }) },
      { route: 'DELETE /v1/documents/{id}', name: 'delete an own document', expect: { viewer: 403, member: 204, admin: 204, owner: 204 }, send: (a, tg) => http().delete(`/v1/documents/${tg.ownDoc ?? sharedDoc}`).set(a.auth) },
      { route: 'DELETE /v1/documents/{id}', name: "delete another member's document", expect: from('admin', 204), send: (a, tg) => http().delete(`/v1/documents/${tg.othersDoc}`).set(a.auth) },
      { route: 'GET /v1/users', name: 'list users', expect: from('admin', 200), send: (a) => http().get('/v1/users').set(a.auth) },
      { route: 'POST /v1/users', name: 'add a viewer', expect: from('admin', 201), send: (a) => http().post('/v1/users').set(a.auth).send({ email: `added-by-${a.role}@roles.test`, password: PASSWORD, role: 'viewer' }) },
      { route: 'POST /v1/users', name: 'add an owner', expect: from('owner', 201), send: (a) => http().post('/v1/users').set(a.auth).send({ email: `owner-by-${a.role}@roles.test`, password: PASSWORD, role: 'owner' }) },
      { route: 'PATCH /v1/users/{id}', name: 'promote a viewer to member', expect: from('admin', 200), send: (a, tg) => http().patch(`/v1/users/${tg.viewerUser}`).set(a.auth).send({ role: 'member' }) },
      { route: 'PATCH /v1/users/{id}', name: 'promote oneself to owner', expect: from('owner', 200), send: (a) => http().patch(`/v1/users/${a.id}`).set(a.auth).send({ role: 'owner' }) },
      { route: 'PATCH /v1/users/{id}', name: 'demote an owner', expect: from('owner', 200), send: (a, tg) => http().patch(`/v1/users/${tg.ownerUser}`).set(a.auth).send({ role: 'admin' }) },
      { route: 'DELETE /v1/users/{id}', name: 'remove a viewer', expect: from('admin', 204), send: (a, tg) => http().delete(`/v1/users/${tg.viewerUser}`).set(a.auth) },
      { route: 'DELETE /v1/users/{id}', name: 'remove an owner', expect: from('owner', 204), send: (a, tg) => http().delete(`/v1/users/${tg.ownerUser}`).set(a.auth) },
      { route: 'GET /v1/api-tokens', name: 'list API tokens', expect: from('admin', 200), send: (a) => http().get('/v1/api-tokens').set(a.auth) },
      { route: 'POST /v1/api-tokens', name: 'issue a viewer token', expect: from('admin', 201), send: (a) => http().post('/v1/api-tokens').set(a.auth).send({ name: `by-${a.role}`, role: 'viewer' }) },
      { route: 'POST /v1/api-tokens', name: 'issue an owner token', expect: from('owner', 201), send: (a) => http().post('/v1/api-tokens').set(a.auth).send({ name: `owner-by-${a.role}`, role: 'owner' }) },
      { route: 'DELETE /v1/api-tokens/{id}', name: 'revoke a token', expect: from('admin', 204), send: (a, tg) => http().delete(`/v1/api-tokens/${tg.token}`).set(a.auth) },
      { route: 'GET /v1/tenants', name: 'operator: list tenants', expect: all(401), send: (a) => http().get('/v1/tenants').set(a.auth) },
      { route: 'POST /v1/tenants/{id}/suspend', name: 'operator: suspend the own tenant', expect: all(401), send: (a) => http().post(`/v1/tenants/${t.id}/suspend`).set(a.auth).send({}) },
      { route: 'PATCH /v1/tenants/{id}/limits', name: 'operator: raise the own limits', expect: all(401), send: (a) => http().patch(`/v1/tenants/${t.id}/limits`).set(a.auth).send({ quotas: { max_documents: 10_000_000, max_bytes: 1e13 } }) },
      { route: 'DELETE /v1/tenants/{id}', name: 'operator: delete the own tenant', expect: all(401), send: (a) => http().delete(`/v1/tenants/${t.id}`).set(a.auth) },
      { route: 'GET /v1/documents/{id}', name: "read the other tenant's document", expect: all(404), send: (a) => http().get(`/v1/documents/${otherDoc}`).set(a.auth) },
      { route: 'DELETE /v1/documents/{id}', name: "delete the other tenant's document", expect: { viewer: 403, member: 404, admin: 404, owner: 404 }, send: (a) => http().delete(`/v1/documents/${otherDoc}`).set(a.auth) },
    ];
    const matrix: string[] = [];
    const mismatches: string[] = [];
    // Mutating actions of one role must not disturb another role's targets: run role by role.
    for (const role of ROLES) {
      const a = actors[role];
      const specs: AttackSpec[] = [];
      for (const act of actions) {
        specs.push({ route: act.route, attack: `${role}: ${act.name}`, as: 'roles', expect: act.expect[role], send: () => act.send(a, targets[role])! });
      }
      const res = await counter.all(specs, 1);
      res.forEach((r, i) => {
        const act = actions[i]!;
        matrix.push(`${role.padEnd(6)} ${String(r.status).padEnd(4)} ${act.name}`);
        if (r.status !== act.expect[role]) mismatches.push(`${role} ${act.name}: ${r.status} (expected ${act.expect[role]}) ${r.text.slice(0, 160)}`);
        if (act.name === 'who am I' && r.body.role !== role) mismatches.push(`${role} /v1/me says role ${r.body.role}`);
      });
    }
    console.log(`role matrix (role, status, action):\n${matrix.join('\n')}`);
    counter.assertClean();
    expect(mismatches).toEqual([]);
  });

  it('API tokens carry their role, never more than their issuer', async () => {
    const issue = async (role: Role) => (await must(http().post('/v1/api-tokens').set(t.auth).send({ name: `role-${role}`, role }), 201, `token ${role}`)).body.token as string;
    const tokens = { viewer: await issue('viewer'), member: await issue('member'), admin: await issue('admin') };
    const as = (tok: string) => ({ Authorization: `Bearer ${tok}` });
    const specs: AttackSpec[] = [];
    const add = (route: string, attack: string, expect: number, send: () => request.Test) => specs.push({ route, attack, as: 'roles', expect, send });
    add('POST /v1/search', 'viewer token searches', 200, () => http().post('/v1/search').set(as(tokens.viewer)).send({ query: 'note' }));
    add('POST /v1/documents', 'viewer token uploads', 403, () => http().post('/v1/documents').set(as(tokens.viewer)).send({ filename: 'tok-viewer.md', text: 'x' }));
    add('POST /v1/documents', 'member token uploads', 202, () => http().post('/v1/documents').set(as(tokens.member)).send({ filename: 'tok-member.md', text: 'Uploaded by a member token.' }));
    add('GET /v1/users', 'member token lists users', 403, () => http().get('/v1/users').set(as(tokens.member)));
    add('POST /v1/api-tokens', 'member token issues a token', 403, () => http().post('/v1/api-tokens').set(as(tokens.member)).send({ name: 'x' }));
    add('GET /v1/users', 'admin token lists users', 200, () => http().get('/v1/users').set(as(tokens.admin)));
    add('POST /v1/api-tokens', 'admin token issues an owner token', 403, () => http().post('/v1/api-tokens').set(as(tokens.admin)).send({ name: 'x', role: 'owner' }));
    add('POST /v1/users', 'admin token adds an owner', 403, () => http().post('/v1/users').set(as(tokens.admin)).send({ email: 'tok-owner@roles.test', password: PASSWORD, role: 'owner' }));
    add('POST /v1/api-tokens', 'admin user issues an owner token', 403, () => http().post('/v1/api-tokens').set(actors.admin.auth).send({ name: 'x', role: 'owner' }));
    add('PATCH /v1/users/{id}', "admin changes the owner's role", 403, () => http().patch(`/v1/users/${actors.owner.id}`).set(actors.admin.auth).send({ role: 'viewer' }));
    add('DELETE /v1/users/{id}', 'admin removes the owner', 403, () => http().delete(`/v1/users/${actors.owner.id}`).set(actors.admin.auth));
    await counter.all(specs, 1);
    // A member token deletes the document it uploaded (its own), not a document of a user.
    const mine = await must(http().post('/v1/documents').set(as(tokens.member)).send({ filename: 'tok-member-own.md', text: 'Own document of a member token.' }), 202, 'upload');
    await counter.attack({ route: 'DELETE /v1/documents/{id}', attack: 'member token deletes its own document', as: 'roles', expect: 204, send: () => http().delete(`/v1/documents/${mine.body.id}`).set(as(tokens.member)) });
    await counter.attack({ route: 'DELETE /v1/documents/{id}', attack: "member token deletes a user's document", as: 'roles', expect: 403, send: () => http().delete(`/v1/documents/${sharedDoc}`).set(as(tokens.member)) });
    counter.assertClean();
  });

  it('a tenant keeps at least one owner', async () => {
    const solo = await provisionTenant(product, 'solo');
    const me = (await must(http().get('/v1/me').set(solo.auth), 200, 'me')).body.actor.replace('user:', '');
    await counter.attack({ route: 'PATCH /v1/users/{id}', attack: 'the last owner demotes itself', as: 'solo', expect: 422, send: () => http().patch(`/v1/users/${me}`).set(solo.auth).send({ role: 'admin' }) });
    await counter.attack({ route: 'DELETE /v1/users/{id}', attack: 'the last owner removes itself', as: 'solo', expect: 422, send: () => http().delete(`/v1/users/${me}`).set(solo.auth) });
    counter.assertClean();
  });

  it('a demotion and a removal take effect within a second, whatever the token says', async () => {
    const email = 'demoted@roles.test';
    const demoted = await loginAs('member', email, await addUser('member', email));
    await must(http().post('/v1/documents').set(demoted.auth).send({ filename: 'before-demotion.md', text: 'Uploaded while a member.' }), 202, 'upload as member');
    await must(http().patch(`/v1/users/${demoted.id}`).set(t.auth).send({ role: 'viewer' }), 200, 'demote');
    await new Promise((r) => setTimeout(r, 1100));
    await counter.attack({ route: 'POST /v1/documents', attack: 'demoted member uploads with its old JWT', as: 'roles', expect: 403, send: () => http().post('/v1/documents').set(demoted.auth).send({ filename: 'after-demotion.md', text: 'x' }) });
    const me = await counter.attack({ route: 'GET /v1/me', attack: 'demoted member asks who it is', as: 'roles', expect: 200, send: () => http().get('/v1/me').set(demoted.auth) });
    expect(me.body.role).toBe('viewer');
    await must(http().delete(`/v1/users/${demoted.id}`).set(t.auth), 204, 'remove');
    await new Promise((r) => setTimeout(r, 1100));
    await counter.attack({ route: 'GET /v1/documents', attack: 'removed user reads with its old JWT', as: null, expect: 401, send: () => http().get('/v1/documents').set(demoted.auth) });
    counter.assertClean();
  });

  it('leaked nothing of the other tenant', () => {
    expect(counter.totalLeaks()).toBe(0);
    expect(other.id).not.toBe(t.id);
  });
});
