/**
 * The behaviour every EventStore adapter must have (services/core/eventStore.ts). Each adapter's
 * spec calls eventStoreContract with a factory; the factory runs once per suite.
 *
 * The suite never assumes it has the store to itself: every test writes streams of its own
 * (random tenant and entity ids) and reads $all from a checkpoint it took itself, filtering on
 * its own tenant. It does assume nothing else writes to the store WHILE a test that checks
 * exact readAll pages runs (true for a fresh database or a dedicated server).
 */
import { randomUUID } from 'node:crypto';
import type { EventMetadata } from '../../contracts/metadata';
import { streamId as makeStreamId } from '../../contracts/naming';
import type { EventStore, GlobalPosition, NewEvent, RecordedEvent } from '../../services/core/eventStore';
import { START, StreamDeletedError, WrongExpectedRevisionError } from '../../services/core/eventStore';

export interface EventStoreFixture {
  store: EventStore;
  cleanup(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Retries `fn` until `done(result)` holds or the deadline passes; returns the last result. */
// 30 s: the PostgreSQL store's reads are fenced cluster-wide, and CI runs other suites (some
// holding transactions open for seconds) on the same server.
async function eventually<T>(fn: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (done(v) || Date.now() > deadline) return v;
    await sleep(20);
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

export function eventStoreContract(name: string, factory: () => Promise<EventStoreFixture>): void {
  describe(`event store contract: ${name}`, () => {
    let fixture: EventStoreFixture | undefined;
    let store: EventStore;
    const tenantId = randomUUID();

    const meta = (overrides: Partial<EventMetadata> = {}): EventMetadata => ({
      tenantId,
      actor: 'user:alice',
      correlationId: randomUUID(),
      causationId: null,
      schemaVersion: 1,
      occurredAt: new Date().toISOString(),
      ...overrides,
    });
    const ev = (type: string, data: unknown = { n: 1 }): NewEvent => ({ eventId: randomUUID(), type, data, metadata: meta() });
    const sid = (label: string) => makeStreamId('document', tenantId, `${label}_${randomUUID().slice(0, 8)}`);
    const ids = (events: { eventId: string }[]) => events.map((e) => e.eventId);

    /** Our tenant's events after `after`, paging through readAll. */
    async function readOursAfter(after: GlobalPosition): Promise<RecordedEvent[]> {
      const out: RecordedEvent[] = [];
      let cursor = after;
      for (;;) {
        const page = await store.readAll({ after: cursor, limit: 200 });
        if (page.length === 0) return out;
        out.push(...page.filter((e) => e.metadata?.tenantId === tenantId));
        cursor = page[page.length - 1]!.position;
      }
    }

    beforeAll(async () => {
      fixture = await factory();
      store = fixture.store;
    }, 300_000);

    afterAll(async () => {
      await fixture?.cleanup();
    }, 60_000);

    it('appends to a new stream with no_stream and reads it back', async () => {
      const s = sid('new');
      const events = [ev('DocumentUploaded'), ev('DocumentRenamed'), ev('DocumentTagged')];
      const res = await store.appendToStream(s, events, { expectedRevision: 'no_stream' });
      expect(res.nextExpectedRevision).toBe(2n);
      expect(typeof res.position).toBe('string');
      expect(res.position > START).toBe(true);

      const read = await store.readStream(s);
      expect(read.revision).toBe(2n);
      expect(ids(read.events)).toEqual(ids(events));
      expect(read.events.map((e) => e.streamPosition)).toEqual([0n, 1n, 2n]);
      expect(read.events.every((e) => e.streamId === s)).toBe(true);
      expect(read.events[2]!.position).toBe(res.position);
    });

    it('rejects a stale expected revision and writes nothing', async () => {
      const s = sid('stale');
      await store.appendToStream(s, [ev('A'), ev('B')], { expectedRevision: 'no_stream' });

      const err = await rejection(store.appendToStream(s, [ev('C')], { expectedRevision: 0n }));
      expect(err).toBeInstanceOf(WrongExpectedRevisionError);
      expect(err).toMatchObject({ streamId: s, expected: 0n, actual: 1n });

      expect(await rejection(store.appendToStream(s, [ev('C')], { expectedRevision: 'no_stream' }))).toBeInstanceOf(
        WrongExpectedRevisionError,
      );
      const read = await store.readStream(s);
      expect(read.revision).toBe(1n);
      expect(read.events.map((e) => e.type)).toEqual(['A', 'B']);

      const missing = sid('missing');
      const err2 = await rejection(store.appendToStream(missing, [ev('A')], { expectedRevision: 3n }));
      expect(err2).toBeInstanceOf(WrongExpectedRevisionError);
      expect(err2).toMatchObject({ actual: null });
      expect(await store.readStream(missing)).toEqual({ events: [], revision: null });
    });

    it("supports 'any' and 'stream_exists'", async () => {
      const s = sid('any');
      expect(await rejection(store.appendToStream(s, [ev('A')], { expectedRevision: 'stream_exists' }))).toBeInstanceOf(
        WrongExpectedRevisionError,
      );
      expect((await store.readStream(s)).revision).toBeNull();

      expect((await store.appendToStream(s, [ev('A')], { expectedRevision: 'any' })).nextExpectedRevision).toBe(0n);
      expect((await store.appendToStream(s, [ev('B'), ev('C')], { expectedRevision: 'any' })).nextExpectedRevision).toBe(2n);
      expect((await store.appendToStream(s, [ev('D')], { expectedRevision: 'stream_exists' })).nextExpectedRevision).toBe(3n);
      expect((await store.appendToStream(s, [ev('E')], { expectedRevision: 3n })).nextExpectedRevision).toBe(4n);
      const read = await store.readStream(s);
      expect(read.events.map((e) => e.type)).toEqual(['A', 'B', 'C', 'D', 'E']);
      expect(read.revision).toBe(4n);
    });

    it('readStream returns events in stream order with the current revision', async () => {
      const s = sid('order');
      const first = [ev('One'), ev('Two'), ev('Three')];
      const second = [ev('Four'), ev('Five')];
      const r1 = await store.appendToStream(s, first, { expectedRevision: 'no_stream' });
      const r2 = await store.appendToStream(s, second, { expectedRevision: r1.nextExpectedRevision });
      expect(r2.nextExpectedRevision).toBe(4n);
      expect(r2.position > r1.position).toBe(true);

      const read = await store.readStream(s);
      expect(read.revision).toBe(4n);
      expect(read.events.map((e) => e.type)).toEqual(['One', 'Two', 'Three', 'Four', 'Five']);
      expect(read.events.map((e) => e.streamPosition)).toEqual([0n, 1n, 2n, 3n, 4n]);
      const positions = read.events.map((e) => e.position);
      expect([...positions].sort()).toEqual(positions);
      expect(new Set(positions).size).toBe(positions.length);

      expect(await store.readStream(sid('never-written'))).toEqual({ events: [], revision: null });
    });

    it('readAll returns committed events in global order, strictly after a checkpoint, with a limit', async () => {
      const head0 = await store.headPosition();
      const a = sid('all-a');
      const b = sid('all-b');
      const a1 = ev('A1');
      const b1 = ev('B1');
      const b2 = ev('B2');
      const a2 = ev('A2');
      await store.appendToStream(a, [a1], { expectedRevision: 'no_stream' });
      await store.appendToStream(b, [b1, b2], { expectedRevision: 'no_stream' });
      const last = await store.appendToStream(a, [a2], { expectedRevision: 0n });

      // head0 may lie before this file's earlier events (the PostgreSQL store's head stops short of
      // transactions still open anywhere on the server), so only streams a and b are compared.
      const onlyAB = async () => (await readOursAfter(head0)).filter((e) => e.streamId === a || e.streamId === b);
      const mine = await eventually(onlyAB, (v) => v.length >= 4);
      expect(ids(mine)).toEqual(ids([a1, b1, b2, a2]));
      expect(mine.every((e) => e.position > head0)).toBe(true);
      for (let i = 1; i < mine.length; i++) expect(mine[i]!.position > mine[i - 1]!.position).toBe(true);
      expect(mine[3]!.position).toBe(last.position);
      expect(mine[1]).toMatchObject({ streamId: b, streamPosition: 0n, type: 'B1' });

      // Strictly after: the checkpoint event itself is not returned; the limit caps the page.
      const page = await store.readAll({ after: mine[1]!.position, limit: 2 });
      expect(ids(page)).toEqual(ids([b2, a2]));
      const justBefore = (await store.readAll({ after: head0, limit: 10_000 })).filter((e) => e.position < mine[0]!.position).pop()?.position ?? head0;
      const one = await store.readAll({ after: justBefore, limit: 1 });
      expect(one).toHaveLength(1);
      expect(one[0]!.eventId).toBe(a1.eventId);
      expect(await readOursAfter(last.position)).toEqual([]);

      expect(await eventually(() => store.headPosition(), (h) => h === last.position)).toBe(last.position);
      const fromStart = await store.readAll({ after: START, limit: 1 });
      expect(fromStart).toHaveLength(1);
      expect(fromStart[0]!.position > START).toBe(true);
    });

    it('lets exactly one of many concurrent appends with the same expected revision win', async () => {
      const s = sid('race');
      await store.appendToStream(s, [ev('Created')], { expectedRevision: 'no_stream' });
      const contenders = Array.from({ length: 10 }, (_, i) => ev(`Attempt${i}`));
      const results = await Promise.allSettled(contenders.map((e) => store.appendToStream(s, [e], { expectedRevision: 0n })));
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(9);
      for (const r of lost) expect(r.reason).toBeInstanceOf(WrongExpectedRevisionError);
      const read = await store.readStream(s);
      expect(read.revision).toBe(1n);
      const winner = contenders[results.findIndex((r) => r.status === 'fulfilled')]!;
      expect(read.events[1]!.eventId).toBe(winner.eventId);

      // Creating a stream races the same way.
      const fresh = sid('create-race');
      const creates = await Promise.allSettled(
        Array.from({ length: 8 }, () => store.appendToStream(fresh, [ev('Created')], { expectedRevision: 'no_stream' })),
      );
      expect(creates.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of creates) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(WrongExpectedRevisionError);
      expect((await store.readStream(fresh)).events).toHaveLength(1);
    });

    it('deleteStream tombstones a stream: it reads as missing and can never be written again', async () => {
      const s = sid('doomed');
      const other = sid('survivor');
      await store.appendToStream(s, [ev('A'), ev('B')], { expectedRevision: 'no_stream' });
      await store.appendToStream(other, [ev('A')], { expectedRevision: 'no_stream' });

      await store.deleteStream(s);
      expect(await store.readStream(s)).toEqual({ events: [], revision: null });
      for (const expectedRevision of ['any', 'no_stream', 'stream_exists', 1n] as const) {
        expect(await rejection(store.appendToStream(s, [ev('C')], { expectedRevision }))).toBeInstanceOf(StreamDeletedError);
      }
      await store.deleteStream(s); // idempotent
      expect((await store.readStream(other)).revision).toBe(0n);
    });

    it('round-trips data and metadata exactly', async () => {
      const s = sid('roundtrip');
      const data = {
        title: 'Grüße, 世界 \u{1F680} "quoted" \\ back\nslash',
        size: 1234567,
        ratio: 0.125,
        negative: -42,
        flags: [true, false, null],
        nested: { deep: { list: [1, 'two', { three: 3 }] }, empty: {}, none: null },
      };
      const metadata = meta({ actor: 'token:t-1', causationId: randomUUID(), schemaVersion: 3 });
      const event: NewEvent = { eventId: randomUUID(), type: 'DocumentUploaded', data, metadata };
      const head0 = await store.headPosition();
      const before = Date.now();
      const res = await store.appendToStream(s, [event], { expectedRevision: 'no_stream' });

      const [fromStream] = (await store.readStream(s)).events;
      const fromAll = (await eventually(() => readOursAfter(head0), (v) => v.some((e) => e.eventId === event.eventId))).find(
        (e) => e.eventId === event.eventId,
      );
      for (const read of [fromStream, fromAll]) {
        expect(read).toBeDefined();
        expect(read!.eventId).toBe(event.eventId);
        expect(read!.type).toBe('DocumentUploaded');
        expect(read!.data).toEqual(data);
        expect(read!.metadata).toEqual(metadata);
        expect(read!.streamId).toBe(s);
        expect(read!.streamPosition).toBe(0n);
        expect(read!.position).toBe(res.position);
        expect(read!.recordedAt).toBeInstanceOf(Date);
        expect(Math.abs(read!.recordedAt.getTime() - before)).toBeLessThan(60_000);
      }
    });

    it('wakes onAppended listeners after an append, until unsubscribed; ping answers', async () => {
      await store.ping();
      let calls = 0;
      const off = store.onAppended(() => {
        calls++;
      });
      try {
        await store.appendToStream(sid('wake'), [ev('A')], { expectedRevision: 'no_stream' });
        expect(await eventually(async () => calls, (c) => c > 0, 5_000)).toBeGreaterThan(0);
      } finally {
        off();
      }
    });

    it('a subscriber loop reading readAll from checkpoints sees every event exactly once while 20 writers append', async () => {
      const WRITERS = 20;
      const APPENDS = 12;
      const seen = new Map<string, number>();
      const seenOrder: RecordedEvent[] = [];
      const written = new Set<string>();
      let checkpoint = await store.headPosition();
      let writersDone = false;
      // In an object: TypeScript cannot see closures assign it and would narrow a plain `let` to null.
      const waker: { wake: (() => void) | null } = { wake: null };
      const off = store.onAppended(() => waker.wake?.());

      // Gives up 30 s after the writers are done (not at a fixed time from the start: a loaded machine is slow to write).
      let deadline = Infinity;
      const subscriber = (async () => {
        for (;;) {
          const page = await store.readAll({ after: checkpoint, limit: 37 });
          for (const e of page) {
            if (!(e.position > checkpoint)) throw new Error(`readAll returned ${e.position} at or before ${checkpoint}`);
            checkpoint = e.position;
            // Only this test's streams: the starting head may lie before earlier tests' events.
            if (e.metadata?.tenantId !== tenantId || !/\.(shared|writer\d+)_[0-9a-f]{8}$/.test(e.streamId)) continue;
            seen.set(e.eventId, (seen.get(e.eventId) ?? 0) + 1);
            seenOrder.push(e);
          }
          if (page.length > 0) continue;
          if (writersDone && [...written].every((id) => seen.has(id))) return;
          if (Date.now() > deadline) return;
          // Sleep until woken by an append or 25 ms pass (wake-ups are best effort).
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 25);
            waker.wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          waker.wake = null;
        }
      })();

      const shared = sid('shared');
      await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          const own = sid(`writer${w}`);
          let revision: bigint | 'no_stream' = 'no_stream';
          for (let k = 0; k < APPENDS; k++) {
            const batch = Array.from({ length: 1 + ((w + k) % 3) }, (_, i) => ev(`W${w}K${k}I${i}`));
            if (k % 4 === 3) {
              await store.appendToStream(shared, batch, { expectedRevision: 'any' });
            } else {
              revision = (await store.appendToStream(own, batch, { expectedRevision: revision })).nextExpectedRevision;
            }
            for (const e of batch) written.add(e.eventId);
          }
        }),
      );
      writersDone = true;
      deadline = Date.now() + 30_000;
      waker.wake?.();
      await subscriber;
      off();

      const missing = [...written].filter((id) => !seen.has(id));
      const duplicated = [...seen].filter(([, n]) => n > 1);
      const unexpected = [...seen.keys()].filter((id) => !written.has(id));
      expect({ missing: missing.length, duplicated: duplicated.length, unexpected: unexpected.length }).toEqual({
        missing: 0,
        duplicated: 0,
        unexpected: 0,
      });
      // Within each stream, the global order is the stream order.
      const lastPositionByStream = new Map<string, bigint>();
      for (const e of seenOrder) {
        const prev = lastPositionByStream.get(e.streamId);
        if (prev !== undefined) expect(e.streamPosition).toBe(prev + 1n);
        lastPositionByStream.set(e.streamId, e.streamPosition);
      }
    });
  });
}
