import { createHash, randomUUID } from 'node:crypto';
import { streamId } from '../../contracts/naming';
import { metadataFor } from '../../services/core/commandHandler';
import type { EventStore } from '../../services/core/eventStore';

/** `count` SearchPerformed events of a tenant appended straight to the store, as the activity recorder does. */
export async function appendActivity(store: EventStore, tenantId: string, stream: string, count: number): Promise<void> {
  const events = Array.from({ length: count }, (_, i) => ({
    eventId: randomUUID(),
    type: 'SearchPerformed',
    data: { queryHash: createHash('sha256').update(`${stream}-${i}`).digest('hex'), mode: 'hybrid', topK: 5, resultChunkIds: [] },
    metadata: metadataFor({ tenantId, actor: 'system', correlationId: randomUUID(), now: new Date() }, 'SearchPerformed'),
  }));
  await store.appendToStream(streamId('activity', tenantId, stream), events, { expectedRevision: 'any' });
}
