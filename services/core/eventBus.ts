import type { RecordedEvent } from './eventStore';

/**
 * The bus port between the event store's global log and the projections. Embedded, projections
 * read the store directly (projections/runner.ts); in production a relay publishes the log to
 * Kafka and each projection is a consumer group. kafkajs stays behind this port so it can be
 * swapped for another client without touching projections.
 */
export interface BusSubscription {
  stop(): Promise<void>;
}

export interface EventBus {
  readonly kind: 'kafka';
  /** Publishes events in order, resolving once the broker acknowledged all of them. */
  publish(events: RecordedEvent[]): Promise<void>;
  /**
   * Delivers batches to `handler` (at least once, in order per tenant). Offsets are committed
   * only after the handler resolved; the handler dedupes with its own checkpoints.
   */
  subscribe(groupId: string, categories: string[], handler: (events: RecordedEvent[]) => Promise<void>): Promise<BusSubscription>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
