/**
 * Projection rebuild: every read model re-run from position 0 over a store of N events, into
 * empty read models (a fresh copy of the store's database per run).
 *
 * The store is a scratch database filled with a realistic mix: tenant streams (provisioning,
 * users, tokens), document streams (uploads, indexing outcomes, replacements, deletions),
 * activity streams (searches and questions, the bulk of a live tenant's events) and security
 * streams (logins). Figures, each against the 20,000 events/s target:
 *  - all four projections (platform, catalog, audit, analytics) started together with
 *    `version: 99` (a new checkpoint name, as a version bump does in production) on a fresh
 *    database: the time until all have processed the head position;
 *  - each projection alone from position 0 (sequentially, platform first since the others need
 *    the tenants' schemas), through the same runner;
 *  - the operator's online rebuild (`rebuild()`, POST /v1/admin/projections/{name}/rebuild) of
 *    audit and analytics into a new version beside the live one.
 * Events/s is always the log's events over the time to read and project all of them.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { tenantSchema } from '../contracts/naming';
import { createPostgresEventStore } from '../infra/eventstore/postgres';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform } from '../infra/postgres/schema';
import { analyticsProjection } from '../projections/analytics/analyticsProjection';
import { auditProjection } from '../projections/audit/auditProjection';
import { catalogProjection } from '../projections/catalog/catalogProjection';
import { platformProjection } from '../projections/platform/platformProjection';
import { rebuild } from '../projections/rebuild';
import { checkpointName, type Projection, startProjection } from '../projections/runner';
import type { EventStore, NewEvent } from '../services/core/eventStore';
import { documentUploadedData, eventMetadata, rng } from './data';
import { type Bench, withDatabase } from './harness';
import { atLeast, failed, type Figure, fmtInt, median, summariseRate } from './stats';

interface Plan {
  tenants: number;
  events: number;
  liveDocuments: number;
  /** What analytics must count. */
  uploads: number;
  deletions: number;
  searches: number;
  questions: number;
  storedChunks: number;
}

async function fillStore(store: EventStore, targetEvents: number, tenants: number): Promise<Plan> {
  const rand = rng(42);
  const appends: { stream: string; events: NewEvent[] }[] = [];
  let events = 0;
  const tenantIds = Array.from({ length: tenants }, () => randomUUID());
  const ev = (tenantId: string, type: string, data: unknown): NewEvent => ({ eventId: randomUUID(), type, data, metadata: eventMetadata(tenantId) as NewEvent['metadata'] });
  for (const [i, t] of tenantIds.entries()) {
    const slug = `rebuild-${i}-${t.slice(0, 8)}`;
    const tenantEvents = [
      ev(t, 'TenantProvisioned', { tenantId: t, name: `Tenant ${i}`, slug, quotas: { maxDocuments: 10_000, maxBytes: 1e9 }, rateLimit: { perSecond: 100, burst: 200 } }),
      ev(t, 'UserAdded', { userId: randomUUID(), email: `owner@${slug}.test`, role: 'owner', passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA' }),
      ev(t, 'ApiTokenIssued', { tokenId: randomUUID(), name: 'ci', prefix: 'trk_abcdefgh', hash: randomUUID().replace(/-/g, '').repeat(2), role: 'member' }),
    ];
    appends.push({ stream: `tenant-${t}`, events: tenantEvents });
    events += tenantEvents.length;
  }
  // Document, activity and security streams, in random tenant order.
  const plan = { live: 0, uploads: 0, deletions: 0, searches: 0, questions: 0, storedChunks: 0 };
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  const chunkIds = Array.from({ length: 5 }, () => randomUUID());
  const docStreams: { stream: string; events: NewEvent[] }[] = [];
  const indexed = (t: string, d: string, version: number) => {
    const chunkCount = 1 + Math.floor(rand() * 40);
    return { event: ev(t, 'DocumentIndexed', { documentId: d, version, chunkCount, embedderId: 'e5-small-v2', format: 'markdown' }), chunkCount };
  };
  while (events < targetEvents) {
    const t = tenantIds[Math.floor(rand() * tenants)]!;
    const pick = rand();
    if (pick < 0.1) {
      docStreams.push({ stream: `security-${t}`, events: [ev(t, 'LoginSucceeded', { userId: randomUUID() })] });
      events += 1;
      continue;
    }
    if (pick < 0.55) {
      // A few searches and questions, appended together as the query service's writer does.
      const list = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => {
        if (rand() < 0.25) {
          plan.questions++;
          return ev(t, 'QuestionAsked', { questionHash: randomUUID().replace(/-/g, ''), model: 'extractive', sourceChunkIds: chunkIds.slice(0, 3), promptTokens: 900, completionTokens: 120 });
        }
        plan.searches++;
        return ev(t, 'SearchPerformed', { queryHash: randomUUID().replace(/-/g, ''), mode: 'hybrid', topK: 5, resultChunkIds: chunkIds });
      });
      docStreams.push({ stream: `activity-${t}.${day}`, events: list });
      events += list.length;
      continue;
    }
    const d = randomUUID();
    const first = indexed(t, d, 1);
    const list = [ev(t, 'DocumentUploaded', documentUploadedData(d, 1)), first.event];
    let chunks = first.chunkCount;
    plan.uploads++;
    if (rand() < 0.25) {
      const second = indexed(t, d, 2);
      list.push(ev(t, 'DocumentReplaced', { ...documentUploadedData(d, 2), previousSha256: 'a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90' }), second.event);
      chunks = second.chunkCount;
      plan.uploads++;
    }
    if (rand() < 0.05) {
      list.push(ev(t, 'DocumentDeleted', { documentId: d, version: list.length / 2 }));
      plan.deletions++;
    } else {
      plan.live++;
      plan.storedChunks += chunks;
    }
    docStreams.push({ stream: `document-${t}.${d}`, events: list });
    events += list.length;
  }
  for (const a of appends) await store.appendToStream(a.stream, a.events, { expectedRevision: 'no_stream' });
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < docStreams.length) {
        const a = docStreams[next++]!;
        await store.appendToStream(a.stream, a.events, { expectedRevision: 'any' });
      }
    }),
  );
  return { tenants, events, liveDocuments: plan.live, uploads: plan.uploads, deletions: plan.deletions, searches: plan.searches, questions: plan.questions, storedChunks: plan.storedChunks };
}

