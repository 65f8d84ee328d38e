/**
 * EventStoreDB / KurrentDB adapter of the event store port (services/core/eventStore.ts), the
 * production store. EventStoreDB's $all is already a gap-free total order (commit, prepare), so
 * no fence is needed here; what this adapter adds is the port's shape:
 *   - GlobalPosition = 20-digit zero-padded commit + '-' + 20-digit zero-padded prepare
 *     (string order == $all order);
 *   - readAll and headPosition skip system events ($-prefixed event types or streams:
 *     $metadata, $streamDeleted, $stats-*, projection links), which no projection consumes;
 *   - deleteStream tombstones (hard delete): the stream can never be written again. Its events
 *     stay visible in $all until the next scavenge, unlike the PostgreSQL store;
 *   - server errors map to WrongExpectedRevisionError and StreamDeletedError.
 */
import {
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  START as ESDB_START,
  StreamDeletedError as EsdbStreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  jsonEvent,
} from '@eventstore/db-client';
import type { AllStreamSubscription, JSONType, Position, ReadPosition } from '@eventstore/db-client';
import type { EventMetadata } from '../../contracts/metadata';
import type { EventStore, GlobalPosition, ReadStreamResult, RecordedEvent } from '../../services/core/eventStore';
import { START, StreamDeletedError, WrongExpectedRevisionError } from '../../services/core/eventStore';

const POSITION = /^(\d{20})-(\d{20})$/;
const PAGE = 500;

export function encodeEsdbPosition(p: Position): GlobalPosition {
  return `${p.commit.toString().padStart(20, '0')}-${p.prepare.toString().padStart(20, '0')}`;
}

export function decodeEsdbPosition(position: GlobalPosition): Position | null {
  if (position === START) return null;
  const m = POSITION.exec(position);
  if (!m) throw new TypeError(`not an EventStoreDB position: ${JSON.stringify(position).slice(0, 60)}`);
  return { commit: BigInt(m[1]!), prepare: BigInt(m[2]!) };
}

/** Minimal structural view of a recorded event of the client (JSON or binary). */
interface EsdbRecorded {
  id: string;
  streamId: string;
  type: string;
  revision: bigint;
  created: Date;
  data: unknown;
  metadata: unknown;
  position?: Position;
}

function isSystem(e: EsdbRecorded): boolean {
  return e.type.startsWith('$') || e.streamId.startsWith('$');
}

function toRecorded(e: EsdbRecorded): RecordedEvent {
  return {
    eventId: e.id,
    type: e.type,
    data: e.data,
    metadata: e.metadata as EventMetadata,
    streamId: e.streamId,
    streamPosition: e.revision,
    // Servers before 22.6 do not return positions on stream reads; every supported one does.
    position: e.position ? encodeEsdbPosition(e.position) : START,
    recordedAt: e.created,
  };
}

