import type { Pool, PoolClient } from 'pg';
import { parseStreamId } from '../contracts/naming';
import type { EventStore, GlobalPosition, RecordedEvent } from '../services/core/eventStore';
import { START } from '../services/core/eventStore';

/**
 * A projection: `apply` writes the read model for one event; the runner commits a batch of
 * applies and the projection's checkpoint in one transaction, so redelivery after a crash
 * replays at most the uncommitted batch, and every apply is written to be idempotent anyway.
 */
export interface Projection {
  readonly name: string;
  readonly version: number;
  canHandle(type: string): boolean;
  apply(client: PoolClient, event: RecordedEvent): Promise<void>;
  /** Runs after the batch committed (e.g. wake a worker, update an in-memory cache). */
  afterCommit?(events: RecordedEvent[]): void;
}

export const checkpointName = (p: Pick<Projection, 'name' | 'version'>) => `proj.${p.name}.v${p.version}`;

export interface ProjectionStatus {
  name: string;
  version: number;
  position: GlobalPosition;
  state: 'live' | 'catching_up' | 'failed';
  error: string | null;
  lastEventAt: string | null;
}

export interface RunningProjection {
  status(): ProjectionStatus;
  /** Resolves when the projection has processed `position` (or rejects after timeoutMs). */
  waitFor(position: GlobalPosition, timeoutMs: number): Promise<boolean>;
  stop(): Promise<void>;
}

export interface RunnerOptions {
  batchSize?: number;
  idlePollMs?: number;
  log?: (level: 'info' | 'warn' | 'error', msg: string, extra?: Record<string, unknown>) => void;
}

export async function readCheckpoint(pool: Pool, name: string): Promise<GlobalPosition> {
  const r = await pool.query<{ position: string }>('SELECT position FROM platform.checkpoints WHERE projection = $1', [name]);
  return r.rows[0]?.position ?? START;
}

async function writeCheckpoint(client: PoolClient, name: string, position: GlobalPosition): Promise<void> {
  await client.query(
    `INSERT INTO platform.checkpoints (projection, position, updated_at) VALUES ($1, $2, now())
     ON CONFLICT (projection) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`,
    [name, position],
  );
}

/** An event whose metadata tenant disagrees with its stream's tenant is dead-lettered, not applied. */
export function tenantMismatch(event: RecordedEvent): string | null {
  const { tenantId } = parseStreamId(event.streamId);
  if (tenantId === null) return null;
  if (event.metadata?.tenantId !== tenantId) return `metadata tenant ${String(event.metadata?.tenantId)} != stream tenant ${tenantId}`;
  return null;
}

export function startProjection(store: EventStore, pool: Pool, projection: Projection, opts: RunnerOptions = {}): RunningProjection {
  const name = checkpointName(projection);
  const batchSize = opts.batchSize ?? 500;
  const idlePollMs = opts.idlePollMs ?? 250;
  const log = opts.log ?? (() => undefined);
  let position: GlobalPosition = START;
  let state: ProjectionStatus['state'] = 'catching_up';
  let error: string | null = null;
  let lastEventAt: string | null = null;
  let stopped = false;
  let wake: (() => void) | null = null;
  const waiters = new Set<{ position: GlobalPosition; resolve: (ok: boolean) => void }>();

  const unsubscribe = store.onAppended(() => wake?.());

  const settleWaiters = () => {
    for (const w of waiters) {
      if (w.position <= position) {
        waiters.delete(w);
        w.resolve(true);
      }
    }
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wake = null;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        wake = null;
        resolve();
      };
    });

  async function processBatch(events: RecordedEvent[]): Promise<void> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (const event of events) {
        if (!projection.canHandle(event.type)) continue;
        const mismatch = tenantMismatch(event);
        if (mismatch) {
          await client.query(
            `INSERT INTO platform.dead_letters (projection, event_id, stream_id, type, reason) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING`,
            [name, event.eventId, event.streamId, event.type, mismatch],
          );
          log('warn', 'event dead-lettered', { projection: name, eventId: event.eventId, reason: mismatch });
          continue;
        }
        await projection.apply(client, event);
        // An apply may have entered a tenant's scope; the checkpoint is written as the platform role.
        await client.query('RESET ROLE; SET LOCAL search_path TO platform');
      }
      const last = events[events.length - 1]!;
      await writeCheckpoint(client, name, last.position);
      await client.query('COMMIT');
      position = last.position;
      lastEventAt = last.recordedAt.toISOString();
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    projection.afterCommit?.(events);
  }

  const loop = (async () => {
    position = await readCheckpoint(pool, name);
    let failures = 0;
    while (!stopped) {
      try {
        const events = await store.readAll({ after: position, limit: batchSize });
        if (events.length === 0) {
          state = 'live';
          settleWaiters();
          await sleep(idlePollMs);
          continue;
        }
        if (events.length === batchSize) state = 'catching_up';
        await processBatch(events);
        failures = 0;
        error = null;
        settleWaiters();
      } catch (err) {
        failures++;
        state = 'failed';
        error = (err as Error).message;
        log('error', 'projection batch failed; retrying', { projection: name, error: error, failures });
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
      }
    }
  })();

  return {
    status: () => ({ name: projection.name, version: projection.version, position, state, error, lastEventAt }),
    waitFor(target, timeoutMs) {
      if (target <= position) return Promise.resolve(true);
      return new Promise((resolve) => {
        const w = { position: target, resolve };
        waiters.add(w);
        const t = setTimeout(() => {
          waiters.delete(w);
          resolve(false);
        }, timeoutMs);
        t.unref?.();
        wake?.();
      });
    },
    async stop() {
      stopped = true;
      unsubscribe();
      wake?.();
      await loop;
      for (const w of waiters) w.resolve(false);
      waiters.clear();
    },
  };
}
