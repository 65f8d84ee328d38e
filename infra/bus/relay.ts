import type { Pool, PoolClient } from 'pg';
import { readCheckpoint } from '../../projections/runner';
import type { EventBus } from '../../services/core/eventBus';
import type { EventStore, GlobalPosition } from '../../services/core/eventStore';
import { createSleeper } from '../../services/core/sleeper';

export const RELAY_CHECKPOINT = 'relay.kafka';
const RELAY_LOCK = 7157002;

export interface Relay {
  status(): { active: boolean; position: GlobalPosition; published: number; error: string | null };
  stop(): Promise<void>;
}

/**
 * Publishes the store's global log to the bus, in order, at least once: the checkpoint moves
 * only after the broker acknowledged the batch. One active instance: the one holding a Postgres
 * advisory lock on its own session; standbys retry the lock and take over if it dies.
 * The event store is the outbox, so there is no second table to keep consistent.
 */
export function startRelay(store: EventStore, pool: Pool, bus: EventBus, opts: { batchSize?: number; log?: (l: 'info' | 'warn' | 'error', m: string, x?: Record<string, unknown>) => void } = {}): Relay {
  const log = opts.log ?? (() => undefined);
  const batchSize = opts.batchSize ?? 500;
  let stopped = false;
  let active = false;
  let position: GlobalPosition = '';
  let published = 0;
  let error: string | null = null;
  const sleeper = createSleeper();
  const sleep = sleeper.sleep;
  const unsubscribe = store.onAppended(() => sleeper.wake());

  const loop = (async () => {
    let lockClient: PoolClient | null = null;
    while (!stopped) {
      try {
        if (!lockClient) {
          const c = await pool.connect();
          const got = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [RELAY_LOCK]);
          if (!got.rows[0]?.ok) {
            c.release();
            await sleep(2000);
            continue;
          }
          lockClient = c;
          active = true;
          position = await readCheckpoint(pool, RELAY_CHECKPOINT);
          log('info', 'relay active', { position });
        }
        const events = await store.readAll({ after: position, limit: batchSize });
        if (events.length === 0) {
          await sleep(200);
          continue;
        }
        await bus.publish(events);
        const last = events[events.length - 1]!.position;
        await lockClient.query(
          `INSERT INTO platform.checkpoints (projection, position, updated_at) VALUES ($1, $2, now())
           ON CONFLICT (projection) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`,
          [RELAY_CHECKPOINT, last],
        );
        position = last;
        published += events.length;
        error = null;
      } catch (err) {
        error = (err as Error).message;
        log('error', 'relay failed; retrying', { error });
        if (lockClient) {
          lockClient.release(true);
          lockClient = null;
          active = false;
        }
        await sleep(1000);
      }
    }
    if (lockClient) {
      await lockClient.query('SELECT pg_advisory_unlock($1)', [RELAY_LOCK]).catch(() => undefined);
      lockClient.release();
    }
    active = false;
  })();

  return {
    status: () => ({ active, position, published, error }),
    async stop() {
      stopped = true;
      unsubscribe();
      sleeper.wake();
      await loop;
    },
  };
}