const NAMES = ['platform', 'catalog', 'audit', 'analytics'] as const;
type Name = (typeof NAMES)[number];
const make = (name: Name, version: number): Projection => {
  switch (name) {
    case 'platform':
      return { ...platformProjection(), version };
    case 'catalog':
      return { ...catalogProjection(), version };
    case 'audit':
      return auditProjection(version);
    case 'analytics':
      return analyticsProjection(version);
  }
};

const count = async (pool: pg.Pool, sql: string, params: unknown[] = []) => Number((await pool.query<{ n: string | null }>(sql, params)).rows[0]?.n ?? 0);

/** The rebuilt read models hold what the log says; throws otherwise. */
async function checkReadModels(pool: pg.Pool, plan: Plan, versions: { audit?: number; analytics?: number }): Promise<void> {
  const problems: string[] = [];
  const expect = (what: string, got: number, want: number) => {
    if (got !== want) problems.push(`${what} ${fmtInt(got)}/${fmtInt(want)}`);
  };
  const ids = (await pool.query<{ tenant_id: string }>('SELECT tenant_id FROM platform.tenants')).rows.map((r) => r.tenant_id);
  expect('tenants', ids.length, plan.tenants);
  let docs = 0;
  let audit = 0;
  for (const id of ids) {
    docs += await count(pool, `SELECT count(*) AS n FROM ${tenantSchema(id)}.documents`);
    if (versions.audit !== undefined) audit += await count(pool, `SELECT count(*) AS n FROM ${tenantSchema(id)}.audit_log_v${versions.audit}`);
  }
  expect('documents', docs, plan.liveDocuments);
  // Every event of the log belongs to a provisioned tenant: one audit row each.
  if (versions.audit !== undefined) expect(`audit_log_v${versions.audit} rows`, audit, plan.events);
  if (versions.analytics !== undefined) {
    const v = versions.analytics;
    const daily = (col: string) => count(pool, `SELECT sum(${col}) AS n FROM analytics.usage_daily_v${v}`);
    expect('analytics uploads', await daily('documents_uploaded'), plan.uploads);
    expect('analytics deletions', await daily('documents_deleted'), plan.deletions);
    expect('analytics searches', await daily('searches'), plan.searches);
    expect('analytics questions', await daily('questions'), plan.questions);
    expect('analytics stored documents', await count(pool, `SELECT sum(documents) AS n FROM analytics.usage_totals_v${v}`), plan.liveDocuments);
    expect('analytics stored chunks', await count(pool, `SELECT sum(chunks) AS n FROM analytics.usage_totals_v${v}`), plan.storedChunks);
  }
  if (problems.length) throw new Error(`rebuilt read models disagree with the log: ${problems.join(', ')}`);
}

