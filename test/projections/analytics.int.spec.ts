import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { streamId } from '../../contracts/naming';
import { createKafkaBus } from '../../infra/bus/kafka';
import { startRelay } from '../../infra/bus/relay';
import { createPostgresEventStore } from '../../infra/eventstore/postgres';
import { createPool } from '../../infra/postgres/pool';
import { migratePlatform } from '../../infra/postgres/schema';
import { analyticsProjection } from '../../projections/analytics/analyticsProjection';
import { type Projection, type RunningProjection, startKafkaProjection, startProjection } from '../../projections/runner';
import { metadataFor } from '../../services/core/commandHandler';
import type { EventStore } from '../../services/core/eventStore';
import { dropDatabase, freshDatabase } from '../support/postgres';
import { lastCommittedPositionOf } from '../support/settle';
import { describeSkipped } from '../support/skip';

const TENANTS = [randomUUID(), randomUUID()];
const PER_TENANT = 600;

async function appendActivity(store: EventStore): Promise<void> {
  for (let i = 0; i < PER_TENANT; i += 50) {
    for (const tenantId of TENANTS) {
      const events = Array.from({ length: 50 }, (_, k) => ({
        eventId: randomUUID(),
        type: k % 5 === 0 ? 'QuestionAsked' : 'SearchPerformed',
        data: k % 5 === 0 ? { questionHash: 'h', model: 'm', sourceChunkIds: [], promptTokens: 10, completionTokens: 5 } : { queryHash: 'h', mode: 'hybrid', topK: 5, resultChunkIds: [] },
        metadata: metadataFor({ tenantId, actor: 'user:x', correlationId: 'c', now: new Date('2026-11-20T10:00:00Z') }, 'SearchPerformed'),
      }));
      await store.appendToStream(streamId('activity', tenantId, '20261120'), events, { expectedRevision: 'any' });
    }
  }
}

/** Crashes once, mid-stream, after `after` applied events: the batch in flight is lost, nothing else. */
function crashingOnce(p: Projection, after: number): Projection & { crashed: () => boolean } {
  let applied = 0;
  let crashed = false;
  return {
    ...p,
    crashed: () => crashed,
    async apply(client, event) {
      if (!crashed && ++applied > after) {
        crashed = true;
        throw new Error('simulated crash');
      }
      return p.apply(client, event);
    },
    // The runner applies a batch through applyMany when there is one: crash in the batch holding event `after + 1`.
    ...(p.applyMany && {
      async applyMany(client, events) {
        if (!crashed && (applied += events.length) > after) {
          crashed = true;
          throw new Error('simulated crash');
        }
        return p.applyMany!(client, events);
      },
    }),
  };
}

async function counts(pool: Pool) {
  const exists = await pool.query(`SELECT to_regclass('analytics.usage_daily_v1') AS t`);
  if (!exists.rows[0]?.t) return [];
  const r = await pool.query<{ tenant_id: string; searches: number; questions: number; prompt_tokens: string }>(
    'SELECT tenant_id, searches, questions, prompt_tokens FROM analytics.usage_daily_v1 ORDER BY tenant_id',
  );
  return r.rows;
}

const expected = TENANTS.map((t) => ({ tenant_id: t, searches: (PER_TENANT * 4) / 5, questions: PER_TENANT / 5, prompt_tokens: String((PER_TENANT / 5) * 10) })).sort((a, b) =>
  a.tenant_id.localeCompare(b.tenant_id),
);

async function until(cond: () => Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('analytics consumer: killed mid-stream and restarted, counts nothing twice and loses nothing', () => {
  let url: string;
  let pool: Pool;
  let store: EventStore;

  beforeAll(async () => {
    url = await freshDatabase();
    pool = createPool(url, { max: 6 });
    await migratePlatform(pool);
    store = await createPostgresEventStore(pool);
    await appendActivity(store);
  });
  afterAll(async () => {
    await store?.close();
    await pool?.end();
    if (url) await dropDatabase(url);
  });

  it('from the store (embedded profile)', async () => {
    const first = crashingOnce(analyticsProjection(), 700);
    let run: RunningProjection = startProjection(store, pool, first, { batchSize: 50, idlePollMs: 20 });
    await until(async () => first.crashed());
    await run.stop(); // the process dies right after the crash
    run = startProjection(store, pool, analyticsProjection(), { batchSize: 50, idlePollMs: 20 });
    // Past the xid fence: a fenced head stops short while other suites hold transactions open.
    expect(await run.waitFor(await lastCommittedPositionOf(store, pool), 30_000)).toBe(true);
    await run.stop();
    expect(await counts(pool)).toEqual(expected);
  });
});

const brokers = process.env.KAFKA_BROKERS;
if (!brokers) {
  describeSkipped('analytics consumer group: killed mid-batch on Kafka, restarted', 'KAFKA_BROKERS not set (npm run infra:up, then source .env.infra)');
} else {
  describe('analytics consumer group: killed mid-batch on Kafka, restarted', () => {
    it('commits offsets only after the read model, and dedupes redelivery by checkpoint', async () => {
      const url = await freshDatabase();
      const pool = createPool(url, { max: 6 });
      await migratePlatform(pool);
      const store = await createPostgresEventStore(pool);
      await appendActivity(store);
      const namespace = `t${randomUUID().slice(0, 8)}`;
      const bus = await createKafkaBus({ brokers: brokers.split(','), namespace });
      const relay = startRelay(store, pool, bus);
      try {
        const first = crashingOnce(analyticsProjection(), 500);
        let run = await startKafkaProjection(bus, pool, first);
        await until(async () => first.crashed());
        await run.stop();
        run = await startKafkaProjection(bus, pool, analyticsProjection());
        await until(async () => JSON.stringify(await counts(pool)) === JSON.stringify(expected), 60_000).catch(() => undefined);
        await run.stop();
        expect(await counts(pool)).toEqual(expected);
      } finally {
        await relay.stop();
        await bus.close();
        await store.close();
        await pool.end();
        await dropDatabase(url);
      }
    }, 120_000);

    it('two projector processes of one consumer group share the partitions and count everything once', async () => {
      const url = await freshDatabase();
      const pool = createPool(url, { max: 8 });
      await migratePlatform(pool);
      const store = await createPostgresEventStore(pool);
      const namespace = `t${randomUUID().slice(0, 8)}`;
      const busA = await createKafkaBus({ brokers: brokers.split(','), namespace });
      const busB = await createKafkaBus({ brokers: brokers.split(','), namespace });
      try {
        // Two "processes": separate Kafka clients, one group, each its own projection instance.
        const a = await startKafkaProjection(busA, pool, analyticsProjection());
        const b = await startKafkaProjection(busB, pool, analyticsProjection());
        const relay = startRelay(store, pool, busA);
        await appendActivity(store);
        await until(async () => JSON.stringify(await counts(pool)) === JSON.stringify(expected), 60_000).catch(() => undefined);
        expect(await counts(pool)).toEqual(expected);
        // Every event applied exactly once across the group; which member gets which tenant depends on the key hash.
        const applied = [a.status().eventsApplied, b.status().eventsApplied];
        expect(applied[0]! + applied[1]!).toBeGreaterThanOrEqual(PER_TENANT * TENANTS.length);
        process.stdout.write(`events applied per group member: ${applied.join(" / ")}\n`);
        await relay.stop();
        await a.stop();
        await b.stop();
      } finally {
        await busA.close();
        await busB.close();
        await store.close();
        await pool.end();
        await dropDatabase(url);
      }
    }, 120_000);
  });
}
