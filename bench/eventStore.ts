/**
 * Event append figures: throughput at one event per transaction from 16 concurrent writers,
 * throughput at 100 events per transaction, and single-writer append latency.
 *
 * Contenders, on the same server, same rows, interleaved run by run:
 *   - ours: infra/eventstore/postgres.ts (appendToStream with an exact expected revision, as the
 *     command handler calls it), in its own scratch database;
 *   - the limit: the same rows written by a plain INSERT ... SELECT FROM unnest(...) into a table
 *     with the same columns and no index or constraint (the cheapest way to store them with SQL);
 *   - Emmett's PostgreSQL event store (bench/peers/emmett), appending the same events with exact
 *     expected versions, in its own scratch database, with a pool of the same size.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { createPostgresEventStore } from '../infra/eventstore/postgres';
import { createPool } from '../infra/postgres/pool';
import { documentUploadedData, eventMetadata } from './data';
import type { Bench } from './harness';
import { openEmmett, type PeerEvent, type PeerStore } from './peers/emmett/emmett';
import { all, atLeast, failed, type Figure, fmtInt, fmtNum, latencyWithin, pct, summariseLatency, summariseRate } from './stats';

interface Appender {
  name: string;
  append(stream: string, events: PeerEvent[], expected: bigint | null): Promise<bigint>;
}

interface LoadResult {
  events: number;
  seconds: number;
  latencies: number[];
  errors: number;
}

const TENANT = '7d2c1a9e-4b3f-4c8d-9e1f-2a3b4c5d6e7f';

function makeEvents(n: number): PeerEvent[] {
  return Array.from({ length: n }, (_, i) => ({ type: 'DocumentUploaded', data: documentUploadedData(randomUUID(), i + 1), metadata: eventMetadata(TENANT) }));
}

/**
 * `writers` concurrent loops, each appending `perTxn` events per call to its own streams with
 * exact expected revisions, until `durationMs` elapsed or `maxAppends` calls were made in total.
 */
