import type { RecordedEvent } from '../services/core/eventStore';
import type { DomainEvent } from './metadata';

/**
 * Turns a stored event of any schema version into the current shape. Every event type is at
 * version 1 today; when a type gains version 2, its upcaster from 1 goes in this table.
 */
const upcasters: Record<string, Record<number, (data: unknown) => unknown>> = {};

export function upcast(event: Pick<RecordedEvent, 'type' | 'data' | 'metadata'>): DomainEvent {
  let data = event.data;
  let version = event.metadata.schemaVersion ?? 1;
  const chain = upcasters[event.type];
  while (chain && chain[version]) {
    data = chain[version]!(data);
    version += 1;
  }
  return { type: event.type, data };
}
