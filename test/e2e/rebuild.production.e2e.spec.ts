import request from 'supertest';
import { parseStreamId, tenantSchema } from '../../contracts/naming';
import { decodePosition, encodePosition } from '../../infra/eventstore/postgres';
import { analyticsProjection } from '../../projections/analytics/analyticsProjection';
import { rebuildTenant, type TenantRebuildProgress } from '../../projections/tenantRebuild';
import type { RebuildProgress } from '../../projections/rebuild';
import { START, type GlobalPosition } from '../../services/core/eventStore';
import type { Product } from '../../services/product';
import { appendActivity as appendActivityTo } from '../support/activity';
import { eventually } from '../support/eventually';
import { lastCommittedPosition } from '../support/settle';
import { runReplay } from '../support/replayCli';
import { ADMIN, provisionTenant, startTestProduct, type TestTenant, waitUntilIndexed } from '../support/product';
import { productionAvailability, productionServers } from '../support/servers';
import { describeSkipped } from '../support/skip';

/**
 * Online rebuilds (README "Audit, replay, usage, metrics") on the production profile: the
 * projections are Kafka consumer groups that checkpoint per (category, tenant), so a tenant's
 * rebuild takes its frontier from those keyed checkpoints, and a whole rebuild switches to a new
 * consumer group that continues from the rebuild's checkpoints.
 */
const TITLE = 'rebuilding projections on the production profile (Kafka consumer groups, keyed checkpoints)';
const availability = productionAvailability();

const op = { Authorization: `Bearer ${ADMIN}` };
/** Every wait of this suite is bounded by this. */
const WAIT_MS = 60_000;
/** Stream categories each rebuildable projection consumes (its Kafka topics). */
const CATEGORIES: Record<string, string[]> = {
  audit: ['tenant', 'security', 'document', 'activity'],
  analytics: ['tenant', 'document', 'activity'],
};

