import type { Pool } from 'pg';
import type { EventStore, GlobalPosition } from '../services/core/eventStore';
import { START } from '../services/core/eventStore';
import { applyBatch, checkpointName, type Projection } from './runner';

/**
 * Rebuilds a read model from position 0 of the event store (never from Kafka, whose topics may
 * have finite retention) into a new projection version beside the live one; the caller switches
 * reads to it once it has caught up. Checkpoints are written for both delivery modes, so the new
 * version can continue live from the store or from Kafka without applying anything twice.
 */
export interface RebuildProgress {
  name: string;
  version: number;
  done: number;
  total: number | null;
  eventsPerSecond: number;
  etaSeconds: number | null;
  state: 'rebuilding' | 'switched' | 'failed';
  error: string | null;
  /** Rebuilt in place (every tenant's rows through a scratch copy), not into a new version. */
  inPlace?: boolean;
}

export async function activeVersion(pool: Pool, name: string, fallback: number): Promise<number> {
  const r = await pool.query<{ active_version: number }>('SELECT active_version FROM platform.projection_versions WHERE name = $1', [name]);
  if (r.rows[0]) return r.rows[0].active_version;
  await pool.query('INSERT INTO platform.projection_versions (name, active_version) VALUES ($1, $2) ON CONFLICT DO NOTHING', [name, fallback]);
  return fallback;
}

/** Events in the store, when the adapter can count them cheaply (for progress and ETA). */
export async function countEvents(store: EventStore, pool: Pool): Promise<number | null> {
  const schema = (store as { schema?: string }).schema;
  if (store.kind !== 'postgres' || !schema) return null;
  const r = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${schema}.events`);
  return Number(r.rows[0]?.n ?? 0);
}

export async function rebuild(
  store: EventStore,
  pool: Pool,
  projection: Projection,
  opts: { batchSize?: number; onProgress?: (p: RebuildProgress) => void; log?: (l: 'info' | 'warn' | 'error', m: string, x?: Record<string, unknown>) => void } = {},
): Promise<{ events: number; seconds: number; position: GlobalPosition }> {
  const batchSize = opts.batchSize ?? 20_000;
  const log = opts.log ?? (() => undefined);
  const total = await countEvents(store, pool);
  const started = Date.now();
  let position: GlobalPosition = START;
  let done = 0;
  await pool.query(`DELETE FROM platform.checkpoints WHERE projection = $1 OR projection LIKE $2`, [checkpointName(projection), `${checkpointName(projection)}/%`]);
  projection.beginRebuild?.();
  // The next batch is read while the current one is applied (another connection of the pool).
  const read = (after: GlobalPosition) => {
    const p = store.readAll({ after, limit: batchSize });
    p.catch(() => undefined); // awaited below, unless applying the current batch failed first
    return p;
  };
  let next = read(position);
  for (;;) {
    const events = await next;
    if (events.length === 0) break;
    next = read(events[events.length - 1]!.position);
    await applyBatch(pool, projection, events, 'rebuild', log);
    position = events[events.length - 1]!.position;
    done += events.length;
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    opts.onProgress?.({
      name: projection.name,
      version: projection.version,
      done,
      total,
      eventsPerSecond: Math.round(rate),
      etaSeconds: total !== null && rate > 0 ? Math.max(0, Math.round((total - done) / rate)) : null,
      state: 'rebuilding',
      error: null,
    });
  }
  // Caught up: what the projection left out while no one read this version (e.g. indexes).
  await projection.finishRebuild?.(pool);
  return { events: done, seconds: (Date.now() - started) / 1000, position };
}
