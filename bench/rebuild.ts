/**
 * Projection rebuild: every read model (platform and catalog projections, as services/product.ts
 * starts them) re-run from position 0 over a store of N events, into an empty scratch database.
 *
 * The store is a scratch database filled with a realistic mix (tenant streams with provisioning,
 * users and tokens; document streams with uploads, replacements and deletions; security streams
 * with logins the read models ignore). Each run creates a fresh target database, migrates the
 * platform schema and starts the projections with `version: 99` (a new checkpoint name, as a
 * version bump does in production) reading the source store and writing the target: the time
 * until both have processed the head position is the rebuild time.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { tenantSchema } from '../contracts/naming';
import { createPostgresEventStore } from '../infra/eventstore/postgres';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform } from '../infra/postgres/schema';
import { catalogProjection } from '../projections/catalog/catalogProjection';
import { platformProjection } from '../projections/platform/platformProjection';
import { checkpointName, type Projection, startProjection } from '../projections/runner';
import type { EventStore, NewEvent } from '../services/core/eventStore';
import { documentUploadedData, eventMetadata, rng } from './data';
import type { Bench } from './harness';
import { atLeast, failed, type Figure, fmtInt, fmtNum, median, summariseRate } from './stats';

interface Plan {
  tenants: number;
  events: number;
  liveDocuments: number;
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
  // Document streams (and a few logins), in random tenant order.
  let live = 0;
  const docStreams: { stream: string; events: NewEvent[] }[] = [];
  while (events < targetEvents) {
    const t = tenantIds[Math.floor(rand() * tenants)]!;
    if (rand() < 0.1) {
      docStreams.push({ stream: `security-${t}`, events: [ev(t, 'LoginSucceeded', { userId: randomUUID() })] });
      events += 1;
      continue;
    }
    const d = randomUUID();
    const list = [ev(t, 'DocumentUploaded', documentUploadedData(d, 1))];
    if (rand() < 0.25) list.push(ev(t, 'DocumentReplaced', { ...documentUploadedData(d, 2), previousSha256: 'a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90' }));
    if (rand() < 0.05) list.push(ev(t, 'DocumentDeleted', { documentId: d, version: list.length }));
    else live++;
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
  return { tenants, events, liveDocuments: live };
}

async function rebuildOnce(b: Bench, store: EventStore, run: number, plan: Plan, mode: 'concurrent' | 'sequential'): Promise<{ seconds: number; perProjection: Record<string, number>; retries: number }> {
  const name = `bench_rebuild_dst_${run}`;
  const url = await b.createDatabase(name);
  const pool = createPool(url, { max: 4, applicationName: 'bench rebuild' });
  try {
    await migratePlatform(pool);
    const head = await store.headPosition();
    const projections: Projection[] = [
      { ...platformProjection(), version: 99 },
      { ...catalogProjection(), version: 99 },
    ];
    let retries = 0;
    const log = (level: string) => {
      if (level === 'error') retries++;
    };
    const perProjection: Record<string, number> = {};
    const runOne = async (p: Projection) => {
      const t = performance.now();
      const running = startProjection(store, pool, p, { log });
      const ok = await running.waitFor(head, 300_000);
      perProjection[checkpointName(p)] = (performance.now() - t) / 1000;
      const status = running.status();
      await running.stop();
      if (!ok) throw new Error(`${checkpointName(p)} did not reach the head within 300 s (state ${status.state}: ${status.error ?? ''})`);
    };
    const t0 = performance.now();
    if (mode === 'concurrent') await Promise.all(projections.map(runOne));
    else for (const p of projections) await runOne(p);
    const seconds = (performance.now() - t0) / 1000;
    // Sanity: the rebuilt read models hold what the log says.
    const tenants = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM platform.tenants')).rows[0]!.n);
    const ids = (await pool.query<{ tenant_id: string }>('SELECT tenant_id FROM platform.tenants')).rows.map((r) => r.tenant_id);
    let docs = 0;
    for (const id of ids) docs += Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${tenantSchema(id)}.documents`)).rows[0]!.n);
    if (tenants !== plan.tenants || docs !== plan.liveDocuments) {
      throw new Error(`rebuilt read models disagree with the log: ${tenants}/${plan.tenants} tenants, ${docs}/${plan.liveDocuments} documents`);
    }
    return { seconds, perProjection, retries };
  } finally {
    await pool.end();
    await b.dropDatabase(name).catch(() => undefined);
  }
}

export async function rebuildBench(b: Bench): Promise<Figure[]> {
  const quick = b.opts.quick;
  const RUNS = 3;
  const EVENTS = quick ? 1_000 : 100_000;
  const TENANTS = quick ? 10 : 100;
  const base = { id: 'rebuild', group: 'projections', label: 'projection rebuild from the store (platform + catalog)', target: '>= 20,000 events/s' };
  const srcUrl = await b.createDatabase('bench_rebuild_src');
  const srcPool: pg.Pool = createPool(srcUrl, { max: 10, applicationName: 'bench rebuild source' });
  const store = await createPostgresEventStore(srcPool);
  try {
    b.log(`rebuild: writing ${fmtInt(EVENTS)} events for ${TENANTS} tenants`);
    const plan = await fillStore(store, EVENTS, TENANTS);
    const rates: number[] = [];
    const seqRates: number[] = [];
    const per: Record<string, number[]> = {};
    let retries = 0;
    for (let r = 0; r < RUNS; r++) {
      b.log(`rebuild: run ${r + 1}/${RUNS} (${fmtInt(plan.events)} events)`);
      const c = await rebuildOnce(b, store, r, plan, 'concurrent');
      rates.push(plan.events / c.seconds);
      retries += c.retries;
      // Sequential (one projection after the other) in full runs only: it shows each one's own rate.
      if (!quick || r === 0) {
        const s = await rebuildOnce(b, store, r, plan, 'sequential');
        seqRates.push(plan.events / s.seconds);
        for (const [k, v] of Object.entries(s.perProjection)) (per[k] ??= []).push(plan.events / v);
      }
    }
    const s = summariseRate(rates, 'events/s');
    const notes = [
      `${fmtInt(plan.events)} events (${plan.tenants} tenants, ${fmtInt(plan.liveDocuments)} live documents) read from a scratch store, written to a fresh database per run; both projections started together as at product start.`,
      `Sequential (platform, then catalog${quick ? ', 1 run' : ''}): median ${fmtInt(median(seqRates))} events/s; per projection alone: ${Object.entries(per)
        .map(([k, v]) => `${k} ${fmtInt(median(v))} events/s`)
        .join(', ')}.`,
    ];
    if (retries) notes.push(`${retries} projection batch failures retried with back-off during the concurrent runs (catalog events for tenants whose schema the platform projection had not created yet).`);
    return [
      {
        ...base,
        scale: `${fmtInt(plan.events)} events${quick ? ' (--quick; full: 100,000)' : ''}`,
        summary: s,
        verdict: atLeast(s, 20_000),
        compare: `sequential ${fmtNum(median(seqRates) / s.median, 2)} x concurrent`,
        notes,
        raw: { concurrent: rates, sequential: seqRates, perProjection: per },
      },
    ];
  } catch (err) {
    return [failed({ ...base, scale: '' }, err)];
  } finally {
    await store.close();
    await srcPool.end();
    await b.dropDatabase('bench_rebuild_src').catch(() => undefined);
  }
}