/** Runs projections from position 0 until they reach the head; seconds per projection. */
async function runToHead(store: EventStore, pool: pg.Pool, projections: Projection[], concurrent: boolean, onRetry: () => void): Promise<Record<string, number>> {
  const head = await store.headPosition();
  const seconds: Record<string, number> = {};
  const log = (level: string) => {
    if (level !== 'info') onRetry();
  };
  const runOne = async (p: Projection) => {
    const t = performance.now();
    const running = startProjection(store, pool, p, { log });
    const ok = await running.waitFor(head, 300_000);
    seconds[p.name] = (performance.now() - t) / 1000;
    const status = running.status();
    await running.stop();
    if (!ok) throw new Error(`${checkpointName(p)} did not reach the head within 300 s (state ${status.state}: ${status.error ?? ''})`);
  };
  if (concurrent) await Promise.all(projections.map(runOne));
  else for (const p of projections) await runOne(p);
  return seconds;
}

interface RunResult {
  together: number;
  alone: Record<Name, number>;
  online: { audit: number; analytics: number };
  retries: number;
}

const SOURCE = 'bench_rebuild_src';

/**
 * A run's database: a copy of the filled store (CREATE DATABASE ... TEMPLATE), so the event store
 * and the read models share one database and one pool, as in the embedded product (and as
 * rebuild() expects, counting the events for its progress on that pool).
 */
