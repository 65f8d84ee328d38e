/**
 * Production profile throughput: the relay (event store -> Kafka, idempotent producer, acks=all,
 * checkpoint after each acknowledged batch) and a Kafka-fed projection (the analytics consumer
 * group, read model + per-(topic, tenant) checkpoint in one transaction per batch).
 * Needs KAFKA_BROKERS (npm run infra:up); each run uses its own topic namespace and database.
 */
import { randomUUID } from 'node:crypto';
import { streamId } from '../contracts/naming';
import { createKafkaBus } from '../infra/bus/kafka';
import { RELAY_CHECKPOINT, startRelay } from '../infra/bus/relay';
import { createPostgresEventStore } from '../infra/eventstore/postgres';
import { createPool } from '../infra/postgres/pool';
import { migratePlatform } from '../infra/postgres/schema';
import { analyticsProjection } from '../projections/analytics/analyticsProjection';
import { readCheckpoint, startKafkaProjection } from '../projections/runner';
import { metadataFor } from '../services/core/commandHandler';
import type { Bench } from './harness';
import { failed, type Figure, fmtInt, skipped, summariseRate } from './stats';

const TENANTS = 20;

export async function relayBench(b: Bench): Promise<Figure[]> {
  const brokers = process.env.KAFKA_BROKERS;
  const base = { group: 'relay', scale: '' };
  const relayBase = { ...base, id: 'relay', label: 'relay: event store -> Kafka, production profile', target: 'info (no target set)' };
  const projBase = { ...base, id: 'kafka-projection', label: 'projection from Kafka (analytics consumer group)', target: 'info (no target set)' };
  if (!brokers) {
    const reason = 'KAFKA_BROKERS not set (npm run infra:up, then source .env.infra)';
    return [skipped({ ...relayBase, reason }), skipped({ ...projBase, reason })];
  }
  const events = b.opts.quick ? 5_000 : 50_000;
  const runs = 3;
  const relayRates: number[] = [];
  const projRates: number[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      const db = `bench_relay_${run}`;
      const url = await b.createDatabase(db);
      const pool = createPool(url, { max: 6, applicationName: 'bench relay' });
      const store = await createPostgresEventStore(pool);
      const bus = await createKafkaBus({ brokers: brokers.split(','), namespace: `bench${randomUUID().slice(0, 8)}` });
      try {
        await migratePlatform(pool);
        const tenants = Array.from({ length: TENANTS }, () => randomUUID());
        for (let i = 0; i < events; i += 100) {
          const t = tenants[(i / 100) % TENANTS]!;
          await store.appendToStream(
            streamId('activity', t, '20261125'),
            Array.from({ length: 100 }, () => ({
              eventId: randomUUID(),
              type: 'SearchPerformed',
              data: { queryHash: 'h'.repeat(64), mode: 'hybrid', topK: 5, resultChunkIds: ['a:1:0', 'b:1:2'] },
              metadata: metadataFor({ tenantId: t, actor: 'user:bench', correlationId: 'bench', now: new Date() }, 'SearchPerformed'),
            })),
            { expectedRevision: 'any' },
          );
        }
        const head = await store.headPosition();
        let t0 = performance.now();
        const relay = startRelay(store, pool, bus, { batchSize: 500 });
        while ((await readCheckpoint(pool, RELAY_CHECKPOINT)) < head) await new Promise((r) => setTimeout(r, 20));
        relayRates.push(events / ((performance.now() - t0) / 1000));
        await relay.stop();
        t0 = performance.now();
        const proj = await startKafkaProjection(bus, pool, analyticsProjection());
        while (proj.status().eventsApplied < events) {
          if (performance.now() - t0 > 120_000) throw new Error('projection did not catch up in 120 s');
          await new Promise((r) => setTimeout(r, 20));
        }
        projRates.push(events / ((performance.now() - t0) / 1000));
        await proj.stop();
      } finally {
        await bus.close();
        await store.close();
        await pool.end();
        await b.dropDatabase(db).catch(() => undefined);
      }
    }
  } catch (err) {
    return [failed({ ...relayBase }, err), failed({ ...projBase }, err)];
  }
  const scale = `${runs} runs x ${fmtInt(events)} events, ${TENANTS} tenants${b.opts.quick ? ' (--quick; full: 50,000)' : ''}`;
  const relaySummary = summariseRate(relayRates, 'events/s');
  const projSummary = summariseRate(projRates, 'events/s');
  return [
    { ...relayBase, scale, summary: relaySummary, verdict: 'INFO', compare: 'idempotent producer, acks=all, 500-event batches', notes: [], raw: relayRates },
    { ...projBase, scale, summary: projSummary, verdict: 'INFO', compare: 'includes consumer-group join; read model + checkpoints per batch', notes: [], raw: projRates },
  ];
}
