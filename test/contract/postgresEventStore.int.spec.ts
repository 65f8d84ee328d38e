/**
 * The PostgreSQL event store against a real server (embedded, or DATABASE_URL): the shared
 * contract, then what only this adapter has to prove: the xid fence keeps a checkpointing reader
 * gap-free while slow and rolled-back transactions race, the migration tolerates concurrent
 * starters, and NOTIFY reaches other processes.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { streamId } from '../../contracts/naming';
import { createPostgresEventStore, type PostgresEventStore } from '../../infra/eventstore/postgres';
import { createPool } from '../../infra/postgres/pool';
import { START, type NewEvent, type RecordedEvent } from '../../services/core/eventStore';
import { dropDatabase, freshDatabase } from '../support/postgres';
import { eventStoreContract } from './eventStore.contract';

eventStoreContract('postgres', async () => {
  const url = await freshDatabase();
  const pool = createPool(url, { max: 20 });
  const store = await createPostgresEventStore(pool);
  return {
    store,
    async cleanup() {
      await store.close();
      await pool.end();
      await dropDatabase(url);
    },
  };
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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

/** Small deterministic PRNG (mulberry32), so a failing interleaving mix can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('postgres event store: global order with the xid fence', () => {
  let url: string | undefined;
  let pool: pg.Pool;
  let store: PostgresEventStore;
  const tenantId = randomUUID();

  const ev = (type: string): NewEvent => ({
    eventId: randomUUID(),
    type,
    data: { type },
    metadata: {
      tenantId,
      actor: 'system',
      correlationId: randomUUID(),
      causationId: null,
      schemaVersion: 1,
      occurredAt: new Date().toISOString(),
    },
  });
  const sid = (label: string) => streamId('document', tenantId, `${label}_${randomUUID().slice(0, 8)}`);
  const ids = (events: { eventId: string }[]) => events.map((e) => e.eventId);

  /** What a reader that checkpoints global_position alone would read (the bug the fence fixes). */
  const naiveRead = async (after: bigint) =>
    (
      await pool.query<{ event_id: string; global_position: string }>(
        'SELECT event_id, global_position FROM es.events WHERE global_position > $1 ORDER BY global_position LIMIT 1000',
        [after.toString()],
      )
    ).rows;
  const maxGlobalPosition = async () =>
    BigInt((await pool.query<{ m: string }>('SELECT coalesce(max(global_position), 0) AS m FROM es.events')).rows[0]!.m);

  /** Runs `fn` in a transaction on a dedicated connection; ROLLBACK instead of COMMIT on request. */
  async function inTransaction(fn: (c: pg.PoolClient) => Promise<void>, outcome: 'commit' | 'rollback' = 'commit'): Promise<void> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await fn(client);
      await client.query(outcome === 'commit' ? 'COMMIT' : 'ROLLBACK');
      client.release();
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      client.release(true);
      throw err;
    }
  }

  beforeAll(async () => {
    url = await freshDatabase();
    pool = createPool(url, { max: 24 });
    store = await createPostgresEventStore(pool);
  }, 120_000);

  afterAll(async () => {
    await store?.close();
    await pool?.end();
    if (url) await dropDatabase(url);
  });

  it('a reader by global position alone skips a slower transaction; the fenced reader waits for it', async () => {
    const head0 = await store.headPosition();
    const naiveFrom = await maxGlobalPosition();
    const slowEvent = ev('Slow');
    const fastEvent = ev('Fast');
    let naiveCheckpoint = 0n;
    const slow = await pool.connect();
    try {
      await slow.query('BEGIN');
      // Takes the lower xid AND the lower global_position, then stays uncommitted...
      await store.appendWithin(slow, sid('slow'), [slowEvent], { expectedRevision: 'no_stream' });
      // ...while a later transaction takes a higher position and commits first.
      await store.appendToStream(sid('fast'), [fastEvent], { expectedRevision: 'no_stream' });

      const naive = await naiveRead(naiveFrom);
      expect(naive.map((r) => r.event_id)).toEqual([fastEvent.eventId]);
      naiveCheckpoint = BigInt(naive[0]!.global_position);
      // The fence holds everything back while an older transaction may still commit.
      expect(await store.readAll({ after: head0, limit: 100 })).toEqual([]);
      expect(await store.headPosition()).toBe(head0);

      await slow.query('COMMIT');
    } catch (err) {
      await slow.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      slow.release();
    }
    // The naive reader has moved past the slow event's position: it never sees it.
    expect(await naiveRead(naiveCheckpoint)).toEqual([]);
    // The fenced reader gets both, in transaction order.
    const read = await eventually(() => store.readAll({ after: head0, limit: 100 }), (v) => v.length >= 2);
    expect(ids(read)).toEqual([slowEvent.eventId, fastEvent.eventId]);
    expect(await store.headPosition()).toBe(read[1]!.position);
  });

  it('16 writers x 200 appends with slow and rolled-back transactions: the checkpointing reader sees every committed event exactly once', async () => {
    const WRITERS = 16;
    const APPENDS = 200;
    const committed = new Set<string>();
    const rolledBack = new Set<string>();
    const seen = new Map<string, number>();
    const seenOrder: RecordedEvent[] = [];
    const naiveSeen = new Set<string>();
    let writersDone = false;

    let checkpoint = await store.headPosition();
    // The reader gives up 30 s after the writers are done, not at a fixed time from the start:
    // on a loaded machine the writes alone took 55 s, and a reader that stopped at 40 s "missed" the rest.
    let readerDeadline = Infinity;
    const reader = (async () => {
      for (;;) {
        const page = await store.readAll({ after: checkpoint, limit: 500 });
        for (const e of page) {
          if (!(e.position > checkpoint)) throw new Error(`readAll returned ${e.position} at or before ${checkpoint}`);
          checkpoint = e.position;
          seen.set(e.eventId, (seen.get(e.eventId) ?? 0) + 1);
          seenOrder.push(e);
        }
        if (page.length > 0) continue;
        if (writersDone && [...committed].every((id) => seen.has(id))) return;
        if (Date.now() > readerDeadline) return;
        await sleep(2);
      }
    })();

    let naiveCheckpoint = await maxGlobalPosition();
    const naiveReader = (async () => {
      for (;;) {
        const finalPass = writersDone; // everything has committed: this pass reads the rest
        const rows = await naiveRead(naiveCheckpoint);
        for (const r of rows) {
          naiveSeen.add(r.event_id);
          naiveCheckpoint = BigInt(r.global_position);
        }
        if (rows.length > 0) continue;
        if (finalPass) return;
        await sleep(2);
      }
    })();

    const writer = async (w: number) => {
      const random = prng(1000 + w);
      const streams = [sid(`w${w}a`), sid(`w${w}b`), sid(`w${w}c`)];
      for (let k = 0; k < APPENDS; k++) {
        const stream = streams[k % 3]!;
        const batch = Array.from({ length: 1 + (k % 3) }, (_, i) => ev(`W${w}K${k}I${i}`));
        const r = random();
        const pause = 0.005 + random() * 0.03;
        if (r < 0.06) {
          // Insert (low global positions), then dawdle before committing.
          await inTransaction(async (c) => {
            await store.appendWithin(c, stream, batch, { expectedRevision: 'any' });
            await c.query('SELECT pg_sleep($1)', [pause]);
          });
          for (const e of batch) committed.add(e.eventId);
        } else if (r < 0.1) {
          // Take an xid early (low xid), dawdle, then insert (high global positions).
          await inTransaction(async (c) => {
            await c.query('SELECT pg_current_xact_id()');
            await c.query('SELECT pg_sleep($1)', [pause]);
            await store.appendWithin(c, stream, batch, { expectedRevision: 'any' });
          });
          for (const e of batch) committed.add(e.eventId);
        } else if (r < 0.14) {
          await inTransaction(async (c) => {
            await store.appendWithin(c, stream, batch, { expectedRevision: 'any' });
            await c.query('SELECT pg_sleep($1)', [pause / 3]);
          }, 'rollback');
          for (const e of batch) rolledBack.add(e.eventId);
        } else {
          await store.appendToStream(stream, batch, { expectedRevision: 'any' });
          for (const e of batch) committed.add(e.eventId);
        }
      }
    };

    const started = Date.now();
    await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    const writeSeconds = (Date.now() - started) / 1000;
    writersDone = true;
    readerDeadline = Date.now() + 30_000;
    await Promise.all([reader, naiveReader]);

    const missing = [...committed].filter((id) => !seen.has(id));
    const duplicated = [...seen].filter(([, n]) => n > 1);
    const ghosts = [...rolledBack].filter((id) => seen.has(id));
    const naiveMissed = [...committed].filter((id) => !naiveSeen.has(id)).length;
    console.info(
      `xid fence race: ${committed.size} committed events (${rolledBack.size} rolled back) written in ${writeSeconds.toFixed(1)} s ` +
        `by ${WRITERS} writers; fenced reader missed ${missing.length}, a global_position-only reader would have missed ${naiveMissed}`,
    );
    expect({ missing: missing.length, duplicated: duplicated.length, rolledBackSeen: ghosts.length }).toEqual({
      missing: 0,
      duplicated: 0,
      rolledBackSeen: 0,
    });
    expect(seen.size).toBe(committed.size);
    // Each stream's events arrive in stream order, without holes.
    const next = new Map<string, bigint>();
    for (const e of seenOrder) {
      expect(e.streamPosition).toBe(next.get(e.streamId) ?? 0n);
      next.set(e.streamId, e.streamPosition + 1n);
    }
  }, 180_000); // the writes take 10-60 s, depending on the machine's load

  it('migrates idempotently when several instances start at once', async () => {
    const stores = await Promise.all(Array.from({ length: 6 }, () => createPostgresEventStore(pool, { schema: 'es_concurrent' })));
    try {
      const s = sid('migrated');
      await stores[0]!.appendToStream(s, [ev('A')], { expectedRevision: 'no_stream' });
      expect((await stores[5]!.readStream(s)).revision).toBe(0n);
      const { rows } = await pool.query<{ id: number }>('SELECT id FROM es_concurrent.migrations ORDER BY id');
      expect(rows.map((r) => r.id)).toEqual([1]);
      // A later start finds the schema up to date.
      await (await createPostgresEventStore(pool, { schema: 'es_concurrent' })).close();
    } finally {
      await Promise.all(stores.map((x) => x.close()));
    }
  });

  it('wakes listeners in other processes through NOTIFY, and local ones when an appendWithin commits', async () => {
    // A second store on its own pool stands in for another process.
    const otherPool = createPool(url!, { max: 2 });
    const other = await createPostgresEventStore(otherPool);
    let remoteCalls = 0;
    const offRemote = other.onAppended(() => remoteCalls++);
    let localCalls = 0;
    const offLocal = store.onAppended(() => localCalls++);
    try {
      // Each listener fires once when its LISTEN connection is up.
      await eventually(async () => remoteCalls * localCalls, (n) => n > 0);
      remoteCalls = 0;
      await store.appendToStream(sid('notify'), [ev('A')], { expectedRevision: 'no_stream' });
      expect(await eventually(async () => remoteCalls, (n) => n > 0, 5_000)).toBeGreaterThan(0);

      localCalls = 0;
      await inTransaction(async (c) => {
        await store.appendWithin(c, sid('within'), [ev('A')], { expectedRevision: 'no_stream' });
        await sleep(50);
        expect(localCalls).toBe(0); // nothing to read before the commit
      });
      expect(await eventually(async () => localCalls, (n) => n > 0, 5_000)).toBeGreaterThan(0);
    } finally {
      offRemote();
      offLocal();
      await other.close();
      await otherPool.end();
    }
  });

  it('rejects positions it did not issue', async () => {
    await expect(store.readAll({ after: '123', limit: 1 })).rejects.toThrow(TypeError);
    // Fenced: another suite's transaction open on the shared server can hide the first event for a while.
    expect(await eventually(() => store.readAll({ after: START, limit: 1 }), (v) => v.length === 1, 30_000)).toHaveLength(1);
  });
});
