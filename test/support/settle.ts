import { encodePosition } from '../../infra/eventstore/postgres';
import type { Pool } from 'pg';
import { type EventStore, START, type GlobalPosition } from '../../services/core/eventStore';
import type { Product } from '../../services/product';

/**
 * The position of the newest event committed to the product's PostgreSQL event store, read
 * past the xid fence. `readAll`/`headPosition` stop before any transaction still open anywhere
 * on the server (CI runs every suite on ONE server), so a fenced head can lag behind events
 * this suite has already had acknowledged; a wait on it would pass too early.
 */
export async function lastCommittedPosition(product: Product): Promise<GlobalPosition> {
  return lastCommittedPositionOf(product.deps.store, product.deps.pool);
}

/** The same for an event store and pool a test wired itself. */
export async function lastCommittedPositionOf(store: EventStore, pool: Pool): Promise<GlobalPosition> {
  const schema = (store as { schema?: string }).schema;
  if (store.kind !== 'postgres' || !schema) throw new Error('lastCommittedPosition needs the PostgreSQL event store');
  const r = await pool.query<{ xid: string; gp: string }>(
    `SELECT transaction_id::text AS xid, global_position::text AS gp FROM ${schema}.events ORDER BY transaction_id DESC, global_position DESC LIMIT 1`,
  );
  const row = r.rows[0];
  return row ? encodePosition(row.xid, row.gp) : START;
}

/**
 * Quiesces what a test can: flushes the buffered activity records (ACTIVITY_FLUSH_MS), then
 * waits until each named projection (fed from the store, the embedded profile) has processed
 * every event committed so far. Returns that position: read models compared after this reflect
 * the same set of events. Throws when a projection does not get there within `timeoutMs`.
 */
export async function settle(product: Product, names: string[], timeoutMs = 30_000): Promise<GlobalPosition> {
  await product.deps.activity.flush();
  const at = await lastCommittedPosition(product);
  for (const name of names) {
    const handle = product.deps.projections[name];
    if (!handle) throw new Error(`no projection ${name}`);
    if (!(await handle.waitFor(at, timeoutMs))) throw new Error(`projection ${name} did not reach ${at} within ${timeoutMs} ms: ${JSON.stringify(handle.status())}`);
  }
  return at;
}
