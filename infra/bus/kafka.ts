import { CompressionTypes, Kafka, logLevel, type Consumer, type IHeaders, type Producer } from 'kafkajs';
import { consumerGroup, kafkaKey, parseStreamId, topicFor } from '../../contracts/naming';
import type { BusSubscription, EventBus } from '../../services/core/eventBus';
import type { RecordedEvent } from '../../services/core/eventStore';

/** Stream categories that have a topic (one topic per category). */
export const CATEGORIES = ['tenant', 'security', 'document', 'activity'] as const;

export interface KafkaBusOptions {
  brokers: string[];
  clientId?: string;
  /** Separates deployments or test runs sharing a cluster (topics and consumer groups). */
  namespace?: string;
  /** Partitions per topic: a tenant always maps to one partition, so its events stay ordered. */
  partitions?: number;
  log?: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

interface WireEvent {
  eventId: string;
  type: string;
  data: unknown;
  metadata: RecordedEvent['metadata'];
  streamId: string;
  streamPosition: string;
  position: string;
  recordedAt: string;
}

export function toMessage(e: RecordedEvent) {
  const tenantId = parseStreamId(e.streamId).tenantId ?? e.metadata.tenantId;
  const wire: WireEvent = {
    eventId: e.eventId,
    type: e.type,
    data: e.data,
    metadata: e.metadata,
    streamId: e.streamId,
    streamPosition: e.streamPosition.toString(),
    position: e.position,
    recordedAt: e.recordedAt.toISOString(),
  };
  const headers: IHeaders = {
    'event-id': e.eventId,
    'event-type': e.type,
    'tenant-id': tenantId,
    'schema-version': String(e.metadata.schemaVersion ?? 1),
    'stream-id': e.streamId,
    position: e.position,
    'correlation-id': e.metadata.correlationId ?? '',
    'causation-id': e.metadata.causationId ?? '',
  };
  return { key: kafkaKey(tenantId), value: JSON.stringify(wire), headers };
}

export function fromMessage(value: Buffer | null): RecordedEvent | null {
  if (!value) return null;
  const w = JSON.parse(value.toString('utf8')) as WireEvent;
  return {
    eventId: w.eventId,
    type: w.type,
    data: w.data,
    metadata: w.metadata,
    streamId: w.streamId,
    streamPosition: BigInt(w.streamPosition),
    position: w.position,
    recordedAt: new Date(w.recordedAt),
  };
}

export async function createKafkaBus(opts: KafkaBusOptions): Promise<EventBus> {
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
  const log = opts.log ?? (() => undefined);
  const kafka = new Kafka({
    clientId: opts.clientId ?? 'tenant-rag',
    brokers: opts.brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 200 },
  });
  const admin = kafka.admin();
  await admin.connect();
  const existing = new Set(await admin.listTopics());
  const ns = opts.namespace ?? '';
  const missing = CATEGORIES.map((c) => topicFor(c, ns)).filter((t) => !existing.has(t));
  if (missing.length) {
    await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: opts.partitions ?? 6, replicationFactor: -1 })) });
  }

  let producer: Producer | null = null;
  const consumers = new Set<Consumer>();

  return {
    kind: 'kafka',
    async publish(events) {
      if (events.length === 0) return;
      if (!producer) {
        // Exactly-once per partition on the producer side, acks from all in-sync replicas,
        // one request in flight so a retry can never reorder a tenant's events.
        producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
        await producer.connect();
      }
      const byTopic = new Map<string, ReturnType<typeof toMessage>[]>();
      for (const e of events) {
        const topic = topicFor(parseStreamId(e.streamId).category, ns);
        const list = byTopic.get(topic) ?? [];
        list.push(toMessage(e));
        byTopic.set(topic, list);
      }
      await producer.sendBatch({ acks: -1, compression: CompressionTypes.None, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
    },
    async subscribe(groupId, categories, handler): Promise<BusSubscription> {
      let consumer: Consumer | null = null;
      let stopped = false;
      let retry: NodeJS.Timeout | null = null;
      const start = async (): Promise<void> => {
        const c = kafka.consumer({ groupId: consumerGroup(groupId, ns), maxWaitTimeInMs: 200, sessionTimeout: 30_000, heartbeatInterval: 3000, allowAutoTopicCreation: false });
        consumer = c;
        consumers.add(c);
        // kafkajs restarts a crashed consumer only for errors it deems retriable. Others (e.g. a
        // commit refused with UNKNOWN_MEMBER_ID after a broker restart, or our handler's own error
        // after its retries) leave the consumer disconnected for good, and the projection silently
        // stops: start a fresh consumer instead, from the committed offsets.
        c.on(c.events.CRASH, ({ payload }) => {
          log(payload.restart ? 'warn' : 'error', 'kafka consumer crashed', { groupId, error: payload.error?.message, restartedByClient: payload.restart });
          if (payload.restart || stopped) return;
          consumers.delete(c);
          retry = setTimeout(() => {
            retry = null;
            if (stopped) return;
            void c.disconnect().catch(() => undefined).then(() => start()).catch((err) => {
              log('error', 'kafka consumer restart failed; retrying', { groupId, error: (err as Error).message });
              if (!stopped) retry = setTimeout(() => void start().catch(() => undefined), 2000);
            });
          }, 1000);
        });
        await c.connect();
        await c.subscribe({ topics: categories.map((cat) => topicFor(cat, ns)), fromBeginning: true });
        await c.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
            const events: RecordedEvent[] = [];
            for (const m of batch.messages) {
              const e = fromMessage(m.value);
              if (e) events.push(e);
            }
            if (!isRunning() || isStale()) return;
            // The read model and its checkpoint commit first; only then the Kafka offset.
            await handler(events);
            const last = batch.messages[batch.messages.length - 1];
            if (last) resolveOffset(last.offset);
            await commitOffsetsIfNecessary();
            await heartbeat();
          },
        });
        log('info', 'kafka consumer group joined', { groupId, categories });
      };
      await start();
      return {
        async stop() {
          stopped = true;
          if (retry) clearTimeout(retry);
          const c = consumer;
          if (c) {
            await c.disconnect();
            consumers.delete(c);
          }
        },
      };
    },
    async ping() {
      await admin.describeCluster();
    },
    async close() {
      for (const c of consumers) await c.disconnect().catch(() => undefined);
      await producer?.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
    },
  };
}