if ('skip' in availability) {
  describeSkipped(TITLE, availability.skip);
} else {
  describe(TITLE, () => {
    let product: Product;
    let stopServers: () => Promise<void>;
    let a: TestTenant;
    let b: TestTenant;

    const versionOf = (name: string) => product.deps.manager.version(name)!;
    const auditChecksum = async (t: TestTenant, rows?: number) =>
      (
        await product.deps.pool.query<{ c: string; n: string }>(
          `SELECT md5(string_agg(event_id::text || hash || prev_hash || type || actor || coalesce(subject, '') || details::text, ',' ORDER BY seq)) AS c, count(*) AS n
           FROM (SELECT * FROM ${tenantSchema(t.id)}.audit_log_v${versionOf('audit')} ORDER BY seq LIMIT $1) first`,
          [rows ?? null],
        )
      ).rows[0]!;
    /** Checksum of a tenant's audit rows without the chain (order and hashes): of those with `ids` when given. */
    const auditContent = async (t: TestTenant, ids?: string[]) => {
      const r = await product.deps.pool.query<{ c: string; n: string; ids: string[] }>(
        `SELECT md5(string_agg(event_id::text || position || occurred_at::text || type || actor || coalesce(subject, '') || coalesce(correlation_id, '') || result || details::text, ',' ORDER BY event_id)) AS c,
                count(*) AS n, array_agg(event_id::text ORDER BY event_id) AS ids
         FROM ${tenantSchema(t.id)}.audit_log_v${versionOf('audit')} WHERE $1::uuid[] IS NULL OR event_id = ANY($1::uuid[])`,
        [ids ?? null],
      );
      return r.rows[0]!;
    };
    /** Whether the live projection chained the tenant's rows in the store's order. */
    const chainedInStoreOrder = async (t: TestTenant) =>
      (
        await product.deps.pool.query<{ ok: boolean }>(
          `SELECT coalesce(bool_and(position > prev), true) AS ok FROM (SELECT position, lag(position, 1, '') OVER (ORDER BY seq) AS prev FROM ${tenantSchema(t.id)}.audit_log_v${versionOf('audit')}) x`,
        )
      ).rows[0]!.ok;
    const appendActivity = (t: TestTenant, stream: string, count: number) => appendActivityTo(product.deps.store, t.id, stream, count);
    /** The store's events of the given tenants in the given categories: count and last position per (category, tenant). */
    const storeEvents = async (categories: string[], tenants: string[]) => {
      const last = new Map<string, GlobalPosition>();
      const count = new Map<string, number>();
      const list: { eventId: string; type: string; position: GlobalPosition; streamId: string }[] = [];
      // Every committed event, read past the xid fence: readAll stops short of transactions still
      // open anywhere on the server (other suites run beside this one), and a head read short
      // would let caughtUp() pass before the projections have seen what this suite appended.
      const schema = (product.deps.store as { schema?: string }).schema;
      const r = await product.deps.pool.query<{ event_id: string; type: string; stream_id: string; xid: string; gp: string }>(
        `SELECT event_id, type, stream_id, transaction_id::text AS xid, global_position::text AS gp FROM ${schema}.events ORDER BY transaction_id, global_position`,
      );
      for (const e of r.rows) {
        const s = parseStreamId(e.stream_id);
        if (!s.tenantId || !tenants.includes(s.tenantId) || !categories.includes(s.category)) continue;
        const position = encodePosition(e.xid, e.gp);
        last.set(`${s.category}/${s.tenantId}`, position);
        count.set(s.tenantId, (count.get(s.tenantId) ?? 0) + 1);
        list.push({ eventId: e.event_id, type: e.type, position, streamId: e.stream_id });
      }
      return { last, count, list };
    };
    /** Waits until the live consumer group of `name` has committed every event of both tenants now in the store (its keyed checkpoints). */
    const caughtUp = async (name: string) => {
      await product.deps.activity.flush(); // searches are recorded off the request path, every 250 ms
      const snapshot = await storeEvents(CATEGORIES[name]!, [a.id, b.id]);
      const { last } = snapshot;
      const base = `proj.${name}.v${versionOf(name)}`;
      await eventually(
        async () => {
          const r = await product.deps.pool.query<{ projection: string; position: string }>('SELECT projection, position FROM platform.checkpoints WHERE projection LIKE $1', [`${base}/%`]);
          const at = new Map(r.rows.map((x) => [x.projection.slice(base.length + 1), x.position]));
          return [...last].filter(([k, p]) => (at.get(k) ?? START) < p).map(([k]) => k);
        },
        (behind) => behind.length === 0,
        WAIT_MS,
      );
      return snapshot;
    };
    const projectionInfo = async (name: string) => (await request(product.app).get('/v1/admin/projections').set(op)).body.items.find((p: { name: string }) => p.name === name);
    const usage = async (t: TestTenant) => {
      const r = await request(product.app).get('/v1/usage').set(t.auth);
      return { status: r.status, days: (r.body.days ?? []) as Record<string, number | string>[] };
    };
    /**
     * A tenant's usage over the days shown: counters summed over the days (a run across midnight
     * UTC splits them over two rows), the `*_stored` totals of the newest day.
     */
    const today = (days: Record<string, number | string>[]) => {
      const out: Record<string, number | string> = {};
      for (const d of days) for (const [k, v] of Object.entries(d)) out[k] = typeof v === 'number' && !k.endsWith('_stored') ? Number(out[k] ?? 0) + v : v;
      return out;
    };
    const upload = async (t: TestTenant, filename: string, text: string) => {
      const up = await request(product.app).post('/v1/documents').set(t.auth).send({ filename, text });
      expect(up.status).toBe(202);
      return up.body.id as string;
    };

    /**
     * Reads both tenants in a loop while a rebuild runs (started by `start`), until `finished`
     * says it is over; every read must answer 200 with rows. `during` runs once, beside the reads.
     */
    async function readWhileRebuilding<P extends RebuildProgress>(
      name: string,
      read: (t: TestTenant) => Promise<{ status: number; rows: number }>,
      finished: (info: { version: number; state: string; rebuild: P | null }) => boolean,
      during: () => Promise<void>,
    ) {
      let reads = 0;
      let readsDuring = 0;
      const states = new Set<string>();
      let extra: Promise<void> | undefined;
      let duringError: unknown;
      const deadline = Date.now() + WAIT_MS;
      let info: { version: number; state: string; rebuild: P | null };
      for (;;) {
        for (const t of [a, b]) {
          const r = await read(t);
          expect({ tenant: t.slug, status: r.status }).toEqual({ tenant: t.slug, status: 200 });
          expect(r.rows).toBeGreaterThan(0);
          reads++;
        }
        extra ??= during().catch((err) => {
          duringError = err;
        });
        info = await projectionInfo(name);
        states.add(info.state);
        if (info.rebuild?.state === 'failed') throw new Error(`the rebuild of ${name} failed: ${info.rebuild.error}`);
        if (finished(info)) break;
        readsDuring += 2; // both reads above answered while the rebuild was still running
        if (Date.now() > deadline) throw new Error(`the rebuild of ${name} did not finish in ${WAIT_MS} ms: ${JSON.stringify(info)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await extra;
      if (duringError) throw duringError;
      return { reads, readsDuring, states: [...states], info };
    }

    beforeAll(async () => {
      const servers = await productionServers(availability.source);
      stopServers = servers.stop;
      product = await startTestProduct(servers.env);
      const ready = await request(product.app).get('/ready');
      expect(ready.body.checks.bus.adapter).toBe('kafka');
      expect(ready.body.checks.relay.adapter).toBe('kafka relay (active)');
      a = await provisionTenant(product, 'rebuilt');
      b = await provisionTenant(product, 'bystander');
      for (const [t, text] of [
        [a, 'The lighthouse keeper logs the tide at dawn.'],
        [b, 'The orchard grows twelve kinds of apples.'],
      ] as const) {
        await waitUntilIndexed(product, t, await upload(t, 'notes.md', text), WAIT_MS);
      }
      for (let i = 0; i < 8; i++) await request(product.app).post('/v1/search').set(a.auth).send({ query: `tide ${i}` }).expect(200);
      for (let i = 0; i < 3; i++) await request(product.app).post('/v1/search').set(b.auth).send({ query: `apples ${i}` }).expect(200);
      // Logins (security topic, which analytics does not consume), one of them failed.
      await request(product.app).post('/v1/auth/login').send({ tenant: a.slug, email: 'owner@rebuilt.test', password: 'correct horse battery staple' }).expect(200);
      await request(product.app).post('/v1/auth/login').send({ tenant: a.slug, email: 'owner@rebuilt.test', password: 'wrong password!!' }).expect(401);
      await request(product.app).post('/v1/auth/login').send({ tenant: b.slug, email: 'owner@bystander.test', password: 'correct horse battery staple' }).expect(200);
      // Volume, so the rebuilds take a while: activity of both tenants, interleaved in the log.
      for (let round = 0; round < 4; round++) for (const t of [a, b]) await appendActivity(t, `bulk-${round}`, 150);
      await caughtUp('audit');
      await caughtUp('analytics');
    }, 180_000);
    afterAll(async () => {
      await product?.stop();
      await stopServers?.();
    });

    it('repairs one tenant\'s altered audit log from its keyed Kafka checkpoints while both tenants keep reading and it keeps writing', async () => {
      expect(await projectionInfo('audit')).toMatchObject({ source: 'kafka', state: 'live' });
      const version = versionOf('audit');
      const schema = tenantSchema(a.id);
      const beforeA = await auditChecksum(a);
      const beforeB = await auditChecksum(b);
      const contentBeforeA = await auditContent(a);
      const inStoreOrder = await chainedInStoreOrder(a);
      expect(Number(beforeA.n)).toBeGreaterThan(600);
      // Behind the product's back: one row altered, one removed.
      const seqs = (await product.deps.pool.query<{ seq: string }>(`SELECT seq FROM ${schema}.audit_log_v${version} ORDER BY seq LIMIT 2 OFFSET 3`)).rows.map((r) => r.seq);
      await product.deps.pool.query(`UPDATE ${schema}.audit_log_v${version} SET actor = 'user:someone-else' WHERE seq = $1`, [seqs[0]]);
      await product.deps.pool.query(`DELETE FROM ${schema}.audit_log_v${version} WHERE seq = $1`, [seqs[1]]);
      expect((await request(product.app).get('/v1/audit/verify').set(a.auth)).body.intact).toBe(false);

      const start = await request(product.app).post('/v1/admin/projections/audit/rebuild').set(op).send({ tenant: a.slug });
      expect(start.status).toBe(202);
      expect(start.body).toMatchObject({ name: 'audit', version, tenant: a.slug, state: 'rebuilding' });
      const uploaded: string[] = [];
      const run = await readWhileRebuilding<TenantRebuildProgress>(
        'audit',
        async (t) => {
          const r = await request(product.app).get('/v1/audit?limit=5').set(t.auth);
          return { status: r.status, rows: r.body.items?.length ?? 0 };
        },
        (info) => info.rebuild?.tenant === a.slug && info.rebuild.state === 'switched',
        // The rebuilt tenant keeps writing (its live rows are swapped under these writes), the other one too.
        async () => {
          for (let i = 0; i < 3; i++) {
            uploaded.push(await upload(a, `during-${i}.md`, `Entry ${i}: the tide turned at ${i + 5} o'clock.`));
            await appendActivity(a, `during-${i}`, 40);
          }
          await request(product.app).post('/v1/search').set(b.auth).send({ query: 'orchard' }).expect(200);
        },
      );
      expect(run.readsDuring).toBeGreaterThan(0);
      expect(run.states.filter((s) => s !== 'live' && s !== 'catching_up')).toEqual([]); // live for everyone throughout
      expect(run.info.rebuild).toMatchObject({ tenant: a.slug, version, state: 'switched', error: null });
      const { count } = await storeEvents(CATEGORIES.audit!, [a.id, b.id]);
      expect(run.info.rebuild!.done).toBeGreaterThan(0);
      expect(run.info.rebuild!.done).toBeLessThanOrEqual(count.get(a.id)!); // only this tenant's events

      // Repaired: the chain verifies, and the rows up to the damage are the ones from before it.
      expect((await request(product.app).get('/v1/audit/verify').set(a.auth)).body).toMatchObject({ intact: true, broken_at: null });
      // Every row from before the damage is back, as it was. The live consumer chains a tenant's
      // events in delivery order, which across topics may differ from the store's order (e.g. a
      // login chained before the tenant's provisioning); the rebuild chains them in store order.
      // So the chain's hashes are those from before whenever the live chain was in store order.
      expect(await auditContent(a, contentBeforeA.ids)).toEqual(contentBeforeA);
      if (inStoreOrder) expect(await auditChecksum(a, Number(beforeA.n))).toEqual(beforeA);
      expect(await auditChecksum(b, Number(beforeB.n))).toEqual(beforeB);
      expect((await request(product.app).get('/v1/audit/verify').set(b.auth)).body.intact).toBe(true);
      // The scratch copy and its checkpoints are gone.
      expect((await product.deps.pool.query('SELECT to_regclass($1) AS t', [`${schema}.audit_log_v0`])).rows[0].t).toBeNull();
      expect((await product.deps.pool.query(`SELECT count(*)::int AS n FROM platform.checkpoints WHERE projection LIKE 'proj.audit.v0%'`)).rows[0].n).toBe(0);

      // What A wrote during the rebuild is there exactly once, and the live projection goes on chaining.
      for (const id of uploaded) await waitUntilIndexed(product, a, id, WAIT_MS);
      await request(product.app).post('/v1/search').set(a.auth).send({ query: 'after the repair' }).expect(200);
      const projected = await caughtUp('audit');
      // Every event of A in the store (as of now, all projected) has its row, once.
      const rows = new Set((await product.deps.pool.query<{ id: string }>(`SELECT event_id::text AS id FROM ${schema}.audit_log_v${version}`)).rows.map((r) => r.id));
      const ofA = projected.list.filter((e) => e.streamId.includes(a.id));
      expect(ofA.filter((e) => !rows.has(e.eventId))).toEqual([]);
      const verify = await request(product.app).get('/v1/audit/verify').set(a.auth);
      expect(verify.body.intact).toBe(true);
      expect(verify.body.entries).toBeGreaterThanOrEqual(ofA.length); // the indexer may have appended since
      const dups = await product.deps.pool.query(`SELECT event_id FROM ${schema}.audit_log_v${version} GROUP BY event_id HAVING count(*) > 1`);
      expect(dups.rowCount).toBe(0);
      expect((await request(product.app).get('/v1/audit/verify').set(b.auth)).body).toMatchObject({ intact: true, entries: projected.count.get(b.id) });
    }, 120_000);

    it('rebuilds the whole analytics projection into a new consumer group and switches, usage unchanged but for what happened meanwhile', async () => {
      await caughtUp('analytics');
      const version = versionOf('analytics');
      const beforeA = await usage(a);
      const beforeB = await usage(b);
      expect(today(beforeA.days).searches).toBeGreaterThan(0);

      const start = await request(product.app).post('/v1/admin/projections/analytics/rebuild').set(op).send({});
      expect(start.status).toBe(202);
      expect(start.body).toMatchObject({ name: 'analytics', version: version + 1, state: 'rebuilding' });
      const text = 'Meanwhile: the keeper repainted the lamp room.';
      let meanwhileDoc = '';
      const run = await readWhileRebuilding<RebuildProgress>(
        'analytics',
        async (t) => {
          const r = await usage(t);
          return { status: r.status, rows: r.days.length };
        },
        (info) => info.version === version + 1 && info.rebuild?.state === 'switched',
        async () => {
          meanwhileDoc = await upload(a, 'meanwhile.md', text);
          await request(product.app).post('/v1/search').set(b.auth).send({ query: 'twelve kinds' }).expect(200);
          // The newest event is a login: a topic analytics does not consume.
          await request(product.app).post('/v1/auth/login').send({ tenant: b.slug, email: 'owner@bystander.test', password: 'correct horse battery staple' }).expect(200);
        },
      );
      expect(run.readsDuring).toBeGreaterThan(0);
      expect(run.info).toMatchObject({ version: version + 1, source: 'kafka', rebuild: { state: 'switched', error: null } });
      const doc = await waitUntilIndexed(product, a, meanwhileDoc, WAIT_MS);
      await caughtUp('analytics');

      // Reads now come from the new version; they equal what they were plus what happened meanwhile
      // (the indexer may append DocumentIndexed just after the document reads as ready: waited for).
      const was = today(beforeA.days) as Record<string, number>;
      const chunks = Number(doc.chunk_count);
      expect(chunks).toBeGreaterThan(0);
      const afterA = today((await eventually(() => usage(a), (u) => today(u.days).chunks_indexed === was.chunks_indexed! + chunks, WAIT_MS)).days);
      const afterB = today((await usage(b)).days);
      expect(afterA).toEqual({
        ...was,
        documents_uploaded: was.documents_uploaded! + 1,
        documents_stored: was.documents_stored! + 1,
        bytes_uploaded: was.bytes_uploaded! + Buffer.byteLength(text),
        bytes_stored: was.bytes_stored! + Buffer.byteLength(text),
        chunks_indexed: was.chunks_indexed! + chunks,
        chunks_stored: was.chunks_stored! + chunks,
      });
      expect(afterB).toEqual({ ...today(beforeB.days), searches: (today(beforeB.days).searches as number) + 1 });
      // The new consumer group keeps projecting after the switch.
      await request(product.app).post('/v1/search').set(b.auth).send({ query: 'after the switch' }).expect(200);
      await eventually(async () => today((await usage(b)).days).searches, (n) => n === (today(beforeB.days).searches as number) + 2, WAIT_MS);
      expect(await projectionInfo('analytics')).toMatchObject({ version: version + 1, source: 'kafka', state: 'live' });
    }, 120_000);

    it('switches a whole rebuild as soon as it has caught up, also when the newest event is on a topic it does not consume', async () => {
      // A quiet product whose newest event is a login (security topic, not consumed by analytics):
      // the new consumer group can never deliver it, yet it has caught up with everything it consumes.
      await caughtUp('analytics');
      // Earlier searches' activity records are buffered (ACTIVITY_FLUSH_MS): out before the login.
      await product.deps.activity.flush();
      await request(product.app).post('/v1/auth/login').send({ tenant: a.slug, email: 'owner@rebuilt.test', password: 'correct horse battery staple' }).expect(200);
      // Read past the xid fence: a fenced head stops short while other suites hold transactions open.
      const head = await lastCommittedPosition(product);
      const [xid, gp] = decodePosition(head);
      const newest = await product.deps.pool.query<{ stream_id: string }>(
        `SELECT stream_id FROM ${(product.deps.store as { schema?: string }).schema}.events WHERE transaction_id = $1::xid8 AND global_position = $2`,
        [xid, gp],
      );
      expect(parseStreamId(newest.rows[0]!.stream_id).category).toBe('security');
      const version = versionOf('analytics');
      const beforeA = await usage(a);
      const beforeB = await usage(b);
      const start = await request(product.app).post('/v1/admin/projections/analytics/rebuild').set(op).send({});
      expect(start.status).toBe(202);
      // Switched, not failed: before the fix it waited out its 60 s catch-up timeout and failed.
      const info = await eventually(
        () => projectionInfo('analytics'),
        // Until the rebuild is over: reads move to the new version a moment before it reports 'switched'.
        (i) => i.rebuild?.state !== 'rebuilding',
        WAIT_MS,
      );
      expect(info).toMatchObject({ version: version + 1, source: 'kafka', rebuild: { state: 'switched', error: null } });
      expect(await lastCommittedPosition(product)).toBe(head); // nothing was written meanwhile
      // The switch waits on the store's fenced head; compare once the new group has every event.
      await caughtUp('analytics');
      expect(await usage(a)).toEqual(beforeA);
      expect(await usage(b)).toEqual(beforeB);
    }, 90_000);

    it('does not hold a tenant\'s rebuild back on its events of a topic the live consumer group never receives', async () => {
      // Analytics does not consume the security topic, so the live group never checkpoints A's
      // logins: they must not count as "not applied yet" (that pinned the rebuild's cursor at A's
      // first login, and the switch re-read the whole log from there while holding the locks).
      await caughtUp('analytics');
      const version = versionOf('analytics');
      const beforeA = await usage(a);
      const inStore = (await storeEvents(['tenant', 'security', 'document', 'activity', 'slug'], [a.id, b.id])).count;
      // Every committed event, counted past the xid fence (a fenced read stops short while other suites hold transactions open).
      const total = Number((await product.deps.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${(product.deps.store as { schema?: string }).schema}.events`)).rows[0]!.n);
      let read = 0;
      const store = product.deps.store;
      const counting = new Proxy(store, {
        get(target, key) {
          if (key === 'readAll') return async (o: Parameters<typeof store.readAll>[0]) => {
            const events = await target.readAll(o);
            read += events.length;
            return events;
          };
          const v = Reflect.get(target, key);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      await product.deps.pool.query(`UPDATE analytics.usage_daily_v${version} SET searches = 999 WHERE tenant_id = $1`, [a.id]);
      const done = await rebuildTenant({ store: counting, pool: product.deps.pool, make: analyticsProjection, name: 'analytics', liveVersion: version, source: 'kafka', tenantId: a.id, slug: a.slug });
      expect(done).toMatchObject({ state: 'switched', error: null });
      expect(done.total).toBe(done.done); // progress counts the events it can apply: it ends at 100%
      expect(done.done).toBeLessThan(inStore.get(a.id)!);
      expect(read).toBeLessThan(total * 1.5); // one pass over the log, not a second one under the locks
      expect(await usage(a)).toEqual(beforeA);
    }, 60_000);

    describe('npm run replay -- analytics --tenant <slug>', () => {
      it('repairs that tenant\'s usage counters on Kafka through the running product', async () => {
        await caughtUp('analytics');
        const version = versionOf('analytics');
        const beforeA = await usage(a);
        const beforeB = await usage(b);
        await product.deps.pool.query(`UPDATE analytics.usage_daily_v${version} SET searches = 999, bytes_stored = 1 WHERE tenant_id = $1`, [a.id]);
        expect(today((await usage(a)).days).searches).toBe(999);
        const out = await runReplay(product, ['analytics', '--tenant', a.slug], WAIT_MS);
        expect(out.stderr).toBe('');
        expect(out.code).toBe(0);
        expect(out.stdout).toContain('switched');
        expect(await usage(a)).toEqual(beforeA);
        expect(await usage(b)).toEqual(beforeB);
      }, 90_000);
    });
  });
}
