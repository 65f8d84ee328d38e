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
 * A command that lost an optimistic-concurrency race without a pinned revision is decided again on
 * the stream's new state: the decider is pure, so re-running it is exactly what a client's retry
 * would do, and two admins issuing tokens at once both get theirs (or the decider's own answer).
 * Commands on one stream are also taken one at a time within a process, so races are left only
 * between processes; a stream that keeps moving for every attempt answers 409.
 */
export const COMMAND_ATTEMPTS = 8;
const backoffMs = (attempt: number) => 1 + Math.floor(Math.random() * Math.min(200, 5 * 2 ** attempt));

/** Per-stream queue of this process's commands; an entry lives only while commands wait on it. */
const streamTails = new Map<string, Promise<void>>();
async function oneAtATime<T>(streamId: string, fn: () => Promise<T>): Promise<T> {
  const before = streamTails.get(streamId) ?? Promise.resolve();
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  const tail = before.then(() => done);
  streamTails.set(streamId, tail);
  await before;
  try {
    return await fn();
  } finally {
    release();
    if (streamTails.get(streamId) === tail) streamTails.delete(streamId);
  }
}

/**
 * read stream -> decide -> append(expected revision). A concurrent writer makes the append fail;
 * unpinned commands are re-decided (COMMAND_ATTEMPTS in all), then answer 409; a command pinned
 * with If-Match answers 412 at once. Never a lost write.
 */
export async function handle<S, E extends DomainEvent>(
  store: EventStore,
  streamId: string,
  aggregate: Aggregate<S, E>,
  ctx: CommandContext,
  decide: (state: S) => E[],
  options: { ifMatch?: bigint } = {},
): Promise<HandleResult<S, E>> {
  const attempt = async (): Promise<HandleResult<S, E> | 'lost'> => {
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
        return 'lost';
      }
      if (err instanceof StreamDeletedError) throw new ConflictError('the resource was permanently deleted');
      throw err;
    }
  };
  for (let n = 1; ; n++) {
    const result = await oneAtATime(streamId, attempt);
    if (result !== 'lost') return result;
    if (n >= COMMAND_ATTEMPTS) throw new ConflictError('the resource was changed by concurrent requests; retry');
    await new Promise<void>((r) => setTimeout(r, backoffMs(n)));
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
