import { randomUUID } from 'node:crypto';
import type { DomainEvent, EventMetadata } from '../../contracts/metadata';
import { CURRENT_SCHEMA_VERSION } from '../../contracts/events';
import { ConflictError, PreconditionFailedError } from './errors';
import type { EventStore, ExpectedRevision, GlobalPosition, RecordedEvent } from './eventStore';
import { StreamDeletedError, WrongExpectedRevisionError } from './eventStore';
import { upcast } from '../../contracts/upcast';

/** Who asks, for which tenant, under which correlation: arrives with every command. */
/** Observers of appended events (metrics); set once by the composition root. */
export const appendObservers: ((types: string[]) => void)[] = [];

export interface CommandContext {
  tenantId: string;
  actor: string;
  correlationId: string;
  causationId?: string | null;
  now: Date;
}

export interface Aggregate<S, E extends DomainEvent> {
  initialState(): S;
  evolve(state: S, event: E): S;
}

export interface HandleResult<S, E> {
  events: E[];
  state: S;
  revision: bigint | null;
  /** Global position of the last appended event, or null when the decision produced none. */
  position: GlobalPosition | null;
}

export function metadataFor(ctx: CommandContext, type: string): EventMetadata {
  return {
    tenantId: ctx.tenantId,
    actor: ctx.actor,
    correlationId: ctx.correlationId,
    causationId: ctx.causationId ?? null,
    schemaVersion: CURRENT_SCHEMA_VERSION[type] ?? 1,
    occurredAt: ctx.now.toISOString(),
  };
}

export function foldStream<S, E extends DomainEvent>(aggregate: Aggregate<S, E>, events: RecordedEvent[]): S {
  let state = aggregate.initialState();
  for (const e of events) state = aggregate.evolve(state, upcast(e) as E);
  return state;
}

/**
 * read stream -> decide -> append(expected revision). A concurrent writer makes the append fail
 * with 409 (or 412 when the client pinned a revision with If-Match), never a lost write.
 */
export async function handle<S, E extends DomainEvent>(
  store: EventStore,
  streamId: string,
  aggregate: Aggregate<S, E>,
  ctx: CommandContext,
  decide: (state: S) => E[],
  options: { ifMatch?: bigint } = {},
): Promise<HandleResult<S, E>> {
  const { events: recorded, revision } = await store.readStream(streamId);
  if (options.ifMatch !== undefined && options.ifMatch !== revision) {
    throw new PreconditionFailedError(`revision is ${revision === null ? 'none' : String(revision)}, not ${String(options.ifMatch)}`);
  }
  const state = foldStream(aggregate, recorded);
  const events = decide(state);
  if (events.length === 0) return { events, state, revision, position: null };
  const expectedRevision: ExpectedRevision = revision === null ? 'no_stream' : revision;
  try {
    const result = await store.appendToStream(
      streamId,
      events.map((e) => ({ eventId: randomUUID(), type: e.type, data: e.data, metadata: metadataFor(ctx, e.type) })),
      { expectedRevision },
    );
    for (const o of appendObservers) o(events.map((e) => e.type));
    const next = events.reduce((s, e) => aggregate.evolve(s, e), state);
    return { events, state: next, revision: result.nextExpectedRevision, position: result.position };
  } catch (err) {
    if (err instanceof WrongExpectedRevisionError) {
      if (options.ifMatch !== undefined) throw new PreconditionFailedError('the resource changed meanwhile');
      throw new ConflictError('the resource was changed by a concurrent request; retry');
    }
    if (err instanceof StreamDeletedError) throw new ConflictError('the resource was permanently deleted');
    throw err;
  }
}

/** Append without reading (security and activity events that no decision depends on). */
export async function record(store: EventStore, streamId: string, ctx: CommandContext, events: DomainEvent[]): Promise<GlobalPosition> {
  const res = await store.appendToStream(
    streamId,
    events.map((e) => ({ eventId: randomUUID(), type: e.type, data: e.data, metadata: metadataFor(ctx, e.type) })),
    { expectedRevision: 'any' },
  );
  for (const o of appendObservers) o(events.map((e) => e.type));
  return res.position;
}