async function withStoreCopy<T>(b: Bench, name: string, fn: (store: EventStore, pool: pg.Pool) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: b.adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(SOURCE)}`);
  } finally {
    await admin.end();
  }
  const pool = createPool(withDatabase(b.adminUrl, name), { max: 8, applicationName: 'bench rebuild' });
  try {
    await migratePlatform(pool);
    const store = await createPostgresEventStore(pool);
    try {
      return await fn(store, pool);
    } finally {
      await store.close();
    }
  } finally {
    await pool.end();
    await b.dropDatabase(name).catch(() => undefined);
  }
}

async function rebuildOnce(b: Bench, run: number, plan: Plan): Promise<RunResult> {
  let retries = 0;
  const onRetry = () => retries++;
  // 1. All four together, as at product start after a version bump.
  const together = await withStoreCopy(b, `bench_rebuild_dst_${run}_together`, async (store, pool) => {
    const t0 = performance.now();
    await runToHead(store, pool, NAMES.map((n) => make(n, 99)), true, onRetry);
    const seconds = (performance.now() - t0) / 1000;
    await checkReadModels(pool, plan, { audit: 99, analytics: 99 });
    return seconds;
  });
  // 2. Each alone (platform first: the others need the tenants' schemas); then 3. the operator's
  //    online rebuild of audit and analytics into version 100 beside the live 99.
  return withStoreCopy(b, `bench_rebuild_dst_${run}_alone`, async (store, pool) => {
    const alone = (await runToHead(store, pool, NAMES.map((n) => make(n, 99)), false, onRetry)) as Record<Name, number>;
    await checkReadModels(pool, plan, { audit: 99, analytics: 99 });
    const online = {
      audit: (await rebuild(store, pool, make('audit', 100))).seconds,
      analytics: (await rebuild(store, pool, make('analytics', 100))).seconds,
    };
    await checkReadModels(pool, plan, { audit: 100, analytics: 100 });
    // The online rebuild's hash chains equal the live version's.
    for (const id of (await pool.query<{ tenant_id: string }>('SELECT tenant_id FROM platform.tenants')).rows.map((r) => r.tenant_id)) {
      const sum = async (v: number) =>
        (await pool.query<{ c: string }>(`SELECT md5(string_agg(event_id::text || hash || prev_hash, ',' ORDER BY seq)) AS c FROM ${tenantSchema(id)}.audit_log_v${v}`)).rows[0]!.c;
      if ((await sum(99)) !== (await sum(100))) throw new Error(`audit_log_v100 of tenant ${id} differs from audit_log_v99`);
    }
    return { together, alone, online, retries };
  });
}

export async function rebuildBench(b: Bench): Promise<Figure[]> {
  const quick = b.opts.quick;
  const RUNS = 3;
  const EVENTS = quick ? 10_000 : 100_000;
  const TENANTS = quick ? 20 : 100;
  const target = '>= 20,000 events/s';
  const scaleNote = quick ? ' (--quick; full: 100,000)' : '';
  const bases = {
    together: { id: 'rebuild', group: 'projections', label: 'projection rebuild from the store (platform + catalog + audit + analytics together)', target },
    alone: (n: Name) => ({ id: `rebuild-${n}`, group: 'projections', label: `projection rebuild from the store: ${n} alone`, target }),
    online: (n: 'audit' | 'analytics') => ({ id: `rebuild-online-${n}`, group: 'projections', label: `online rebuild beside the live version (rebuild()): ${n}`, target }),
  };
  try {
    b.log(`rebuild: writing ${fmtInt(EVENTS)} events for ${TENANTS} tenants`);
    const srcPool = createPool(await b.createDatabase(SOURCE), { max: 10, applicationName: 'bench rebuild source' });
    let plan: Plan;
    try {
      const store = await createPostgresEventStore(srcPool);
      plan = await fillStore(store, EVENTS, TENANTS);
      await store.close();
    } finally {
      await srcPool.end(); // a template database must have no connections
    }
    const results: RunResult[] = [];
    for (let r = 0; r < RUNS; r++) {
      b.log(`rebuild: run ${r + 1}/${RUNS} (${fmtInt(plan.events)} events)`);
      results.push(await rebuildOnce(b, r, plan));
    }
    const scale = `${fmtInt(plan.events)} events${scaleNote}`;
    const mix = `${fmtInt(plan.events)} events (${plan.tenants} tenants; ${fmtInt(plan.uploads)} uploads and replacements with their DocumentIndexed, ${fmtInt(plan.deletions)} deletions, ${fmtInt(plan.searches)} searches, ${fmtInt(plan.questions)} questions, logins) in a scratch store copied per run into a fresh database (store and read models in one database, as the embedded product); read models checked against the log after every run.`;
    const figure = (base: Omit<Figure, 'scale' | 'summary' | 'verdict' | 'compare' | 'notes'>, seconds: number[], notes: string[], compare = ''): Figure => {
      const s = summariseRate(
        seconds.map((x) => plan.events / x),
        'events/s',
      );
      return { ...base, scale, summary: s, verdict: atLeast(s, 20_000), compare, notes, raw: { seconds } };
    };
    const retries = results.reduce((a, r) => a + r.retries, 0);
    const togetherNotes = [mix, 'All four projections started together (version 99) as at product start; time until every one has processed the head.'];
    if (retries) togetherNotes.push(`${retries} projection batch failures retried with back-off (events for tenants whose schema the platform projection had not created yet).`);
    const figures = [figure(bases.together, results.map((r) => r.together), togetherNotes)];
    for (const n of NAMES) {
      figures.push(figure(bases.alone(n), results.map((r) => r.alone[n]), [`${n} alone from position 0 through the runner (catch-up batches of 5,000 events), after ${NAMES.slice(0, NAMES.indexOf(n)).join(', ') || 'nothing'}.`]));
    }
    for (const n of ['audit', 'analytics'] as const) {
      const live = median(results.map((r) => plan.events / r.alone[n]));
      figures.push(
        figure(bases.online(n), results.map((r) => r.online[n]), [`rebuild() into version 100 beside the live version 99 (as POST /v1/admin/projections/${n}/rebuild), its default batch of 20,000 events.`], `${fmtInt(live)} events/s through the live runner`),
      );
    }
    return figures;
  } catch (err) {
    return [failed({ ...bases.together, scale: '' }, err)];
  } finally {
    await b.dropDatabase(SOURCE).catch(() => undefined);
  }
}