async function appendLoad(a: Appender, o: { writers: number; perTxn: number; durationMs: number; maxAppends: number; streamsPerWriter?: number }): Promise<LoadResult> {
  const streamsPerWriter = o.streamsPerWriter ?? 4;
  // Create the streams first (not timed): every timed append is an exact-revision append.
  const streams: { id: string; rev: bigint }[][] = [];
  await Promise.all(
    Array.from({ length: o.writers }, async (_, w) => {
      const mine: { id: string; rev: bigint }[] = [];
      for (let s = 0; s < streamsPerWriter; s++) {
        const id = `document-${TENANT}.${randomUUID()}`;
        mine.push({ id, rev: await a.append(id, makeEvents(1), null) });
      }
      streams[w] = mine;
    }),
  );
  // Payloads are built before the clock starts, so the client's JSON work is the store's only.
  const batches = Array.from({ length: 64 }, () => makeEvents(o.perTxn));
  let appends = 0;
  let errors = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  const deadline = t0 + o.durationMs;
  await Promise.all(
    streams.map(async (mine, w) => {
      let k = w;
      while (performance.now() < deadline && appends < o.maxAppends) {
        appends++;
        const s = mine[k % mine.length]!;
        const events = batches[k % batches.length]!;
        k++;
        const t = performance.now();
        try {
          s.rev = await a.append(s.id, events, s.rev);
          latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          if (errors > 10) throw err;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { events: latencies.length * o.perTxn, seconds, latencies, errors };
}

async function ours(pool: pg.Pool): Promise<Appender & { close(): Promise<void> }> {
  const store = await createPostgresEventStore(pool);
  return {
    name: 'ours',
    async append(stream, events, expected) {
      const r = await store.appendToStream(
        stream,
        events.map((e) => ({ eventId: randomUUID(), type: e.type, data: e.data, metadata: e.metadata as never })),
        { expectedRevision: expected ?? 'no_stream' },
      );
      return r.nextExpectedRevision;
    },
    close: () => store.close(),
  };
}

async function plainInsert(pool: pg.Pool): Promise<Appender> {
  await pool.query(`CREATE TABLE IF NOT EXISTS limit_events (
    global_position bigserial, stream_id text NOT NULL, stream_position bigint NOT NULL, event_id uuid NOT NULL,
    type text NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
  const sql = `INSERT INTO limit_events (stream_id, stream_position, event_id, type, data, metadata)
    SELECT $1, $2::bigint + e.ord, e.event_id, e.type, e.data, e.metadata
    FROM unnest($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]) WITH ORDINALITY AS e(event_id, type, data, metadata, ord)`;
  return {
    name: 'limit',
    async append(stream, events, expected) {
      const rev = expected ?? -1n;
      await pool.query({
        name: 'limit.insert',
        text: sql,
        values: [stream, rev.toString(), events.map(() => randomUUID()), events.map((e) => e.type), events.map((e) => JSON.stringify(e.data)), events.map((e) => JSON.stringify(e.metadata))],
      });
      return rev + BigInt(events.length);
    },
  };
}

export async function eventStoreBench(b: Bench): Promise<Figure[]> {
  const quick = b.opts.quick;
  const RUNS = quick ? 3 : 5;
  const DURATION = quick ? 600 : 4000;
  const WRITERS_1 = 16;
  const WRITERS_100 = 4;
  const LATENCY_APPENDS = quick ? 150 : 2000;
  const scaleNote = quick ? ` (--quick: ${RUNS} runs of ${DURATION / 1000} s)` : ` (${RUNS} runs of ${DURATION / 1000} s)`;

  const esUrl = await b.createDatabase('bench_es');
  const emUrl = await b.createDatabase('bench_emmett');
  const pool = createPool(esUrl, { max: WRITERS_1 + 2, applicationName: 'bench event store' });
  const limitPool = createPool(esUrl, { max: WRITERS_1, applicationName: 'bench limit' });
  const our = await ours(pool);
  const limit = await plainInsert(limitPool);
  const emmettOrWhy: PeerStore | { unavailable: string } = await openEmmett(emUrl, WRITERS_1);
  const emmett = 'unavailable' in emmettOrWhy ? null : emmettOrWhy;
  const emmettWhy = 'unavailable' in emmettOrWhy ? emmettOrWhy.unavailable : '';
  const contenders: Appender[] = [our, limit, ...(emmett ? [{ name: 'emmett', append: emmett.append.bind(emmett) }] : [])];
  const figures: Figure[] = [];

  try {
    // Warm-up: prepared statements, caches, Emmett's schema.
    for (const c of contenders) await appendLoad(c, { writers: 4, perTxn: 10, durationMs: 200, maxAppends: 200 });

    // --- one event per transaction, 16 writers --------------------------------------------
    b.log(`append: 1 event/txn x ${WRITERS_1} writers, ${RUNS} runs per contender`);
    const single: Record<string, number[]> = {};
    const singleErr: Record<string, number> = {};
    for (let r = 0; r < RUNS; r++) {
      for (const c of contenders) {
        const res = await appendLoad(c, { writers: WRITERS_1, perTxn: 1, durationMs: DURATION, maxAppends: 200_000 });
        (single[c.name] ??= []).push(res.events / res.seconds);
        singleErr[c.name] = (singleErr[c.name] ?? 0) + res.errors;
      }
    }
    {
      const s = summariseRate(single.ours!, 'events/s');
      const lim = summariseRate(single.limit!, 'events/s');
      const cmp = [`${fmtNum(s.median / lim.median, 2)} x limit (plain INSERT, ${fmtInt(lim.median)}/s)`];
      if (single.emmett) cmp.push(`${fmtNum(s.median / median(single.emmett), 2)} x Emmett (${fmtInt(median(single.emmett))}/s)`);
      else cmp.push(`Emmett: unavailable (${emmettWhy})`);
      figures.push({
        id: 'append.single',
        group: 'event store',
        label: `event append, 1 event/txn, ${WRITERS_1} concurrent writers`,
        scale: `exact expected revision${scaleNote}`,
        summary: s,
        target: '>= 2,000 events/s',
        verdict: atLeast(s, 2000),
        compare: cmp.join('; '),
        notes: singleErr.ours ? [`${singleErr.ours} appends failed`] : [],
        raw: single,
      });
    }

    // --- 100 events per transaction ------------------------------------------------------
    b.log(`append: 100 events/txn x ${WRITERS_100} writers, ${RUNS} runs per contender`);
    const batch: Record<string, number[]> = {};
    for (let r = 0; r < RUNS; r++) {
      for (const c of contenders) {
        const res = await appendLoad(c, { writers: WRITERS_100, perTxn: 100, durationMs: DURATION, maxAppends: 5_000 });
        (batch[c.name] ??= []).push(res.events / res.seconds);
      }
    }
    {
      const s = summariseRate(batch.ours!, 'events/s');
      const lim = median(batch.limit!);
      const share = s.median / lim;
      const cmp = [`${fmtNum(share, 2)} x limit (plain multi-row INSERT, ${fmtInt(lim)}/s)`];
      if (batch.emmett) cmp.push(`${fmtNum(s.median / median(batch.emmett), 2)} x Emmett (${fmtInt(median(batch.emmett))}/s)`);
      else cmp.push(`Emmett: unavailable (${emmettWhy})`);
      figures.push({
        id: 'append.batch',
        group: 'event store',
        label: `event append, 100 events/txn, ${WRITERS_100} concurrent writers`,
        scale: `exact expected revision${scaleNote}`,
        summary: s,
        target: '>= 20,000 events/s and >= 0.70 x limit',
        verdict: all(atLeast(s, 20_000), share >= 0.7 ? 'PASS' : 'MISS'),
        compare: cmp.join('; '),
        notes: [],
        raw: batch,
      });
    }

    // --- single-writer latency ------------------------------------------------------------
    b.log(`append latency: 1 writer, ${LATENCY_APPENDS} appends x ${RUNS} runs`);
    const lat: Record<string, number[][]> = {};
    for (let r = 0; r < RUNS; r++) {
      for (const c of contenders) {
        const res = await appendLoad(c, { writers: 1, perTxn: 1, durationMs: 60_000, maxAppends: LATENCY_APPENDS, streamsPerWriter: 1 });
        (lat[c.name] ??= []).push(res.latencies);
      }
    }
    {
      const s = summariseLatency(lat.ours!);
      const limS = summariseLatency(lat.limit!);
      const cmp = [`limit (plain INSERT) p50 ${fmtNum(limS.median)} / p99 ${fmtNum(limS.p99)} ms`];
      if (lat.emmett) {
        const e = summariseLatency(lat.emmett);
        cmp.push(`Emmett p50 ${fmtNum(e.median)} / p99 ${fmtNum(e.p99)} ms (ours/Emmett p99 ${fmtNum(s.p99 / e.p99, 2)})`);
      } else cmp.push(`Emmett: unavailable (${emmettWhy})`);
      figures.push({
        id: 'append.latency',
        group: 'event store',
        label: 'append latency, single writer, 1 event/append',
        scale: `${fmtInt(LATENCY_APPENDS)} appends/run${quick ? ' (--quick)' : ''}`,
        summary: s,
        target: 'p99 <= 10 ms',
        verdict: latencyWithin(s, { p99: 10 }),
        compare: cmp.join('; '),
        notes: [],
        raw: { ours: lat.ours, limitP99: limS.p99 },
      });
    }
  } catch (err) {
    figures.push(failed({ id: 'append', group: 'event store', label: 'event append', scale: '', target: '' }, err));
  } finally {
    await our.close().catch(() => undefined);
    await emmett?.close();
    await pool.end();
    await limitPool.end();
    await b.dropDatabase('bench_emmett').catch(() => undefined);
    await b.dropDatabase('bench_es').catch(() => undefined);
  }
  return figures;
}

function median(xs: number[]): number {
  return pct(xs, 50);
}