export async function createEsdbEventStore(
  connectionString: string,
  opts: { onError?: (err: unknown) => void } = {},
): Promise<EventStore> {
  const client = EventStoreDBClient.connectionString(connectionString);
  const onError = opts.onError ?? ((err: unknown) => console.error('[event-store]', err));
  const listeners = new Set<() => void>();
  const fire = () => {
    for (const listener of [...listeners]) {
      try {
        listener();
      } catch (err) {
        onError(err);
      }
    }
  };
  let subscription: AllStreamSubscription | null = null;
  let resubscribeTimer: NodeJS.Timeout | null = null;
  let failures = 0;
  let closed = false;

  /**
   * Wake-ups for appends by other processes: a live subscription to $all from its end, with
   * system events filtered on the server. Re-subscribed with backoff when it fails.
   */
  const subscribe = () => {
    if (subscription || closed || listeners.size === 0) return;
    const sub = client.subscribeToAll({ fromPosition: END, filter: excludeSystemEvents(), resolveLinkTos: false });
    subscription = sub;
    sub.on('data', () => {
      failures = 0;
      fire();
    });
    sub.on('error', (err) => {
      if (subscription !== sub) return;
      subscription = null;
      if (closed || listeners.size === 0) return;
      onError(err);
      resubscribeTimer = setTimeout(() => {
        resubscribeTimer = null;
        subscribe();
        fire(); // events may have been appended while we were not subscribed
      }, Math.min(5_000, 200 * 2 ** failures++));
      resubscribeTimer.unref();
    });
  };
  const unsubscribe = async () => {
    if (resubscribeTimer) clearTimeout(resubscribeTimer);
    resubscribeTimer = null;
    const sub = subscription;
    subscription = null;
    if (sub) await sub.unsubscribe().catch(() => undefined);
  };

  /** Reads $all forwards from `from` (inclusive on the server), our filter applied client-side. */
  async function readForwards(after: Position | null, limit: number): Promise<RecordedEvent[]> {
    const out: RecordedEvent[] = [];
    let cursor: Position | null = after;
    for (;;) {
      const fromPosition: ReadPosition = cursor ?? ESDB_START;
      let seen = 0;
      for await (const resolved of client.readAll({ fromPosition, maxCount: PAGE, direction: FORWARDS, resolveLinkTos: false })) {
        seen++;
        const e = resolved.event as EsdbRecorded | undefined;
        if (!e?.position) continue;
        // The page starts at the cursor itself: skip it and anything not strictly after it.
        if (cursor && comparePositions(e.position, cursor) <= 0) continue;
        cursor = e.position;
        if (isSystem(e)) continue;
        out.push(toRecorded(e));
        if (out.length >= limit) return out;
      }
      if (seen < PAGE) return out;
    }
  }

  /**
   * The port promises the position of the LAST appended event (clients wait for projections to
   * reach it). The server's append result carries the write's log position, which for a
   * multi-event write is not documented to be the last event's, so those read their last event
   * back by revision (exact even if another append follows at once).
   */
  async function lastAppendedPosition(streamId: string, revision: bigint, count: number, written?: Position): Promise<GlobalPosition> {
    if (count === 1 && written) return encodeEsdbPosition(written);
    for await (const resolved of client.readStream(streamId, { fromRevision: revision, maxCount: 1, direction: FORWARDS })) {
      const e = resolved.event as EsdbRecorded | undefined;
      if (e?.position) return encodeEsdbPosition(e.position);
    }
    if (written) return encodeEsdbPosition(written);
    throw new Error(`cannot determine the position of the events appended to ${streamId}`);
  }

  const store: EventStore = {
    kind: 'eventstoredb',

    async appendToStream(streamId, events, { expectedRevision }) {
      if (closed) throw new Error('event store is closed');
      if (events.length === 0) throw new TypeError('append needs at least one event');
      try {
        const result = await client.appendToStream(
          streamId,
          events.map((e) =>
            jsonEvent({ id: e.eventId, type: e.type, data: (e.data ?? null) as JSONType, metadata: e.metadata as unknown as JSONType }),
          ),
          { expectedRevision },
        );
        const position = await lastAppendedPosition(streamId, result.nextExpectedRevision, events.length, result.position);
        fire();
        return { nextExpectedRevision: result.nextExpectedRevision, position };
      } catch (err) {
        if (err instanceof WrongExpectedVersionError) {
          const actual = typeof err.actualVersion === 'bigint' ? err.actualVersion : null;
          throw new WrongExpectedRevisionError(streamId, expectedRevision, actual);
        }
        if (err instanceof EsdbStreamDeletedError) throw new StreamDeletedError(streamId);
        throw err;
      }
    },

    async readStream(streamId): Promise<ReadStreamResult> {
      const events: RecordedEvent[] = [];
      try {
        for await (const resolved of client.readStream(streamId, { fromRevision: ESDB_START, direction: FORWARDS, resolveLinkTos: false })) {
          const e = resolved.event as EsdbRecorded | undefined;
          if (e) events.push(toRecorded(e));
        }
      } catch (err) {
        // A tombstoned stream reads like a missing one: the port's readers only ask "what is there".
        if (err instanceof StreamNotFoundError || err instanceof EsdbStreamDeletedError) return { events: [], revision: null };
        throw err;
      }
      const last = events[events.length - 1];
      return { events, revision: last ? last.streamPosition : null };
    },

    async readAll({ after, limit }) {
      if (!Number.isInteger(limit) || limit < 1) throw new TypeError('limit must be a positive integer');
      return readForwards(decodeEsdbPosition(after), limit);
    },

    async headPosition() {
      // Newest non-system event: walk back from the end past system events.
      let from: ReadPosition = END;
      for (;;) {
        let seen = 0;
        let oldest: Position | null = null;
        for await (const resolved of client.readAll({ fromPosition: from, maxCount: PAGE, direction: BACKWARDS, resolveLinkTos: false })) {
          seen++;
          const e = resolved.event as EsdbRecorded | undefined;
          if (!e?.position) continue;
          if (from !== END && comparePositions(e.position, from) >= 0) continue;
          if (!isSystem(e)) return encodeEsdbPosition(e.position);
          oldest = e.position;
        }
        if (seen < PAGE || !oldest) return START;
        from = oldest;
      }
    },

    onAppended(listener) {
      listeners.add(listener);
      subscribe();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) void unsubscribe();
      };
    },

    async deleteStream(streamId) {
      try {
        await client.tombstoneStream(streamId);
      } catch (err) {
        if (err instanceof EsdbStreamDeletedError) return; // already tombstoned: same outcome
        throw err;
      }
    },

    async streamsOfTenant(tenantId) {
      // EventStoreDB keeps no index of stream names we can query by tenant without the
      // $streams system projection, so scan $all once; tenant deletion is rare.
      const found = new Set<string>();
      for await (const resolved of client.readAll({ fromPosition: ESDB_START, direction: FORWARDS, resolveLinkTos: false })) {
        const id = resolved.event?.streamId;
        if (id && !id.startsWith('$') && (id.endsWith(`-${tenantId}`) || id.includes(`-${tenantId}.`))) found.add(id);
      }
      return [...found];
    },

    async ping() {
      // Any cheap authenticated read proves the node answers (and we may read $all).
      for await (const _ of client.readAll({ fromPosition: END, direction: BACKWARDS, maxCount: 1, deadline: 5_000 })) break;
    },

    async close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      await unsubscribe();
      await client.dispose();
    },
  };
  return store;
}

function comparePositions(a: Position, b: Position): number {
  if (a.commit !== b.commit) return a.commit < b.commit ? -1 : 1;
  if (a.prepare !== b.prepare) return a.prepare < b.prepare ? -1 : 1;
  return 0;
}
