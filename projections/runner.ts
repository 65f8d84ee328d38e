import type { Pool, PoolClient } from 'pg';
import { parseStreamId } from '../contracts/naming';
import type { EventBus } from '../services/core/eventBus';
import type { EventStore, GlobalPosition, RecordedEvent } from '../services/core/eventStore';
import { START } from '../services/core/eventStore';
import { createSleeper } from '../services/core/sleeper';
import { withTransaction } from '../infra/postgres/pool';

/**
 * A projection: `apply` writes the read model for one event; the runner commits a batch of
 * applies and the projection's checkpoint in one transaction, so redelivery after a crash
 * replays at most the uncommitted batch, and duplicates are recognised by the checkpoint.
 */
export interface Projection {
  readonly name: string;
  readonly version: number;
  /** Stream categories it consumes (its Kafka topics). */
  readonly categories: string[];
  canHandle(type: string): boolean;
  apply(client: PoolClient, event: RecordedEvent): Promise<void>;
  /**
   * Optional batched `apply`: the same effect as applying `events` one by one, in order, in the
   * same transaction (fewer round trips). It receives only the events `apply` would have: handled
   * types, tenant checked, keyed duplicates removed.
   */
  applyMany?(client: PoolClient, events: RecordedEvent[]): Promise<void>;
  /** Runs after the batch committed (e.g. wake a worker, update an in-memory cache). */
  afterCommit?(events: RecordedEvent[]): void;
  /**
   * Optional, for an online rebuild (projections/rebuild.ts) into a version no one else writes
   * yet: `beginRebuild` before its first batch (the projection may then, e.g., create its tables
   * without secondary indexes), `finishRebuild` once it has caught up, before the version goes
   * live (e.g. build those indexes). A table that becomes live must look as if created live.
   */
  beginRebuild?(): void;
  finishRebuild?(pool: Pool): Promise<void>;
}

export const checkpointName = (p: Pick<Projection, 'name' | 'version'>) => `proj.${p.name}.v${p.version}`;
/** Kafka delivers each topic partition in order, so duplicates are detected per tenant and category. */
const keyedCheckpoint = (base: string, category: string, tenantId: string) => `${base}/${category}/${tenantId}`;

export interface ProjectionStatus {
  name: string;
  version: number;
  source: 'store' | 'kafka';
  position: GlobalPosition;
  state: 'live' | 'catching_up' | 'failed';
  error: string | null;
  lastEventAt: string | null;
  eventsApplied: number;
}

export interface RunningProjection {
  status(): ProjectionStatus;
  /** Resolves true once the projection has processed `position` of `tenantId` (false on timeout). */
  waitFor(position: GlobalPosition, timeoutMs: number, tenantId?: string): Promise<boolean>;
  stop(): Promise<void>;
}

