import request from 'supertest';
import { tenantSchema } from '../../contracts/naming';
import type { TenantRebuildProgress } from '../../projections/tenantRebuild';
import type { Product } from '../../services/product';
import { appendActivity as appendActivityTo } from '../support/activity';
import { eventually } from '../support/eventually';
import { settle } from '../support/settle';
import { runReplay } from '../support/replayCli';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant, waitUntilIndexed } from '../support/product';

const op = { Authorization: `Bearer ${ADMIN}` };
/** This suite's waits span whole rebuilds: 20 s. */
const eventuallyLong = <T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000) => eventually(fn, ok, timeoutMs);

describe('rebuilding one tenant of a live projection (replay --tenant)', () => {
  let product: Product;
  let a: TestTenant;
  let b: TestTenant;

  /** Checksum of the first `rows` entries of a tenant's audit log (all when omitted). */
  const auditChecksum = async (t: TestTenant, rows?: number) =>
    (
      await product.deps.pool.query<{ c: string; n: string }>(
        `SELECT md5(string_agg(event_id::text || hash || prev_hash || type || actor || coalesce(subject, '') || details::text, ',' ORDER BY seq)) AS c, count(*) AS n
         FROM (SELECT * FROM ${tenantSchema(t.id)}.audit_log_v1 ORDER BY seq LIMIT $1) first`,
        [rows ?? null],
      )
    ).rows[0]!;
  const appendActivity = (t: TestTenant, stream: string, count: number) => appendActivityTo(product.deps.store, t.id, stream, count);
  const usageChecksum = async (t: TestTenant) => {
    const parts: string[] = [];
    for (const [table, order] of [['usage_daily_v1', 'day'], ['usage_docs_v1', 'document_id'], ['usage_totals_v1', 'tenant_id']] as const) {
      const r = await product.deps.pool.query<{ c: string | null }>(`SELECT md5(string_agg(row_to_json(u)::text, ',' ORDER BY ${order})) AS c FROM analytics.${table} u WHERE tenant_id = $1`, [t.id]);
      parts.push(r.rows[0]?.c ?? '-');
    }
    return parts.join('/');
  };
  const rebuildOf = async (name: string): Promise<TenantRebuildProgress | null> =>
    (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === name).rebuild;
  /** Reads both tenants in a loop until the rebuild reports `switched`; every read must answer and be non-empty. */
  async function readWhileRebuilding(name: string, slug: string, read: (t: TestTenant) => Promise<{ status: number; rows: number }>, during?: () => Promise<void>) {
    let reads = 0;
    let readsDuring = 0;
    let states = new Set<string>();
    let sawProgress = false;
    const deadline = Date.now() + 30_000;
    let extra: Promise<void> | undefined;
    for (;;) {
      for (const t of [a, b]) {
        const r = await read(t);
        expect(r.status).toBe(200);
        expect(r.rows).toBeGreaterThan(0);
        reads++;
      }
      extra ??= during?.();
      const list = (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === name);
      states.add(list.state);
      const rb = list.rebuild as TenantRebuildProgress | null;
      if (rb?.tenant === slug) {
        sawProgress ||= rb.total !== null && rb.total > 0;
        if (rb.state === 'switched') break;
        expect(rb.state).toBe('rebuilding');
        readsDuring += 2;
      }
      if (Date.now() > deadline) throw new Error('the tenant rebuild did not switch in time');
    }
    await extra;
    states = new Set([...states].filter((s) => s !== 'live' && s !== 'catching_up'));
    return { reads, readsDuring, sawProgress, otherStates: [...states] };
  }

  beforeAll(async () => {
    product = await startTestProduct();
    a = await provisionTenant(product, 'rebuilt');
    b = await provisionTenant(product, 'bystander');
    for (const [t, text] of [
      [a, 'The lighthouse keeper logs the tide at dawn.'],
      [b, 'The orchard grows twelve kinds of apples.'],
    ] as const) {
      const up = await request(product.app).post('/v1/documents').set(t.auth).send({ filename: 'notes.md', text });
      await waitUntilIndexed(product, t, up.body.id);
    }
    for (let i = 0; i < 15; i++) await request(product.app).post('/v1/search').set(a.auth).send({ query: `tide ${i}` }).expect(200);
    await request(product.app).post('/v1/search').set(b.auth).send({ query: 'apples' }).expect(200);
    // Volume, so the rebuilds take a while: activity of both tenants, interleaved in the log.
    for (let round = 0; round < 6; round++) for (const t of [a, b]) await appendActivity(t, `bulk-${round}`, 250);
    // Everything above (the searches' buffered activity records too) is in both read models
    // before the tests look at them.
    await settle(product, ['audit', 'analytics']);
  });
  afterAll(async () => {
    await product?.stop();
  });

  it('repairs a tenant\'s altered audit log from the event store while both tenants keep reading, and leaves the other tenant alone', async () => {
    const schema = tenantSchema(a.id);
    const beforeA = await auditChecksum(a);
    const beforeB = await auditChecksum(b);
    const maxSeqB = Number((await product.deps.pool.query<{ m: string }>(`SELECT max(seq) AS m FROM ${tenantSchema(b.id)}.audit_log_v1`)).rows[0]!.m);
    const writtenDuring = 10 * 20;
    // Behind the product's back: one row altered, one removed.
    const seqs = (await product.deps.pool.query<{ seq: string }>(`SELECT seq FROM ${schema}.audit_log_v1 ORDER BY seq LIMIT 2 OFFSET 3`)).rows.map((r) => r.seq);
    await product.deps.pool.query(`UPDATE ${schema}.audit_log_v1 SET actor = 'user:someone-else' WHERE seq = $1`, [seqs[0]]);
    await product.deps.pool.query(`DELETE FROM ${schema}.audit_log_v1 WHERE seq = $1`, [seqs[1]]);
    expect((await request(product.app).get('/v1/audit/verify').set(a.auth)).body.intact).toBe(false);

    const start = await request(product.app).post('/v1/admin/projections/audit/rebuild').set(op).send({ tenant: a.slug });
    expect(start.status).toBe(202);
    expect(start.body).toMatchObject({ name: 'audit', version: 1, tenant: a.slug, state: 'rebuilding' });
    let searchedB = false;
    const run = await readWhileRebuilding(
      'audit',
      a.slug,
      async (t) => {
        const r = await request(product.app).get('/v1/audit?limit=5').set(t.auth);
        return { status: r.status, rows: r.body.items?.length ?? 0 };
      },
      // The other tenant's projection keeps running: its new event is projected meanwhile; and
      // the rebuilt tenant keeps writing too (its live rows are swapped under these writes).
      async () => {
        await request(product.app).post('/v1/search').set(b.auth).send({ query: 'orchard' }).expect(200);
        searchedB = true;
        for (let i = 0; i < writtenDuring / 20; i++) await appendActivity(a, `during-${i}`, 20);
      },
    );
    expect(run.readsDuring).toBeGreaterThan(0);
    expect(run.sawProgress).toBe(true);
    expect(run.otherStates).toEqual([]); // the projection stayed live (never 'rebuilding' or 'failed')
    expect(searchedB).toBe(true);

    const verify = await request(product.app).get('/v1/audit/verify').set(a.auth);
    expect(verify.body).toMatchObject({ intact: true, broken_at: null });
    expect(await auditChecksum(a, Number(beforeA.n))).toEqual(beforeA);
    expect(await auditChecksum(b, Number(beforeB.n))).toEqual(beforeB);
    // B's search made during the rebuild was projected (newest first).
    await eventuallyLong(
      () => request(product.app).get('/v1/audit?type=SearchPerformed&limit=1').set(b.auth),
      (r) => r.body.items?.[0]?.seq > maxSeqB,
    );
    expect((await request(product.app).get('/v1/audit/verify').set(b.auth)).body.intact).toBe(true);
    // The scratch copy is gone; the live projection goes on appending to the repaired chain.
    expect((await product.deps.pool.query('SELECT to_regclass($1) AS t', [`${schema}.audit_log_v0`])).rows[0].t).toBeNull();
    await request(product.app).post('/v1/search').set(a.auth).send({ query: 'after the repair' }).expect(200);
    await eventuallyLong(
      () => request(product.app).get('/v1/audit/verify').set(a.auth),
      (r) => r.body.entries === Number(beforeA.n) + writtenDuring + 1,
    );
    expect((await request(product.app).get('/v1/audit/verify').set(a.auth)).body.intact).toBe(true);
    const info = await rebuildOf('audit');
    expect(info).toMatchObject({ tenant: a.slug, state: 'switched', error: null });
    expect(info!.done).toBeGreaterThan(1500);
    expect(info!.done).toBeLessThan(2000); // only this tenant's events
  });

  it('repairs a tenant\'s usage counters while both tenants keep reading them', async () => {
    await settle(product, ['analytics']);
    const beforeA = await usageChecksum(a);
    /** B's usage over the days shown: counters summed (a run across midnight UTC adds a day), stored totals of the newest day. */
    const usageB = async () => {
      const days = (await request(product.app).get('/v1/usage').set(b.auth)).body.days as Record<string, number | string>[];
      const out: Record<string, number> = {};
      for (const d of days) for (const [k, v] of Object.entries(d)) if (typeof v === 'number') out[k] = k.endsWith('_stored') ? v : (out[k] ?? 0) + v;
      return out;
    };
    const beforeB = await usageB();
    await product.deps.pool.query(`UPDATE analytics.usage_daily_v1 SET searches = 999, bytes_stored = 1 WHERE tenant_id = $1`, [a.id]);
    await product.deps.pool.query(`UPDATE analytics.usage_totals_v1 SET documents = 42 WHERE tenant_id = $1`, [a.id]);
    expect(await usageChecksum(a)).not.toEqual(beforeA);

    const start = await request(product.app).post('/v1/admin/projections/analytics/rebuild').set(op).send({ tenant: a.slug });
    expect(start.status).toBe(202);
    const run = await readWhileRebuilding(
      'analytics',
      a.slug,
      async (t) => {
        const r = await request(product.app).get('/v1/usage').set(t.auth);
        return { status: r.status, rows: r.body.days?.length ?? 0 };
      },
      async () => {
        await request(product.app).post('/v1/search').set(b.auth).send({ query: 'twelve kinds' }).expect(200);
      },
    );
    expect(run.readsDuring).toBeGreaterThan(0);
    expect(run.otherStates).toEqual([]);
    expect(await usageChecksum(a)).toEqual(beforeA);
    const afterB = await eventuallyLong(usageB, (u) => u.searches === beforeB.searches! + 1);
    expect(afterB).toEqual({ ...beforeB, searches: beforeB.searches! + 1 });
  });

  it('does not swap the rows while a live batch holds what it read of the old ones (it waits, then switches)', async () => {
    // A live audit batch reads the chain's last hash before it inserts; swapping the rows between
    // the two would chain its row to a hash that is no longer there. Emulate that read, held open.
    await settle(product, ['audit']);
    const writer = await product.deps.pool.connect();
    let releasing = false;
    let switchedWhileHeld: boolean | null = null;
    try {
      await writer.query('BEGIN');
      await writer.query(`SELECT hash FROM ${tenantSchema(a.id)}.audit_log_v1 ORDER BY seq DESC LIMIT 1`);
      let caughtUpAt = 0;
      const started = await product.deps.manager.rebuildTenant('audit', { id: a.id, slug: a.slug }, (p) => {
        if (!caughtUpAt && p.total !== null && p.done >= p.total) caughtUpAt = Date.now();
        if (p.state === 'switched' && switchedWhileHeld === null) switchedWhileHeld = !releasing;
      });
      await eventuallyLong(async () => caughtUpAt, (t) => t > 0);
      const entries = (await request(product.app).get('/v1/audit/verify').set(a.auth)).body.entries as number;
      // Written while the switch is held back: the live projection applies them between its attempts,
      // and the attempt that succeeds brings them into the scratch copy under the locks.
      await appendActivity(a, 'while-held', 30);
      await new Promise((r) => setTimeout(r, 1500));
      expect(started.progress.state).toBe('rebuilding');
      expect((await request(product.app).get('/v1/audit?limit=1').set(a.auth)).body.items.length).toBe(1);
      // Set before COMMIT is sent: the rows cannot be swapped while the read is held.
      releasing = true;
      await writer.query('COMMIT');
      const done = await started.done;
      expect(done.state).toBe('switched');
      expect(switchedWhileHeld).toBe(false);
      const after = await eventuallyLong(
        () => request(product.app).get('/v1/audit/verify').set(a.auth),
        (r) => r.body.entries >= entries + 30,
      );
      expect(after.body).toMatchObject({ intact: true, entries: entries + 30 });
    } finally {
      await writer.query('ROLLBACK').catch(() => undefined);
      writer.release();
    }
  });

  it('refuses unknown tenants and projections, invalid bodies, and a second rebuild at once', async () => {
    const post = (name: string, body: unknown) => request(product.app).post(`/v1/admin/projections/${name}/rebuild`).set(op).send(body as object);
    const unknownTenant = await post('audit', { tenant: 'no-such-tenant' });
    expect(unknownTenant.status).toBe(404);
    expect(unknownTenant.headers['content-type']).toMatch(/problem\+json/);
    expect((await post('nope', { tenant: a.slug })).status).toBe(404);
    const invalid = await post('audit', { tenant: 7 });
    expect(invalid.status).toBe(400);
    expect(invalid.headers['content-type']).toMatch(/problem\+json/);
    expect((await post('audit', { tenant: a.slug, extra: true })).status).toBe(400);
    expect((await request(product.app).post('/v1/admin/projections/audit/rebuild').send({ tenant: a.slug })).status).toBe(401);

    const first = await product.deps.manager.rebuildTenant('audit', { id: a.id, slug: a.slug });
    await expect(product.deps.manager.rebuildTenant('audit', { id: b.id, slug: b.slug })).rejects.toMatchObject({ status: 409 });
    await expect(product.deps.manager.rebuild('audit')).rejects.toMatchObject({ status: 409 });
    expect((await first.done).state).toBe('switched');
    expect((await request(product.app).get('/v1/audit/verify').set(a.auth)).body.intact).toBe(true);
  });

  describe('npm run replay -- audit --tenant <slug>', () => {
    it('rebuilds that tenant through the running product and draws the progress bar', async () => {
      const out = await runReplay(product, ['audit', '--tenant', b.slug], 45_000);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      expect(out.stdout).toMatch(new RegExp(`audit \\(tenant ${b.slug}\\) v1 \\[[#.]+\\]\\s+\\d+% \\d+/\\d+ events\\s+\\d+ ev/s\\s+ETA \\d+ s`));
      expect(out.stdout).toContain('switched');
      expect((await request(product.app).get('/v1/audit/verify').set(b.auth)).body.intact).toBe(true);
    }, 60_000);
  });
});
