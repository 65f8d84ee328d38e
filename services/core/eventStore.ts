import type { EventMetadata } from '../../contracts/metadata';

/**
 * The event store port. Two adapters implement it (PostgreSQL and EventStoreDB) and pass one
 * contract suite (test/contract/eventStore.contract.ts).
 */

/** Revision of a stream = position of its last event, starting at 0n. */
export type ExpectedRevision = bigint | 'no_stream' | 'stream_exists' | 'any';

export interface NewEvent {
  eventId: string;
  type: string;
  data: unknown;
  metadata: EventMetadata;
}

/**
 * Opaque, totally ordered position in the global log, comparable as strings
 * (fixed-width, zero padded). Projections checkpoint it; clients pass it back as `min_position`.
 */
export type GlobalPosition = string;
export const START: GlobalPosition = '';

export interface RecordedEvent {
  eventId: string;
  type: string;
  data: unknown;
  metadata: EventMetadata;
  streamId: string;
  /** 0-based position within its stream. */
  streamPosition: bigint;
  position: GlobalPosition;
  recordedAt: Date;
}

export interface AppendResult {
  /** Revision of the stream after the append (pass as expectedRevision next time). */
  nextExpectedRevision: bigint;
  /** Position of the last appended event in the global log. */
  position: GlobalPosition;
}

export interface ReadStreamResult {
  events: RecordedEvent[];
  /** Current revision, or null when the stream does not exist. */
  revision: bigint | null;
}

export interface EventStore {
  readonly kind: 'postgres' | 'eventstoredb';
  /** Atomically appends all events; throws WrongExpectedRevisionError on a revision mismatch. */
  appendToStream(streamId: string, events: NewEvent[], options: { expectedRevision: ExpectedRevision }): Promise<AppendResult>;
  readStream(streamId: string): Promise<ReadStreamResult>;
  /**
   * Committed events strictly after `after`, in global order, at most `limit`. Never skips an
   * event that a slower concurrent transaction commits later (the reader waits for it instead).
   */
  readAll(options: { after: GlobalPosition; limit: number }): Promise<RecordedEvent[]>;
  /** Position of the newest event readable by readAll now (START when empty). */
  headPosition(): Promise<GlobalPosition>;
  /** Calls `listener` whenever new events may be readable (best effort wake-up; readers also poll). */
  onAppended(listener: () => void): () => void;
  /** Tombstones a stream: its events are removed and it can never be written again. */
  deleteStream(streamId: string): Promise<void>;
  /** Live (not deleted) streams of a tenant, for tenant deletion. */
  streamsOfTenant(tenantId: string): Promise<string[]>;
  /** Is the backing server reachable? For /ready. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class WrongExpectedRevisionError extends Error {
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    readonly actual: bigint | null,
  ) {
    super(`stream ${streamId}: expected revision ${String(expected)}, actual ${actual === null ? 'no stream' : String(actual)}`);
    this.name = 'WrongExpectedRevisionError';
  }
}

export class StreamDeletedError extends Error {
  constructor(readonly streamId: string) {
    super(`stream ${streamId} is deleted`);
    this.name = 'StreamDeletedError';
  }
}