export interface RunnerOptions {
  batchSize?: number;
  /**
   * Events read per batch while a store-reading projection is catching up (the previous batch
   * was full), e.g. from position 0 after a version bump: fewer, larger transactions. Defaults
   * to 5,000, or to `batchSize` when that is given.
   */
  catchUpBatchSize?: number;
  idlePollMs?: number;
  log?: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

export async function readCheckpoint(pool: Pool, name: string): Promise<GlobalPosition> {
  const r = await pool.query<{ position: string }>('SELECT position FROM platform.checkpoints WHERE projection = $1', [name]);
  return r.rows[0]?.position ?? START;
}

async function writeCheckpoints(client: Pool | PoolClient, entries: [string, GlobalPosition][]): Promise<void> {
  if (entries.length === 0) return;
  await client.query(
    `INSERT INTO platform.checkpoints (projection, position, updated_at)
     SELECT * , now() FROM unnest($1::text[], $2::text[])
     ON CONFLICT (projection) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`,
    [entries.map((e) => e[0]), entries.map((e) => e[1])],
  );
}

/** An event whose metadata tenant disagrees with its stream's tenant is dead-lettered, not applied. */
export function tenantMismatch(event: RecordedEvent): string | null {
  const { tenantId } = parseStreamId(event.streamId);
  if (tenantId === null) return 'stream id carries no tenant';
  if (event.metadata?.tenantId !== tenantId) return `metadata tenant ${String(event.metadata?.tenantId)} != stream tenant ${tenantId}`;
  return null;
}

/**
 * Applies a batch in one transaction with its checkpoint(s). `global`: the batch is a slice of
 * the store's total order, one checkpoint. `keyed`: batches from Kafka, one checkpoint per
 * (category, tenant), and events at or below it are duplicates and skipped.
 * Returns the events applied and, per tenant, the highest position now reflected.
 */
export async function applyBatch(
  pool: Pool,
  projection: Projection,
  events: RecordedEvent[],
  mode: 'global' | 'keyed' | 'rebuild',
  log: NonNullable<RunnerOptions['log']>,
): Promise<{ applied: RecordedEvent[]; tenantPositions: Map<string, GlobalPosition> }> {
  const base = checkpointName(projection);
  const applied: RecordedEvent[] = [];
  const tenantPositions = new Map<string, GlobalPosition>();
  await withTransaction(pool, async (client) => {
    const keyed = new Map<string, GlobalPosition>();
    if (mode !== 'global') {
      const keys = [...new Set(events.map((e) => { const s = parseStreamId(e.streamId); return keyedCheckpoint(base, s.category, s.tenantId ?? 'none'); }))];
      const r = await client.query<{ projection: string; position: string }>('SELECT projection, position FROM platform.checkpoints WHERE projection = ANY($1) FOR UPDATE', [keys]);
      for (const row of r.rows) keyed.set(row.projection, row.position);
    }
    const dirty = new Set<string>();
    for (const event of events) {
      const s = parseStreamId(event.streamId);
      const key = keyedCheckpoint(base, s.category, s.tenantId ?? 'none');
      if (mode !== 'global') {
        const seen = keyed.get(key);
        if (seen !== undefined && event.position <= seen) continue; // redelivered
        keyed.set(key, event.position);
        dirty.add(key);
      }
      if (s.tenantId) tenantPositions.set(s.tenantId, event.position);
      if (!projection.canHandle(event.type)) continue;
      const mismatch = tenantMismatch(event);
      if (mismatch) {
        await client.query(
          `INSERT INTO platform.dead_letters (projection, event_id, stream_id, type, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
          [base, event.eventId, event.streamId, event.type, mismatch],
        );
        log('warn', 'event dead-lettered', { projection: base, eventId: event.eventId, reason: mismatch });
        continue;
      }
      if (projection.applyMany) {
        applied.push(event);
        continue;
      }
      await projection.apply(client, event);
      // An apply may have entered a tenant's scope; checkpoints are written as the platform role.
      await client.query('RESET ROLE; SET LOCAL search_path TO platform');
      applied.push(event);
    }
    if (projection.applyMany && applied.length) {
      await projection.applyMany(client, applied);
      await client.query('RESET ROLE; SET LOCAL search_path TO platform');
    }
    const last = events[events.length - 1];
    const entries: [string, GlobalPosition][] = mode === 'global' ? [] : [...dirty].map((k): [string, GlobalPosition] => [k, keyed.get(k)!]);
    if (mode !== 'keyed' && last) entries.push([base, last.position]);
    await writeCheckpoints(client, entries);
  });
  if (applied.length) projection.afterCommit?.(applied);
  return { applied, tenantPositions };
}

function makeWaiters() {
  const waiters = new Set<{ position: GlobalPosition; tenantId?: string; resolve: (ok: boolean) => void }>();
  return {
    add(position: GlobalPosition, timeoutMs: number, tenantId: string | undefined, onAdd?: () => void): Promise<boolean> {
      return new Promise((resolve) => {
        const w = { position, tenantId, resolve };
        waiters.add(w);
        const t = setTimeout(() => {
          waiters.delete(w);
          resolve(false);
        }, timeoutMs);
        t.unref?.();
        onAdd?.();
      });
    },
    settle(isDone: (position: GlobalPosition, tenantId?: string) => boolean) {
      for (const w of waiters) {
        if (isDone(w.position, w.tenantId)) {
          waiters.delete(w);
          w.resolve(true);
        }
      }
    },
    clear() {
      for (const w of waiters) w.resolve(false);
      waiters.clear();
    },
  };
}

/** Embedded: the projection reads the store's global log itself (the in-process bus). */
export function startProjection(store: EventStore, pool: Pool, projection: Projection, opts: RunnerOptions = {}): RunningProjection {
  const name = checkpointName(projection);
  const batchSize = opts.batchSize ?? 500;
  const catchUpBatchSize = Math.max(batchSize, opts.catchUpBatchSize ?? opts.batchSize ?? 5000);
  let limit = batchSize;
  const idlePollMs = opts.idlePollMs ?? 250;
  const log = opts.log ?? (() => undefined);
  let position: GlobalPosition = START;
  let state: ProjectionStatus['state'] = 'catching_up';
  let error: string | null = null;
  let lastEventAt: string | null = null;
  let eventsApplied = 0;
  let stopped = false;
  const sleeper = createSleeper();
  const sleep = sleeper.sleep;
  const waiters = makeWaiters();
  const unsubscribe = store.onAppended(() => sleeper.wake());
  let checkpointSavedAt = 0;
  let unsaved = false;
  const saveCheckpoint = async (at: GlobalPosition) => {
    await writeCheckpoints(pool, [[name, at]]);
    checkpointSavedAt = Date.now();
    unsaved = false;
  };

  const loop = (async () => {
    let failures = 0;
    for (;;) {
      try {
        position = await readCheckpoint(pool, name);
        break;
      } catch (err) {
        if (stopped) return;
        log('error', 'cannot read checkpoint; retrying', { projection: name, error: (err as Error).message });
        await sleep(1000);
      }
    }
    while (!stopped) {
      try {
        const events = await store.readAll({ after: position, limit });
        if (events.length === 0) {
          limit = batchSize;
          state = 'live';
          waiters.settle((p) => p <= position);
          if (unsaved && Date.now() - checkpointSavedAt >= 1000) await saveCheckpoint(position);
          await sleep(idlePollMs);
          continue;
        }
        state = events.length === limit ? 'catching_up' : 'live';
        limit = events.length === limit ? catchUpBatchSize : batchSize;
        const last = events[events.length - 1]!;
        let applied: RecordedEvent[] = [];
        if (events.some((e) => projection.canHandle(e.type))) {
          ({ applied } = await applyBatch(pool, projection, events, 'global', log));
          checkpointSavedAt = Date.now();
          unsaved = false;
        } else {
          // Nothing here for this projection (e.g. activity events for the catalog): no
          // transaction per batch. The checkpoint is saved at most once a second; after a crash
          // the same events are read again and skipped again.
          unsaved = true;
          if (Date.now() - checkpointSavedAt >= 1000) await saveCheckpoint(last.position);
        }
        position = last.position;
        lastEventAt = last.recordedAt.toISOString();
        eventsApplied += applied.length;
        failures = 0;
        error = null;
        waiters.settle((p) => p <= position);
      } catch (err) {
        failures++;
        // A transient failure (e.g. another projection has not created a tenant's schema yet)
        // is retried quietly; only a persistent one marks the projection failed in /ready.
        state = failures >= 3 ? 'failed' : 'catching_up';
        error = (err as Error).message;
        log(failures >= 3 ? 'error' : 'warn', 'projection batch failed; retrying', { projection: name, error, failures });
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
      }
    }
  })();

  return {
    status: () => ({ name: projection.name, version: projection.version, source: 'store', position, state, error, lastEventAt, eventsApplied }),
    waitFor(target, timeoutMs) {
      if (target <= position) return Promise.resolve(true);
      return waiters.add(target, timeoutMs, undefined, () => sleeper.wake());
    },
    async stop() {
      stopped = true;
      unsubscribe();
      sleeper.wake();
      await loop;
      if (unsaved) await saveCheckpoint(position).catch(() => undefined);
      waiters.clear();
    },
  };
}

/** Production: the projection is a Kafka consumer group named after it (`proj.<name>.v<N>`). */
export async function startKafkaProjection(bus: EventBus, pool: Pool, projection: Projection, opts: RunnerOptions = {}): Promise<RunningProjection> {
  const name = checkpointName(projection);
  const log = opts.log ?? (() => undefined);
  const tenantPositions = new Map<string, GlobalPosition>();
  let position: GlobalPosition = START;
  let state: ProjectionStatus['state'] = 'catching_up';
  let error: string | null = null;
  let lastEventAt: string | null = null;
  let eventsApplied = 0;
  const waiters = makeWaiters();
  const done = (p: GlobalPosition, tenantId?: string) => (tenantId ? (tenantPositions.get(tenantId) ?? START) >= p : position >= p);

  let failures = 0;
  const sub = await bus.subscribe(name, projection.categories, async (events) => {
    try {
      const r = await applyBatch(pool, projection, events, 'keyed', log);
      for (const [t, p] of r.tenantPositions) if ((tenantPositions.get(t) ?? START) < p) tenantPositions.set(t, p);
      for (const e of events) if (e.position > position) position = e.position;
      const last = events[events.length - 1];
      if (last) lastEventAt = last.recordedAt.toISOString();
      eventsApplied += r.applied.length;
      state = 'live';
      error = null;
      failures = 0;
      waiters.settle(done);
    } catch (err) {
      failures++;
      state = failures >= 3 ? 'failed' : 'catching_up';
      error = (err as Error).message;
      log(failures >= 3 ? 'error' : 'warn', 'projection batch failed; kafka will redeliver', { projection: name, error, failures });
      throw err;
    }
  });
  state = 'live';

  return {
    status: () => ({ name: projection.name, version: projection.version, source: 'kafka', position, state, error, lastEventAt, eventsApplied }),
    async waitFor(target, timeoutMs, tenantId) {
      if (done(target, tenantId)) return true;
      // Another process may own this consumer group's partition for the tenant: ask the checkpoints.
      const deadline = Date.now() + timeoutMs;
      const local = waiters.add(target, timeoutMs, tenantId);
      while (Date.now() < deadline) {
        if (tenantId) {
          const r = await pool.query<{ p: string | null }>(`SELECT max(position) AS p FROM platform.checkpoints WHERE projection LIKE $1`, [`${name}/%/${tenantId}`]);
          if ((r.rows[0]?.p ?? START) >= target) return true;
        }
        const settled = await Promise.race([local, new Promise<null>((r) => setTimeout(() => r(null), 25))]);
        if (settled) return true;
      }
      return false;
    },
    async stop() {
      await sub.stop();
      waiters.clear();
    },
  };
}

/**
 * A projection running in another process (split deployment): its progress is read from the
 * checkpoints it commits with its read model, so a gateway can still offer read-your-writes.
 */
export function watchProjection(pool: Pool, projection: Projection, source: 'store' | 'kafka'): RunningProjection {
  const name = checkpointName(projection);
  let position: GlobalPosition = START;
  const current = async (tenantId?: string): Promise<GlobalPosition> => {
    const r =
      source === 'kafka' && tenantId
        ? await pool.query<{ p: string | null }>('SELECT max(position) AS p FROM platform.checkpoints WHERE projection LIKE $1', [`${name}/%/${tenantId}`])
        : await pool.query<{ p: string | null }>(
            source === 'kafka' ? 'SELECT max(position) AS p FROM platform.checkpoints WHERE projection LIKE $1' : 'SELECT position AS p FROM platform.checkpoints WHERE projection = $1',
            [source === 'kafka' ? `${name}/%` : name],
          );
    return r.rows[0]?.p ?? START;
  };
  return {
    status: () => ({ name: projection.name, version: projection.version, source, position, state: 'live', error: null, lastEventAt: null, eventsApplied: 0 }),
    async waitFor(target, timeoutMs, tenantId) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const p = await current(tenantId);
        if (p > position && !tenantId) position = p;
        if (p >= target) return true;
        if (Date.now() >= deadline) return false;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async stop() {},
  };
}
